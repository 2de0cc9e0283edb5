//! The report's five formats. A terminal table and Markdown: the headline,
//! the layers that take cycles (under the simulator with compute and stall
//! cycles, mapping efficiency and DRAM traffic per buffer), and with a
//! baseline the per-block speedups. JSON: the report as serde writes it. CSV:
//! one row per node (the simulator's columns after the common ones). SVG: the
//! cycles per block (analytical) or the timeline of the array and the vector
//! unit (simulator).

use std::path::Path;

use super::{Layer, LatencyReport, SimDetail};
use crate::cost::hw::schedule::LayerKind;
use crate::cost::sim::Unit;
use crate::error::{Error, Result};
use crate::stats::human;

fn kind_name(k: LayerKind) -> &'static str {
    match k {
        LayerKind::Pointwise => "pointwise",
        LayerKind::Depthwise => "depthwise",
        LayerKind::FuseRow => "FuSe 1xK",
        LayerKind::FuseCol => "FuSe Kx1",
        LayerKind::OtherConv => "conv",
        LayerKind::Fc => "FC",
        LayerKind::Other => "other",
    }
}

fn shape(s: &[i64]) -> String {
    s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

fn pair(p: Option<[i64; 2]>) -> String {
    p.map(|k| format!("{}x{}", k[0], k[1])).unwrap_or_default()
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Array => "array",
        Unit::Vector => "vector",
        Unit::None => "none",
    }
}

impl LatencyReport {
    /// The simulator's rows: nodes that run on a unit, with their details.
    fn sim_rows(&self) -> impl Iterator<Item = (&Layer, &SimDetail)> {
        self.layers.iter().filter_map(|l| l.sim.as_ref().filter(|d| d.unit != Unit::None).map(|d| (l, d)))
    }

    /// A report of the simulator: its totals (and every layer's details) are there.
    fn is_sim(&self) -> bool {
        self.model.sim.is_some()
    }

    fn headline(&self) -> String {
        let a = &self.array;
        let m = &self.model;
        let mut s = match (&self.config, &m.sim) {
            (Some(c), Some(t)) => {
                let mem = match &c.memory {
                    Some(mm) => format!(
                        "SRAM {}/{}/{} KB, DRAM {} B/cycle, {} (DRAM traffic {}B)",
                        mm.ifmap_kb,
                        mm.filter_kb,
                        mm.ofmap_kb,
                        mm.dram_bytes_per_cycle,
                        if mm.word_bytes_from_types { "words sized by the tensor types".to_string() } else { format!("{}-byte words", mm.word_bytes) },
                        human(t.dram_bytes)
                    ),
                    None => "no memory limit".into(),
                };
                format!(
                    "{}: {} cycles ({:.1} µs at {} MHz) on a {}x{} {:?} array, {} dataflow, {mem}, vector unit {} lanes\n  array compute {} + stalls {} cycles, vector unit {} cycles; utilization {:.1}%\n  convention: {}",
                    m.model,
                    m.total_cycles,
                    m.time_us,
                    c.freq_mhz,
                    c.rows,
                    c.cols,
                    c.kind,
                    c.dataflow.to_string().to_uppercase(),
                    c.vector.lanes,
                    t.array_compute_cycles,
                    t.array_stall_cycles,
                    t.vector_cycles,
                    t.utilization * 100.0,
                    self.convention
                )
            }
            _ => format!(
                "{}: {} cycles ({:.1} µs at {} MHz) on a {}x{} {:?} array; {} MACs, {} params\nengine: {}",
                m.model,
                self.total_cycles,
                m.time_us,
                a.freq_mhz,
                a.rows,
                a.cols,
                a.kind,
                human(m.macs),
                human(m.params),
                self.convention
            ),
        };
        let indent = if self.is_sim() { "  " } else { "" };
        if let (Some(b), Some(sp)) = (&self.baseline, self.speedup) {
            s.push_str(&format!("\n{indent}baseline {}: {} cycles on the plain systolic array → speedup {:.2}x", b.model, b.total_cycles, sp));
        }
        s
    }

    pub fn to_table(&self) -> String {
        let mut s = self.headline();
        s.push('\n');
        if self.is_sim() {
            s.push_str(&format!(
                "  {:<36} {:<12} {:>10} {:>9} {:>10} {:>6} {:>6} {:>9} {:>9} {:>9} {:>6}\n",
                "node", "op", "compute", "stall", "total", "map", "util", "DRAM if", "DRAM filt", "DRAM of", "B/cyc"
            ));
            for (l, d) in self.sim_rows() {
                s.push_str(&format!(
                    "  {:<36} {:<12} {:>10} {:>9} {:>10} {:>5.1}% {:>5.1}% {:>9} {:>9} {:>9} {:>6.2}\n",
                    l.cost.name,
                    l.cost.op,
                    d.compute_cycles,
                    d.stall_cycles,
                    d.total_cycles,
                    d.mapping_efficiency * 100.0,
                    l.cost.utilization * 100.0,
                    human(d.dram_ifmap_reads),
                    human(d.dram_filter_reads),
                    human(d.dram_ofmap_writes),
                    d.avg_dram_bandwidth
                ));
            }
        } else {
            s.push_str(&format!(
                "  {:<38} {:<18} {:<10} {:>16} {:>6} {:>6} {:>9} {:>8} {:>11} {:>6} {:>6}\n",
                "node", "op", "kind", "input", "kernel", "stride", "MACs", "params", "cycles", "share", "util"
            ));
            let total = self.total_cycles.max(1) as f64;
            for l in self.layers.iter().map(|l| &l.cost).filter(|l| l.cycles > 0) {
                s.push_str(&format!(
                    "  {:<38} {:<18} {:<10} {:>16} {:>6} {:>6} {:>9} {:>8} {:>11} {:>5.1}% {:>5.1}%\n",
                    l.name,
                    l.op,
                    kind_name(l.kind),
                    shape(&l.input_shape),
                    pair(l.kernel),
                    pair(l.stride),
                    human(l.macs),
                    human(l.params),
                    l.cycles,
                    l.cycles as f64 / total * 100.0,
                    l.utilization * 100.0
                ));
            }
            let idle = self.layers.iter().filter(|l| l.cost.cycles == 0).count();
            s.push_str(&format!("  ({idle} nodes such as activations, pooling, elementwise ops, Concat and Split take no array cycles in this model)\n"));
        }
        if self.baseline.is_some() {
            s.push_str("  per block:\n");
            for b in &self.blocks {
                s.push_str(&format!(
                    "    {:<38} {:>11} cycles  baseline {:>11}  {}\n",
                    b.name,
                    b.cycles,
                    b.baseline_cycles.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                    b.speedup.map(|x| format!("{x:.2}x")).unwrap_or_default()
                ));
            }
        }
        s
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::from(if self.is_sim() { "### fusec simulation\n\n" } else { "### fusec latency report\n\n" });
        for line in self.headline().lines() {
            s.push_str(&format!("- {}\n", line.trim()));
        }
        if self.baseline.is_some() {
            s.push_str("\n| block | cycles | baseline cycles | speedup |\n|---|---:|---:|---:|\n");
            for b in &self.blocks {
                s.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    b.name,
                    b.cycles,
                    b.baseline_cycles.map(|c| c.to_string()).unwrap_or_default(),
                    b.speedup.map(|x| format!("{x:.2}x")).unwrap_or_default()
                ));
            }
        }
        if self.is_sim() {
            s.push_str("\n| node | op | compute | stall | total | mapping | util | DRAM ifmap | DRAM filter | DRAM ofmap |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for (l, d) in self.sim_rows() {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {:.1}% | {:.1}% | {} | {} | {} |\n",
                    l.cost.name,
                    l.cost.op,
                    d.compute_cycles,
                    d.stall_cycles,
                    d.total_cycles,
                    d.mapping_efficiency * 100.0,
                    l.cost.utilization * 100.0,
                    d.dram_ifmap_reads,
                    d.dram_filter_reads,
                    d.dram_ofmap_writes
                ));
            }
            return s;
        }
        s.push_str("\n| node | kind | input | kernel | stride | MACs | cycles | share | util |\n|---|---|---|---|---|---:|---:|---:|---:|\n");
        let total = self.total_cycles.max(1) as f64;
        for l in self.layers.iter().map(|l| &l.cost).filter(|l| l.cycles > 0) {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1}% | {:.1}% |\n",
                l.name,
                kind_name(l.kind),
                shape(&l.input_shape),
                pair(l.kernel),
                pair(l.stride),
                l.macs,
                l.cycles,
                l.cycles as f64 / total * 100.0,
                l.utilization * 100.0
            ));
        }
        s
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Eval(e.to_string()))
    }

    /// One row per node; under the simulator, its columns after the common ones.
    pub fn to_csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(vec![]);
        let e = |e: csv::Error| Error::Eval(e.to_string());
        let sim = self.is_sim();
        let mut header = vec!["node", "op", "kind", "input", "kernel", "stride", "macs", "params", "cycles", "start", "end", "utilization"];
        if sim {
            header.extend([
                "unit", "compute_cycles", "stall_cycles", "total_cycles", "mapping_efficiency", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
                "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes", "avg_dram_bandwidth", "word_bytes", "dram_bytes",
            ]);
        }
        w.write_record(&header).map_err(e)?;
        for layer in &self.layers {
            let l = &layer.cost;
            let mut row = vec![
                l.name.clone(),
                l.op.clone(),
                kind_name(l.kind).to_string(),
                shape(&l.input_shape),
                pair(l.kernel),
                pair(l.stride),
                l.macs.to_string(),
                l.params.to_string(),
                l.cycles.to_string(),
                l.start.to_string(),
                l.end.to_string(),
                format!("{:.6}", l.utilization),
            ];
            if let (true, Some(d)) = (sim, &layer.sim) {
                row.extend([
                    unit_name(d.unit).to_string(),
                    d.compute_cycles.to_string(),
                    d.stall_cycles.to_string(),
                    d.total_cycles.to_string(),
                    format!("{:.6}", d.mapping_efficiency),
                    d.sram_ifmap_reads.to_string(),
                    d.sram_filter_reads.to_string(),
                    d.sram_ofmap_writes.to_string(),
                    d.dram_ifmap_reads.to_string(),
                    d.dram_filter_reads.to_string(),
                    d.dram_ofmap_writes.to_string(),
                    format!("{:.4}", d.avg_dram_bandwidth),
                    d.word_bytes.to_string(),
                    d.dram_bytes.to_string(),
                ]);
            } else if sim {
                row.extend(std::iter::repeat_n(String::new(), header.len() - row.len()));
            }
            w.write_record(&row).map_err(e)?;
        }
        let bytes = w.into_inner().map_err(|e| Error::Eval(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| Error::Eval(e.to_string()))
    }

    /// The simulator's timeline, or (analytical) the cycles per block.
    pub fn to_svg(&self) -> Result<String> {
        if self.is_sim() { self.timeline_svg() } else { self.blocks_svg() }
    }

    /// Grouped bar chart of cycles per block (baseline against converted).
    fn blocks_svg(&self) -> Result<String> {
        use plotters::prelude::*;
        let mut buf = String::new();
        let n = self.blocks.len().max(1);
        let width = (160 + 28 * n as u32).max(640);
        {
            let root = SVGBackend::with_string(&mut buf, (width, 480)).into_drawing_area();
            let e = |e: DrawingAreaErrorKind<std::io::Error>| Error::Eval(format!("svg: {e}"));
            root.fill(&WHITE).map_err(e)?;
            let ymax = self.blocks.iter().map(|b| b.cycles.max(b.baseline_cycles.unwrap_or(0))).max().unwrap_or(1).max(1) as f64 * 1.1;
            let title = match self.speedup {
                Some(s) => format!("cycles per block, {}x{} array: {:.2}x speedup", self.array.rows, self.array.cols, s),
                None => format!("cycles per block, {}x{} {:?} array", self.array.rows, self.array.cols, self.array.kind),
            };
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(80)
                .build_cartesian_2d(0f64..n as f64, 0f64..ymax)
                .map_err(e)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc("block (stem, then one per depthwise layer)")
                .y_desc("cycles")
                .x_labels(n.min(40))
                .x_label_formatter(&|x| format!("{}", *x as usize))
                .y_label_formatter(&|y| human(*y as u64))
                .draw()
                .map_err(e)?;
            let has_base = self.blocks.iter().any(|b| b.baseline_cycles.is_some());
            if has_base {
                chart
                    .draw_series(self.blocks.iter().enumerate().map(|(i, b)| {
                        Rectangle::new([(i as f64 + 0.08, 0.0), (i as f64 + 0.48, b.baseline_cycles.unwrap_or(0) as f64)], RGBColor(200, 90, 60).filled())
                    }))
                    .map_err(e)?
                    .label("baseline (systolic)")
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], RGBColor(200, 90, 60).filled()));
            }
            let off = if has_base { 0.52 } else { 0.2 };
            chart
                .draw_series(self.blocks.iter().enumerate().map(|(i, b)| Rectangle::new([(i as f64 + off, 0.0), (i as f64 + off + 0.4, b.cycles as f64)], RGBColor(50, 110, 180).filled())))
                .map_err(e)?
                .label(format!("model ({:?})", self.array.kind))
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], RGBColor(50, 110, 180).filled()));
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).draw().map_err(e)?;
            root.present().map_err(e)?;
        }
        Ok(buf)
    }

    /// Timeline chart: one lane for the array, one for the vector unit; a bar
    /// per node from its start to its end cycle (stalls in a darker shade).
    fn timeline_svg(&self) -> Result<String> {
        use plotters::prelude::*;
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (1200, 360)).into_drawing_area();
            let e = |e: DrawingAreaErrorKind<std::io::Error>| Error::Eval(format!("svg: {e}"));
            root.fill(&WHITE).map_err(e)?;
            let xmax = self.total_cycles.max(1) as f64;
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{}: timeline, {} cycles", self.model.model, self.total_cycles), ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(90)
                .build_cartesian_2d(0f64..xmax, 0f64..2f64)
                .map_err(e)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_desc("cycle")
                .y_labels(2)
                .y_label_formatter(&|y| if *y < 1.0 { "vector unit".into() } else { "array".into() })
                .x_label_formatter(&|x| human(*x as u64))
                .draw()
                .map_err(e)?;
            let lane = |u: Unit| if u == Unit::Array { 1.0 } else { 0.0 };
            let palette = [RGBColor(50, 110, 180), RGBColor(90, 150, 210), RGBColor(60, 160, 110), RGBColor(110, 190, 140)];
            chart
                .draw_series(self.sim_rows().enumerate().filter(|(_, (l, _))| l.cost.end > l.cost.start).map(|(i, (l, d))| {
                    let y = lane(d.unit);
                    let c = palette[(i % 2) + if d.unit == Unit::Array { 0 } else { 2 }];
                    Rectangle::new([(l.cost.start as f64, y + 0.15), ((l.cost.end - d.stall_cycles) as f64, y + 0.85)], c.filled())
                }))
                .map_err(e)?;
            chart
                .draw_series(self.sim_rows().filter(|(_, d)| d.stall_cycles > 0).map(|(l, d)| {
                    let y = lane(d.unit);
                    Rectangle::new([((l.cost.end - d.stall_cycles) as f64, y + 0.15), (l.cost.end as f64, y + 0.85)], RGBColor(200, 90, 60).filled())
                }))
                .map_err(e)?
                .label("memory stall")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], RGBColor(200, 90, 60).filled()));
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).draw().map_err(e)?;
            root.present().map_err(e)?;
        }
        Ok(buf)
    }

    /// Append the Markdown summary to `$GITHUB_STEP_SUMMARY` when it is set.
    pub fn append_github_summary(&self) -> Result<()> {
        let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") else { return Ok(()) };
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        writeln!(f, "{}", self.to_markdown()).map_err(|e| Error::io(Path::new(&path), e))
    }
}

//! The simulation report: per layer, compute and stall cycles, mapping
//! efficiency, utilization, SRAM and DRAM traffic per buffer, average
//! bandwidths; totals; the convention in use. Rendered as a terminal table,
//! Markdown, JSON ([`SimReport`], `schema_version` [`SCHEMA_VERSION`]), CSV,
//! or an SVG timeline.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::cost::hw::HwConfig;
use crate::cost::sim::{Convention, GraphSim, NodeSim, Unit, Work};
use crate::stats::human;

/// Version of the JSON below; fields are only added within a version.
pub const SCHEMA_VERSION: u32 = 1;

/// Traffic of one buffer over the model, in words.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BufferTotals {
    pub sram: u64,
    pub dram: u64,
}

/// Totals of a simulated model.
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    pub model: String,
    /// First load to last write, the units overlapping where operands allow.
    pub total_cycles: u64,
    pub time_us: f64,
    /// The array's compute alone (an ideal memory, no vector unit).
    pub array_compute_cycles: u64,
    pub array_stall_cycles: u64,
    pub vector_cycles: u64,
    pub macs: u64,
    /// MACs / (PEs × total cycles).
    pub utilization: f64,
    pub ifmap: BufferTotals,
    pub filter: BufferTotals,
    pub ofmap: BufferTotals,
    /// DRAM traffic of all three buffers in bytes (words × each layer's word size).
    pub dram_bytes: u64,
}

/// One row per node with work.
#[derive(Debug, Clone, Serialize)]
pub struct SimLayer {
    pub name: String,
    pub op: String,
    pub unit: Unit,
    pub work: Work,
    pub compute_cycles: u64,
    pub stall_cycles: u64,
    pub total_cycles: u64,
    pub start: u64,
    pub end: u64,
    pub mapping_efficiency: f64,
    pub utilization: f64,
    pub macs: u64,
    pub sram_ifmap_reads: u64,
    pub sram_filter_reads: u64,
    pub sram_ofmap_writes: u64,
    pub dram_ifmap_reads: u64,
    pub dram_filter_reads: u64,
    pub dram_ofmap_writes: u64,
    /// DRAM words per cycle over the layer's time, all three buffers.
    pub avg_dram_bandwidth: f64,
    /// Bytes per word of this layer, and its DRAM traffic in bytes.
    pub word_bytes: u64,
    pub dram_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub schema_version: u32,
    pub engine: &'static str,
    pub convention: String,
    pub config: HwConfig,
    pub batch: u64,
    pub model: SimSummary,
    /// Same as `model.total_cycles`, at the top level for scripts.
    pub total_cycles: u64,
    /// The baseline on the same configuration as a plain systolic array.
    pub baseline: Option<SimSummary>,
    pub speedup: Option<f64>,
    pub layers: Vec<SimLayer>,
}

fn summary(name: &str, s: &GraphSim, cfg: &HwConfig) -> SimSummary {
    let mut t = [BufferTotals::default(); 3];
    for n in &s.nodes {
        let m = &n.sim.memory;
        for (k, b) in [m.ifmap, m.filter, m.ofmap].into_iter().enumerate() {
            t[k].sram += b.sram;
            t[k].dram += b.dram;
        }
    }
    SimSummary {
        model: name.to_string(),
        total_cycles: s.total_cycles,
        time_us: s.total_cycles as f64 / cfg.freq_mhz,
        array_compute_cycles: s.array_compute_cycles,
        array_stall_cycles: s.array_stall_cycles,
        vector_cycles: s.vector_cycles,
        macs: s.macs,
        utilization: if s.total_cycles == 0 { 0.0 } else { s.macs as f64 / (s.total_cycles as f64 * (cfg.rows * cfg.cols) as f64) },
        ifmap: t[0],
        filter: t[1],
        ofmap: t[2],
        dram_bytes: s.nodes.iter().map(|n| (n.sim.memory.ifmap.dram + n.sim.memory.filter.dram + n.sim.memory.ofmap.dram) * n.sim.word_bytes).sum(),
    }
}

fn row(n: &NodeSim) -> SimLayer {
    let m = &n.sim.memory;
    let dram = m.ifmap.dram + m.filter.dram + m.ofmap.dram;
    SimLayer {
        name: n.name.clone(),
        op: n.op.clone(),
        unit: n.unit,
        work: n.work,
        compute_cycles: n.sim.compute_cycles,
        stall_cycles: n.sim.stall_cycles,
        total_cycles: n.sim.total_cycles,
        start: n.start,
        end: n.end,
        mapping_efficiency: n.sim.mapping_efficiency,
        utilization: n.sim.utilization,
        macs: n.sim.macs,
        sram_ifmap_reads: m.ifmap.sram,
        sram_filter_reads: m.filter.sram,
        sram_ofmap_writes: m.ofmap.sram,
        dram_ifmap_reads: m.ifmap.dram,
        dram_filter_reads: m.filter.dram,
        dram_ofmap_writes: m.ofmap.dram,
        avg_dram_bandwidth: if n.sim.total_cycles == 0 { 0.0 } else { dram as f64 / n.sim.total_cycles as f64 },
        word_bytes: n.sim.word_bytes,
        dram_bytes: dram * n.sim.word_bytes,
    }
}

impl SimReport {
    pub fn new(name: &str, s: &GraphSim, cfg: &HwConfig, conv: Convention, batch: u64, baseline: Option<(&str, &GraphSim)>) -> SimReport {
        let model = summary(name, s, cfg);
        let base_cfg = HwConfig { kind: crate::cost::hw::HwKind::Systolic, ..cfg.clone() };
        let baseline = baseline.map(|(n, b)| summary(n, b, &base_cfg));
        let speedup = baseline.as_ref().map(|b| b.total_cycles as f64 / model.total_cycles.max(1) as f64);
        SimReport {
            schema_version: SCHEMA_VERSION,
            engine: "sim",
            convention: conv.describe().to_string(),
            config: cfg.clone(),
            batch,
            total_cycles: model.total_cycles,
            model,
            baseline,
            speedup,
            layers: s.nodes.iter().filter(|n| n.unit != Unit::None).map(row).collect(),
        }
    }

    fn headline(&self) -> String {
        let c = &self.config;
        let m = &self.model;
        let mem = match &c.memory {
            Some(mm) => format!(
                "SRAM {}/{}/{} KB, DRAM {} B/cycle, {} (DRAM traffic {}B)",
                mm.ifmap_kb,
                mm.filter_kb,
                mm.ofmap_kb,
                mm.dram_bytes_per_cycle,
                if mm.word_bytes_from_types { "words sized by the tensor types".to_string() } else { format!("{}-byte words", mm.word_bytes) },
                human(m.dram_bytes)
            ),
            None => "no memory limit".into(),
        };
        let mut s = format!(
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
            m.array_compute_cycles,
            m.array_stall_cycles,
            m.vector_cycles,
            m.utilization * 100.0,
            self.convention
        );
        if let (Some(b), Some(sp)) = (&self.baseline, self.speedup) {
            s.push_str(&format!("\n  baseline {}: {} cycles on the plain systolic array → speedup {:.2}x", b.model, b.total_cycles, sp));
        }
        s
    }

    pub fn to_table(&self) -> String {
        let mut s = self.headline();
        s.push('\n');
        s.push_str(&format!(
            "  {:<36} {:<12} {:>10} {:>9} {:>10} {:>6} {:>6} {:>9} {:>9} {:>9} {:>6}\n",
            "node", "op", "compute", "stall", "total", "map", "util", "DRAM if", "DRAM filt", "DRAM of", "B/cyc"
        ));
        for l in &self.layers {
            s.push_str(&format!(
                "  {:<36} {:<12} {:>10} {:>9} {:>10} {:>5.1}% {:>5.1}% {:>9} {:>9} {:>9} {:>6.2}\n",
                l.name,
                l.op,
                l.compute_cycles,
                l.stall_cycles,
                l.total_cycles,
                l.mapping_efficiency * 100.0,
                l.utilization * 100.0,
                human(l.dram_ifmap_reads),
                human(l.dram_filter_reads),
                human(l.dram_ofmap_writes),
                l.avg_dram_bandwidth
            ));
        }
        s
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::from("### fusec simulation\n\n");
        for line in self.headline().lines() {
            s.push_str(&format!("- {}\n", line.trim()));
        }
        s.push_str("\n| node | op | compute | stall | total | mapping | util | DRAM ifmap | DRAM filter | DRAM ofmap |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for l in &self.layers {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.1}% | {:.1}% | {} | {} | {} |\n",
                l.name,
                l.op,
                l.compute_cycles,
                l.stall_cycles,
                l.total_cycles,
                l.mapping_efficiency * 100.0,
                l.utilization * 100.0,
                l.dram_ifmap_reads,
                l.dram_filter_reads,
                l.dram_ofmap_writes
            ));
        }
        s
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Eval(e.to_string()))
    }

    pub fn to_csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(vec![]);
        let e = |e: csv::Error| Error::Eval(e.to_string());
        w.write_record([
            "node", "op", "unit", "compute_cycles", "stall_cycles", "total_cycles", "start", "end", "mapping_efficiency", "utilization", "macs",
            "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes", "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes", "avg_dram_bandwidth", "word_bytes", "dram_bytes",
        ])
        .map_err(e)?;
        for l in &self.layers {
            let unit = match l.unit {
                Unit::Array => "array",
                Unit::Vector => "vector",
                Unit::None => "none",
            };
            w.write_record([
                l.name.clone(),
                l.op.clone(),
                unit.into(),
                l.compute_cycles.to_string(),
                l.stall_cycles.to_string(),
                l.total_cycles.to_string(),
                l.start.to_string(),
                l.end.to_string(),
                format!("{:.6}", l.mapping_efficiency),
                format!("{:.6}", l.utilization),
                l.macs.to_string(),
                l.sram_ifmap_reads.to_string(),
                l.sram_filter_reads.to_string(),
                l.sram_ofmap_writes.to_string(),
                l.dram_ifmap_reads.to_string(),
                l.dram_filter_reads.to_string(),
                l.dram_ofmap_writes.to_string(),
                format!("{:.4}", l.avg_dram_bandwidth),
                l.word_bytes.to_string(),
                l.dram_bytes.to_string(),
            ])
            .map_err(e)?;
        }
        let bytes = w.into_inner().map_err(|e| Error::Eval(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| Error::Eval(e.to_string()))
    }

    /// Timeline chart: one lane for the array, one for the vector unit; a bar
    /// per node from its start to its end cycle (stalls in a darker shade).
    pub fn to_svg(&self) -> Result<String> {
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
                .draw_series(self.layers.iter().enumerate().filter(|(_, l)| l.end > l.start).map(|(i, l)| {
                    let y = lane(l.unit);
                    let c = palette[(i % 2) + if l.unit == Unit::Array { 0 } else { 2 }];
                    Rectangle::new([(l.start as f64, y + 0.15), ((l.end - l.stall_cycles) as f64, y + 0.85)], c.filled())
                }))
                .map_err(e)?;
            chart
                .draw_series(self.layers.iter().filter(|l| l.stall_cycles > 0).map(|l| {
                    let y = lane(l.unit);
                    Rectangle::new([((l.end - l.stall_cycles) as f64, y + 0.15), (l.end as f64, y + 0.85)], RGBColor(200, 90, 60).filled())
                }))
                .map_err(e)?
                .label("memory stall")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], RGBColor(200, 90, 60).filled()));
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).draw().map_err(e)?;
            root.present().map_err(e)?;
        }
        Ok(buf)
    }
}

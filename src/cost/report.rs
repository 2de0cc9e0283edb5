//! Latency reports: per-layer and per-block costs of a model on an array,
//! optionally against a baseline, rendered as a terminal table, Markdown,
//! JSON, CSV or an SVG chart.
//!
//! The JSON form is [`LatencyReport`] serialised with serde; its fields are
//! the documented, stable interface (`schema_version` changes when a field is
//! removed or changes meaning; new fields may be added).

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::cost::hw::schedule::{schedule, LayerCost, LayerKind};
use crate::cost::hw::{HwConfig, HwKind};
use crate::ir::Graph;
use crate::stats::{human, stats};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub hw: HwKind,
    pub total_cycles: u64,
    pub time_us: f64,
    pub macs: u64,
    pub params: u64,
}

/// A block: a depthwise layer (or the FuSe pair that replaced it) with the
/// layers after it up to the next one; `stem` is what comes before the first.
#[derive(Debug, Clone, Serialize)]
pub struct Block {
    pub name: String,
    pub cycles: u64,
    pub baseline_cycles: Option<u64>,
    pub speedup: Option<f64>,
}

/// The part of the hardware every report records: the array and its clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Array {
    pub rows: u64,
    pub cols: u64,
    pub kind: HwKind,
    pub freq_mhz: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    pub schema_version: u32,
    /// `analytical` (the paper's closed form, the default) or `sim` (the
    /// cycle-level simulator: memory stalls and the vector unit included).
    pub engine: String,
    /// How cycles are counted under this engine.
    pub convention: String,
    pub array: Array,
    pub batch: u64,
    pub model: ModelSummary,
    /// Same as `model.total_cycles`, at the top level for scripts.
    pub total_cycles: u64,
    pub baseline: Option<ModelSummary>,
    /// baseline cycles / model cycles, when a baseline is given.
    pub speedup: Option<f64>,
    pub blocks: Vec<Block>,
    pub layers: Vec<LayerCost>,
}

fn origin(l: &LayerCost) -> Option<String> {
    match l.kind {
        LayerKind::Depthwise => Some(l.name.clone()),
        LayerKind::FuseRow | LayerKind::FuseCol => {
            Some(l.name.strip_suffix(".fuse.row").or_else(|| l.name.strip_suffix(".fuse.col")).unwrap_or(&l.name).to_string())
        }
        _ => None,
    }
}

/// Group costed layers into blocks (see [`Block`]).
pub fn blocks_of(layers: &[LayerCost]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = vec![("stem".into(), 0)];
    let mut current: Option<String> = None;
    for l in layers.iter().filter(|l| l.cycles > 0) {
        if let Some(o) = origin(l)
            && current.as_deref() != Some(o.as_str()) {
                current = Some(o.clone());
                out.push((o, 0));
            }
        if let Some(last) = out.last_mut() {
            last.1 += l.cycles;
        }
    }
    out
}

fn summary(path: &str, g: &Graph, hw: &HwConfig, layers: &[LayerCost]) -> ModelSummary {
    let total = layers.iter().map(|l| l.cycles).sum();
    let s = stats(g);
    ModelSummary { model: path.to_string(), hw: hw.kind, total_cycles: total, time_us: hw.micros(total), macs: s.macs, params: s.params }
}

/// Cost `g` on `hw`, and `baseline` (if any) on the same array as plain `systolic`.
pub fn build(model_name: &str, g: &Graph, baseline: Option<(&str, &Graph)>, hw: &HwConfig, batch: u64) -> Result<LatencyReport> {
    let one = |name: &str, g: &Graph, hw: &HwConfig| -> Result<(Vec<LayerCost>, ModelSummary)> {
        let layers = schedule(g, hw, batch)?;
        let model = summary(name, g, hw, &layers);
        Ok((layers, model))
    };
    assemble("analytical", ANALYTICAL.into(), model_name, g, baseline, hw, batch, one)
}

/// The analytical engine's convention.
pub const ANALYTICAL: &str = "the paper's analytical model: compute cycles of an ideal output-stationary array, a partial fold charged by the rows and columns it uses, inputs padded, ops other than convs and GEMMs free";

/// The same report with cycles from the cycle-level simulator: every node's
/// time on its unit (array compute + memory stalls, or the vector unit) and
/// its place on the simulated timeline; the total is the timeline's length.
pub fn build_sim(model_name: &str, g: &Graph, baseline: Option<(&str, &Graph)>, cfg: &HwConfig, conv: crate::cost::sim::Convention, batch: u64) -> Result<LatencyReport> {
    let one = |name: &str, g: &Graph, cfg: &HwConfig| -> Result<(Vec<LayerCost>, ModelSummary)> {
        let mut layers = schedule(g, cfg, batch)?;
        let sim = crate::cost::sim::simulate_graph(g, cfg, conv, batch, None)?;
        let by_name: std::collections::HashMap<&str, &crate::cost::sim::NodeSim> = sim.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        for l in layers.iter_mut() {
            if let Some(n) = by_name.get(l.name.as_str()) {
                l.cycles = n.sim.total_cycles;
                l.start = n.start;
                l.end = n.end;
                l.utilization = if n.sim.total_cycles == 0 { 0.0 } else { l.macs as f64 / (n.sim.total_cycles as f64 * (cfg.rows * cfg.cols) as f64) };
            }
        }
        let s = stats(g);
        let total = sim.total_cycles;
        Ok((layers, ModelSummary { model: name.to_string(), hw: cfg.kind, total_cycles: total, time_us: cfg.micros(total), macs: s.macs, params: s.params }))
    };
    let memory = if cfg.memory.is_some() { "limited SRAM and DRAM bandwidth" } else { "no memory limit" };
    let convention = format!("the cycle-level simulator ({} dataflow, {memory}), {}", cfg.dataflow.to_string().to_uppercase(), conv.describe());
    assemble("sim", convention, model_name, g, baseline, cfg, batch, one)
}

/// Either engine's report: `cost` gives a model's layers and summary on a
/// configuration; the baseline runs on the same one as plain `systolic`.
#[allow(clippy::too_many_arguments)]
fn assemble(
    engine: &str,
    convention: String,
    model_name: &str,
    g: &Graph,
    baseline: Option<(&str, &Graph)>,
    hw: &HwConfig,
    batch: u64,
    cost: impl Fn(&str, &Graph, &HwConfig) -> Result<(Vec<LayerCost>, ModelSummary)>,
) -> Result<LatencyReport> {
    let (layers, model) = cost(model_name, g, hw)?;
    let mut blocks: Vec<Block> = blocks_of(&layers).into_iter().map(|(name, cycles)| Block { name, cycles, baseline_cycles: None, speedup: None }).collect();
    let base = match baseline {
        Some((name, bg)) => {
            let (bl, bs) = cost(name, bg, &HwConfig { kind: HwKind::Systolic, ..hw.clone() })?;
            let bblocks = blocks_of(&bl);
            if bblocks.len() == blocks.len() {
                for (b, (_, c)) in blocks.iter_mut().zip(bblocks) {
                    b.baseline_cycles = Some(c);
                    b.speedup = (b.cycles > 0).then(|| c as f64 / b.cycles as f64);
                }
            }
            Some(bs)
        }
        None => None,
    };
    let speedup = base.as_ref().map(|b| b.total_cycles as f64 / model.total_cycles.max(1) as f64);
    Ok(LatencyReport {
        schema_version: SCHEMA_VERSION,
        engine: engine.into(),
        convention,
        array: Array { rows: hw.rows, cols: hw.cols, kind: hw.kind, freq_mhz: hw.freq_mhz },
        batch,
        total_cycles: model.total_cycles,
        model,
        baseline: base,
        speedup,
        blocks,
        layers,
    })
}

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

impl LatencyReport {
    fn headline(&self) -> String {
        let a = &self.array;
        let mut s = format!(
            "{}: {} cycles ({:.1} µs at {} MHz) on a {}x{} {:?} array; {} MACs, {} params\nengine: {}",
            self.model.model,
            self.total_cycles,
            self.model.time_us,
            a.freq_mhz,
            a.rows,
            a.cols,
            a.kind,
            human(self.model.macs),
            human(self.model.params),
            self.convention
        );
        if let (Some(b), Some(sp)) = (&self.baseline, self.speedup) {
            s.push_str(&format!("\nbaseline {}: {} cycles on the plain systolic array → speedup {:.2}x", b.model, b.total_cycles, sp));
        }
        s
    }

    pub fn to_table(&self) -> String {
        let mut s = self.headline();
        s.push('\n');
        s.push_str(&format!(
            "  {:<38} {:<18} {:<10} {:>16} {:>6} {:>6} {:>9} {:>8} {:>11} {:>6} {:>6}\n",
            "node", "op", "kind", "input", "kernel", "stride", "MACs", "params", "cycles", "share", "util"
        ));
        let total = self.total_cycles.max(1) as f64;
        for l in self.layers.iter().filter(|l| l.cycles > 0) {
            s.push_str(&format!(
                "  {:<38} {:<18} {:<10} {:>16} {:>6} {:>6} {:>9} {:>8} {:>11} {:>5.1}% {:>5.1}%\n",
                l.name,
                l.op,
                kind_name(l.kind),
                shape(&l.input_shape),
                l.kernel.map(|k| format!("{}x{}", k[0], k[1])).unwrap_or_default(),
                l.stride.map(|k| format!("{}x{}", k[0], k[1])).unwrap_or_default(),
                human(l.macs),
                human(l.params),
                l.cycles,
                l.cycles as f64 / total * 100.0,
                l.utilization * 100.0
            ));
        }
        let idle = self.layers.iter().filter(|l| l.cycles == 0).count();
        if self.engine == "analytical" {
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
        let mut s = String::from("### fusec latency report\n\n");
        for line in self.headline().lines() {
            s.push_str(&format!("- {line}\n"));
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
        s.push_str("\n| node | kind | input | kernel | stride | MACs | cycles | share | util |\n|---|---|---|---|---|---:|---:|---:|---:|\n");
        let total = self.total_cycles.max(1) as f64;
        for l in self.layers.iter().filter(|l| l.cycles > 0) {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1}% | {:.1}% |\n",
                l.name,
                kind_name(l.kind),
                shape(&l.input_shape),
                l.kernel.map(|k| format!("{}x{}", k[0], k[1])).unwrap_or_default(),
                l.stride.map(|k| format!("{}x{}", k[0], k[1])).unwrap_or_default(),
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

    pub fn to_csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(vec![]);
        let e = |e: csv::Error| Error::Eval(e.to_string());
        w.write_record(["node", "op", "kind", "input", "kernel", "stride", "macs", "params", "cycles", "start", "end", "utilization"]).map_err(e)?;
        for l in &self.layers {
            w.write_record([
                l.name.clone(),
                l.op.clone(),
                kind_name(l.kind).to_string(),
                shape(&l.input_shape),
                l.kernel.map(|k| format!("{}x{}", k[0], k[1])).unwrap_or_default(),
                l.stride.map(|k| format!("{}x{}", k[0], k[1])).unwrap_or_default(),
                l.macs.to_string(),
                l.params.to_string(),
                l.cycles.to_string(),
                l.start.to_string(),
                l.end.to_string(),
                format!("{:.6}", l.utilization),
            ])
            .map_err(e)?;
        }
        let bytes = w.into_inner().map_err(|e| Error::Eval(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| Error::Eval(e.to_string()))
    }

    /// Grouped bar chart of cycles per block (baseline against converted).
    pub fn to_svg(&self) -> Result<String> {
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

    /// Append the Markdown summary to `$GITHUB_STEP_SUMMARY` when it is set.
    pub fn append_github_summary(&self) -> Result<()> {
        let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") else { return Ok(()) };
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        writeln!(f, "{}", self.to_markdown()).map_err(|e| Error::io(Path::new(&path), e))
    }
}

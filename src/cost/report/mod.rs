//! The latency report: per-layer and per-block costs of a model on an array
//! under either engine, optionally against a baseline. One type,
//! [`LatencyReport`], for `fusec report` (either engine) and `fusec simulate`;
//! under the simulator each layer and the model also carry the simulator's
//! details (compute and stall cycles, mapping efficiency, SRAM and DRAM
//! traffic per buffer) and the report its full hardware configuration.
//! Rendered ([`render`]) as a terminal table, Markdown, JSON, CSV or SVG.
//!
//! The JSON form is [`LatencyReport`] serialised with serde; its fields are
//! the documented, stable interface (`schema_version` changes when a field is
//! removed or changes meaning; new fields may be added).

mod render;

use serde::Serialize;

use crate::error::Result;
use crate::cost::hw::schedule::{schedule, LayerCost, LayerKind};
use crate::cost::hw::{HwConfig, HwKind};
use crate::cost::sim::{Convention, GraphSim, NodeSim, Unit, Work};
use crate::ir::Graph;
use crate::stats::stats;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub hw: HwKind,
    pub total_cycles: u64,
    pub time_us: f64,
    pub macs: u64,
    pub params: u64,
    /// The simulator's totals (sim engine).
    #[serde(flatten)]
    pub sim: Option<SimTotals>,
}

/// Traffic of one buffer over the model, in words.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BufferTotals {
    pub sram: u64,
    pub dram: u64,
}

/// A model's totals under the simulator.
#[derive(Debug, Clone, Serialize)]
pub struct SimTotals {
    /// Array compute alone (no memory, no vector unit).
    pub array_compute_cycles: u64,
    pub array_stall_cycles: u64,
    pub vector_cycles: u64,
    /// MACs / (total cycles × rows × cols).
    pub utilization: f64,
    pub ifmap: BufferTotals,
    pub filter: BufferTotals,
    pub ofmap: BufferTotals,
    /// DRAM traffic of all buffers, in bytes.
    pub dram_bytes: u64,
}

/// One node's row: its cost, and under the simulator its details.
#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    #[serde(flatten)]
    pub cost: LayerCost,
    #[serde(flatten)]
    pub sim: Option<SimDetail>,
}

/// A node under the simulator: the unit it runs on, its work, compute and
/// stall cycles, and its SRAM and DRAM traffic per buffer (in words).
#[derive(Debug, Clone, Serialize)]
pub struct SimDetail {
    pub unit: Unit,
    pub work: Work,
    pub compute_cycles: u64,
    pub stall_cycles: u64,
    /// compute + stall: the node's time on its unit (= the layer's `cycles`).
    pub total_cycles: u64,
    pub mapping_efficiency: f64,
    pub sram_ifmap_reads: u64,
    pub sram_filter_reads: u64,
    pub sram_ofmap_writes: u64,
    pub dram_ifmap_reads: u64,
    pub dram_filter_reads: u64,
    pub dram_ofmap_writes: u64,
    /// DRAM words per cycle over the node's time.
    pub avg_dram_bandwidth: f64,
    pub word_bytes: u64,
    pub dram_bytes: u64,
}

impl SimDetail {
    fn of(n: &NodeSim) -> SimDetail {
        let m = &n.sim.memory;
        let dram = m.ifmap.dram + m.filter.dram + m.ofmap.dram;
        SimDetail {
            unit: n.unit,
            work: n.work,
            compute_cycles: n.sim.compute_cycles,
            stall_cycles: n.sim.stall_cycles,
            total_cycles: n.sim.total_cycles,
            mapping_efficiency: n.sim.mapping_efficiency,
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
}

impl SimTotals {
    fn of(s: &GraphSim, cfg: &HwConfig) -> SimTotals {
        let mut t = [BufferTotals::default(); 3];
        for n in &s.nodes {
            let m = &n.sim.memory;
            for (k, b) in [m.ifmap, m.filter, m.ofmap].into_iter().enumerate() {
                t[k].sram += b.sram;
                t[k].dram += b.dram;
            }
        }
        SimTotals {
            array_compute_cycles: s.array_compute_cycles,
            array_stall_cycles: s.array_stall_cycles,
            vector_cycles: s.vector_cycles,
            utilization: if s.total_cycles == 0 { 0.0 } else { s.macs as f64 / (s.total_cycles as f64 * (cfg.rows * cfg.cols) as f64) },
            ifmap: t[0],
            filter: t[1],
            ofmap: t[2],
            dram_bytes: s.nodes.iter().map(|n| (n.sim.memory.ifmap.dram + n.sim.memory.filter.dram + n.sim.memory.ofmap.dram) * n.sim.word_bytes).sum(),
        }
    }
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
    /// The whole hardware description (sim engine): dataflow, SRAMs, DRAM, vector unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<HwConfig>,
    pub batch: u64,
    pub model: ModelSummary,
    /// Same as `model.total_cycles`, at the top level for scripts.
    pub total_cycles: u64,
    pub baseline: Option<ModelSummary>,
    /// baseline cycles / model cycles, when a baseline is given.
    pub speedup: Option<f64>,
    pub blocks: Vec<Block>,
    pub layers: Vec<Layer>,
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
pub fn blocks_of(layers: &[Layer]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = vec![("stem".into(), 0)];
    let mut current: Option<String> = None;
    for l in layers.iter().map(|l| &l.cost).filter(|l| l.cycles > 0) {
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

/// Cost `g` on `hw`, and `baseline` (if any) on the same array as plain `systolic`.
pub fn build(model_name: &str, g: &Graph, baseline: Option<(&str, &Graph)>, hw: &HwConfig, batch: u64) -> Result<LatencyReport> {
    let one = |name: &str, g: &Graph, hw: &HwConfig| -> Result<(Vec<Layer>, ModelSummary)> {
        let layers = schedule(g, hw, batch)?;
        let total = layers.iter().map(|l| l.cycles).sum();
        let s = stats(g);
        let model = ModelSummary { model: name.to_string(), hw: hw.kind, total_cycles: total, time_us: hw.micros(total), macs: s.macs, params: s.params, sim: None };
        Ok((layers.into_iter().map(|cost| Layer { cost, sim: None }).collect(), model))
    };
    assemble("analytical", ANALYTICAL.into(), model_name, g, baseline, hw, batch, one)
}

/// The analytical engine's convention.
pub const ANALYTICAL: &str = "the paper's analytical model: compute cycles of an ideal output-stationary array, a partial fold charged by the rows and columns it uses, inputs padded, ops other than convs and GEMMs free";

fn sim_convention(cfg: &HwConfig, conv: Convention) -> String {
    let memory = if cfg.memory.is_some() { "limited SRAM and DRAM bandwidth" } else { "no memory limit" };
    format!("the cycle-level simulator ({} dataflow, {memory}), {}", cfg.dataflow.to_string().to_uppercase(), conv.describe())
}

/// A node the simulator gives no work (views, shape bookkeeping).
const IDLE: SimDetail = SimDetail {
    unit: Unit::None,
    work: Work::None,
    compute_cycles: 0,
    stall_cycles: 0,
    total_cycles: 0,
    mapping_efficiency: 0.0,
    sram_ifmap_reads: 0,
    sram_filter_reads: 0,
    sram_ofmap_writes: 0,
    dram_ifmap_reads: 0,
    dram_filter_reads: 0,
    dram_ofmap_writes: 0,
    avg_dram_bandwidth: 0.0,
    word_bytes: 1,
    dram_bytes: 0,
};

/// The same report with cycles from the cycle-level simulator: every node's
/// time on its unit (array compute + memory stalls, or the vector unit), its
/// place on the simulated timeline and its details; the total is the
/// timeline's length. What `fusec simulate` and `report --engine sim` write.
pub fn build_sim(model_name: &str, g: &Graph, baseline: Option<(&str, &Graph)>, cfg: &HwConfig, conv: Convention, batch: u64) -> Result<LatencyReport> {
    let one = |name: &str, g: &Graph, cfg: &HwConfig| -> Result<(Vec<Layer>, ModelSummary)> {
        let sim = crate::cost::sim::simulate_graph(g, cfg, conv, batch, None)?;
        let by_name: std::collections::HashMap<&str, &NodeSim> = sim.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let layers = schedule(g, cfg, batch)?
            .into_iter()
            .map(|mut l| match by_name.get(l.name.as_str()) {
                Some(n) => {
                    l.cycles = n.sim.total_cycles;
                    l.start = n.start;
                    l.end = n.end;
                    l.utilization = if n.sim.total_cycles == 0 { 0.0 } else { l.macs as f64 / (n.sim.total_cycles as f64 * (cfg.rows * cfg.cols) as f64) };
                    Layer { cost: l, sim: Some(SimDetail::of(n)) }
                }
                None => Layer { cost: l, sim: Some(IDLE) },
            })
            .collect();
        let s = stats(g);
        let total = sim.total_cycles;
        let model = ModelSummary { model: name.to_string(), hw: cfg.kind, total_cycles: total, time_us: cfg.micros(total), macs: s.macs, params: s.params, sim: Some(SimTotals::of(&sim, cfg)) };
        Ok((layers, model))
    };
    let mut r = assemble("sim", sim_convention(cfg, conv), model_name, g, baseline, cfg, batch, one)?;
    r.config = Some(cfg.clone());
    Ok(r)
}

/// SCALE-Sim's own inputs simulated (`simulate --topology`: its layers back to
/// back, no ONNX graph): a row per layer the simulator ran, in the topology's order.
pub fn from_topology(name: &str, s: &GraphSim, cfg: &HwConfig, conv: Convention) -> LatencyReport {
    let layers: Vec<Layer> = s
        .nodes
        .iter()
        .filter(|n| n.unit != Unit::None)
        .map(|n| {
            let (kind, kernel, stride) = match n.work {
                Work::Array { conv: Some(c), .. } => {
                    let k = if c.filt_h == 1 && c.filt_w == 1 { LayerKind::Pointwise } else { LayerKind::OtherConv };
                    (k, Some([c.filt_h as i64, c.filt_w as i64]), Some([c.stride_h as i64, c.stride_w as i64]))
                }
                Work::Array { conv: None, .. } => (LayerKind::Fc, None, None),
                _ => (LayerKind::Other, None, None),
            };
            let cost = LayerCost {
                name: n.name.clone(),
                op: n.op.clone(),
                kind,
                input_shape: vec![],
                kernel,
                stride,
                macs: n.sim.macs,
                params: 0,
                cycles: n.sim.total_cycles,
                start: n.start,
                end: n.end,
                utilization: n.sim.utilization,
            };
            Layer { cost, sim: Some(SimDetail::of(n)) }
        })
        .collect();
    let model = ModelSummary { model: name.to_string(), hw: cfg.kind, total_cycles: s.total_cycles, time_us: cfg.micros(s.total_cycles), macs: s.macs, params: 0, sim: Some(SimTotals::of(s, cfg)) };
    let blocks = blocks_of(&layers).into_iter().map(|(name, cycles)| Block { name, cycles, baseline_cycles: None, speedup: None }).collect();
    LatencyReport {
        schema_version: SCHEMA_VERSION,
        engine: "sim".into(),
        convention: sim_convention(cfg, conv),
        array: Array { rows: cfg.rows, cols: cfg.cols, kind: cfg.kind, freq_mhz: cfg.freq_mhz },
        config: Some(cfg.clone()),
        batch: 1,
        total_cycles: model.total_cycles,
        model,
        baseline: None,
        speedup: None,
        blocks,
        layers,
    }
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
    cost: impl Fn(&str, &Graph, &HwConfig) -> Result<(Vec<Layer>, ModelSummary)>,
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
        config: None,
        batch,
        total_cycles: model.total_cycles,
        model,
        baseline: base,
        speedup,
        blocks,
        layers,
    })
}

//! The cycle-level simulator: a model's layers on a systolic array with a
//! dataflow, double-buffered SRAMs and a DRAM interface, and a vector unit
//! beside the array; per-layer cycles, stalls and traffic, and a whole-graph
//! timeline.
//!
//! Rooms, as SCALE-Sim has them (without its trace matrices):
//! - [`workload`]: what each node asks of the hardware (and topology CSVs);
//! - [`compute`]: dataflow mappings, folds, compute cycles, the FuSe 1-D
//!   broadcast dataflow;
//! - [`memory`]: buffers, DRAM traffic and stalls;
//! - this module: a layer (compute + memory, or the vector unit) and the
//!   graph's timeline (its report is `cost::report`'s, with the simulator's
//!   details); [`sweep`]: many configurations in parallel.

pub mod compute;
pub mod memory;
pub mod sweep;
pub mod workload;

use serde::Serialize;

use crate::error::Result;
use crate::ir::Graph;
use crate::cost::hw::HwConfig;
use memory::{Buffers, MemStats};
pub use workload::{Padding, Work};

/// How cycles are counted and inputs sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Convention {
    pub padding: Padding,
    /// SCALE-Sim's count: every SCALE-Sim layer (a depthwise conv: one per
    /// channel) reports its last cycle index, one less than the elapsed cycles.
    pub scalesim_cycles: bool,
}

impl Convention {
    pub const FUSEC: Convention = Convention { padding: Padding::Onnx, scalesim_cycles: false };
    pub const SCALESIM: Convention = Convention { padding: Padding::ScaleSim, scalesim_cycles: true };

    pub fn describe(&self) -> &'static str {
        if self.scalesim_cycles {
            "SCALE-Sim's: inputs unpadded, each SCALE-Sim layer (one per depthwise channel) counted to its last cycle index (elapsed - 1), full array skew on every fold"
        } else {
            "fusec's: ONNX padding applied, elapsed cycles, full array skew on every fold (SCALE-Sim's mapping)"
        }
    }
}

/// What one layer costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LayerSim {
    pub compute_cycles: u64,
    pub stall_cycles: u64,
    /// compute + stall: the layer's time on its unit.
    pub total_cycles: u64,
    pub folds: u64,
    pub mapping_efficiency: f64,
    pub utilization: f64,
    pub macs: u64,
    pub memory: MemStats,
    /// Bytes per word of this layer's traffic (1 without a memory model).
    pub word_bytes: u64,
}

/// The buffers; without a memory limit, buffers that hold everything and an
/// interface that never stalls (traffic is still counted, as SCALE-Sim's CALC
/// mode does).
fn buffers(cfg: &HwConfig) -> Buffers {
    match cfg.sram_words() {
        Some(([i, f, o], bw)) => Buffers { ifmap_words: i, filter_words: f, ofmap_words: o, dram_words_per_cycle: bw },
        None => Buffers { ifmap_words: u64::MAX, filter_words: u64::MAX, ofmap_words: u64::MAX, dram_words_per_cycle: f64::INFINITY },
    }
}

/// SCALE-Sim's inputs as SCALE-Sim runs them: the topology's layers back to
/// back, in its conventions ([`Convention::SCALESIM`]); a depthwise layer is
/// `channels` single-channel layers.
pub fn simulate_topology(rows: &[workload::TopologyRow], cfg: &HwConfig) -> GraphSim {
    let mut nodes = vec![];
    let mut clock = 0;
    for r in rows {
        let work = if r.depthwise {
            let one = workload::ConvLayer { channels: 1, ..r.conv };
            Work::Array { gemm: one.gemm(), repeat: r.conv.channels, conv: Some(one) }
        } else {
            Work::Array { gemm: r.conv.gemm(), repeat: 1, conv: Some(r.conv) }
        };
        let sim = simulate_work(&work, cfg, Convention::SCALESIM);
        nodes.push(NodeSim { name: r.name.clone(), op: if r.depthwise { "DepthwiseConv".into() } else { "Conv".into() }, unit: Unit::Array, work, sim, start: clock, end: clock + sim.total_cycles });
        clock += sim.total_cycles;
    }
    GraphSim {
        total_cycles: clock,
        array_compute_cycles: nodes.iter().map(|n| n.sim.compute_cycles).sum(),
        array_stall_cycles: nodes.iter().map(|n| n.sim.stall_cycles).sum(),
        vector_cycles: 0,
        macs: nodes.iter().map(|n| n.sim.macs).sum(),
        nodes,
    }
}

/// Simulate one node's work on `cfg`.
pub fn simulate_work(work: &Work, cfg: &HwConfig, conv: Convention) -> LayerSim {
    let (rows, cols) = (cfg.rows, cfg.cols);
    let word_bytes = cfg.memory.as_ref().map_or(1, |m| m.word_bytes);
    let mut l = LayerSim { compute_cycles: 0, stall_cycles: 0, total_cycles: 0, folds: 0, mapping_efficiency: 0.0, utilization: 0.0, macs: 0, memory: MemStats::default(), word_bytes };
    match *work {
        Work::Array { gemm, repeat, conv: layer } => {
            let c = compute::gemm(gemm, cfg.dataflow, rows, cols);
            let per = if conv.scalesim_cycles { c.cycles.saturating_sub(1) } else { c.cycles };
            l.compute_cycles = per.saturating_mul(repeat);
            l.folds = c.folds * repeat;
            l.mapping_efficiency = c.mapping_efficiency;
            l.macs = c.macs * repeat;
            let unique = layer.map(|c| c.ifmap_touched()).unwrap_or(gemm.m * gemm.k);
            let m = memory::gemm(gemm, cfg.dataflow, rows, cols, &buffers(cfg), Some(unique));
            // copies after the first load while the one before runs its last fold
            let fold_c = compute::fold_cycles(cfg.dataflow, rows, cols, gemm.mapping(cfg.dataflow).t);
            let mut all = m.times(repeat);
            all.stall_cycles += repeat.saturating_sub(1) * m.fill_cycles.saturating_sub(fold_c);
            l.memory = all;
            l.stall_cycles = all.stall_cycles;
        }
        Work::Fuse { fuse } => {
            let c = compute::fuse1d(fuse, rows, cols);
            l.compute_cycles = c.cycles;
            l.folds = c.folds;
            l.mapping_efficiency = c.mapping_efficiency;
            l.macs = c.macs;
            let m = memory::fuse1d(fuse.convs, fuse.width, fuse.taps, fuse.outputs_per_conv(), c.cycles, &buffers(cfg));
            l.memory = m;
            l.stall_cycles = m.stall_cycles;
        }
        Work::Vector { class, elements } => {
            l.compute_cycles = cfg.vector.cycles(class, elements);
        }
        Work::None => {}
    }
    l.total_cycles = l.compute_cycles + l.stall_cycles;
    let pes = (rows * cols) as f64;
    if l.total_cycles > 0 && l.macs > 0 {
        l.utilization = l.macs as f64 / (l.total_cycles as f64 * pes);
    }
    l
}

/// Which unit runs a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    Array,
    Vector,
    None,
}

/// One node in the simulated timeline.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSim {
    pub name: String,
    pub op: String,
    pub unit: Unit,
    pub work: Work,
    #[serde(flatten)]
    pub sim: LayerSim,
    pub start: u64,
    pub end: u64,
}

/// A simulated graph.
#[derive(Debug, Clone, Serialize)]
pub struct GraphSim {
    pub nodes: Vec<NodeSim>,
    /// Cycles from the first load to the last write, units overlapping where operands allow.
    pub total_cycles: u64,
    /// Array compute alone (no memory, no vector unit): what an ideal array would take.
    pub array_compute_cycles: u64,
    pub array_stall_cycles: u64,
    pub vector_cycles: u64,
    pub macs: u64,
}

/// Simulate every node of a graph and lay them on a timeline: a node starts
/// once its inputs are computed and its unit (array or vector unit) is free,
/// so vector work overlaps array work of independent nodes (a squeeze-excite
/// branch, a residual). The first layer's fill comes before it, the last
/// drain after.
/// Bytes per element of what a node computes on: its data input, or for a
/// float op reading a DequantizeLinear (a QDQ model), the quantized tensor
/// behind it. None where the type is unknown.
pub fn operand_bytes(g: &Graph, ix: petgraph::stable_graph::NodeIndex) -> Option<u64> {
    let n = g.node(ix);
    let x = n.input(0)?;
    let source = match g.producer(x).map(|(p, _)| g.node(p)) {
        Some(p) if p.op() == "DequantizeLinear" && p.is_default_domain() => p.input(0)?,
        _ => x,
    };
    let dt = g.fact(source)?.dtype?;
    use crate::onnx::dtype as d;
    match dt {
        d::INT8 | d::UINT8 | d::BOOL => Some(1),
        d::INT16 | d::UINT16 | d::FLOAT16 | d::BFLOAT16 => Some(2),
        d::FLOAT | d::INT32 | d::UINT32 => Some(4),
        d::DOUBLE | d::INT64 | d::UINT64 => Some(8),
        _ => None,
    }
}

pub fn simulate_graph(g: &Graph, cfg: &HwConfig, conv: Convention, batch: u64, cache: Option<&sweep::Cache>) -> Result<GraphSim> {
    let mut nodes: Vec<NodeSim> = Vec::new();
    let mut ready_at: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut unit_free = [0u64; 2];
    let mut first_fill = None;
    let mut last_drain = 0u64;
    for ix in g.toposort()? {
        let n = g.node(ix);
        let work = workload::node_work(g, ix, cfg.kind, conv.padding, batch)?;
        let unit = match work {
            Work::Array { .. } | Work::Fuse { .. } => Unit::Array,
            Work::Vector { .. } => Unit::Vector,
            Work::None => Unit::None,
        };
        // --word-bytes types: this layer's words are its operands' elements
        let typed;
        let layer_cfg = match cfg.memory.as_ref().filter(|m| m.word_bytes_from_types).zip(operand_bytes(g, ix)) {
            Some((m, b)) if b != m.word_bytes => {
                let mut c = cfg.clone();
                if let Some(m) = c.memory.as_mut() {
                    m.word_bytes = b;
                }
                typed = c;
                &typed
            }
            _ => cfg,
        };
        let sim = match cache {
            Some(c) => c.get_or_insert(&work, layer_cfg, conv),
            None => simulate_work(&work, layer_cfg, conv),
        };
        let deps = n.proto.input.iter().filter_map(|i| ready_at.get(i)).copied().max().unwrap_or(0);
        let (start, end) = match unit {
            Unit::None => (deps, deps),
            u => {
                let k = if u == Unit::Array { 0 } else { 1 };
                let s = deps.max(unit_free[k]);
                unit_free[k] = s + sim.total_cycles;
                (s, s + sim.total_cycles)
            }
        };
        if unit == Unit::Array {
            first_fill.get_or_insert(sim.memory.fill_cycles);
            last_drain = sim.memory.drain_cycles;
        }
        for o in n.proto.output.iter().filter(|o| !o.is_empty()) {
            ready_at.insert(o.clone(), end);
        }
        nodes.push(NodeSim { name: n.label(), op: n.op().to_string(), unit, work, sim, start, end });
    }
    let fill = first_fill.unwrap_or(0);
    for n in nodes.iter_mut() {
        n.start += fill;
        n.end += fill;
    }
    let makespan = nodes.iter().map(|n| n.end).max().unwrap_or(0) + last_drain;
    let arr = |f: fn(&NodeSim) -> u64| nodes.iter().filter(|n| n.unit == Unit::Array).map(f).sum::<u64>();
    Ok(GraphSim {
        total_cycles: makespan,
        array_compute_cycles: arr(|n| n.sim.compute_cycles),
        array_stall_cycles: arr(|n| n.sim.stall_cycles),
        vector_cycles: nodes.iter().filter(|n| n.unit == Unit::Vector).map(|n| n.sim.total_cycles).sum(),
        macs: arr(|n| n.sim.macs),
        nodes,
    })
}

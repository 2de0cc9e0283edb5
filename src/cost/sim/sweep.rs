//! Design-space sweeps: every combination of array size, hardware kind,
//! dataflow, SRAM size and model variant, simulated in parallel on all
//! cores (rayon). Layers repeat (the same shape in many blocks, and across
//! configurations that only differ where a layer does not look), so
//! per-layer results are cached and shared between threads. Results as CSV
//! or JSON, and SVG plots: latency against PE count per hardware kind and
//! variant, and the Pareto front of latency against PEs.

use std::collections::HashMap;
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::cost::hw::HwKind;
use crate::ir::Graph;
use crate::cost::hw::{Dataflow, HwConfig};
use crate::cost::sim::{simulate_graph, simulate_work, Convention, LayerSim, Work};

/// The configuration fields a layer's result depends on.
type CfgKey = [u64; 12];

fn cfg_key(c: &HwConfig) -> CfgKey {
    let m = c.memory.as_ref();
    let f = |v: Option<f64>| v.map_or(u64::MAX, f64::to_bits);
    let vec_costs = c.vector.cycles_per_element.values().fold(0u64, |a, v| a.rotate_left(7) ^ v.to_bits());
    [
        c.rows,
        c.cols,
        c.dataflow as u64,
        f(m.map(|m| m.ifmap_kb)),
        f(m.map(|m| m.filter_kb)),
        f(m.map(|m| m.ofmap_kb)),
        m.map_or(0, |m| m.word_bytes),
        m.map_or(0, |m| m.word_bytes_from_types as u64),
        f(m.map(|m| m.dram_bytes_per_cycle)),
        c.vector.lanes,
        vec_costs,
        c.kind as u64,
    ]
}

/// Per-layer results shared by every simulation that uses it.
#[derive(Default)]
pub struct Cache {
    map: Mutex<HashMap<(CfgKey, Work, bool, bool), LayerSim>>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl Cache {
    pub fn get_or_insert(&self, work: &Work, cfg: &HwConfig, conv: Convention) -> LayerSim {
        use std::sync::atomic::Ordering::Relaxed;
        let key = (cfg_key(cfg), *work, conv.padding == crate::cost::sim::Padding::Onnx, conv.scalesim_cycles);
        if let Some(v) = self.map.lock().ok().and_then(|m| m.get(&key).copied()) {
            self.hits.fetch_add(1, Relaxed);
            return v;
        }
        self.misses.fetch_add(1, Relaxed);
        let v = simulate_work(work, cfg, conv);
        if let Ok(mut m) = self.map.lock() {
            m.insert(key, v);
        }
        v
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

/// The dimensions of a sweep.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    pub arrays: Vec<(u64, u64)>,
    pub kinds: Vec<HwKind>,
    pub dataflows: Vec<Dataflow>,
    /// SRAM KB per buffer; None: no memory limit.
    pub sram_kb: Vec<Option<f64>>,
}

/// One simulated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub variant: String,
    pub rows: u64,
    pub cols: u64,
    pub pes: u64,
    pub kind: HwKind,
    pub dataflow: Dataflow,
    pub sram_kb: Option<f64>,
    pub total_cycles: u64,
    pub time_us: f64,
    pub array_compute_cycles: u64,
    pub stall_cycles: u64,
    pub vector_cycles: u64,
    pub utilization: f64,
    /// The depthwise layers rewritten (`auto` variants: the set the budget allows here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
    /// How far the variant's outputs are from the original's (normalized output
    /// error on the sweep's inputs; only when the sweep measures costs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Non-dominated in (PEs, total cycles, and cost where measured) among all points.
    pub pareto: bool,
}

/// Every hardware configuration of `spec` (with its SRAM KB per buffer, None:
/// unlimited), in a fixed order; `base` gives what the sweep does not vary
/// (DRAM bandwidth, word size, vector unit, clock).
pub fn configs(spec: &SweepSpec, base: &HwConfig) -> Result<Vec<(Option<f64>, HwConfig)>> {
    let mut out = vec![];
    for &(rows, cols) in &spec.arrays {
        for &kind in &spec.kinds {
            for &dataflow in &spec.dataflows {
                for &kb in &spec.sram_kb {
                    let memory = match (kb, &base.memory) {
                        (None, _) => None,
                        (Some(kb), Some(m)) => Some(crate::cost::hw::config::Memory { ifmap_kb: kb, filter_kb: kb, ofmap_kb: kb, ..m.clone() }),
                        (Some(kb), None) => Some(crate::cost::hw::config::Memory { ifmap_kb: kb, filter_kb: kb, ofmap_kb: kb, word_bytes: 1, word_bytes_from_types: false, dram_bytes_per_cycle: 16.0 }),
                    };
                    out.push((kb, HwConfig { rows, cols, kind, dataflow, memory, ..base.clone() }.validated()?));
                }
            }
        }
    }
    Ok(out)
}

/// The point of `variant` simulated on `cfg` as `s`.
pub fn point(variant: &str, kb: Option<f64>, cfg: &HwConfig, s: &crate::cost::sim::GraphSim) -> SweepPoint {
    let pes = cfg.rows * cfg.cols;
    SweepPoint {
        variant: variant.to_string(),
        rows: cfg.rows,
        cols: cfg.cols,
        pes,
        kind: cfg.kind,
        dataflow: cfg.dataflow,
        sram_kb: kb,
        total_cycles: s.total_cycles,
        time_us: s.total_cycles as f64 / cfg.freq_mhz,
        array_compute_cycles: s.array_compute_cycles,
        stall_cycles: s.array_stall_cycles,
        vector_cycles: s.vector_cycles,
        utilization: if s.total_cycles == 0 { 0.0 } else { s.macs as f64 / (s.total_cycles as f64 * pes as f64) },
        layers: None,
        cost: None,
        pareto: false,
    }
}

/// Where a sweep reports its progress (the command line: a progress bar).
pub trait Progress: Sync {
    /// `n` more jobs to do.
    fn add(&self, n: u64);
    /// One job done.
    fn done(&self);
}

/// Simulate every (variant, configuration) pair. `base` gives what the sweep
/// does not vary (DRAM bandwidth, word size, vector unit, clock). `cache` may
/// be shared with other sweeps of the same layers.
pub fn run(models: &[(String, Graph)], spec: &SweepSpec, base: &HwConfig, conv: Convention, batch: u64, progress: Option<&dyn Progress>) -> Result<(Vec<SweepPoint>, (u64, u64))> {
    let cache = Cache::default();
    let points = run_with(models, spec, base, conv, batch, progress, &cache)?;
    Ok((points, cache.counts()))
}

/// [`run`] with a given layer cache; the points are not yet marked.
pub fn run_with(models: &[(String, Graph)], spec: &SweepSpec, base: &HwConfig, conv: Convention, batch: u64, progress: Option<&dyn Progress>, cache: &Cache) -> Result<Vec<SweepPoint>> {
    let cfgs = configs(spec, base)?;
    let jobs: Vec<(usize, &(Option<f64>, HwConfig))> = (0..models.len()).flat_map(|vi| cfgs.iter().map(move |c| (vi, c))).collect();
    if let Some(p) = progress {
        p.add(jobs.len() as u64);
    }
    let mut points: Vec<SweepPoint> = jobs
        .par_iter()
        .map(|(vi, (kb, cfg))| {
            let (name, g) = &models[*vi];
            let s = simulate_graph(g, cfg, conv, batch, Some(cache)).map_err(|e| Error::option("sweep", format!("{name}: {e}")))?;
            if let Some(p) = progress {
                p.done();
            }
            Ok(point(name, *kb, cfg, &s))
        })
        .collect::<Result<Vec<_>>>()?;
    mark_pareto(&mut points);
    Ok(points)
}

/// Mark the points no other point beats in PEs and cycles (and in cost, when
/// the points have one: the front over hardware × layer choice).
pub fn mark_pareto(points: &mut [SweepPoint]) {
    let costs = points.iter().all(|p| p.cost.is_some());
    let cost = |p: &SweepPoint| if costs { p.cost.unwrap_or(0.0) } else { 0.0 };
    let dominated = |p: &SweepPoint, q: &SweepPoint| {
        q.pes <= p.pes && q.total_cycles <= p.total_cycles && cost(q) <= cost(p) && (q.pes < p.pes || q.total_cycles < p.total_cycles || cost(q) < cost(p))
    };
    let flags: Vec<bool> = points.iter().map(|p| !points.iter().any(|q| dominated(p, q))).collect();
    for (p, f) in points.iter_mut().zip(flags) {
        p.pareto = f;
    }
}

pub fn to_csv(points: &[SweepPoint]) -> Result<String> {
    let mut w = csv::Writer::from_writer(vec![]);
    let e = |e: csv::Error| Error::Eval(e.to_string());
    let extra = points.iter().any(|p| p.cost.is_some() || p.layers.is_some());
    let mut header = vec!["variant", "rows", "cols", "pes", "kind", "dataflow", "sram_kb", "total_cycles", "time_us", "array_compute_cycles", "stall_cycles", "vector_cycles", "utilization", "pareto"];
    if extra {
        header.extend(["layers", "cost"]);
    }
    w.write_record(&header).map_err(e)?;
    for p in points {
        let mut row = vec![
            p.variant.clone(),
            p.rows.to_string(),
            p.cols.to_string(),
            p.pes.to_string(),
            format!("{:?}", p.kind).to_lowercase(),
            p.dataflow.to_string(),
            p.sram_kb.map(|k| k.to_string()).unwrap_or_else(|| "unlimited".into()),
            p.total_cycles.to_string(),
            format!("{:.3}", p.time_us),
            p.array_compute_cycles.to_string(),
            p.stall_cycles.to_string(),
            p.vector_cycles.to_string(),
            format!("{:.6}", p.utilization),
            p.pareto.to_string(),
        ];
        if extra {
            row.push(p.layers.as_ref().map(|l| l.iter().map(usize::to_string).collect::<Vec<_>>().join(" ")).unwrap_or_default());
            row.push(p.cost.map(|c| format!("{c:.6}")).unwrap_or_default());
        }
        w.write_record(&row).map_err(e)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Eval(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| Error::Eval(e.to_string()))
}

/// Latency against PE count (log-log), one line per (variant, hardware kind)
/// at each line's best dataflow and SRAM; the Pareto front over every point.
pub fn to_svg(points: &[SweepPoint]) -> Result<String> {
    use plotters::prelude::*;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (960, 600)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<std::io::Error>| Error::Eval(format!("svg: {e}"));
        root.fill(&WHITE).map_err(e)?;
        let (pmin, pmax) = points.iter().fold((u64::MAX, 1u64), |(a, b), p| (a.min(p.pes), b.max(p.pes)));
        let (cmin, cmax) = points.iter().fold((u64::MAX, 1u64), |(a, b), p| (a.min(p.total_cycles.max(1)), b.max(p.total_cycles)));
        let mut chart = ChartBuilder::on(&root)
            .caption("latency against array size", ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d((pmin.max(1) as f64 * 0.8..pmax as f64 * 1.25).log_scale(), (cmin as f64 * 0.8..cmax as f64 * 1.25).log_scale())
            .map_err(e)?;
        chart.configure_mesh().x_desc("PEs (rows × cols)").y_desc("cycles").y_label_formatter(&|y| crate::stats::human(*y as u64)).draw().map_err(e)?;
        // one line per (variant, kind): the best point at each PE count
        let mut lines: std::collections::BTreeMap<(String, String), std::collections::BTreeMap<u64, u64>> = Default::default();
        for p in points {
            let e = lines.entry((p.variant.clone(), format!("{:?}", p.kind).to_lowercase())).or_default().entry(p.pes).or_insert(u64::MAX);
            *e = (*e).min(p.total_cycles);
        }
        for (i, ((variant, kind), line)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = line.iter().map(|(&x, &y)| (x as f64, y.max(1) as f64)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(e)?
                .label(format!("{variant} on {kind}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(e)?;
        }
        let mut front: Vec<(f64, f64)> = points.iter().filter(|p| p.pareto).map(|p| (p.pes as f64, p.total_cycles.max(1) as f64)).collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(front, BLACK.stroke_width(1)))
            .map_err(e)?
            .label("Pareto front")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).border_style(BLACK).background_style(WHITE.mix(0.9)).draw().map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(buf)
}

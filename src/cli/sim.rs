//! `fusec simulate` and `fusec sweep`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use fusec::convert::{self, ConvertOptions, InputShape};
use fusec::passes::fuse_depthwise::Variant;
use fusec::passes::LayerSelection;
use super::*;

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Dataflow of the array [default: os].
    #[arg(long, value_parser = choice::<fusec::cost::hw::Dataflow>())]
    pub dataflow: Option<fusec::cost::hw::Dataflow>,
    /// SRAM of each buffer (ifmap, filter, ofmap) in KB; sets a memory limit.
    #[arg(long)]
    pub sram_kb: Option<f64>,
    /// DRAM bandwidth of each buffer in bytes per cycle [default: 16 when a memory limit is set].
    #[arg(long)]
    pub dram_bw: Option<f64>,
    /// Bytes per element, or `types`: each layer's from its operands' element type (float32 4,
    /// int8 1; a quantized model then moves a quarter of the float one's bytes) [default: 1,
    /// SCALE-Sim's].
    #[arg(long)]
    pub word_bytes: Option<WordBytes>,
    /// No memory limit (ignore the configuration's SRAM sizes).
    #[arg(long)]
    pub no_memory: bool,
    /// Lanes of the vector unit.
    #[arg(long)]
    pub vector_lanes: Option<u64>,
    /// SCALE-Sim's conventions: inputs unpadded, each SCALE-Sim layer counted to its last cycle index.
    #[arg(long)]
    pub scalesim_compat: bool,
}

/// `--word-bytes`: a number of bytes, or `types`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WordBytes {
    Fixed(u64),
    FromTypes,
}

impl std::str::FromStr for WordBytes {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "types" {
            return Ok(WordBytes::FromTypes);
        }
        s.parse::<u64>().map(WordBytes::Fixed).map_err(|_| format!("'{s}' is neither a number of bytes nor 'types'"))
    }
}

impl SimArgs {
    pub fn convention(&self) -> fusec::cost::sim::Convention {
        if self.scalesim_compat { fusec::cost::sim::Convention::SCALESIM } else { fusec::cost::sim::Convention::FUSEC }
    }

    /// The hardware with the simulator's options (memory, dataflow, vector unit)
    /// applied over [`HwArgs::config`].
    pub fn config(&self, hw: &HwArgs) -> fusec::Result<fusec::cost::hw::HwConfig> {
        use fusec::cost::hw::Memory;
        let mut c = hw.config()?;
        if let Some(d) = self.dataflow {
            c.dataflow = d;
        }
        if self.sram_kb.is_some() || self.dram_bw.is_some() || self.word_bytes.is_some() {
            let base = c.memory.clone().unwrap_or(Memory { ifmap_kb: 256.0, filter_kb: 256.0, ofmap_kb: 256.0, word_bytes: 1, word_bytes_from_types: false, dram_bytes_per_cycle: 16.0 });
            let kb = self.sram_kb;
            c.memory = Some(Memory {
                ifmap_kb: kb.unwrap_or(base.ifmap_kb),
                filter_kb: kb.unwrap_or(base.filter_kb),
                ofmap_kb: kb.unwrap_or(base.ofmap_kb),
                word_bytes: match self.word_bytes {
                    Some(WordBytes::Fixed(b)) => b,
                    _ => base.word_bytes,
                },
                word_bytes_from_types: match self.word_bytes {
                    Some(w) => w == WordBytes::FromTypes,
                    None => base.word_bytes_from_types,
                },
                dram_bytes_per_cycle: self.dram_bw.unwrap_or(base.dram_bytes_per_cycle),
            });
        }
        if self.no_memory {
            c.memory = None;
        }
        if let Some(l) = self.vector_lanes {
            c.vector.lanes = l;
        }
        c.validated()
    }
}

/// Which latency model costs the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// The paper's closed-form model (compute only).
    Analytical,
    /// The cycle-level simulator (memory, vector unit, timeline).
    Sim,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Model to simulate (or --topology).
    #[arg(required_unless_present = "topology")]
    pub model: Option<PathBuf>,
    /// A SCALE-Sim topology CSV to simulate instead of a model (SCALE-Sim's conventions).
    #[arg(long, conflicts_with = "model")]
    pub topology: Option<PathBuf>,
    /// A SCALE-Sim .cfg file (same as --hw-config FILE.cfg).
    #[arg(long)]
    pub config: Option<String>,
    /// Original model, simulated on the same hardware as a plain systolic array, for the speedup.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    #[command(flatten)]
    pub hw: HwArgs,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Batch size for a symbolic batch dimension.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Concrete input shape (`1x3x224x224` or `NAME=1x3x224x224`).
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also write the model's array layers as a SCALE-Sim topology CSV.
    #[arg(long)]
    pub export_topology: Option<PathBuf>,
    #[command(flatten)]
    pub gates: GateArgs,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Model to sweep (its variants are made in memory with --variants).
    pub model: PathBuf,
    /// Array sizes.
    #[arg(long, value_delimiter = ',', default_value = "8x8,16x16,32x32,64x64,128x128,256x256")]
    pub arrays: Vec<String>,
    /// Hardware kinds.
    #[arg(long, value_delimiter = ',', value_parser = choice::<fusec::cost::hw::HwKind>(), default_value = "systolic,fuse")]
    pub hw: Vec<fusec::cost::hw::HwKind>,
    /// Dataflows.
    #[arg(long, value_delimiter = ',', value_parser = choice::<fusec::cost::hw::Dataflow>(), default_value = "os")]
    pub dataflow: Vec<fusec::cost::hw::Dataflow>,
    /// SRAM per buffer in KB, or `none` for no memory limit.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    pub sram_kb: Vec<String>,
    /// Model variants: baseline, half, full, a layer preset run with Half (paper-50-mobilenet-v2, ...),
    /// or auto: on each configuration, the Half layer set the budget allows there
    /// (--max-cost or --target-speedup; costs measured on --samples noise inputs).
    #[arg(long, value_delimiter = ',', default_value = "baseline,half,full")]
    pub variants: Vec<String>,
    /// auto: the fastest set whose predicted cost (summed normalized output error) is at most this.
    #[arg(long, conflicts_with = "target_speedup")]
    pub max_cost: Option<f64>,
    /// auto: the least predicted cost reaching this speedup on each configuration (the fastest set where none does).
    #[arg(long)]
    pub target_speedup: Option<f64>,
    /// auto: noise inputs the costs are measured on (uniform in [-1, 1], seeded by --seed).
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The variants also rewrite dense K×K convs (as `convert --dense`; ResNet-style models).
    #[arg(long)]
    pub dense: bool,
    /// DRAM bandwidth per buffer in bytes per cycle, when SRAM is limited.
    #[arg(long, default_value_t = 16.0)]
    pub dram_bw: f64,
    /// Lanes of the vector unit.
    #[arg(long, default_value_t = 64)]
    pub vector_lanes: u64,
    /// SCALE-Sim's conventions.
    #[arg(long)]
    pub scalesim_compat: bool,
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// csv or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
    pub format: ReportFormat,
    /// Results file (the SVG plot goes beside it); standard output if absent.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}


pub(super) fn cmd_simulate(a: SimulateArgs) -> anyhow::Result<()> {
    use fusec::cost::sim::Convention;
    if a.batch == 0 {
        anyhow::bail!("option --batch: must be at least 1");
    }
    let mut hw = HwArgs { array: a.hw.array.clone(), hw: a.hw.hw, freq_mhz: a.hw.freq_mhz, hw_config: a.hw.hw_config.clone() };
    if let Some(c) = &a.config {
        hw.hw_config = Some(c.clone());
    }
    if let Some(topo) = &a.topology {
        // SCALE-Sim's inputs: its layers, its conventions, its (systolic) hardware
        let mut cfg = a.sim.config(&hw)?;
        cfg.kind = fusec::cost::hw::HwKind::Systolic;
        let rows = fusec::cost::sim::workload::read_topology(topo)?;
        let conv = Convention::SCALESIM;
        let gs = fusec::cost::sim::simulate_topology(&rows, &cfg);
        let report = fusec::cost::report::from_topology(&topo.display().to_string(), &gs, &cfg, conv);
        return super::report::finish_report(&report, a.format, a.output.as_deref(), &a.gates);
    }
    let Some(model) = &a.model else { anyhow::bail!("give a model or --topology") };
    let cfg = a.sim.config(&hw)?;
    let conv = a.sim.convention();
    let g = load_for_report(model, a.input_shape.as_ref())?;
    if let Some(p) = &a.export_topology {
        let csv = fusec::cost::sim::workload::write_topology(&g, conv.padding, a.batch).map_err(|e| e.in_file(model))?;
        emit(&csv, Some(p))?;
    }
    let base = match &a.baseline {
        Some(b) => Some((b.display().to_string(), load_for_report(b, a.input_shape.as_ref())?)),
        None => None,
    };
    let report = fusec::cost::report::build_sim(&model.display().to_string(), &g, base.as_ref().map(|(n, bg)| (n.as_str(), bg)), &cfg, conv, a.batch).map_err(|e| e.in_file(model))?;
    super::report::finish_report(&report, a.format, a.output.as_deref(), &a.gates)
}

pub(super) fn cmd_sweep(a: SweepArgs) -> anyhow::Result<()> {
    use fusec::cost::sim::sweep::{self, SweepSpec};
    if matches!(a.format, ReportFormat::Table | ReportFormat::Md | ReportFormat::Svg) {
        anyhow::bail!("option --format: sweep writes csv or json (and an SVG plot beside -o)");
    }
    let arrays = a.arrays.iter().map(|s| fusec::cost::hw::HwConfig::parse_size(s).map_err(|e| anyhow::anyhow!("{e}").context("option --arrays"))).collect::<anyhow::Result<Vec<_>>>()?;
    let sram_kb = a
        .sram_kb
        .iter()
        .map(|s| if s == "none" { Ok(None) } else { s.parse::<f64>().map(Some).map_err(|_| anyhow::anyhow!("option --sram-kb: '{s}' is neither a number nor none")) })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let auto = a.variants.iter().any(|v| v == "auto");
    let budget = match (a.max_cost, a.target_speedup) {
        (Some(d), _) if !(d >= 0.0 && d.is_finite()) => anyhow::bail!("option --max-cost: must be a number of at least 0, got {d}"),
        (_, Some(x)) if !(x >= 1.0 && x.is_finite()) => anyhow::bail!("option --target-speedup: must be at least 1, got {x}"),
        (Some(d), _) => Some(fusec::select::sweep::Budget::MaxCost(d)),
        (_, Some(x)) => Some(fusec::select::sweep::Budget::TargetSpeedup(x)),
        (None, None) => None,
    };
    if auto && budget.is_none() {
        anyhow::bail!("option --variants: auto needs a budget: --max-cost D or --target-speedup X");
    }
    if !auto && budget.is_some() {
        anyhow::bail!("options --max-cost and --target-speedup: only with --variants auto");
    }
    if auto && a.samples == 0 {
        anyhow::bail!("option --samples: auto measures costs on at least 1 input");
    }
    let (model, g) = fusec::ir::load_graph(&a.model)?;
    let mut models = vec![];
    for v in a.variants.iter().filter(|v| *v != "auto") {
        let mut gv = g.clone();
        let mut mv = model.clone();
        match v.as_str() {
            "baseline" => {}
            other => {
                let (variant, layers) = match other {
                    "half" => (Variant::Half, LayerSelection::All),
                    "full" => (Variant::Full, LayerSelection::All),
                    preset => (Variant::Half, LayerSelection::parse(preset)),
                };
                let opts = ConvertOptions { variant: Some(variant), layers: Some(layers), dense: a.dense, ..Default::default() };
                convert::convert_model(&mut mv, &mut gv, &opts).map_err(|e| e.in_file(&a.model)).with_context(|| format!("variant {v}"))?;
            }
        }
        if let Some(s) = &a.input_shape {
            s.apply(&mut gv).map_err(|e| e.in_file(&a.model))?;
        }
        models.push((v.clone(), gv));
    }
    let base = fusec::cost::hw::HwConfig {
        memory: Some(fusec::cost::hw::config::Memory { ifmap_kb: 256.0, filter_kb: 256.0, ofmap_kb: 256.0, word_bytes: 1, word_bytes_from_types: false, dram_bytes_per_cycle: a.dram_bw }),
        vector: fusec::cost::hw::config::VectorUnit { lanes: a.vector_lanes, ..Default::default() },
        ..fusec::cost::hw::HwConfig::new(64, 64, fusec::cost::hw::HwKind::Fuse, fusec::cost::hw::Dataflow::Os)?
    }
    .validated()?;
    let spec = SweepSpec { arrays, kinds: a.hw.clone(), dataflows: a.dataflow.clone(), sram_kb };
    let conv = if a.scalesim_compat { fusec::cost::sim::Convention::SCALESIM } else { fusec::cost::sim::Convention::FUSEC };
    let pb = (!a.quiet).then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} configurations, {per_sec}, ETA {eta}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
        SweepBar(pb)
    });
    let t0 = std::time::Instant::now();
    let cache = sweep::Cache::default();
    let progress = pb.as_ref().map(|p| p as &dyn sweep::Progress);
    let mut points = sweep::run_with(&models, &spec, &base, conv, a.batch, progress, &cache)?;
    if let Some(budget) = budget {
        let auto_points = sweep_auto(&a, &model, &g, &models, &mut points, budget, &spec, &base, conv, &cache, progress)?;
        points.extend(auto_points);
        sweep::mark_pareto(&mut points);
    }
    let (hits, misses) = cache.counts();
    if let Some(pb) = &pb {
        pb.0.finish_and_clear();
    }
    let text = match a.format {
        ReportFormat::Json => serde_json::to_string_pretty(&points)?,
        _ => sweep::to_csv(&points)?,
    };
    emit(&text, a.output.as_deref())?;
    if let Some(p) = &a.output {
        emit(&sweep::to_svg(&points)?, Some(&p.with_extension("svg")))?;
    }
    eprintln!(
        "{} configurations in {:.2} s ({} layer simulations, {} shared), {} on the Pareto front",
        points.len(),
        t0.elapsed().as_secs_f64(),
        misses,
        hits,
        points.iter().filter(|p| p.pareto).count()
    );
    Ok(())
}


/// `--variants auto`: the item table (Half, costs on noise inputs), one auto
/// point per configuration, and every point's measured cost (the whole model's
/// normalized output error), so the Pareto front spans hardware × layer choice.
#[allow(clippy::too_many_arguments)]
fn sweep_auto(
    a: &SweepArgs,
    model: &fusec::onnx::Model,
    g: &fusec::ir::Graph,
    models: &[(String, fusec::ir::Graph)],
    points: &mut [fusec::cost::sim::sweep::SweepPoint],
    budget: fusec::select::sweep::Budget,
    spec: &fusec::cost::sim::sweep::SweepSpec,
    base: &fusec::cost::hw::HwConfig,
    conv: fusec::cost::sim::Convention,
    cache: &fusec::cost::sim::sweep::Cache,
    pb: Option<&dyn fusec::cost::sim::sweep::Progress>,
) -> anyhow::Result<Vec<fusec::cost::sim::sweep::SweepPoint>> {
    use std::collections::HashMap;
    let mut gs = g.clone();
    if let Some(s) = &a.input_shape {
        s.apply(&mut gs).map_err(|e| e.in_file(&a.model))?;
    }
    let inputs = fusec::select::noise_inputs(&gs, a.samples, a.seed).map_err(|e| e.in_file(&a.model))?;
    let hw = fusec::cost::hw::HwConfig::array(64, 64, fusec::cost::hw::HwKind::Fuse, 1000.0)?;
    let mut table = fusec::select::gains(&gs, &hw, Variant::Half, a.batch).map_err(|e| e.in_file(&a.model))?;
    fusec::select::score(&model.proto, &gs, &mut table, fusec::passes::fuse_depthwise::Init::Center, &inputs).map_err(|e| e.in_file(&a.model))?;
    let auto = fusec::select::sweep::auto_points(&gs, &table, budget, spec, base, conv, a.batch, cache, pb)?;
    // measured costs: each model once, each distinct auto set once
    let reference = fusec::select::outputs(&model.proto, &gs, &inputs)?;
    let mut measured: HashMap<String, f64> = HashMap::new();
    for (name, gv) in models {
        let cost = if name == "baseline" { 0.0 } else { fusec::select::output_distance(&reference, &fusec::select::outputs(&model.proto, gv, &inputs)?).0 };
        measured.insert(name.clone(), cost);
    }
    for p in points.iter_mut() {
        p.cost = measured.get(&p.variant).copied();
    }
    let mut by_set: HashMap<Vec<usize>, f64> = HashMap::new();
    let mut out = vec![];
    for (mut p, _predicted) in auto {
        let layers = p.layers.clone().unwrap_or_default();
        let cost = match by_set.get(&layers) {
            Some(&c) => c,
            None => {
                let (converted, _, _) = fusec::select::rewrite(&gs, Variant::Half, fusec::passes::fuse_depthwise::Init::Center, &layers)?;
                let c = fusec::select::output_distance(&reference, &fusec::select::outputs(&model.proto, &converted, &inputs)?).0;
                by_set.insert(layers.clone(), c);
                c
            }
        };
        p.cost = Some(cost);
        out.push(p);
    }
    eprintln!("auto: {} configurations, {} distinct layer sets ({} items, costs on {} noise inputs)", out.len(), by_set.len(), table.items.len(), inputs.len());
    Ok(out)
}

/// The sweep's progress bar.
struct SweepBar(indicatif::ProgressBar);

impl fusec::cost::sim::sweep::Progress for SweepBar {
    fn add(&self, n: u64) {
        self.0.inc_length(n);
    }
    fn done(&self) {
        self.0.inc(1);
    }
}

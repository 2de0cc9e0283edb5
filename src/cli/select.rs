//! `fusec select`: which depthwise layers to rewrite for an array, a speedup
//! target or a cost budget (the library side is `fusec::select`).

use std::path::PathBuf;

use clap::Args;

use super::convert::CalibImages;
use super::report::HwArgs;
use super::*;
use fusec::convert::InputShape;
use fusec::select::solve::{self, Goal};

#[derive(Args, Debug)]
pub struct SelectArgs {
    /// Model to choose layers of.
    pub model: PathBuf,
    /// The rewrite whose gains and costs are weighed.
    #[arg(long, value_parser = choice::<fusec::passes::fuse_depthwise::Variant>(), default_value_t = fusec::passes::fuse_depthwise::Variant::Half)]
    pub variant: fusec::passes::fuse_depthwise::Variant,
    #[command(flatten)]
    pub hw: HwArgs,
    /// Concrete input shape (`1x3x224x224` or `NAME=1x3x224x224`).
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// The least predicted cost that reaches this speedup over the model as it is, on this array.
    #[arg(long, conflicts_with = "max_cost")]
    pub target_speedup: Option<f64>,
    /// The fastest set whose predicted cost (summed normalized output error) is at most this.
    #[arg(long, conflicts_with = "max_drop")]
    pub max_cost: Option<f64>,
    /// The fastest set that loses at most this many points of top-1 agreement with the
    /// original (models with class-score outputs; best with --calib data). Per-layer drops
    /// are summed to choose; the set is then measured whole and the budget tightened until
    /// the measured drop is within D.
    #[arg(long, conflicts_with = "target_speedup")]
    pub max_drop: Option<f64>,
    /// The task whose metric reads a rewritten model's agreement with the original
    /// (for --max-drop and the table): rot180 top-1, ctc lines read the same
    /// (greedy), textdet box hmean against the original's boxes. Default: top-1
    /// where the first output is [N, classes] scores.
    #[arg(long, value_parser = choice::<fusec::tasks::Task>())]
    pub task: Option<fusec::tasks::Task>,
    /// Distill each rewritten layer for this many steps on the --calib data (only
    /// its 1-D kernels train, against the original) before its cost is measured;
    /// the chosen set too, before it is measured whole. 0: costs of the untrained rewrite.
    #[arg(long, default_value_t = 0)]
    pub proxy_steps: usize,
    /// Samples per --proxy-steps step.
    #[arg(long, default_value_t = 8)]
    pub proxy_batch: usize,
    /// Inputs the costs are measured on (uniform noise in [-1, 1], fixed seed); 0 ranks by gain alone.
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    // images to measure the costs on instead of noise (--samples is then ignored)
    #[command(flatten)]
    pub images: CalibImages,
    /// The converted model may have at most this many parameters (Full adds them; Half removes).
    #[arg(long)]
    pub budget_params: Option<u64>,
    /// The converted model may do at most this many multiply-accumulates.
    #[arg(long)]
    pub budget_macs: Option<u64>,
    /// Layers every chosen set must contain (a --layers list: indices, ranges, name patterns).
    #[arg(long)]
    pub include: Option<String>,
    /// Layers no chosen set may contain (same forms).
    #[arg(long)]
    pub exclude: Option<String>,
    /// Measure every gain and cost again instead of reading them from the cache
    /// ($FUSEC_CACHE_DIR/select, else ~/.cache/fusec/select), and do not store them.
    #[arg(long)]
    pub no_cache: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Initial 1-D kernels of the rewritten layers when costs are measured and candidates
    /// fine-tuned: center, sum (from the K×K kernel) or lsq (fitted on the --calib data,
    /// every layer on the original's activations).
    #[arg(long, value_parser = choice::<fusec::passes::fuse_depthwise::Init>(), default_value_t = fusec::passes::fuse_depthwise::Init::Center)]
    pub init: fusec::passes::fuse_depthwise::Init,
    /// Half: which channels get the 1×K branch: ordered (the first half, as the paper) or fit
    /// (each channel to the branch that keeps more of its kernel; as `convert --assign`).
    #[arg(long, value_parser = choice::<fusec::passes::fuse_depthwise::Assign>(), default_value_t = fusec::passes::fuse_depthwise::Assign::Ordered)]
    pub assign: fusec::passes::fuse_depthwise::Assign,
    /// Print JSON (the table, the front and the choice) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write the chosen layers as a preset file (the `passes/` format) for `convert --layers FILE`.
    #[arg(long)]
    pub save_preset: Option<PathBuf>,
    /// Replace an existing preset or SVG file.
    #[arg(long)]
    pub force: bool,
    /// With --max-drop: fine-tune the fastest candidates on the front (from the chosen set
    /// up, fastest first) with the task's recipe on --finetune-data, measure each against the
    /// original on the --calib inputs, and write the first within --max-drop to -o.
    #[arg(long, requires_all = ["max_drop", "finetune_data", "output"])]
    pub finetune: bool,
    /// Training data of --finetune (as `fusec finetune --data`).
    #[arg(long)]
    pub finetune_data: Option<PathBuf>,
    /// --finetune: epochs of each candidate's fine-tune (default: the recipe's).
    #[arg(long)]
    pub finetune_epochs: Option<usize>,
    /// --finetune: stop each candidate's fine-tune after this many steps (overrides the epochs).
    #[arg(long)]
    pub finetune_steps: Option<usize>,
    /// --finetune: a recipe option for each fine-tune (as `fusec finetune --set`); repeatable.
    #[arg(long)]
    pub finetune_set: Vec<String>,
    /// --finetune: candidates at most.
    #[arg(long, default_value_t = 3)]
    pub candidates: usize,
    /// --finetune: seconds for the search; a candidate is not started when the longest
    /// fine-tune so far would end past it.
    #[arg(long)]
    pub time_budget: Option<f64>,
    /// --finetune: the model written (the fastest fine-tuned candidate within --max-drop).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Plot the Pareto front (predicted speedup against cost) to this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Mark a layer selection on the plot and in the output (a preset such as
    /// paper-50-mobilenet-v2, a preset file, or a layer list); repeatable.
    #[arg(long)]
    pub mark: Vec<String>,
}

#[derive(serde::Serialize)]
struct Outcome<'a> {
    table: &'a fusec::select::Table,
    /// Whether the table was read from the cache.
    cached: bool,
    front: Vec<solve::Choice>,
    choice: Option<Chosen>,
    marks: Vec<Mark>,
    /// --finetune: the candidates fine-tuned and the model written.
    #[serde(skip_serializing_if = "Option::is_none")]
    finetune: Option<super::select_finetune::Search>,
}

#[derive(serde::Serialize)]
struct Chosen {
    layers: Vec<usize>,
    predicted_gain: u64,
    predicted_cost: f64,
    predicted_speedup: f64,
    /// The chosen set converted whole and costed.
    measured_cycles: u64,
    measured_speedup: f64,
    measured_cost: Option<f64>,
    measured_agreement: Option<f64>,
    /// --max-drop: the sets measured whole before this one (predicted cost, measured drop).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tightened: Vec<(f64, f64)>,
}

fn speedup(base: u64, gain: u64) -> f64 {
    base as f64 / base.saturating_sub(gain).max(1) as f64
}

pub(super) fn cmd_select(a: SelectArgs) -> anyhow::Result<()> {
    let hw = a.hw.config()?;
    if let Some(x) = a.target_speedup
        && !(x >= 1.0 && x.is_finite())
    {
        anyhow::bail!("option --target-speedup: must be at least 1, got {x}");
    }
    for (name, v) in [("--max-cost", a.max_cost), ("--max-drop", a.max_drop)] {
        if let Some(d) = v
            && !(d >= 0.0 && d.is_finite())
        {
            anyhow::bail!("option {name}: must be a number of at least 0, got {d}");
        }
        if v.is_some() && a.samples == 0 && a.images.calib.is_none() {
            anyhow::bail!("option {name}: needs costs (--samples of at least 1, or --calib DATA)");
        }
    }
    if let Some(p) = &a.save_preset
        && p.exists()
        && !a.force
    {
        anyhow::bail!("option --save-preset: {} exists; pass --force to replace it", p.display());
    }
    let model = load_folded(&a.model)?;
    let calib_set = calib_data(&a)?;
    let calib = calib_inputs(&a, calib_set.as_ref())?;
    if a.proxy_steps > 0 && calib_set.is_none() {
        anyhow::bail!("option --proxy-steps: distills on images: give --calib DATA (and --preprocess)");
    }
    let proxy = calib_set.as_ref().filter(|_| a.proxy_steps > 0).map(|d| fusec::select::Proxy::new(d, a.proxy_steps, a.proxy_batch, a.seed));
    // --calib images give the input shape when --input-shape does not
    let shape = a.input_shape.clone().or_else(|| calib.first().map(|x| InputShape { name: None, dims: x.shape().iter().map(|&d| d as i64).collect() }));
    let g = load_for_report(&a.model, shape.as_ref())?;
    let cands = fusec::passes::fuse_depthwise::depthwise_convs(&g)?;
    let layer_set = |opt: &str, v: &Option<String>| -> anyhow::Result<Vec<usize>> {
        match v {
            None => Ok(vec![]),
            Some(l) => fusec::passes::LayerSelection::parse(l).resolve(&cands).map_err(|e| anyhow::anyhow!("option {opt}: {l}: {e}")),
        }
    };
    let (include, exclude) = (layer_set("--include", &a.include)?, layer_set("--exclude", &a.exclude)?);
    if let Some(l) = include.iter().find(|l| exclude.contains(l)) {
        anyhow::bail!("option --include: layer {l} is also in --exclude");
    }
    let inputs = if a.images.calib.is_some() { calib } else { fusec::select::noise_inputs(&g, a.samples, a.seed).map_err(|e| e.in_file(&a.model))? };
    let kernels = kernels_for(&a, &model, &g, calib_set.as_ref())?;
    let (table, cached) = table_for(&a, &hw, &model, &g, &inputs, &kernels, proxy.as_ref())?;
    if let Some(l) = include.iter().find(|l| !table.items.iter().any(|i| i.layers.contains(l))) {
        anyhow::bail!("option --include: layer {l} cannot be rewritten as {} (see the left-out layers of fusec select without --include)", a.variant);
    }
    if a.max_drop.is_some() && table.items.iter().any(|i| i.agreement.is_none()) {
        let how = match a.task {
            Some(fusec::tasks::Task::Ctc) => "[N, T, classes] CTC scores",
            Some(fusec::tasks::Task::Textdet) => "an [N, 1, H, W] probability map",
            _ => "[N, classes] scores (for a recognizer or detector give --task ctc or --task textdet)",
        };
        anyhow::bail!("option --max-drop: {}: the first output is not {how}, so there is no {}; use --max-cost", a.model.display(), agreement(&a).unit());
    }
    let gains: Vec<u64> = table.items.iter().map(|i| i.gain).collect();
    // without costs every item costs the same: the fewest layers reaching the target
    // (with --max-drop: the agreement points an item loses)
    let cost_of = |i: &fusec::select::Item| if a.max_drop.is_some() { i.drop_points().unwrap_or(0.0) } else { i.cost.unwrap_or(1.0) };
    let costs: Vec<f64> = table.items.iter().map(cost_of).collect();
    let forced: Vec<usize> = (0..table.items.len()).filter(|&i| table.items[i].layers.iter().any(|l| include.contains(l))).collect();
    let free: Vec<usize> = (0..table.items.len()).filter(|&i| !forced.contains(&i) && !table.items[i].layers.iter().any(|l| exclude.contains(l))).collect();
    // parameter and MAC budgets: the model's own plus what the chosen items add
    let stats = fusec::stats::stats(&g);
    let within = |items: &[usize]| {
        let add = |f: fn(&fusec::select::Item) -> i64| items.iter().map(|&i| f(&table.items[i])).sum::<i64>();
        a.budget_params.is_none_or(|b| stats.params as i64 + add(|i| i.params_delta) <= b as i64) && a.budget_macs.is_none_or(|b| stats.macs as i64 + add(|i| i.macs_delta) <= b as i64)
    };
    let constrained = Constrained { gains: &gains, costs: &costs, forced: &forced, free: &free, ok: &within };
    let front = constrained.front();
    let base = table.baseline_cycles;
    // the original's outputs, run once however many sets are measured
    let reference = std::cell::OnceCell::new();
    let measure = |c: &solve::Choice, tightened: Vec<(f64, f64)>| -> anyhow::Result<Chosen> {
        let layers: Vec<usize> = c.items.iter().flat_map(|&i| table.items[i].layers.clone()).collect();
        let (converted, _, _) = fusec::select::rewrite(&g, a.variant, &kernels, &layers)?;
        let measured = fusec::select::cycles(&converted, &hw, 1)?;
        let (measured_cost, measured_agreement) = if inputs.is_empty() {
            (None, None)
        } else {
            if reference.get().is_none() {
                let _ = reference.set(fusec::select::outputs(&model.proto, &g, &inputs)?);
            }
            let reference = reference.get().ok_or_else(|| anyhow::anyhow!("the original's outputs"))?;
            let ys = match &proxy {
                Some(p) if !layers.is_empty() => fusec::select::outputs_of(&p.tune(&model.proto, &converted)?, &inputs)?,
                _ => fusec::select::outputs(&model.proto, &converted, &inputs)?,
            };
            let (e, ag) = fusec::select::output_distance_by(reference, &ys, agreement(&a));
            (Some(e), ag)
        };
        Ok(Chosen {
            layers,
            predicted_gain: c.gain,
            predicted_cost: c.cost,
            predicted_speedup: speedup(base, c.gain),
            measured_cycles: measured,
            measured_speedup: base as f64 / measured.max(1) as f64,
            measured_cost,
            measured_agreement,
            tightened,
        })
    };
    let unreachable = || {
        anyhow::anyhow!(
            "no set of layers reaches a {:.3}x speedup on this array{} (all {} allowed together: {:.3}x predicted)",
            a.target_speedup.unwrap_or(1.0),
            if a.budget_params.is_some() || a.budget_macs.is_some() { " within --budget-params/--budget-macs" } else { "" },
            forced.len() + free.len(),
            speedup(base, forced.iter().chain(&free).map(|&i| gains[i]).sum())
        )
    };
    let chosen = match (a.target_speedup, a.max_cost, a.max_drop) {
        (Some(x), _, _) => Some(measure(&constrained.solve(Goal::Gain(base - (base as f64 / x).floor() as u64)).ok_or_else(unreachable)?, vec![])?),
        (_, Some(d), _) => Some(measure(&constrained.solve(Goal::Cost(d)).ok_or_else(|| over_budget("--max-cost", d))?, vec![])?),
        (_, _, Some(d)) => {
            // drops do not add exactly: measure the set whole, tighten the budget until it holds
            let mut budget = d;
            let mut tightened = vec![];
            loop {
                // a set of items predicted to cost nothing that still loses more than D: only
                // the forced items are left to try
                let c = if budget < 0.0 { constrained.join(solve::Choice { items: vec![], gain: 0, cost: 0.0 }) } else { constrained.solve(Goal::Cost(budget)).ok_or_else(|| over_budget("--max-drop", d))? };
                let chosen = measure(&c, std::mem::take(&mut tightened))?;
                let drop = 100.0 * (1.0 - chosen.measured_agreement.unwrap_or(1.0));
                if drop <= d + 1e-9 || c.items.len() <= forced.len() || chosen.tightened.len() >= 8 {
                    break Some(chosen);
                }
                tightened = chosen.tightened;
                tightened.push((c.cost, drop));
                // the next set must predict less than this one did, scaled by how far off it was
                budget = (c.cost * d / drop).min(c.cost - 1e-9);
            }
        }
        _ => None,
    };
    let finetuned = match (a.finetune, &chosen, a.max_drop) {
        (true, Some(c), Some(d)) => {
            if let Some(o) = &a.output
                && o.exists()
                && !a.force
            {
                anyhow::bail!("option -o: {} exists; pass --force to replace it", o.display());
            }
            // the original's outputs, as the measurement of the chosen set ran them
            if reference.get().is_none() {
                let _ = reference.set(fusec::select::outputs(&model.proto, &g, &inputs)?);
            }
            let reference = reference.get().ok_or_else(|| anyhow::anyhow!("the original's outputs"))?;
            let cands = super::select_finetune::candidates(&front, c.predicted_gain, a.candidates);
            let s = super::select_finetune::search(&a, &g, &model, &table, &kernels, &cands, &inputs, reference, d)?;
            if s.written.is_none() {
                let why = if s.skipped_for_time > 0 { format!("; {} not started within --time-budget", s.skipped_for_time) } else { String::new() };
                anyhow::bail!("option --finetune: no candidate kept within --max-drop {d} after fine-tuning ({}{why})", s.tuned.iter().map(|t| format!("{:?}: {:.2} points", t.layers, t.drop)).collect::<Vec<_>>().join(", "));
            }
            Some(s)
        }
        _ => None,
    };
    if let (Some(p), Some(c)) = (&a.save_preset, &chosen) {
        let text = preset_toml(&a, &table, c);
        let tmp = tempfile::NamedTempFile::new_in(p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")))
            .map_err(|e| anyhow::anyhow!("option --save-preset: {}: {e}", p.display()))?;
        std::fs::write(tmp.path(), text)?;
        tmp.persist(p).map_err(|e| anyhow::anyhow!("option --save-preset: {}: {}", p.display(), e.error))?;
    }
    // marked selections: their predicted speedup and cost from the items they cover
    let mut marks = vec![];
    for m in &a.mark {
        let layers = fusec::passes::LayerSelection::parse(m).resolve(&cands).map_err(|e| anyhow::anyhow!("option --mark: {m}: {e}"))?;
        let items: Vec<&fusec::select::Item> = table.items.iter().filter(|i| i.layers.iter().any(|l| layers.contains(l))).collect();
        let gain: u64 = items.iter().map(|i| i.gain).sum();
        let cost: f64 = items.iter().map(|i| cost_of(i)).sum::<f64>();
        marks.push(Mark { name: m.clone(), layers, predicted_speedup: speedup(base, gain), predicted_cost: cost });
    }
    if let Some(p) = &a.svg {
        if p.exists() && !a.force {
            anyhow::bail!("option --svg: {} exists; pass --force to replace it", p.display());
        }
        let label = match (a.max_drop, table.items.iter().any(|i| i.cost.is_some())) {
            (Some(_), _) => match a.task {
                Some(fusec::tasks::Task::Ctc) => "predicted drop in lines read as the original reads them (points, summed)",
                Some(fusec::tasks::Task::Textdet) => "predicted drop in box hmean against the original (points, summed)",
                _ => "predicted top-1 agreement drop (points, summed)",
            },
            (None, true) => "predicted cost (summed normalized output error)",
            (None, false) => "layers rewritten",
        };
        let ms: Vec<(String, f64, f64)> = marks.iter().map(|m| (m.name.clone(), m.predicted_speedup, m.predicted_cost)).collect();
        let svg = fusec::select::front_svg(base, &front, chosen.as_ref().map(|c| (c.predicted_speedup, c.predicted_cost)), &ms, label)?;
        std::fs::write(p, svg).map_err(|e| anyhow::anyhow!("option --svg: {}: {e}", p.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&Outcome { table: &table, cached, front, choice: chosen, marks, finetune: finetuned.clone() })?);
        return Ok(());
    }
    if cached {
        println!("(gains and costs from the cache; --no-cache measures them again)");
    }
    print_tables(&a, &table, &front, chosen.as_ref());
    if let Some(s) = &finetuned {
        for t in &s.tuned {
            println!("  fine-tuned {:?}: {:.3}x predicted, {:.2} points lost ({:.0} s){}", t.layers, t.predicted_speedup, t.drop, t.seconds, if t.meets { ", within --max-drop" } else { "" });
        }
        if let Some(w) = &s.written {
            println!("  wrote {}", w.display());
        }
    }
    for m in &marks {
        println!("  marked {}: layers {:?}: predicted {:.3}x, cost {:.4}", m.name, m.layers, m.predicted_speedup, m.predicted_cost);
    }
    Ok(())
}

fn over_budget(opt: &str, d: f64) -> anyhow::Error {
    anyhow::anyhow!("option {opt}: the layers of --include alone cost more than {d}")
}

/// The solver on the items --include and --exclude leave: `forced` items are in
/// every set, only `free` ones are chosen.
struct Constrained<'a> {
    gains: &'a [u64],
    costs: &'a [f64],
    forced: &'a [usize],
    free: &'a [usize],
    /// Whether a whole set (forced and chosen items) is within the budgets.
    ok: &'a dyn Fn(&[usize]) -> bool,
}

impl Constrained<'_> {
    fn base(&self) -> (u64, f64) {
        (self.forced.iter().map(|&i| self.gains[i]).sum(), self.forced.iter().map(|&i| self.costs[i]).sum())
    }
    /// A choice over the free items, mapped back and joined with the forced ones.
    fn join(&self, c: solve::Choice) -> solve::Choice {
        let (g0, c0) = self.base();
        let mut items: Vec<usize> = self.forced.iter().copied().chain(c.items.iter().map(|&j| self.free[j])).collect();
        items.sort_unstable();
        solve::Choice { items, gain: g0 + c.gain, cost: c0 + c.cost }
    }
    fn sub(&self) -> (Vec<u64>, Vec<f64>) {
        (self.free.iter().map(|&i| self.gains[i]).collect(), self.free.iter().map(|&i| self.costs[i]).collect())
    }
    /// Whether the free items `sub` (indices into `free`) with the forced ones are within budget.
    fn allows(&self, sub: &[usize]) -> bool {
        let all: Vec<usize> = self.forced.iter().copied().chain(sub.iter().map(|&j| self.free[j])).collect();
        (self.ok)(&all)
    }
    fn front(&self) -> Vec<solve::Choice> {
        let (g, c) = self.sub();
        solve::pareto_where(&g, &c, &|s| self.allows(s)).into_iter().map(|x| self.join(x)).collect()
    }
    fn solve(&self, goal: Goal) -> Option<solve::Choice> {
        let (g0, c0) = self.base();
        let goal = match goal {
            Goal::Gain(x) => Goal::Gain(x.saturating_sub(g0)),
            Goal::Cost(x) if x + 1e-12 < c0 => return None,
            Goal::Cost(x) => Goal::Cost(x - c0),
        };
        let (g, c) = self.sub();
        solve::solve_where(&g, &c, goal, &|s| self.allows(s)).map(|x| self.join(x))
    }
}

fn agreement(a: &SelectArgs) -> fusec::select::Agreement {
    fusec::select::Agreement::of(a.task)
}

/// The --calib data (none without --calib).
fn calib_data(a: &SelectArgs) -> anyhow::Result<Option<fusec::tasks::data::Dataset>> {
    let CalibImages { calib: Some(d), calib_limit, preprocess } = &a.images else { return Ok(None) };
    let pre = fusec::tasks::data::Preprocess::preset(preprocess)?;
    Ok(Some(fusec::tasks::data::load(d, &pre, a.task, Some(*calib_limit))?))
}

/// The --calib images as [1, C, H, W] inputs (none without --calib).
fn calib_inputs(a: &SelectArgs, data: Option<&fusec::tasks::data::Dataset>) -> anyhow::Result<Vec<ndarray::ArrayD<f32>>> {
    let (CalibImages { calib: Some(d), preprocess, .. }, Some(data)) = (&a.images, data) else { return Ok(vec![]) };
    let xs: Vec<ndarray::ArrayD<f32>> = data.samples.iter().map(|s| s.x.clone().insert_axis(ndarray::Axis(0)).into_dyn()).collect();
    if let Some(x) = xs.iter().find(|x| x.shape() != xs[0].shape()) {
        anyhow::bail!("option --calib: {}: images of different sizes after --preprocess {} ({:?} and {:?}); choose a preprocessing that resizes to one size", d.display(), preprocess, xs[0].shape(), x.shape());
    }
    Ok(xs)
}

/// How the rewritten layers get their kernels (--init, --assign); `lsq` fits every
/// layer on the --calib data once.
pub(super) fn kernels_for(a: &SelectArgs, model: &fusec::onnx::Model, g: &fusec::ir::Graph, calib: Option<&fusec::tasks::data::Dataset>) -> anyhow::Result<fusec::select::Kernels> {
    use fusec::passes::fuse_depthwise::{Assign, Init, Variant};
    if a.assign == Assign::Fit && a.variant == Variant::Full {
        anyhow::bail!("option --assign: fit applies to --variant half (Full gives every channel to both branches)");
    }
    let fitted = match (a.init, calib) {
        (Init::Lsq, None) => anyhow::bail!("option --init: lsq fits the kernels on images: give --calib DATA (and --preprocess)"),
        (Init::Lsq, Some(data)) => {
            let o = fusec::calibrate::FitOptions { assign: a.assign, ..fusec::calibrate::FitOptions::new(a.variant) };
            Some(fusec::calibrate::calibrate_with(&model.proto, g, data, &o).map_err(|e| e.in_file(&a.model))?.0)
        }
        _ => None,
    };
    Ok(fusec::select::Kernels { init: a.init, assign: a.assign, fitted })
}

/// The per-layer table: from the cache when this model, array, variant, init and
/// inputs were measured before, else measured (and cached).
fn table_for(a: &SelectArgs, hw: &fusec::cost::hw::HwConfig, model: &fusec::onnx::Model, g: &fusec::ir::Graph, inputs: &[ndarray::ArrayD<f32>], kernels: &fusec::select::Kernels, proxy: Option<&fusec::select::Proxy>) -> anyhow::Result<(fusec::select::Table, bool)> {
    let cache = if a.no_cache { None } else { fusec::select::Cache::default_dir().map(|dir| fusec::select::Cache { dir }) };
    let key = cache.as_ref().map(|_| -> anyhow::Result<String> {
        let bytes = std::fs::read(&a.model).map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?;
        let desc = format!("{hw:?}|{}|{}|{}|{:?}|{:?}|proxy {} x {} seed {}", a.variant, a.init, a.assign, a.input_shape, a.task, a.proxy_steps, a.proxy_batch, a.seed);
        let xs: Vec<u8> = inputs.iter().flat_map(|x| x.shape().iter().map(|&d| d as u32).chain(x.iter().map(|v| v.to_bits())).flat_map(u32::to_le_bytes)).collect();
        Ok(fusec::select::Cache::key(&[&bytes, desc.as_bytes(), &xs]))
    });
    let key = key.transpose()?;
    if let (Some(c), Some(k)) = (&cache, &key)
        && let Some(t) = c.get(k)
    {
        return Ok((t, true));
    }
    let mut table = fusec::select::gains(g, hw, a.variant, 1).map_err(|e| e.in_file(&a.model))?;
    if !inputs.is_empty() {
        fusec::select::score_by(&model.proto, g, &mut table, kernels, inputs, agreement(a), proxy).map_err(|e| e.in_file(&a.model))?;
    }
    if let (Some(c), Some(k)) = (&cache, &key)
        && let Err(e) = c.put(k, &table)
    {
        eprintln!("warning: could not cache the selection table: {e}");
    }
    Ok((table, false))
}

#[derive(serde::Serialize)]
struct Mark {
    name: String,
    layers: Vec<usize>,
    predicted_speedup: f64,
    predicted_cost: f64,
}

fn preset_toml(a: &SelectArgs, table: &fusec::select::Table, c: &Chosen) -> String {
    let n = table.items.iter().map(|i| i.layers.len()).sum::<usize>() + table.skipped.len();
    let goal = match (a.target_speedup, a.max_cost) {
        (Some(x), _) => format!("a {x}x speedup"),
        (_, Some(d)) => format!("a cost of at most {d}"),
        _ => String::new(),
    };
    format!(
        "description = \"Chosen by fusec select for {goal} on {} ({:?}): {:.3}x measured, cost {}.\"\nnetwork = \"{}\"\ndepthwise_layers = {n}\nlayers = [{}]\n",
        a.hw.array.as_deref().unwrap_or("64x64"),
        a.variant,
        c.measured_speedup,
        c.measured_cost.map_or_else(|| "not measured".into(), |v| format!("{v:.4}")),
        a.model.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default().replace('"', "'"),
        c.layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
    )
}

fn print_tables(a: &SelectArgs, table: &fusec::select::Table, front: &[solve::Choice], chosen: Option<&Chosen>) {
    let base = table.baseline_cycles;
    println!("{}: {base} cycles as it is; {:?} rewrite, layer by layer", a.model.display(), table.variant);
    let agree_col = match agreement(a) {
        fusec::select::Agreement::Top1 => "top-1",
        fusec::select::Agreement::CtcLines => "lines",
        fusec::select::Agreement::Boxes => "hmean",
    };
    println!("  {:<12} {:<34} {:>10} {:>8} {:>10} {:>9} {:>11}", "layers", "node", "gain", "speedup", "cost", agree_col, "gain/cost");
    for it in &table.items {
        let layers = it.layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("+");
        let cost = it.cost.map_or_else(|| "-".into(), |c| format!("{c:.4}"));
        let agree = it.agreement.map_or_else(|| "-".into(), |v| format!("{:.1}%", 100.0 * v));
        let ratio = it.cost.map_or_else(|| "-".into(), |c| format!("{:.3e}", it.gain as f64 / c.max(1e-12)));
        println!("  {:<12} {:<34} {:>10} {:>7.3}x {:>10} {:>9} {:>11}", layers, it.names.join("+"), it.gain, speedup(base, it.gain), cost, agree, ratio);
    }
    for (n, why) in &table.skipped {
        println!("  left out: {n}: {why}");
    }
    const SHOWN: usize = 12;
    let step = front.len().div_ceil(SHOWN).max(1);
    let shown: Vec<&solve::Choice> = front.iter().enumerate().filter(|(i, _)| i % step == 0 || *i + 1 == front.len()).map(|(_, c)| c).collect();
    let costs = match (a.max_drop, table.items.iter().any(|i| i.cost.is_some())) {
        (Some(_), _) if agreement(a) == fusec::select::Agreement::Top1 => " (cost: top-1 agreement points lost, summed over the layers)".to_string(),
        (Some(_), _) => format!(" (cost: points of {} lost, summed over the layers)", agreement(a).unit()),
        (None, true) => String::new(),
        (None, false) => " (no costs measured: each layer counts 1)".to_string(),
    };
    println!("  Pareto front (predicted){costs}: {} sets{}", front.len(), if shown.len() < front.len() { format!(", {} shown (--json lists all)", shown.len()) } else { String::new() });
    for c in shown {
        let layers: Vec<String> = c.items.iter().flat_map(|&i| table.items[i].layers.iter().map(|l| l.to_string())).collect();
        println!("    {:>7.3}x  cost {:>8.4}  [{}]", speedup(base, c.gain), c.cost, layers.join(", "));
    }
    if let Some(c) = chosen {
        println!(
            "  chosen: layers [{}]: predicted {:.3}x, cost {:.4}; measured {} cycles ({:.3}x){}",
            c.layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", "),
            c.predicted_speedup,
            c.predicted_cost,
            c.measured_cycles,
            c.measured_speedup,
            c.measured_cost.map_or_else(String::new, |e| format!(", output error {e:.4}{}", c.measured_agreement.map_or_else(String::new, |ag| format!(", {} {:.1}%", agreement(a).unit(), 100.0 * ag))))
        );
        if c.layers.is_empty() && a.max_drop.is_some() {
            println!(
                "  (no layer keeps within --max-drop {} of the original {}: these drops are before fine-tuning, which recovers most of them; --finetune tries the fastest candidates after it; see docs/select.md)",
                a.max_drop.unwrap_or_default(),
                if a.proxy_steps > 0 { format!("after --proxy-steps {}", a.proxy_steps) } else { "untrained".into() }
            );
        }
        if let Some(p) = &a.save_preset {
            println!("  preset written to {} (fusec convert MODEL --layers {})", p.display(), p.display());
        }
    }
}

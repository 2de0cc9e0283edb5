//! `fusec select`: which depthwise layers to rewrite for an array, a speedup
//! target or a cost budget (the library side is `crate::select`).

use std::path::PathBuf;

use clap::Args;

use super::report::HwArgs;
use super::*;
use crate::convert::InputShape;
use crate::select::solve::{self, Goal};

#[derive(Args, Debug)]
pub struct SelectArgs {
    /// Model to choose layers of.
    pub model: PathBuf,
    /// The rewrite whose gains and costs are weighed.
    #[arg(long, value_enum, default_value_t = crate::passes::fuse_depthwise::Variant::Half)]
    pub variant: crate::passes::fuse_depthwise::Variant,
    #[command(flatten)]
    pub hw: HwArgs,
    /// Concrete input shape (`1x3x224x224` or `NAME=1x3x224x224`).
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// The least predicted cost that reaches this speedup over the model as it is, on this array.
    #[arg(long, conflicts_with = "max_cost")]
    pub target_speedup: Option<f64>,
    /// The fastest set whose predicted cost (summed normalized output error) is at most this.
    #[arg(long)]
    pub max_cost: Option<f64>,
    /// Inputs the costs are measured on (uniform noise in [-1, 1], fixed seed); 0 ranks by gain alone.
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Initial 1-D kernels of the rewritten layers when costs are measured.
    #[arg(long, value_enum, default_value_t = crate::passes::fuse_depthwise::Init::Center)]
    pub init: crate::passes::fuse_depthwise::Init,
    /// Print JSON (the table, the front and the choice) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write the chosen layers as a preset file (the `passes/` format) for `convert --layers FILE`.
    #[arg(long)]
    pub save_preset: Option<PathBuf>,
    /// Replace an existing preset or SVG file.
    #[arg(long)]
    pub force: bool,
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
    table: &'a crate::select::Table,
    front: Vec<solve::Choice>,
    choice: Option<Chosen>,
    marks: Vec<Mark>,
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
    if let Some(d) = a.max_cost
        && !(d >= 0.0 && d.is_finite())
    {
        anyhow::bail!("option --max-cost: must be a number of at least 0, got {d}");
    }
    if a.max_cost.is_some() && a.samples == 0 {
        anyhow::bail!("option --max-cost: needs costs (--samples of at least 1)");
    }
    if let Some(p) = &a.save_preset
        && p.exists()
        && !a.force
    {
        anyhow::bail!("option --save-preset: {} exists; pass --force to replace it", p.display());
    }
    let model = load_folded(&a.model)?;
    let g = load_for_report(&a.model, a.input_shape.as_ref())?;
    let mut table = crate::select::gains(&g, &hw, a.variant, 1).map_err(|e| e.in_file(&a.model))?;
    let inputs = if a.samples > 0 {
        let x = g.inputs.iter().find(|i| !g.initializers.contains_key(i.name())).ok_or_else(|| anyhow::anyhow!("{}: the model has no input", a.model.display()))?;
        let shape: Option<Vec<usize>> = g.shape_of(x.name()).and_then(|s| s.iter().enumerate().map(|(i, d)| d.known().map(|v| v as usize).or((i == 0).then_some(1))).collect());
        let shape = shape.ok_or_else(|| anyhow::anyhow!("{}: input '{}' has no concrete shape; pass --input-shape", a.model.display(), x.name()))?;
        (0..a.samples).map(|i| crate::select::noise(&shape, a.seed.wrapping_add(i as u64))).collect::<Vec<_>>()
    } else {
        vec![]
    };
    if !inputs.is_empty() {
        crate::select::score(&model.proto, &g, &mut table, a.init, &inputs).map_err(|e| e.in_file(&a.model))?;
    }
    let gains: Vec<u64> = table.items.iter().map(|i| i.gain).collect();
    // without costs every item costs the same: the fewest layers reaching the target
    let costs: Vec<f64> = table.items.iter().map(|i| i.cost.unwrap_or(1.0)).collect();
    let front = solve::pareto(&gains, &costs);
    let base = table.baseline_cycles;
    let goal = match (a.target_speedup, a.max_cost) {
        (Some(x), _) => Some(Goal::Gain(base - (base as f64 / x).floor() as u64)),
        (_, Some(d)) => Some(Goal::Cost(d)),
        _ => None,
    };
    let picked = match goal {
        Some(goal) => match solve::solve(&gains, &costs, goal) {
            Some(c) => Some(c),
            None => anyhow::bail!(
                "no set of layers reaches a {:.3}x speedup on this array (all {} together: {:.3}x predicted)",
                a.target_speedup.unwrap_or(1.0),
                table.items.len(),
                speedup(base, gains.iter().sum())
            ),
        },
        None => None,
    };
    let chosen = match &picked {
        Some(c) => {
            let layers: Vec<usize> = c.items.iter().flat_map(|&i| table.items[i].layers.clone()).collect();
            let (converted, _, _) = crate::select::rewrite(&g, a.variant, a.init, &layers)?;
            let measured = crate::select::cycles(&converted, &hw, 1)?;
            let (measured_cost, measured_agreement) = if inputs.is_empty() {
                (None, None)
            } else {
                let reference = crate::select::outputs(&model.proto, &g, &inputs)?;
                let (e, ag) = crate::select::output_distance(&reference, &crate::select::outputs(&model.proto, &converted, &inputs)?);
                (Some(e), ag)
            };
            Some(Chosen {
                layers,
                predicted_gain: c.gain,
                predicted_cost: c.cost,
                predicted_speedup: speedup(base, c.gain),
                measured_cycles: measured,
                measured_speedup: base as f64 / measured.max(1) as f64,
                measured_cost,
                measured_agreement,
            })
        }
        None => None,
    };
    if let (Some(p), Some(c)) = (&a.save_preset, &chosen) {
        let text = preset_toml(&a, &table, c);
        let tmp = tempfile::NamedTempFile::new_in(p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")))
            .map_err(|e| anyhow::anyhow!("option --save-preset: {}: {e}", p.display()))?;
        std::fs::write(tmp.path(), text)?;
        tmp.persist(p).map_err(|e| anyhow::anyhow!("option --save-preset: {}: {}", p.display(), e.error))?;
    }
    // marked selections: their predicted speedup and cost from the items they cover
    let cands = crate::passes::fuse_depthwise::depthwise_convs(&g)?;
    let mut marks = vec![];
    for m in &a.mark {
        let layers = crate::passes::LayerSelection::parse(m).resolve(&cands).map_err(|e| anyhow::anyhow!("option --mark: {m}: {e}"))?;
        let items: Vec<&crate::select::Item> = table.items.iter().filter(|i| i.layers.iter().any(|l| layers.contains(l))).collect();
        let gain: u64 = items.iter().map(|i| i.gain).sum();
        let cost: f64 = items.iter().map(|i| i.cost.unwrap_or(1.0)).sum::<f64>() + 0.0;
        marks.push(Mark { name: m.clone(), layers, predicted_speedup: speedup(base, gain), predicted_cost: cost });
    }
    if let Some(p) = &a.svg {
        if p.exists() && !a.force {
            anyhow::bail!("option --svg: {} exists; pass --force to replace it", p.display());
        }
        let label = if table.items.iter().any(|i| i.cost.is_some()) { "predicted cost (summed normalized output error)" } else { "layers rewritten" };
        let ms: Vec<(String, f64, f64)> = marks.iter().map(|m| (m.name.clone(), m.predicted_speedup, m.predicted_cost)).collect();
        let svg = crate::select::front_svg(base, &front, chosen.as_ref().map(|c| (c.predicted_speedup, c.predicted_cost)), &ms, label)?;
        std::fs::write(p, svg).map_err(|e| anyhow::anyhow!("option --svg: {}: {e}", p.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&Outcome { table: &table, front, choice: chosen, marks })?);
        return Ok(());
    }
    print_tables(&a, &table, &front, chosen.as_ref());
    for m in &marks {
        println!("  marked {}: layers {:?}: predicted {:.3}x, cost {:.4}", m.name, m.layers, m.predicted_speedup, m.predicted_cost);
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Mark {
    name: String,
    layers: Vec<usize>,
    predicted_speedup: f64,
    predicted_cost: f64,
}

fn preset_toml(a: &SelectArgs, table: &crate::select::Table, c: &Chosen) -> String {
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

fn print_tables(a: &SelectArgs, table: &crate::select::Table, front: &[solve::Choice], chosen: Option<&Chosen>) {
    let base = table.baseline_cycles;
    println!("{}: {base} cycles as it is; {:?} rewrite, layer by layer", a.model.display(), table.variant);
    println!("  {:<12} {:<34} {:>10} {:>8} {:>10} {:>9} {:>11}", "layers", "node", "gain", "speedup", "cost", "top-1", "gain/cost");
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
    let costs = if table.items.iter().any(|i| i.cost.is_some()) { "" } else { " (no costs measured: each layer counts 1)" };
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
            c.measured_cost.map_or_else(String::new, |e| format!(", output error {e:.4}{}", c.measured_agreement.map_or_else(String::new, |ag| format!(", top-1 agreement {:.1}%", 100.0 * ag))))
        );
        if let Some(p) = &a.save_preset {
            println!("  preset written to {} (fusec convert MODEL --layers {})", p.display(), p.display());
        }
    }
}

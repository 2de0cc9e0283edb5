//! `fusec select --finetune`: the predicted choice is a guess about what
//! fine-tuning leaves, so the fastest candidates on the front (from the chosen
//! set up) are fine-tuned with the task's recipe, fastest first, each
//! measured against the original on the `--calib` inputs, until one keeps
//! within `--max-drop`; that one is written to `-o`. `--time-budget` stops
//! starting candidates once the next one would not finish in time; what meets
//! the budget is on disk as soon as it is found.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::select::SelectArgs;
use fusec::select::solve::Choice;
use fusec::select::Table;

/// One fine-tuned candidate.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Tuned {
    pub layers: Vec<usize>,
    pub predicted_speedup: f64,
    /// Agreement points lost against the original after fine-tuning (on the --calib inputs).
    pub drop: f64,
    pub seconds: f64,
    pub meets: bool,
}

/// What the search did.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Search {
    pub tuned: Vec<Tuned>,
    /// The model written (the fastest candidate within --max-drop), if any.
    pub written: Option<PathBuf>,
    /// Candidates not started because of --time-budget.
    pub skipped_for_time: usize,
}

/// The candidates: the chosen set and the next `k - 1` faster sets on the front,
/// fastest first (the chosen set, the predicted answer, is the last resort).
pub(super) fn candidates(front: &[Choice], chosen_gain: u64, k: usize) -> Vec<&Choice> {
    let mut c: Vec<&Choice> = front.iter().filter(|c| c.gain >= chosen_gain && !c.items.is_empty()).collect();
    c.sort_by(|a, b| a.gain.cmp(&b.gain).then(a.cost.total_cmp(&b.cost)));
    c.truncate(k);
    c.reverse();
    c
}

/// Fine-tune the candidates and write the fastest that meets `max_drop`.
#[allow(clippy::too_many_arguments)]
pub(super) fn search(
    a: &SelectArgs,
    g: &fusec::ir::Graph,
    model: &fusec::onnx::Model,
    table: &Table,
    kernels: &fusec::select::Kernels,
    cands: &[&Choice],
    inputs: &[ndarray::ArrayD<f32>],
    reference: &[Vec<ndarray::ArrayD<f32>>],
    max_drop: f64,
) -> anyhow::Result<Search> {
    let out = a.output.as_ref().ok_or_else(|| anyhow::anyhow!("option --finetune: give -o FILE for the model"))?;
    let data = a.finetune_data.as_ref().ok_or_else(|| anyhow::anyhow!("option --finetune: give --finetune-data DATA (the training data)"))?;
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let scratch = tempfile::Builder::new().prefix(".fusec-select-").tempdir_in(&dir).map_err(|e| anyhow::anyhow!("-o: {}: {e}", dir.display()))?;
    let base = table.baseline_cycles;
    let t0 = Instant::now();
    let mut search = Search { tuned: vec![], written: None, skipped_for_time: 0 };
    let mut longest = 0f64;
    for (i, c) in cands.iter().enumerate() {
        let elapsed = t0.elapsed().as_secs_f64();
        if let Some(budget) = a.time_budget
            && elapsed + longest > budget
        {
            search.skipped_for_time = cands.len() - i;
            break;
        }
        let layers: Vec<usize> = c.items.iter().flat_map(|&j| table.items[j].layers.iter().copied()).collect();
        let (converted, _, _) = fusec::select::rewrite(g, a.variant, kernels, &layers)?;
        let student = scratch.path().join(format!("candidate-{i}.onnx"));
        let tuned = scratch.path().join(format!("candidate-{i}.tuned.onnx"));
        let mut m = model.clone();
        m.proto.graph = Some(converted.to_proto()?);
        m.path = None;
        fusec::onnx::save(&m, &student, &super::save_options(true))?;
        let started = Instant::now();
        finetune(a, &student, data, &tuned)?;
        let seconds = started.elapsed().as_secs_f64();
        longest = longest.max(seconds);
        let tm = fusec::onnx::load(&tuned)?;
        let ys = fusec::select::outputs_of(&tm.proto, inputs)?;
        let (_, agreement) = fusec::select::output_distance_by(reference, &ys, fusec::select::Agreement::of(a.task));
        let drop = 100.0 * (1.0 - agreement.unwrap_or(0.0));
        let meets = drop <= max_drop + 1e-9;
        let speedup = base as f64 / base.saturating_sub(c.gain).max(1) as f64;
        eprintln!("  fine-tuned layers {layers:?} ({speedup:.3}x predicted): {drop:.2} points lost, {seconds:.0} s{}", if meets { ": within --max-drop" } else { "" });
        search.tuned.push(Tuned { layers, predicted_speedup: speedup, drop, seconds, meets });
        if meets {
            // fastest first: the first that meets the budget is the answer
            std::fs::rename(&tuned, out).or_else(|_| std::fs::copy(&tuned, out).map(|_| ())).map_err(|e| anyhow::anyhow!("-o: {}: {e}", out.display()))?;
            search.written = Some(out.clone());
            break;
        }
    }
    Ok(search)
}

/// `fusec finetune STUDENT --teacher MODEL --data DATA` with the task's recipe.
fn finetune(a: &SelectArgs, student: &Path, data: &Path, tuned: &Path) -> anyhow::Result<()> {
    let mut argv: Vec<std::ffi::OsString> = vec!["fusec".into(), "finetune".into(), student.into(), "--teacher".into(), a.model.clone().into(), "--data".into(), data.into()];
    argv.extend(["--preprocess".into(), a.images.preprocess.clone().into(), "--quiet".into(), "--force".into(), "-o".into(), tuned.into()]);
    if let Some(t) = a.task {
        argv.extend(["--task".into(), t.to_string().into()]);
    }
    if let Some(e) = a.finetune_epochs {
        argv.extend(["--epochs".into(), e.to_string().into()]);
    }
    if let Some(n) = a.finetune_steps {
        argv.extend(["--steps".into(), n.to_string().into()]);
    }
    for kv in &a.finetune_set {
        argv.extend(["--set".into(), kv.into()]);
    }
    let argv = match super::recipe::expand(argv)? {
        super::recipe::Expanded::Args(v) => v,
        super::recipe::Expanded::Print(_) => anyhow::bail!("option --finetune-set: the recipe cannot be printed here"),
    };
    let cli = <super::Cli as clap::Parser>::try_parse_from(argv).map_err(|e| anyhow::anyhow!("option --finetune: {e}"))?;
    match cli.cmd {
        super::Command::Finetune(f) => super::train::cmd_finetune_quietly(f),
        _ => unreachable!("a finetune command line"),
    }
}

//! `fusec eval` and `fusec finetune`: the commands (their arguments are in `train_args.rs`).

use super::train_args::*;
use super::*;

pub(super) fn cmd_eval(a: EvalArgs) -> anyhow::Result<()> {
    let pre = a.pre.resolve(a.task)?;
    let data = fusec::tasks::data::load(&a.data, &pre, a.task, a.limit)?;
    if let Some(out) = &a.save_inputs {
        let same = |p: &std::path::Path| std::fs::canonicalize(p).ok().is_some_and(|c| std::fs::canonicalize(out).ok().as_ref() == Some(&c));
        if same(&a.data) || same(&a.model) {
            anyhow::bail!("option --save-inputs: {} is an input; choose another file", out.display());
        }
        data.save_inputs(out)?;
    }
    let model = load_folded(&a.model)?;
    let teacher = match &a.teacher {
        Some(t) => Some((t.display().to_string(), load_folded(t)?)),
        None => None,
    };
    let kind = fusec::tasks::Kind::of(a.task);
    if kind != fusec::tasks::Kind::Classify {
        return eval_task(&a, kind, &model.proto, teacher.as_ref().map(|(n, m)| (n.as_str(), &m.proto)), &data);
    }
    let r = fusec::tasks::classify::evaluate(&a.model.display().to_string(), &model.proto, teacher.as_ref().map(|(n, m)| (n.as_str(), &m.proto)), &data)
        .map_err(|e| e.in_file(&a.model))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("{}: {} samples, {:.0} samples/s", r.model, r.samples, r.samples_per_second);
    match r.top1 {
        Some(t) => println!("  top-1 accuracy {:.2}%", t * 100.0),
        None => println!("  no labels (use class subfolders, a label column, or --task)"),
    }
    if let Some(t) = r.top5 {
        println!("  top-5 accuracy {:.2}%", t * 100.0);
    }
    for (c, n, acc) in &r.per_class {
        println!("    class {c:<12} {n:>6} samples  {:.2}%", acc * 100.0);
    }
    if let (Some(t), Some(ag)) = (&r.teacher, r.teacher_agreement) {
        println!("  agreement with {t}: {:.2}%", ag * 100.0);
    }
    Ok(())
}

fn eval_task(a: &EvalArgs, kind: fusec::tasks::Kind, model: &fusec::onnx::ModelProto, teacher: Option<(&str, &fusec::onnx::ModelProto)>, data: &fusec::tasks::data::Dataset) -> anyhow::Result<()> {
    if a.batch == 0 {
        anyhow::bail!("option --batch: must be at least 1");
    }
    let params = a.decode.params(kind, model).map_err(|e| e.in_file(&a.model))?;
    let r = fusec::tasks::evaluate(&a.model.display().to_string(), model, teacher, data, kind, &params, a.batch).map_err(|e| e.in_file(&a.model))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("{}: {} samples, {:.1} samples/s", r.model, r.samples, r.samples_per_second);
    match &r.score {
        Some(m) => println!("  {}", m.describe()),
        None => println!(
            "  no ground truth in the data ({})",
            match kind {
                fusec::tasks::Kind::Ctc => "a `text` column",
                fusec::tasks::Kind::Layout | fusec::tasks::Kind::Anchors => "layout has none: scored against the teacher",
                _ => "a box list: file, x0, y0, x1, y1",
            }
        ),
    }
    for (truth, read) in &r.misread {
        println!("    read {read:?} for {truth:?}");
    }
    if let (Some(t), Some(ag)) = (&r.teacher, &r.agreement) {
        if let Some(ts) = &r.teacher_score {
            println!("  teacher {t}: {}", ts.describe());
        }
        println!("  agreement with the teacher: {}", ag.describe());
    }
    Ok(())
}

pub(super) fn cmd_finetune(a: FinetuneArgs) -> anyhow::Result<()> {
    let Some(done) = run_finetune(&a)? else { return Ok(()) };
    print_finetune(&a, &done)
}

/// `cmd_finetune` without the report on standard output (`select --finetune`).
pub(super) fn cmd_finetune_quietly(a: FinetuneArgs) -> anyhow::Result<()> {
    run_finetune(&a).map(|_| ())
}

/// A finished fine-tune: the model is on disk.
struct Done {
    summary: fusec::train::Summary,
    output: std::path::PathBuf,
    curve: std::path::PathBuf,
    svg: std::path::PathBuf,
    checkpoint: std::path::PathBuf,
    lr: f32,
    temperature: f32,
}

/// Train and write the model (None: paused, with a checkpoint).
fn run_finetune(a: &FinetuneArgs) -> anyhow::Result<Option<Done>> {
    use fusec::train::{Distill, LossSpec, Options};
    let output = a.output.clone().unwrap_or_else(|| a.model.with_extension("tuned.onnx"));
    for p in [&a.model, &a.teacher] {
        if std::fs::canonicalize(p).ok().is_some_and(|c| std::fs::canonicalize(&output).ok().as_ref() == Some(&c)) {
            anyhow::bail!("option -o: {} is an input; choose another output file", output.display());
        }
    }
    if output.exists() && !a.force {
        anyhow::bail!("{} exists; pass --force to replace it", output.display());
    }
    // every file the run writes is checked before the first step: a run must not train
    // for an hour and then fail on a side output
    let checkpoint = a.checkpoint.clone().unwrap_or_else(|| output.with_extension("ckpt.npz"));
    let curve = a.curve.clone().unwrap_or_else(|| output.with_extension("curve.csv"));
    check_writable(&output, "-o")?;
    check_writable(&checkpoint, "--checkpoint")?;
    check_writable(&curve, "--curve")?;
    if a.batch == 0 {
        anyhow::bail!("option --batch: must be at least 1");
    }
    // the library's defaults; the recipes (recipes/*.toml) set what differs per task
    let defaults = Options::default();
    let lr = a.lr.unwrap_or(defaults.lr);
    let temperature = a.temperature.unwrap_or(defaults.loss.temperature);
    if !(lr > 0.0 && lr.is_finite()) {
        anyhow::bail!("option --lr: must be a positive number, got {lr}");
    }
    if a.distill == Distill::Kl && !(temperature > 0.0 && temperature.is_finite()) {
        anyhow::bail!("option --temperature: must be positive");
    }
    let pre = a.pre.resolve(a.task)?;
    let student = load_folded(&a.model)?;
    let teacher = load_folded(&a.teacher)?;
    let data = fusec::tasks::data::load(&a.data, &pre, a.task, a.limit)?;
    let eval_data = match &a.eval_data {
        Some(p) => Some(fusec::tasks::data::load(p, &pre, a.task, None)?),
        None => None,
    };
    let crop = match &a.crop {
        Some(c) => Some(
            c.split_once(['x', 'X'])
                .and_then(|(h, w)| Some((h.trim().parse::<usize>().ok()?, w.trim().parse::<usize>().ok()?)))
                .filter(|&(h, w)| h > 0 && w > 0)
                .ok_or_else(|| fusec::Error::option("--crop", format!("'{c}' is not HxW (e.g. 320x320)")))?,
        ),
        None => None,
    };
    if a.accumulate == 0 {
        anyhow::bail!("option --accumulate: must be at least 1");
    }
    let eval_kind = a.task.map(|t| fusec::tasks::Kind::of(Some(t)));
    let decode = a.decode.params(eval_kind.unwrap_or(fusec::tasks::Kind::Classify), &student.proto).map_err(|e| e.in_file(&a.model))?;
    let opts = Options {
        epochs: a.epochs,
        steps: a.steps,
        batch: a.batch,
        accumulate: a.accumulate,
        crop,
        eval_kind,
        decode,
        lr,
        optimizer: a.optimizer,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        schedule: a.schedule,
        warmup: a.warmup,
        clip_grad: a.clip_grad,
        ema: a.ema,
        divergence_ratio: Some(a.divergence_ratio).filter(|&r| r > 0.0),
        ctc_target: a.ctc_target,
        train: a.train,
        bn: a.bn,
        loss: LossSpec {
            distill: a.distill,
            temperature,
            emphasis: fusec::train::Emphasis { edge: a.edge_weight, peak: a.peak_weight, miss: a.miss_weight, hard: a.hard_maps, hard_thresh: a.decode.thresh, region: a.region_weight },
            distill_weight: 1.0,
            overrides: a.output_loss.clone(),
            outputs: vec![],
            label_weight: a.label_weight.unwrap_or(1.0),
            feature_weight: a.feature_weight,
            features: vec![],
            ctc_weight: a.ctc_weight,
        },
        auto_features: true,
        augment: fusec::train::Augment { on: !a.no_augment, xscale: a.augment_xscale.unwrap_or((1.0, 1.0)), scale: a.augment_scale.unwrap_or((1.0, 1.0)), stroke: a.augment_stroke, strips: a.augment_strips, elastic: a.augment_elastic.unwrap_or(0.0) },
        labels: match (a.labels, a.no_labels, a.label_weight) {
            (_, true, _) | (_, _, Some(0.0)) => fusec::train::LabelUse::Off,
            (true, _, _) | (_, _, Some(_)) => fusec::train::LabelUse::On,
            _ => fusec::train::LabelUse::Auto,
        },
        seed: a.seed,
        threads: a.threads,
        checkpoint: Some(checkpoint.clone()),
        checkpoint_every: a.checkpoint_every,
        resume: a.resume.clone(),
        stop_after: a.stop_after,
    };
    eprintln!(
        "fine-tuning {} ({} training samples{}) from {}{} on ONNX Runtime {}",
        a.model.display(),
        data.samples.len(),
        eval_data.as_ref().map(|d| format!(", {} held out", d.samples.len())).unwrap_or_default(),
        a.teacher.display(),
        a.recipe.as_ref().map(|r| format!(", recipe {r}{}", if a.set.is_empty() { String::new() } else { format!(" with {}", a.set.join(", ")) })).unwrap_or_default(),
        fusec::exec::runtime::init()?.display()
    );
    let (mut trained, mut summary) = {
        let bar = super::ProgressBar::new(!a.quiet && !a.json);
        let mut t = fusec::train::Trainer::new(&student.proto, &teacher.proto, &data, eval_data.as_ref(), &opts)
            .map_err(|e| e.in_file(&a.model))?
            .with_observer(Box::new(bar))
            .with_cancel(super::CANCEL.clone());
        t.run().map_err(|e| e.in_file(&a.model))?;
        t.finish().map_err(|e| e.in_file(&a.model))?
    };
    if a.calibrate_maps && !summary.interrupted && !summary.paused {
        // with --augment-stroke the calibration also sees each page's stroke variants
        let stroked = a.augment_stroke.then(|| fusec::train::threshold::with_stroke_variants(&data, CALIBRATION_SAMPLES));
        let (cal, limit) = match &stroked {
            Some(d) => (d, d.samples.len()),
            None => (&data, CALIBRATION_SAMPLES),
        };
        summary.calibration = fusec::train::threshold::calibrate(&mut trained, &teacher.proto, &summary.outputs, cal, &opts.decode, limit, a.threads).map_err(|e| e.in_file(&a.model))?;
        // the per-epoch evaluations saw the maps before the shift: score the model as written
        if let (Some(ed), Some(kind), false) = (eval_data.as_ref(), opts.eval_kind, summary.calibration.is_empty()) {
            let input = fusec::onnx::data_input(&trained)?;
            let batch = fusec::train::model::declared_batch(&trained, &input).map_or(opts.batch, |b| b.max(1) as usize);
            let r = fusec::tasks::evaluate("student", &trained, Some(("teacher", &teacher.proto)), ed, kind, &opts.decode, batch).map_err(|e| e.in_file(&a.model))?;
            summary.eval_calibrated = Some(fusec::train::monitor::Eval { score: r.score, agreement: r.agreement });
        }
    }
    if summary.interrupted || summary.paused {
        fusec::train::write_curve(&summary, &curve)?;
        eprintln!("stopped at step {}; checkpoint {}; continue with --resume {}", summary.steps, checkpoint.display(), checkpoint.display());
        if summary.interrupted {
            return Err(fusec::Error::Eval("interrupted".into()).into());
        }
        return Ok(None);
    }
    let model = fusec::onnx::Model { proto: trained, path: None, external_tensors: Default::default() };
    fusec::onnx::save(&model, &output, &super::save_options(a.force))?;
    // the model is on disk before the side outputs: a curve that cannot be written loses nothing
    let svg = fusec::train::write_curve(&summary, &curve).map_err(|e| anyhow::anyhow!("{e} (the model was written to {})", output.display()))?;
    Ok(Some(Done { summary, output, curve, svg, checkpoint, lr, temperature }))
}

fn print_finetune(a: &FinetuneArgs, done: &Done) -> anyhow::Result<()> {
    let Done { summary, output, curve, svg, checkpoint, lr, temperature } = done;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("wrote {}", output.display());
    println!(
        "  {} steps ({:.1} epochs) in {:.1} s, {:.0} samples/s; {} parameters in {} tensors; peak lr {lr}",
        summary.steps, summary.epochs, summary.seconds, summary.samples_per_sec, summary.params_trained, summary.tensors_trained
    );
    if let Some(d) = a.ema {
        println!("  written: the moving average of the weights (decay {d})");
    }
    for r in &summary.rollbacks {
        println!(
            "  rolled back at step {} (running loss {:.4}, lowest {:.4}) to step {}; learning rate × {} from there",
            r.at_step, r.loss, r.lowest, r.to_step, r.lr_scale
        );
    }
    if summary.accumulate > 1 || summary.rebatched {
        println!(
            "  micro-batches of {}{}{}",
            summary.micro_batch,
            if summary.accumulate > 1 { format!(", {} per step", summary.accumulate) } else { String::new() },
            if summary.rebatched { " (the model's fixed batch rewritten)" } else { "" }
        );
    }
    for o in &summary.outputs {
        let tau = if o.kind == fusec::train::LossKind::Kl { format!(", τ {temperature}") } else { String::new() };
        println!("  output {}: {:?} on '{}' (weight {}{tau}; {})", o.output, o.kind, o.tensor, o.weight, o.reason);
    }
    if let Some(c) = &summary.ctc {
        let target = if c.target == "text" { "the data's text" } else { "the teacher's readings" };
        let skipped = if c.skipped > 0 { format!("; {} of {} sequences left out (a character outside the dictionary, or too long)", c.skipped, c.sequences) } else { String::new() };
        println!("  CTC on '{}' against {target} (weight {}){skipped}", c.tensor, c.weight);
    }
    if summary.steps > 0 {
        println!("  loss {:.4} -> {:.4} ({})", summary.first_loss, summary.final_loss, summary.loss_names.join(" + ").replace("loss + ", ""));
    }
    if !summary.features.is_empty() {
        println!("  matched {} block outputs to the teacher", summary.features.len());
    }
    for c in &summary.calibration {
        println!("  calibrated {}: {:.3}x the teacher's pixels above the threshold before; logits shifted by {:+.4} (threshold {:.3} before the shift)", c.output, c.ratio_before, c.shift, c.matched);
        println!("    boxes {:+.2} px wider than the teacher's ({} matched); horizontal blend {:+.3}: {:+.2} px", c.width_before, c.pairs, c.blend, c.width_after);
    }
    if let (Some(m), Some(b), Some(e)) = (&summary.eval_metric, summary.eval_before, summary.eval_after) {
        let calibrated = summary.eval_calibrated.as_ref().and_then(|e| e.headline()).map(|(_, v)| format!(" ({v:.2}% after the calibration)")).unwrap_or_default();
        println!("  held-out {m} {b:.2}% -> {e:.2}%{calibrated}");
    }
    if let Some(ev) = summary.eval_calibrated.as_ref().or(summary.eval_last.as_ref()) {
        if let Some(s) = &ev.score {
            println!("    against the ground truth: {}", s.describe());
        }
        if let Some(t) = &ev.agreement {
            println!("    against the teacher: {}", t.describe());
        }
    }
    println!("  curve {} and {}; checkpoint {}", curve.display(), svg.display(), checkpoint.display());
    Ok(())
}

/// Can a file be created at `path`? Its folder must exist and take a new file (probed
/// with a temporary file, which is removed: this holds for root too). An error names
/// the option and the path.
fn check_writable(path: &std::path::Path, option: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        anyhow::bail!("option {option}: {}: folder {} does not exist", path.display(), dir.display());
    }
    if path.is_dir() {
        anyhow::bail!("option {option}: {} is a folder, expected a file path", path.display());
    }
    tempfile::NamedTempFile::new_in(&dir).map_err(|e| anyhow::anyhow!("option {option}: {}: cannot create files in {}: {e}", path.display(), dir.display()))?;
    Ok(())
}

/// Training samples `--calibrate-maps` runs.
const CALIBRATION_SAMPLES: usize = 32;

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use fusec::train::Options;
    use clap::Parser;

    /// One source of defaults: `fusec finetune` without options trains as the library does.
    #[test]
    fn finetune_defaults_are_the_librarys() {
        let cli = Cli::try_parse_from(["fusec", "finetune", "m.onnx", "--teacher", "t.onnx", "--data", "d.tsv"]).unwrap();
        let Command::Finetune(a) = cli.cmd else { panic!("not finetune") };
        let d = Options::default();
        assert_eq!((a.epochs, a.steps, a.batch, a.accumulate, a.warmup), (d.epochs, d.steps, d.batch, d.accumulate, d.warmup));
        assert_eq!((a.optimizer, a.schedule, a.train, a.bn, a.distill), (d.optimizer, d.schedule, d.train, d.bn, d.loss.distill));
        assert_eq!((a.momentum, a.weight_decay, a.clip_grad, a.ema), (d.momentum, d.weight_decay, d.clip_grad, d.ema));
        assert_eq!((a.lr, a.temperature), (None, None), "unset: the library's {} and {}", d.lr, d.loss.temperature);
        assert_eq!(Some(a.divergence_ratio), d.divergence_ratio);
        assert_eq!((a.ctc_weight, a.feature_weight, a.seed, a.threads, a.checkpoint_every), (d.loss.ctc_weight, d.loss.feature_weight, d.seed, d.threads, d.checkpoint_every));
        assert_eq!(!a.no_augment, d.augment.on);
    }
}

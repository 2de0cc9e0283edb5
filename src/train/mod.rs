//! Fine-tuning through ONNX Runtime: the student's training graph (built by
//! [`graph`] from standard ops, with the losses of [`loss`] and the backward
//! rules of [`grad`]) runs in a plain `ort` session; the teacher's values come
//! from a second session ([`teacher`]). The loop here assembles batches
//! ([`batch`]), accumulates micro-batches, steps the optimizer
//! ([`optimizer`]), evaluates held-out data with the task metrics
//! ([`monitor`]), saves checkpoints ([`checkpoint`]) and records the curve
//! ([`curve`]).

pub mod batch;
pub mod checkpoint;
pub mod ctc;
pub mod curve;
pub mod forward;
pub mod grad;
pub mod graph;
pub mod guard;
pub mod loss;
pub mod model;
pub mod monitor;
pub mod optimizer;
pub mod options;
pub mod quantized;
pub mod regions;
pub mod summary;
pub mod teacher;
pub mod threshold;

pub use batch::Augment;
pub use ctc::{CtcSummary, CtcTarget};

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::tasks::data::Dataset;
use crate::error::{Error, Result};
use crate::tasks::{Kind, Params};
use crate::onnx::{self, ModelProto};
use crate::exec::runtime::{self, Feed};
use crate::tensor::Tensor;
use checkpoint::State;
pub use curve::write_curve;
pub use graph::{BnMode, Distill, LossSpec};
pub use loss::{Emphasis, LossKind, OutputLoss, OutputLossArg};
pub use model::trainable;
pub use optimizer::{Optimizer, Schedule};
pub use options::{LabelUse, Options, TrainSet, LABEL_AGREEMENT};
pub use summary::{CurvePoint, Summary};

/// The micro-batch the models run: `batch` if they accept it (rebatched when
/// exported for a fixed batch), otherwise their fixed batch with gradients
/// accumulated to the same number of samples per step.
fn plan_batches(student: &ModelProto, teacher: &ModelProto, sample: &[usize], opts: &Options) -> Result<(ModelProto, ModelProto, usize, usize, bool)> {
    let s_in = graph::data_input(student)?;
    let t_in = graph::data_input(teacher).map_err(|e| Error::option("--teacher", e.to_string()))?;
    let fixed = model::declared_batch(student, &s_in).filter(|&b| b as usize != opts.batch);
    if fixed.is_none() {
        return Ok((student.clone(), teacher.clone(), opts.batch, opts.accumulate, false));
    }
    if let (Some(s), Some(t)) = (model::rebatch(student, &s_in, sample, opts.batch)?, model::rebatch(teacher, &t_in, sample, opts.batch)?) {
        return Ok((s, t, opts.batch, opts.accumulate, true));
    }
    let b0 = fixed.unwrap_or(1).max(1) as usize;
    if opts.batch % b0 != 0 {
        return Err(Error::option("--batch", format!("the model only runs batches of {b0} (its shapes carry the batch); choose a multiple of {b0}")));
    }
    let acc = opts.accumulate * opts.batch / b0;
    log::warn!("the model only runs batches of {b0}: accumulating {acc} micro-batches per step");
    Ok((student.clone(), teacher.clone(), b0, acc, false))
}

/// Whether the teacher's top-1 agrees with the labels of `data` on at least [`LABEL_AGREEMENT`]
/// of the samples (false for outputs that are not `[N, C]` scores).
fn teacher_agrees_with_labels(teacher: &ModelProto, data: &Dataset, batch: usize, threads: usize) -> Result<bool> {
    let input = graph::data_input(teacher)?;
    let mut sess = runtime::session(teacher, threads)?;
    let preds = crate::tasks::predict(&mut sess, &input, &[], &data.samples, batch, Kind::Classify, &Params::default())?;
    let same = preds.iter().zip(&data.samples).filter(|(p, s)| matches!(p, crate::tasks::Pred::Class(c) if Some(*c) == s.label)).count();
    let share = same as f64 / data.samples.len().max(1) as f64;
    log::info!("the teacher agrees with {:.1}% of the labels: {}", 100.0 * share, if share >= LABEL_AGREEMENT { "training on them too" } else { "distillation only" });
    Ok(share >= LABEL_AGREEMENT)
}

/// Fine-tune `student` towards `teacher` on `data`; returns the trained model and a summary.
pub fn finetune(original: &ModelProto, teacher: &ModelProto, data: &Dataset, eval_data: Option<&Dataset>, opts: &Options) -> Result<(ModelProto, Summary)> {
    let t0 = Instant::now();
    // a QDQ student trains float weights behind fake quantization (see `quantized`)
    let (q_student, q_lifted) = quantized::lift(original);
    if !q_lifted.is_empty() {
        log::info!("{} integer weights trained as floats behind their quantization", q_lifted.len());
    }
    let lifted = model::lift_constants(&q_student);
    if opts.batch == 0 || opts.accumulate == 0 {
        return Err(Error::option("--batch", "the batch and --accumulate must be at least 1"));
    }
    let all_labelled = data.samples.iter().all(|s| s.label.is_some());
    if opts.labels == LabelUse::On && opts.loss.label_weight > 0.0 && !all_labelled {
        return Err(Error::option("--labels", "the data has samples without labels"));
    }
    let mut batcher = batch::Batcher::new(data, opts.seed, opts.crop, opts.augment)?;
    let sample_shape = batcher.shape.clone();
    let (student_m, teacher_m, micro, accumulate, rebatched) = plan_batches(&lifted, teacher, &sample_shape, opts)?;
    let per_step = micro * accumulate;
    if data.samples.len() < per_step {
        return Err(Error::option("--batch", format!("{} samples is fewer than one step of {per_step}", data.samples.len())));
    }
    let student = &student_m;
    let mut input_shape = vec![micro];
    input_shape.extend(&sample_shape);
    let params = trainable(student, opts.train);
    if params.is_empty() {
        return Err(Error::option("--train", format!("{:?} selects no parameters in this model", opts.train)));
    }
    let s_input = graph::data_input(student)?;
    let t_input = graph::data_input(&teacher_m).map_err(|e| Error::option("--teacher", e.to_string()))?;

    // the losses: one per output, and the block outputs matched to the teacher
    let mut loss = opts.loss.clone();
    let ss = graph::value_shapes(student, &s_input, &input_shape)?;
    let labels_needed = loss.label_weight > 0.0
        && match opts.labels {
            LabelUse::On => true,
            LabelUse::Off => false,
            LabelUse::Auto => all_labelled && teacher_agrees_with_labels(&teacher_m, data, micro, opts.threads)?,
        };
    if !labels_needed {
        loss.label_weight = 0.0;
    }
    let (sg, tg_proto) = (student.graph.as_ref(), teacher_m.graph.as_ref());
    let (Some(sg), Some(tgp)) = (sg, tg_proto) else { return Err(Error::InvalidGraph("model has no graph".into())) };
    let ranks: Vec<usize> = sg.output.iter().map(|o| ss.get(o.name()).map_or(0, Vec::len)).collect();
    if loss.outputs.is_empty() {
        loss.outputs = loss::resolve(sg, tgp, &ranks, loss.distill.kind(), &loss.overrides)?;
    }
    if opts.auto_features && loss.feature_weight > 0.0 && loss.features.is_empty() {
        let ts = graph::value_shapes(&teacher_m, &t_input, &input_shape)?;
        loss.features = model::block_outputs(student, &teacher_m, &ss, &ts);
    }
    let mut tensors: Vec<String> = loss.outputs.iter().map(|l| l.teacher_tensor.clone()).collect();
    tensors.extend(loss.features.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    tensors.retain(|t| seen.insert(t.clone()));
    let cacheable = !opts.augment.on && opts.crop.is_none();
    let (mut teach, teacher_shapes) = teacher::Teacher::new(&teacher_m, tensors, &input_shape, opts.threads, cacheable, data.samples.len())?;
    let spec = graph::Spec { batch: micro, input_shape: input_shape.clone(), trainable: &params, bn: opts.bn, loss: &loss, labels: labels_needed, teacher_shapes };
    let tg = graph::build(student, &spec)?;
    for u in &tg.unreachable {
        log::warn!("parameter {u} does not affect the loss; it stays as it is");
    }
    if let Some(p) = std::env::var_os("FUSEC_DUMP_TRAIN_GRAPH") {
        use prost::Message;
        std::fs::write(&p, tg.model.encode_to_vec()).map_err(|e| Error::io(PathBuf::from(&p), e))?;
    }
    let mut sess = runtime::session(&tg.model, opts.threads)?;

    // state
    let init: HashMap<&str, &onnx::TensorProto> = student.graph.as_ref().map(|g| g.initializer.iter().map(|t| (t.name(), t)).collect()).unwrap_or_default();
    let get = |name: &str| -> Result<Vec<f32>> {
        let t = init.get(name).ok_or_else(|| Error::tensor(name, "not an initializer"))?;
        Ok(Tensor::from_proto((*t).clone())?.to_f32()?.iter().copied().collect())
    };
    let params_v: Vec<Vec<f32>> = tg.params.iter().map(|p| get(p)).collect::<Result<_>>()?;
    if let Some(d) = opts.ema
        && !(d > 0.0 && d < 1.0)
    {
        return Err(Error::option("--ema", format!("the decay must lie between 0 and 1, got {d}")));
    }
    let mut st = State {
        avg: opts.ema.map(|_| params_v.clone()),
        m: params_v.iter().map(|v| vec![0.0; v.len()]).collect(),
        v: params_v.iter().map(|v| vec![0.0; v.len()]).collect(),
        params: params_v,
        bn_mean: tg.bn.iter().map(|b| get(&b.mean)).collect::<Result<_>>()?,
        bn_var: tg.bn.iter().map(|b| get(&b.var)).collect::<Result<_>>()?,
        step: 0,
        lr_scale: 1.0,
    };
    let fingerprint = checkpoint::fingerprint(&tg);
    if let Some(r) = &opts.resume {
        checkpoint::load(r, &mut st, &tg, fingerprint)?;
    }

    // CTC: the student's scores from a forward run; targets from the text column or the teacher
    let mut ctc_run = match &tg.ctc {
        Some(c) => Some(ctc::Run::new(student, &tg, c, data, opts)?),
        None => None,
    };

    let steps_per_epoch = data.samples.len() / per_step;
    // `steps: Some(0)` trains nothing: the model as given (to calibrate or evaluate it)
    let total = opts.steps.unwrap_or((opts.epochs * steps_per_epoch).max(1));
    // held-out evaluation: the student as exported (its own batch), parameters and BN statistics as inputs
    let mut monitor = match eval_data {
        Some(ed) => {
            let mut names: Vec<String> = tg.params.clone();
            let mut shapes = tg.param_shapes.clone();
            for (i, b) in tg.bn.iter().enumerate() {
                names.push(b.mean.clone());
                names.push(b.var.clone());
                shapes.push(vec![st.bn_mean[i].len()]);
                shapes.push(vec![st.bn_var[i].len()]);
            }
            let kind = opts.eval_kind.unwrap_or(if ranks.first() == Some(&2) { Kind::Classify } else { Kind::Anchors });
            let eval_batch = model::declared_batch(&lifted, &s_input).map_or(micro, |b| b.max(1) as usize);
            Some(monitor::Monitor::new(&lifted, teacher, ed, kind, opts.decode.clone(), names, shapes, eval_batch, opts.threads)?)
        }
        None => None,
    };
    let evaluate = |m: &mut monitor::Monitor, st: &State| -> Result<monitor::Eval> {
        let mut vals: Vec<&[f32]> = st.weights().iter().map(Vec::as_slice).collect();
        for i in 0..tg.bn.len() {
            vals.push(&st.bn_mean[i]);
            vals.push(&st.bn_var[i]);
        }
        m.evaluate(&vals)
    };
    let eval_first = match monitor.as_mut() {
        Some(m) => Some(evaluate(m, &st)?),
        None => None,
    };
    let eval_metric = eval_first.as_ref().and_then(|e| e.headline()).map(|(n, _)| n.to_string());

    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(st.step as u64);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let sample_len: usize = sample_shape.iter().product();
    let mut xbuf = vec![0.0f32; micro * sample_len];
    let mut ybuf = vec![0.0f32; micro * tg.classes];
    let mut wbufs: Vec<Vec<f32>> = tg.region_inputs.iter().map(|(ti, _)| vec![1.0; tg.teacher_inputs[*ti].2.iter().product()]).collect();
    let mut curve: Vec<CurvePoint> = vec![];
    let decay: Vec<bool> = tg.param_shapes.iter().map(|s| s.len() > 1).collect();
    let mut want: Vec<String> = tg.loss_outputs.clone();
    want.extend(tg.grads.iter().cloned());
    for b in &tg.bn {
        want.push(b.batch_mean.clone());
        want.push(b.batch_var.clone());
    }
    let (nl, np) = (tg.loss_outputs.len(), tg.params.len());
    let teacher_slot: Vec<usize> = tg.teacher_inputs.iter().map(|(t, _, _)| teach.tensors.iter().position(|x| x == t).unwrap_or(0)).collect();
    let mut interrupted = false;
    let mut at_floor_said = false;
    let mut paused = false;
    let mut ema: Option<f32> = None;
    let start_step = st.step;
    let train_t0 = Instant::now();
    // throughput is measured from the end of the first step
    let mut warm: Option<(Instant, usize)> = None;
    let mut first_loss = f32::NAN;
    let mut eval_last = eval_first.clone();
    // seconds in the teacher, the training graph, and the optimizer/bookkeeping
    let mut timing = [0.0f64; 3];
    let mut guard = guard::Guard::new(opts.divergence_ratio, &st);
    while st.step < total {
        let mut grads: Vec<Vec<f32>> = tg.param_shapes.iter().map(|s| vec![0.0; s.iter().product()]).collect();
        let mut losses = vec![0.0f32; nl];
        for micro_i in 0..accumulate {
            let k = st.step * accumulate + micro_i;
            let idx = batcher.fill(k, micro, steps_per_epoch * accumulate, &mut xbuf)?;
            if tg.labels_input.is_some() {
                batch::one_hot(data, &idx, tg.classes, &mut ybuf);
            }
            let tt0 = Instant::now();
            let tv = teach.values(&idx, &xbuf, &input_shape)?;
            let ctc_vals = match (&tg.ctc, ctc_run.as_mut()) {
                (Some(c), Some(r)) => Some(r.step(c, &st, &idx, &xbuf, &input_shape, &tv[teacher_slot[c.output]], loss.ctc_weight)?),
                _ => None,
            };
            for ((ti, _), buf) in tg.region_inputs.iter().zip(wbufs.iter_mut()) {
                regions::weights(&tv[teacher_slot[*ti]], &tg.teacher_inputs[*ti].2, &opts.decode, loss.emphasis.region, buf)?;
            }
            let mut feeds = vec![Feed { name: &tg.input, shape: input_shape.clone(), data: &xbuf }];
            if let (Some(c), Some((l, g))) = (&tg.ctc, &ctc_vals) {
                feeds.push(Feed { name: &c.loss_input, shape: vec![], data: std::slice::from_ref(l) });
                feeds.push(Feed { name: &c.grad_input, shape: c.shape.clone(), data: g });
            }
            for ((_, iname, shape), &slot) in tg.teacher_inputs.iter().zip(&teacher_slot) {
                feeds.push(Feed { name: iname, shape: shape.clone(), data: &tv[slot] });
            }
            for ((ti, name), buf) in tg.region_inputs.iter().zip(&wbufs) {
                feeds.push(Feed { name, shape: tg.teacher_inputs[*ti].2.clone(), data: buf });
            }
            if let Some(l) = &tg.labels_input {
                feeds.push(Feed { name: l, shape: vec![micro, tg.classes], data: &ybuf });
            }
            for (i, p) in tg.params.iter().enumerate() {
                feeds.push(Feed { name: p, shape: tg.param_shapes[i].clone(), data: &st.params[i] });
            }
            let tt1 = Instant::now();
            let out = runtime::run(&mut sess, &feeds, &want)?;
            let tt2 = Instant::now();
            timing[0] += (tt1 - tt0).as_secs_f64();
            timing[1] += (tt2 - tt1).as_secs_f64();
            for (l, o) in losses.iter_mut().zip(&out[..nl]) {
                *l += o.iter().next().copied().unwrap_or(f32::NAN) / accumulate as f32;
            }
            let scale = 1.0 / accumulate as f32;
            for (acc, g) in grads.iter_mut().zip(&out[nl..nl + np]) {
                let g = g.as_slice().ok_or_else(|| Error::Eval("non-contiguous gradient".into()))?;
                for (a, v) in acc.iter_mut().zip(g) {
                    *a += v * scale;
                }
            }
            let stats: Vec<&[f32]> = out[nl + np..].iter().map(|a| a.as_slice().unwrap_or(&[])).collect();
            let means: Vec<&[f32]> = stats.iter().step_by(2).copied().collect();
            let vars: Vec<&[f32]> = stats.iter().skip(1).step_by(2).copied().collect();
            optimizer::update_bn(&mut st, &tg.bn, &means, &vars);
            timing[2] += tt2.elapsed().as_secs_f64();
        }
        let tt2 = Instant::now();
        let loss_v = losses[0];
        if guard.diverged(loss_v) {
            let r = guard.roll_back(&mut st, &mut curve, loss_v)?;
            say(&bar, &format!(
                "warning: the loss ran away at step {} (running average {:.4}, lowest {:.4}): back to step {}, learning rate × {}",
                r.at_step, r.loss, r.lowest, r.to_step, r.lr_scale
            ));
            ema = None;
            continue;
        }
        if first_loss.is_nan() {
            first_loss = loss_v;
        }
        let lr = optimizer::lr_at(opts, st.step, total) * st.lr_scale;
        let grad_norm = optimizer::clip(&mut grads, opts.clip_grad);
        // a loss at its floor (a student equal to its teacher) leaves only rounding noise in
        // the gradients, which Adam would scale up to full steps: nothing to learn, no update
        if loss_v > guard::FLOOR {
            optimizer::step(opts, &mut st, &grads, &decay, lr);
        } else if !at_floor_said {
            at_floor_said = true;
            say(&bar, &format!("the loss is at its floor ({loss_v:.1e}) at step {}: no update while it stays there", st.step + 1));
        }
        if let Some(d) = opts.ema {
            optimizer::average(&mut st, d);
        }
        timing[2] += tt2.elapsed().as_secs_f64();
        st.step += 1;
        if warm.is_none() {
            warm = Some((Instant::now(), st.step));
        }
        let e = ema.map_or(loss_v, |e| 0.95 * e + 0.05 * loss_v);
        ema = Some(e);
        bar.set_position(st.step as u64);
        let done = st.step - start_step;
        bar.set_message(format!("loss {e:.4}  {:.1} samples/s", (done * per_step) as f64 / train_t0.elapsed().as_secs_f64()));
        let mut point = CurvePoint { step: st.step, epoch: st.step as f64 / steps_per_epoch as f64, lr, loss: loss_v, components: losses[1..].to_vec(), grad_norm, eval: None };
        let epoch_end = st.step % steps_per_epoch == 0 || st.step == total;
        if epoch_end && let Some(m) = monitor.as_mut() {
            let ev = evaluate(m, &st)?;
            point.eval = ev.headline().map(|(_, v)| v);
            let mut line = format!("epoch {:.2}: loss {e:.4}", point.epoch);
            if let Some(s) = &ev.score {
                line.push_str(&format!(", held out: {}", s.describe()));
            }
            if let Some(a) = &ev.agreement {
                line.push_str(&format!(", teacher agreement: {}", a.describe()));
            }
            say(&bar, &line);
            eval_last = Some(ev);
        }
        curve.push(point);
        if epoch_end {
            guard.epoch_end(&st, curve.len());
        }
        if let Some(c) = &opts.checkpoint
            && (st.step % opts.checkpoint_every.max(1) == 0 || st.step == total)
        {
            checkpoint::save(c, &st, &tg, fingerprint)?;
        }
        onnx::interrupt_point(&format!("step:{}", st.step));
        interrupted = onnx::was_interrupted();
        paused = opts.stop_after.is_some_and(|n| st.step >= n && st.step < total);
        if interrupted || paused {
            if let Some(c) = &opts.checkpoint {
                checkpoint::save(c, &st, &tg, fingerprint)?;
            }
            break;
        }
    }
    bar.finish_and_clear();
    let n = (st.step - start_step).max(1) as f64;
    log::info!("per step: teacher {:.1} ms, training graph {:.1} ms, optimizer and bookkeeping {:.1} ms", 1e3 * timing[0] / n, 1e3 * timing[1] / n, 1e3 * timing[2] / n);
    let trained = model::write_back(&q_student, &tg, &st)?;
    let trained = if q_lifted.is_empty() { trained } else { quantized::lower(&trained, &q_lifted)? };
    let secs = train_t0.elapsed().as_secs_f64();
    let eval_before = eval_first.as_ref().and_then(|e| e.headline()).map(|(_, v)| v);
    let eval_after = curve.iter().rev().find_map(|p| p.eval).or(eval_before.filter(|_| st.step == start_step));
    let summary = Summary {
        steps: st.step,
        epochs: st.step as f64 / steps_per_epoch as f64,
        seconds: t0.elapsed().as_secs_f64(),
        samples_per_sec: match warm {
            Some((t, s0)) if st.step > s0 => ((st.step - s0) * per_step) as f64 / t.elapsed().as_secs_f64().max(1e-9),
            _ => ((st.step - start_step) * per_step) as f64 / secs.max(1e-9),
        },
        params_trained: tg.param_shapes.iter().map(|s| s.iter().product::<usize>()).sum(),
        tensors_trained: tg.params.len(),
        micro_batch: micro,
        accumulate,
        rebatched,
        outputs: tg.outputs.clone(),
        loss_names: tg.loss_outputs.clone(),
        features: loss.features.clone(),
        first_loss,
        final_loss: ema.unwrap_or(f32::NAN),
        eval_metric,
        eval_before,
        eval_after,
        eval_first,
        eval_last,
        interrupted,
        paused,
        checkpoint: opts.checkpoint.clone(),
        curve,
        calibration: vec![],
        eval_calibrated: None,
        ctc: ctc_run.map(|r| r.summary),
        rollbacks: guard.rollbacks,
    };
    Ok((trained, summary))
}

/// A line above the progress bar (or on stderr when the bar is hidden).
fn say(bar: &indicatif::ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

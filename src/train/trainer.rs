//! The training loop as a [`Trainer`]: [`Trainer::new`] builds the training
//! graph and its sessions and evaluates the held-out data once,
//! [`Trainer::step`] takes one optimizer step (its micro-batches accumulated),
//! [`Trainer::end_epoch`] evaluates the held-out data, [`Trainer::finish`]
//! writes the weights back and summarises. An [`Observer`] hears about steps and
//! messages (the command line draws a progress bar from them); a [`Cancel`]
//! token stops the run after the step in progress, with a checkpoint saved.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use super::checkpoint::{self, State};
use super::{batch, ctc, graph, guard, model, monitor, optimizer, quantized, regions, teacher, trainable};
use super::{CurvePoint, LabelUse, LossSpec, Options, Summary};
use crate::error::{Error, Result};
use crate::exec::runtime::{self, Feed};
use crate::onnx::{self, ModelProto};
use crate::tasks::data::Dataset;
use crate::tasks::Kind;
use crate::onnx::tensor::Tensor;

/// What a training run reports as it goes. Every method has a default: lines go
/// to stderr, steps are not shown.
pub trait Observer {
    /// Training starts at step `at` of `total`.
    fn start(&mut self, _total: usize, _at: usize) {}
    /// Step `step` is done; `loss` is the running average, `samples_per_sec` the throughput so far.
    fn step(&mut self, _step: usize, _loss: f32, _samples_per_sec: f64) {}
    /// A message (an epoch's evaluation, a warning).
    fn line(&mut self, line: &str) {
        eprintln!("{line}");
    }
    /// Training is over.
    fn finish(&mut self) {}
}

/// The default observer: messages on stderr.
pub struct Lines;

impl Observer for Lines {}

/// Set it (from a signal handler, another thread) and the run stops after the
/// step in progress, saving a checkpoint if it has one (`Summary::interrupted`).
pub use crate::cancel::Cancel;

/// What one call of [`Trainer::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepped {
    /// The loss ran away: the state went back to the last good epoch (no step counted).
    RolledBack,
    /// One optimizer step; `epoch_end` when it completed an epoch (or the run).
    Step { epoch_end: bool },
}

/// One fine-tuning run of a student towards its teacher.
pub struct Trainer<'a> {
    opts: &'a Options,
    data: &'a Dataset,
    t0: Instant,
    q_student: ModelProto,
    q_lifted: quantized::Lifted,
    batcher: batch::Batcher<'a>,
    micro: usize,
    accumulate: usize,
    per_step: usize,
    rebatched: bool,
    input_shape: Vec<usize>,
    loss: LossSpec,
    teach: teacher::Teacher,
    tg: graph::TrainGraph,
    sess: ort::session::Session,
    st: State,
    fingerprint: i64,
    ctc_run: Option<ctc::Run>,
    steps_per_epoch: usize,
    total: usize,
    monitor: Option<monitor::Monitor<'a>>,
    eval_first: Option<monitor::Eval>,
    eval_last: Option<monitor::Eval>,
    eval_metric: Option<String>,
    xbuf: Vec<f32>,
    ybuf: Vec<f32>,
    wbufs: Vec<Vec<f32>>,
    curve: Vec<CurvePoint>,
    decay: Vec<bool>,
    want: Vec<String>,
    teacher_slot: Vec<usize>,
    interrupted: bool,
    paused: bool,
    at_floor_said: bool,
    ema: Option<f32>,
    start_step: usize,
    train_t0: Instant,
    /// throughput is measured from the end of the first step
    warm: Option<(Instant, usize)>,
    first_loss: f32,
    /// seconds in the teacher, the training graph, and the optimizer/bookkeeping
    timing: [f64; 3],
    guard: guard::Guard,
    observer: Box<dyn Observer + 'a>,
    cancel: Option<Cancel>,
    started: bool,
}

impl<'a> Trainer<'a> {
    /// Build the training graph of `original` towards `teacher` on `data` and evaluate
    /// `eval_data` (if any) once before training.
    pub fn new(original: &ModelProto, teacher: &ModelProto, data: &'a Dataset, eval_data: Option<&'a Dataset>, opts: &'a Options) -> Result<Trainer<'a>> {
        let t0 = Instant::now();
        // a QDQ student trains float weights behind fake quantization (see `quantized`)
        let (q_student, q_lifted) = quantized::lift(original);
        if !q_lifted.is_empty() {
            log::info!("{} integer weights trained as floats behind their quantization", q_lifted.len());
        }
        let lifted = model::lift_constants(&q_student)?;
        if opts.batch == 0 || opts.accumulate == 0 {
            return Err(Error::option("--batch", "the batch and --accumulate must be at least 1"));
        }
        let all_labelled = data.samples.iter().all(|s| s.label.is_some());
        if opts.labels == LabelUse::On && opts.loss.label_weight > 0.0 && !all_labelled {
            return Err(Error::option("--labels", "the data has samples without labels"));
        }
        let batcher = batch::Batcher::new(data, opts.seed, opts.crop, opts.augment)?;
        let sample_shape = batcher.shape.clone();
        let (student_m, teacher_m, micro, accumulate, rebatched) = super::plan_batches(&lifted, teacher, &sample_shape, opts)?;
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
        let s_input = crate::onnx::data_input(student)?;
        let t_input = crate::onnx::data_input(&teacher_m).map_err(|e| Error::option("--teacher", e.to_string()))?;

        // the losses: one per output, and the block outputs matched to the teacher
        let mut loss = opts.loss.clone();
        let ss = graph::value_shapes(student, &s_input, &input_shape)?;
        let labels_needed = loss.label_weight > 0.0
            && match opts.labels {
                LabelUse::On => true,
                LabelUse::Off => false,
                LabelUse::Auto => all_labelled && super::teacher_agrees_with_labels(&teacher_m, data, micro, opts.threads)?,
            };
        if !labels_needed {
            loss.label_weight = 0.0;
        }
        let (sg, tg_proto) = (student.graph.as_ref(), teacher_m.graph.as_ref());
        let (Some(sg), Some(tgp)) = (sg, tg_proto) else { return Err(Error::InvalidGraph("model has no graph".into())) };
        let ranks: Vec<usize> = sg.output.iter().map(|o| ss.get(o.name()).map_or(0, Vec::len)).collect();
        if loss.outputs.is_empty() {
            loss.outputs = super::loss::resolve(sg, tgp, &ranks, loss.distill.kind(), &loss.overrides)?;
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
        let (teach, teacher_shapes) = teacher::Teacher::new(&teacher_m, tensors, &input_shape, opts.threads, cacheable, data.samples.len())?;
        let spec = graph::Spec { batch: micro, input_shape: input_shape.clone(), trainable: &params, bn: opts.bn, loss: &loss, labels: labels_needed, teacher_shapes };
        let tg = graph::build(student, &spec)?;
        for u in &tg.unreachable {
            log::warn!("parameter {u} does not affect the loss; it stays as it is");
        }
        if let Some(p) = std::env::var_os("FUSEC_DUMP_TRAIN_GRAPH") {
            use prost::Message;
            std::fs::write(&p, tg.model.encode_to_vec()).map_err(|e| Error::io(PathBuf::from(&p), e))?;
        }
        let sess = runtime::session(&tg.model, opts.threads)?;

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
        let ctc_run = match &tg.ctc {
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
        let eval_first = match monitor.as_mut() {
            Some(m) => Some(evaluate(m, &tg, &st)?),
            None => None,
        };
        let eval_metric = eval_first.as_ref().and_then(|e| e.headline()).map(|(n, _)| n.to_string());
        let sample_len: usize = sample_shape.iter().product();
        let mut want: Vec<String> = tg.loss_outputs.clone();
        want.extend(tg.grads.iter().cloned());
        for b in &tg.bn {
            want.push(b.batch_mean.clone());
            want.push(b.batch_var.clone());
        }
        let teacher_slot: Vec<usize> = tg.teacher_inputs.iter().map(|(t, _, _)| teach.tensors.iter().position(|x| x == t).unwrap_or(0)).collect();
        let guard = guard::Guard::new(opts.divergence_ratio, &st);
        Ok(Trainer {
            opts,
            data,
            t0,
            xbuf: vec![0.0f32; micro * sample_len],
            ybuf: vec![0.0f32; micro * tg.classes],
            wbufs: tg.region_inputs.iter().map(|(ti, _)| vec![1.0; tg.teacher_inputs[*ti].2.iter().product()]).collect(),
            decay: tg.param_shapes.iter().map(|s| s.len() > 1).collect(),
            start_step: st.step,
            q_student,
            q_lifted,
            batcher,
            micro,
            accumulate,
            per_step,
            rebatched,
            input_shape,
            loss,
            teach,
            tg,
            sess,
            st,
            fingerprint,
            ctc_run,
            steps_per_epoch,
            total,
            monitor,
            eval_last: eval_first.clone(),
            eval_first,
            eval_metric,
            curve: vec![],
            want,
            teacher_slot,
            interrupted: false,
            paused: false,
            at_floor_said: false,
            ema: None,
            train_t0: Instant::now(),
            warm: None,
            first_loss: f32::NAN,
            timing: [0.0; 3],
            guard,
            observer: Box::new(Lines),
            cancel: None,
            started: false,
        })
    }

    /// Report progress to `observer` instead of printing messages on stderr.
    pub fn with_observer(mut self, observer: Box<dyn Observer + 'a>) -> Self {
        self.observer = observer;
        self
    }

    /// Stop after the step in progress once `cancel` is set.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Steps done (a resumed run starts past 0) and steps of the whole run.
    pub fn progress(&self) -> (usize, usize) {
        (self.st.step, self.total)
    }

    /// Whether the run is over: all steps taken, cancelled, or paused (`stop_after`).
    pub fn done(&self) -> bool {
        self.st.step >= self.total || self.interrupted || self.paused
    }

    /// One optimizer step: the micro-batches run through the teacher and the
    /// training graph, their gradients accumulated, clipped and applied.
    pub fn step(&mut self) -> Result<Stepped> {
        if !self.started {
            self.started = true;
            self.observer.start(self.total, self.st.step);
        }
        let (micro, accumulate) = (self.micro, self.accumulate);
        let (nl, np) = (self.tg.loss_outputs.len(), self.tg.params.len());
        let tg = &self.tg;
        let mut grads: Vec<Vec<f32>> = tg.param_shapes.iter().map(|s| vec![0.0; s.iter().product()]).collect();
        let mut losses = vec![0.0f32; nl];
        for micro_i in 0..accumulate {
            let k = self.st.step * accumulate + micro_i;
            let idx = self.batcher.fill(k, micro, self.steps_per_epoch * accumulate, &mut self.xbuf)?;
            if tg.labels_input.is_some() {
                batch::one_hot(self.data, &idx, tg.classes, &mut self.ybuf);
            }
            let tt0 = Instant::now();
            let tv = self.teach.values(&idx, &self.xbuf, &self.input_shape)?;
            let ctc_vals = match (&tg.ctc, self.ctc_run.as_mut()) {
                (Some(c), Some(r)) => Some(r.step(c, &self.st, &idx, &self.xbuf, &self.input_shape, &tv[self.teacher_slot[c.output]], self.loss.ctc_weight)?),
                _ => None,
            };
            for ((ti, _), buf) in tg.region_inputs.iter().zip(self.wbufs.iter_mut()) {
                regions::weights(&tv[self.teacher_slot[*ti]], &tg.teacher_inputs[*ti].2, &self.opts.decode, self.loss.emphasis.region, buf)?;
            }
            let mut feeds = vec![Feed { name: &tg.input, shape: self.input_shape.clone(), data: &self.xbuf }];
            if let (Some(c), Some((l, g))) = (&tg.ctc, &ctc_vals) {
                feeds.push(Feed { name: &c.loss_input, shape: vec![], data: std::slice::from_ref(l) });
                feeds.push(Feed { name: &c.grad_input, shape: c.shape.clone(), data: g });
            }
            for ((_, iname, shape), &slot) in tg.teacher_inputs.iter().zip(&self.teacher_slot) {
                feeds.push(Feed { name: iname, shape: shape.clone(), data: &tv[slot] });
            }
            for ((ti, name), buf) in tg.region_inputs.iter().zip(&self.wbufs) {
                feeds.push(Feed { name, shape: tg.teacher_inputs[*ti].2.clone(), data: buf });
            }
            if let Some(l) = &tg.labels_input {
                feeds.push(Feed { name: l, shape: vec![micro, tg.classes], data: &self.ybuf });
            }
            for (i, p) in tg.params.iter().enumerate() {
                feeds.push(Feed { name: p, shape: tg.param_shapes[i].clone(), data: &self.st.params[i] });
            }
            let tt1 = Instant::now();
            let out = runtime::run(&mut self.sess, &feeds, &self.want)?;
            let tt2 = Instant::now();
            self.timing[0] += (tt1 - tt0).as_secs_f64();
            self.timing[1] += (tt2 - tt1).as_secs_f64();
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
            optimizer::update_bn(&mut self.st, &tg.bn, &means, &vars);
            self.timing[2] += tt2.elapsed().as_secs_f64();
        }
        let tt2 = Instant::now();
        let loss_v = losses[0];
        if self.guard.diverged(loss_v) {
            let r = self.guard.roll_back(&mut self.st, &mut self.curve, loss_v)?;
            self.observer.line(&format!(
                "warning: the loss ran away at step {} (running average {:.4}, lowest {:.4}): back to step {}, learning rate × {}",
                r.at_step, r.loss, r.lowest, r.to_step, r.lr_scale
            ));
            self.ema = None;
            return Ok(Stepped::RolledBack);
        }
        if self.first_loss.is_nan() {
            self.first_loss = loss_v;
        }
        let opts = self.opts;
        let lr = optimizer::lr_at(opts, self.st.step, self.total) * self.st.lr_scale;
        let grad_norm = optimizer::clip(&mut grads, opts.clip_grad);
        // a loss at its floor (a student equal to its teacher) leaves only rounding noise in
        // the gradients, which Adam would scale up to full steps: nothing to learn, no update
        if loss_v > guard::FLOOR {
            optimizer::step(opts, &mut self.st, &grads, &self.decay, lr);
        } else if !self.at_floor_said {
            self.at_floor_said = true;
            self.observer.line(&format!("the loss is at its floor ({loss_v:.1e}) at step {}: no update while it stays there", self.st.step + 1));
        }
        if let Some(d) = opts.ema {
            optimizer::average(&mut self.st, d);
        }
        self.timing[2] += tt2.elapsed().as_secs_f64();
        self.st.step += 1;
        if self.warm.is_none() {
            self.warm = Some((Instant::now(), self.st.step));
        }
        let e = self.ema.map_or(loss_v, |e| 0.95 * e + 0.05 * loss_v);
        self.ema = Some(e);
        let done = self.st.step - self.start_step;
        self.observer.step(self.st.step, e, (done * self.per_step) as f64 / self.train_t0.elapsed().as_secs_f64());
        self.curve.push(CurvePoint { step: self.st.step, epoch: self.st.step as f64 / self.steps_per_epoch as f64, lr, loss: loss_v, components: losses[1..].to_vec(), grad_norm, eval: None });
        let epoch_end = self.st.step % self.steps_per_epoch == 0 || self.st.step == self.total;
        Ok(Stepped::Step { epoch_end })
    }

    /// After the step that completed an epoch: evaluate the held-out data (if any)
    /// and let the divergence guard remember this state.
    pub fn end_epoch(&mut self) -> Result<()> {
        if let Some(m) = self.monitor.as_mut() {
            let ev = evaluate(m, &self.tg, &self.st)?;
            let e = self.ema.unwrap_or(f32::NAN);
            let point = self.curve.last_mut().ok_or_else(|| Error::Eval("an epoch ended before its first step".into()))?;
            point.eval = ev.headline().map(|(_, v)| v);
            let mut line = format!("epoch {:.2}: loss {e:.4}", point.epoch);
            if let Some(s) = &ev.score {
                line.push_str(&format!(", held out: {}", s.describe()));
            }
            if let Some(a) = &ev.agreement {
                line.push_str(&format!(", teacher agreement: {}", a.describe()));
            }
            self.observer.line(&line);
            self.eval_last = Some(ev);
        }
        self.guard.epoch_end(&self.st, self.curve.len());
        Ok(())
    }

    /// After each step: the periodic checkpoint; stop (saving one) when cancelled or
    /// paused. Returns whether to stop.
    fn after_step(&mut self) -> Result<bool> {
        let opts = self.opts;
        let st = &self.st;
        if let Some(c) = &opts.checkpoint
            && (st.step % opts.checkpoint_every.max(1) == 0 || st.step == self.total)
        {
            checkpoint::save(c, st, &self.tg, self.fingerprint)?;
        }
        crate::cancel::interrupt_point(&format!("step:{}", st.step), self.cancel.as_ref());
        self.interrupted = crate::cancel::is_set(self.cancel.as_ref());
        self.paused = opts.stop_after.is_some_and(|n| st.step >= n && st.step < self.total);
        if self.interrupted || self.paused {
            if let Some(c) = &opts.checkpoint {
                checkpoint::save(c, st, &self.tg, self.fingerprint)?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Train to the end (or until cancelled or paused).
    pub fn run(&mut self) -> Result<()> {
        while self.st.step < self.total {
            match self.step()? {
                Stepped::RolledBack => continue,
                Stepped::Step { epoch_end } => {
                    if epoch_end {
                        self.end_epoch()?;
                    }
                    if self.after_step()? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The trained model (weights written back, integer weights quantized again for a
    /// QDQ student) and the run's summary.
    pub fn finish(mut self) -> Result<(ModelProto, Summary)> {
        self.observer.finish();
        let st = &self.st;
        let n = (st.step - self.start_step).max(1) as f64;
        let timing = self.timing;
        log::info!("per step: teacher {:.1} ms, training graph {:.1} ms, optimizer and bookkeeping {:.1} ms", 1e3 * timing[0] / n, 1e3 * timing[1] / n, 1e3 * timing[2] / n);
        let trained = model::write_back(&self.q_student, &self.tg, st)?;
        let trained = if self.q_lifted.is_empty() { trained } else { quantized::lower(&trained, &self.q_lifted)? };
        let secs = self.train_t0.elapsed().as_secs_f64();
        let eval_before = self.eval_first.as_ref().and_then(|e| e.headline()).map(|(_, v)| v);
        let eval_after = self.curve.iter().rev().find_map(|p| p.eval).or(eval_before.filter(|_| st.step == self.start_step));
        let (per_step, start_step, steps_per_epoch) = (self.per_step, self.start_step, self.steps_per_epoch);
        let summary = Summary {
            steps: st.step,
            epochs: st.step as f64 / steps_per_epoch as f64,
            seconds: self.t0.elapsed().as_secs_f64(),
            samples_per_sec: match self.warm {
                Some((t, s0)) if st.step > s0 => ((st.step - s0) * per_step) as f64 / t.elapsed().as_secs_f64().max(1e-9),
                _ => ((st.step - start_step) * per_step) as f64 / secs.max(1e-9),
            },
            params_trained: self.tg.param_shapes.iter().map(|s| s.iter().product::<usize>()).sum(),
            tensors_trained: self.tg.params.len(),
            micro_batch: self.micro,
            accumulate: self.accumulate,
            rebatched: self.rebatched,
            outputs: self.tg.outputs.clone(),
            loss_names: self.tg.loss_outputs.clone(),
            features: self.loss.features.clone(),
            first_loss: self.first_loss,
            final_loss: self.ema.unwrap_or(f32::NAN),
            eval_metric: self.eval_metric,
            eval_before,
            eval_after,
            eval_first: self.eval_first,
            eval_last: self.eval_last,
            interrupted: self.interrupted,
            paused: self.paused,
            checkpoint: self.opts.checkpoint.clone(),
            curve: self.curve,
            calibration: vec![],
            eval_calibrated: None,
            ctc: self.ctc_run.map(|r| r.summary),
            rollbacks: self.guard.rollbacks,
        };
        Ok((trained, summary))
    }
}

/// Evaluate the held-out data with the state's weights (averaged, with --ema) and BN statistics.
fn evaluate(m: &mut monitor::Monitor, tg: &graph::TrainGraph, st: &State) -> Result<monitor::Eval> {
    let mut vals: Vec<&[f32]> = st.weights().iter().map(Vec::as_slice).collect();
    for i in 0..tg.bn.len() {
        vals.push(&st.bn_mean[i]);
        vals.push(&st.bn_var[i]);
    }
    m.evaluate(&vals)
}

//! Fine-tuning through ONNX Runtime: the student's training graph (built by
//! [`graph`] from standard ops) runs in a plain `ort` session; the teacher's
//! logits (and intermediate features) come from a second session; the
//! optimizer step, schedules, BN running averages, checkpoints and the loss
//! curve live here.

pub mod grad;
pub mod graph;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayD;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::onnx::{self, ModelProto};
use crate::runtime::{self, Feed};
use crate::tensor::Tensor;
pub use graph::{BnMode, Distill, LossSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Optimizer {
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Schedule {
    /// Linear warm-up, then cosine decay to zero.
    Cosine,
    /// Linear warm-up, then ×0.1 at half and at three quarters of the run.
    Step,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum TrainSet {
    /// Every weight, bias and BN scale/bias.
    All,
    /// Only what the rewrite created or reshaped (the FuSe kernels, widened consumers).
    Fuse,
    /// The FuSe parameters and every BatchNormalization scale and bias.
    #[value(name = "fuse+bn")]
    FuseBn,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Options {
    pub epochs: usize,
    /// Stop after this many steps (overrides epochs).
    pub steps: Option<usize>,
    pub batch: usize,
    pub lr: f32,
    pub optimizer: Optimizer,
    pub momentum: f32,
    pub weight_decay: f32,
    pub schedule: Schedule,
    pub warmup: usize,
    pub train: TrainSet,
    pub bn: BnMode,
    pub loss: LossSpec,
    /// Match every rewritten block's output to the teacher's (sets loss.features).
    pub auto_features: bool,
    pub augment: bool,
    pub seed: u64,
    pub threads: usize,
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: usize,
    pub resume: Option<PathBuf>,
    /// Pause (checkpoint saved, `Summary::paused`) once this many steps are done.
    pub stop_after: Option<usize>,
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            epochs: 10,
            steps: None,
            batch: 32,
            lr: 2e-3,
            optimizer: Optimizer::Adamw,
            momentum: 0.9,
            weight_decay: 1e-4,
            schedule: Schedule::Cosine,
            warmup: 50,
            train: TrainSet::All,
            bn: BnMode::Train,
            loss: LossSpec { distill: Distill::Kl, temperature: 4.0, distill_weight: 1.0, label_weight: 0.0, feature_weight: 1.0, features: vec![] },
            auto_features: true,
            augment: false,
            seed: 0,
            threads: 0,
            checkpoint: None,
            checkpoint_every: 500,
            resume: None,
            stop_after: None,
            progress: true,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CurvePoint {
    pub step: usize,
    pub epoch: f64,
    pub lr: f32,
    pub loss: f32,
    pub components: Vec<f32>,
    /// Accuracy on the evaluation data, at epoch ends.
    pub eval_accuracy: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub steps: usize,
    pub epochs: f64,
    pub seconds: f64,
    /// Training throughput after the first step (ONNX Runtime's first run allocates its buffers).
    pub samples_per_sec: f64,
    pub params_trained: usize,
    pub tensors_trained: usize,
    pub loss_names: Vec<String>,
    pub features: Vec<String>,
    pub first_loss: f32,
    pub final_loss: f32,
    pub eval_before: Option<f64>,
    pub eval_after: Option<f64>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Stopped by `stop_after` before the last step.
    pub paused: bool,
    pub checkpoint: Option<PathBuf>,
    pub curve: Vec<CurvePoint>,
}

/// Float initializers the optimizer updates.
pub fn trainable(student: &ModelProto, set: TrainSet) -> Vec<String> {
    let Some(g) = student.graph.as_ref() else { return vec![] };
    let floats: HashMap<&str, usize> = g.initializer.iter().filter(|t| t.data_type() == onnx::dtype::FLOAT).map(|t| (t.name(), t.dims.iter().product::<i64>() as usize)).collect();
    let mut out: Vec<String> = vec![];
    let mut seen = HashSet::new();
    let mut push = |name: &str, out: &mut Vec<String>| {
        if floats.get(name).is_some_and(|&n| n > 1) && seen.insert(name.to_string()) {
            out.push(name.to_string());
        }
    };
    for n in &g.node {
        let is_fuse = |s: &str| s.contains(".fuse.");
        let slots: &[usize] = match n.op_type() {
            "Conv" => &[1, 2],
            "BatchNormalization" => &[1, 2],
            "Gemm" => &[0, 1, 2],
            "MatMul" | "Add" | "Mul" | "Sub" => &[0, 1],
            _ => &[],
        };
        for &i in slots {
            let Some(name) = n.input.get(i) else { continue };
            let take = match set {
                TrainSet::All => true,
                TrainSet::Fuse => is_fuse(name),
                TrainSet::FuseBn => is_fuse(name) || n.op_type() == "BatchNormalization",
            };
            if take {
                push(name, &mut out);
            }
        }
    }
    out
}

/// Student tensors to match to the teacher: for every tensor the rewrite
/// created, the nearest downstream value that also exists in the teacher with
/// the same shape (the output of each rewritten block).
pub fn block_outputs(student: &ModelProto, teacher: &ModelProto, shapes_s: &HashMap<String, Vec<i64>>, shapes_t: &HashMap<String, Vec<i64>>) -> Vec<String> {
    let (Some(gs), Some(_)) = (student.graph.as_ref(), teacher.graph.as_ref()) else { return vec![] };
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in gs.node.iter().enumerate() {
        for x in &n.input {
            consumers.entry(x.as_str()).or_default().push(i);
        }
    }
    let shared = |v: &str| shapes_t.get(v).is_some_and(|t| shapes_s.get(v) == Some(t));
    let mut out: Vec<String> = vec![];
    for n in &gs.node {
        let new = n.output.iter().any(|o| !o.is_empty() && !shapes_t.contains_key(o) && shapes_s.contains_key(o));
        if !new || !n.name().contains(".fuse") {
            continue;
        }
        // breadth-first to the first shared value
        let mut queue: std::collections::VecDeque<&str> = n.output.iter().map(String::as_str).collect();
        let mut visited = HashSet::new();
        while let Some(v) = queue.pop_front() {
            if !visited.insert(v) {
                continue;
            }
            if shared(v) {
                if !out.iter().any(|o| o == v) {
                    out.push(v.to_string());
                }
                break;
            }
            for &c in consumers.get(v).map(Vec::as_slice).unwrap_or(&[]) {
                queue.extend(gs.node[c].output.iter().map(String::as_str));
            }
        }
    }
    out
}

/// Float Constant nodes (Paddle and some PyTorch exports keep weights there) as initializers,
/// so that they can be trained; `write_back` puts the values back where they came from.
pub fn lift_constants(model: &ModelProto) -> ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        let mut lifted = vec![];
        g.node.retain(|n| {
            if n.op_type() == "Constant" && n.output.len() == 1 {
                if let Some(t) = crate::ir::constant_node_value(n).filter(|t| t.dtype() == onnx::dtype::FLOAT) {
                    let mut t = t;
                    t.set_name(&n.output[0]);
                    lifted.push(t.into_proto());
                    return false;
                }
            }
            true
        });
        g.initializer.extend(lifted);
    }
    m
}

/// The model with some initializers turned into graph inputs (fed at run time).
fn with_inputs(model: &ModelProto, names: &[String]) -> ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        let set: HashSet<&str> = names.iter().map(String::as_str).collect();
        let mut moved = vec![];
        g.initializer.retain(|t| {
            if set.contains(t.name()) {
                let dims: Vec<onnx::Dim> = t.dims.iter().map(|&d| onnx::Dim::Known(d)).collect();
                moved.push(onnx::make_value_info(t.name(), t.data_type(), Some(&dims)));
                false
            } else {
                true
            }
        });
        g.input.retain(|i| !set.contains(i.name()));
        g.input.extend(moved);
    }
    m
}

/// The teacher with its logits (and the named features) as outputs.
fn teacher_model(teacher: &ModelProto, tensors: &[String]) -> Result<(ModelProto, String)> {
    let mut m = teacher.clone();
    let g = m.graph.as_mut().ok_or_else(|| Error::InvalidGraph("teacher has no graph".into()))?;
    let out = g.output.first().ok_or_else(|| Error::InvalidGraph("teacher has no output".into()))?.name().to_string();
    let logits = graph::logits_of(&g.node, &out);
    g.output.clear();
    g.output.push(onnx::ValueInfoProto { name: Some(logits.clone()), ..Default::default() });
    for t in tensors {
        g.output.push(onnx::ValueInfoProto { name: Some(t.clone()), ..Default::default() });
    }
    Ok((m, logits))
}

fn lr_at(o: &Options, step: usize, total: usize) -> f32 {
    let warm = o.warmup.min(total / 5);
    if step < warm {
        return o.lr * (step + 1) as f32 / warm as f32;
    }
    let t = (step - warm) as f32 / (total - warm).max(1) as f32;
    match o.schedule {
        Schedule::Constant => o.lr,
        Schedule::Cosine => o.lr * 0.5 * (1.0 + (std::f32::consts::PI * t).cos()),
        Schedule::Step => o.lr * if t < 0.5 { 1.0 } else if t < 0.75 { 0.1 } else { 0.01 },
    }
}

/// Random shift, contrast/brightness jitter and noise on a CHW sample (in place).
fn augment(x: &mut [f32], shape: &[usize], rng: &mut StdRng) {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let dy = rng.random_range(-2i64..=2);
    let dx = rng.random_range(-(w as i64) / 24..=(w as i64) / 24);
    let gain = rng.random_range(0.75f32..1.25);
    let bias = rng.random_range(-0.2f32..0.2);
    let src = x.to_vec();
    for ci in 0..c {
        for yi in 0..h {
            for xi in 0..w {
                let (sy, sx) = (yi as i64 - dy, xi as i64 - dx);
                let v = if sy >= 0 && sy < h as i64 && sx >= 0 && sx < w as i64 { src[ci * h * w + sy as usize * w + sx as usize] } else { 0.0 };
                let noise = rng.random_range(-0.05f32..0.05);
                x[ci * h * w + yi * w + xi] = v * gain + bias + noise;
            }
        }
    }
}

/// State that a checkpoint saves.
struct State {
    params: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    bn_mean: Vec<Vec<f32>>,
    bn_var: Vec<Vec<f32>>,
    step: usize,
}

fn save_checkpoint(path: &Path, st: &State, tg: &graph::TrainGraph, fingerprint: i64) -> Result<()> {
    use ndarray_npy::NpzWriter;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    {
        let mut w = NpzWriter::new(tmp.as_file());
        let err = |e: ndarray_npy::WriteNpzError| Error::io(path, std::io::Error::other(e.to_string()));
        w.add_array("meta", &ndarray::arr1(&[st.step as i64, fingerprint])).map_err(err)?;
        for (i, p) in tg.params.iter().enumerate() {
            w.add_array(format!("param/{p}"), &ndarray::arr1(&st.params[i])).map_err(err)?;
            w.add_array(format!("m/{p}"), &ndarray::arr1(&st.m[i])).map_err(err)?;
            w.add_array(format!("v/{p}"), &ndarray::arr1(&st.v[i])).map_err(err)?;
        }
        for (i, b) in tg.bn.iter().enumerate() {
            w.add_array(format!("bn_mean/{}", b.mean), &ndarray::arr1(&st.bn_mean[i])).map_err(err)?;
            w.add_array(format!("bn_var/{}", b.var), &ndarray::arr1(&st.bn_var[i])).map_err(err)?;
        }
        w.finish().map_err(err)?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn load_checkpoint(path: &Path, st: &mut State, tg: &graph::TrainGraph, fingerprint: i64) -> Result<()> {
    use ndarray_npy::NpzReader;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: String| Error::option("--resume", format!("{}: {what}", path.display()));
    let mut r = NpzReader::new(f).map_err(|e| bad(format!("not a fusec checkpoint ({e})")))?;
    let meta: ndarray::Array1<i64> = r.by_name("meta").map_err(|e| bad(format!("not a fusec checkpoint (no meta: {e})")))?;
    if meta.len() != 2 || meta[1] != fingerprint {
        return Err(bad("written for another model or training set-up (parameters differ)".into()));
    }
    let mut get = |name: String, len: usize| -> Result<Vec<f32>> {
        let a: ndarray::Array1<f32> = r.by_name(&name).map_err(|e| bad(format!("missing {name} ({e})")))?;
        if a.len() != len {
            return Err(bad(format!("{name} has {} values, the model {len}", a.len())));
        }
        Ok(a.to_vec())
    };
    for (i, p) in tg.params.iter().enumerate() {
        let n = st.params[i].len();
        st.params[i] = get(format!("param/{p}"), n)?;
        st.m[i] = get(format!("m/{p}"), n)?;
        st.v[i] = get(format!("v/{p}"), n)?;
    }
    for (i, b) in tg.bn.iter().enumerate() {
        let n = st.bn_mean[i].len();
        st.bn_mean[i] = get(format!("bn_mean/{}", b.mean), n)?;
        st.bn_var[i] = get(format!("bn_var/{}", b.var), n)?;
    }
    st.step = meta[0].max(0) as usize;
    Ok(())
}

/// The student with trained parameters and BN statistics written back.
fn write_back(student: &ModelProto, tg: &graph::TrainGraph, st: &State) -> Result<ModelProto> {
    let mut m = student.clone();
    let g = m.graph.as_mut().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))?;
    let mut values: HashMap<&str, (&[usize], &[f32])> = HashMap::new();
    for (i, p) in tg.params.iter().enumerate() {
        values.insert(p, (&tg.param_shapes[i], &st.params[i]));
    }
    let bn_shapes: Vec<Vec<usize>> = st.bn_mean.iter().map(|v| vec![v.len()]).collect();
    for (i, b) in tg.bn.iter().enumerate() {
        values.insert(&b.mean, (&bn_shapes[i], &st.bn_mean[i]));
        values.insert(&b.var, (&bn_shapes[i], &st.bn_var[i]));
    }
    let make = |name: &str, shape: &[usize], v: &[f32]| -> Result<onnx::TensorProto> {
        let a = ArrayD::from_shape_vec(ndarray::IxDyn(shape), v.to_vec()).map_err(|e| Error::tensor(name, e.to_string()))?;
        Ok(Tensor::from_f32(name, &a).into_proto())
    };
    for t in g.initializer.iter_mut() {
        if let Some((shape, v)) = values.get(t.name()) {
            *t = make(t.name(), shape, v)?;
        }
    }
    for n in g.node.iter_mut().filter(|n| n.op_type() == "Constant" && n.output.len() == 1) {
        if let Some((shape, v)) = values.get(n.output[0].as_str()) {
            let t = make("", shape, v)?;
            n.attribute = vec![onnx::a_tensor("value", t)];
        }
    }
    Ok(m)
}

/// Accuracy (top-1 agreement with labels) of the student with the current weights.
fn eval_accuracy(sess: &mut ort::session::Session, input: &str, names: &[String], values: &[&[f32]], shapes: &[Vec<usize>], data: &Dataset, batch: usize) -> Result<f64> {
    let mut correct = 0usize;
    let mut total = 0usize;
    for chunk in data.samples.chunks(batch) {
        let s0 = chunk[0].x.shape().to_vec();
        let mut x = Vec::with_capacity(chunk.len() * s0.iter().product::<usize>());
        for s in chunk {
            x.extend(s.x.iter());
        }
        let mut shape = vec![chunk.len()];
        shape.extend(&s0);
        let mut feeds = vec![Feed { name: input, shape, data: &x }];
        for ((n, v), s) in names.iter().zip(values).zip(shapes) {
            feeds.push(Feed { name: n, shape: s.clone(), data: v });
        }
        let out = runtime::run(sess, &feeds, &[])?;
        let pred = crate::eval::argmax_rows(&out[0]);
        for (p, s) in pred.iter().zip(chunk) {
            if let Some(l) = s.label {
                total += 1;
                correct += (*p == l) as usize;
            }
        }
    }
    Ok(if total == 0 { f64::NAN } else { 100.0 * correct as f64 / total as f64 })
}

/// Fine-tune `student` towards `teacher` on `data`; returns the trained model and a summary.
pub fn finetune(original: &ModelProto, teacher: &ModelProto, data: &Dataset, eval_data: Option<&Dataset>, opts: &Options) -> Result<(ModelProto, Summary)> {
    let t0 = Instant::now();
    let lifted = lift_constants(original);
    let student = &lifted;
    if data.samples.len() < opts.batch {
        return Err(Error::option("--batch", format!("{} samples is fewer than one batch of {}", data.samples.len(), opts.batch)));
    }
    let labels_needed = opts.loss.label_weight > 0.0;
    if labels_needed && data.samples.iter().any(|s| s.label.is_none()) {
        return Err(Error::option("--label-weight", "the data has samples without labels"));
    }
    let sample_shape = data.samples[0].x.shape().to_vec();
    let mut input_shape = vec![opts.batch];
    input_shape.extend(&sample_shape);
    let params = trainable(student, opts.train);
    if params.is_empty() {
        return Err(Error::option("--train", format!("{:?} selects no parameters in this model", opts.train)));
    }
    let s_input = graph::data_input(student)?;
    let t_input = graph::data_input(teacher).map_err(|e| Error::option("--teacher", e.to_string()))?;
    let mut loss = opts.loss.clone();
    if opts.auto_features && loss.feature_weight > 0.0 && loss.features.is_empty() {
        let ss = graph::value_shapes(student, &s_input, &input_shape)?;
        let ts = graph::value_shapes(teacher, &t_input, &input_shape)?;
        loss.features = block_outputs(student, teacher, &ss, &ts);
    }
    let (tmodel, t_logits) = teacher_model(teacher, &loss.features)?;
    let mut tsess = runtime::session(&tmodel, opts.threads)?;
    let probe_x = vec![0.0f32; input_shape.iter().product()];
    let tout = runtime::run(&mut tsess, &[Feed { name: &t_input, shape: input_shape.clone(), data: &probe_x }], &[t_logits.clone()])?;
    let spec = graph::Spec {
        batch: opts.batch,
        input_shape: input_shape.clone(),
        trainable: &params,
        bn: opts.bn,
        loss: &loss,
        labels: labels_needed,
        teacher_logits_shape: tout[0].shape()[1..].to_vec(),
    };
    let tg = graph::build(student, &spec)?;
    for u in &tg.unreachable {
        log::warn!("parameter {u} does not affect the loss; it stays as it is");
    }
    if let Some(p) = std::env::var_os("FUSEC_DUMP_TRAIN_GRAPH") {
        use prost::Message;
        std::fs::write(&p, tg.model.encode_to_vec()).map_err(|e| Error::io(PathBuf::from(&p), e))?;
    }
    let mut sess = runtime::session(&tg.model, opts.threads)?;
    let mut teacher_outputs = vec![t_logits.clone()];
    teacher_outputs.extend(loss.features.iter().cloned());

    // state
    let init: HashMap<&str, &onnx::TensorProto> = student.graph.as_ref().map(|g| g.initializer.iter().map(|t| (t.name(), t)).collect()).unwrap_or_default();
    let get = |name: &str| -> Result<Vec<f32>> {
        let t = init.get(name).ok_or_else(|| Error::tensor(name, "not an initializer"))?;
        Ok(Tensor::from_proto((*t).clone())?.to_f32()?.iter().copied().collect())
    };
    let params_v: Vec<Vec<f32>> = tg.params.iter().map(|p| get(p)).collect::<Result<_>>()?;
    let mut st = State {
        m: params_v.iter().map(|v| vec![0.0; v.len()]).collect(),
        v: params_v.iter().map(|v| vec![0.0; v.len()]).collect(),
        params: params_v,
        bn_mean: tg.bn.iter().map(|b| get(&b.mean)).collect::<Result<_>>()?,
        bn_var: tg.bn.iter().map(|b| get(&b.var)).collect::<Result<_>>()?,
        step: 0,
    };
    let fingerprint = {
        let mut h: i64 = 1469598103934665603u64 as i64;
        for (p, s) in tg.params.iter().zip(&tg.param_shapes) {
            for b in p.bytes().chain(s.iter().flat_map(|d| (*d as u32).to_le_bytes())) {
                h = (h ^ b as i64).wrapping_mul(1099511628211);
            }
        }
        h
    };
    if let Some(r) = &opts.resume {
        load_checkpoint(r, &mut st, &tg, fingerprint)?;
    }

    let steps_per_epoch = data.samples.len() / opts.batch;
    let total = opts.steps.unwrap_or(opts.epochs * steps_per_epoch).max(1);
    // evaluation model: params and BN statistics as inputs
    let mut eval_names: Vec<String> = tg.params.clone();
    let mut eval_shapes_full = tg.param_shapes.clone();
    for (i, b) in tg.bn.iter().enumerate() {
        eval_names.push(b.mean.clone());
        eval_names.push(b.var.clone());
        eval_shapes_full.push(vec![st.bn_mean[i].len()]);
        eval_shapes_full.push(vec![st.bn_var[i].len()]);
    }
    let mut eval_sess = match eval_data {
        Some(_) => Some(runtime::session(&with_inputs(student, &eval_names), opts.threads)?),
        None => None,
    };
    let evaluate = |sess: &mut ort::session::Session, st: &State| -> Result<f64> {
        let mut vals: Vec<&[f32]> = st.params.iter().map(Vec::as_slice).collect();
        for i in 0..tg.bn.len() {
            vals.push(&st.bn_mean[i]);
            vals.push(&st.bn_var[i]);
        }
        eval_accuracy(sess, &s_input, &eval_names, &vals, &eval_shapes_full, eval_data.unwrap_or(data), opts.batch)
    };
    let eval_before = match eval_sess.as_mut() {
        Some(s) => Some(evaluate(s, &st)?),
        None => None,
    };

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
    let mut xbuf = vec![0.0f32; opts.batch * sample_len];
    let mut ybuf = vec![0.0f32; opts.batch * tg.classes];
    let mut curve: Vec<CurvePoint> = vec![];
    let mut teacher_cache: HashMap<usize, Vec<f32>> = HashMap::new();
    let cache_teacher = !opts.augment && loss.features.is_empty();
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let decay: Vec<bool> = tg.param_shapes.iter().map(|s| s.len() > 1).collect();
    let mut interrupted = false;
    let mut paused = false;
    let mut ema: Option<f32> = None;
    let start_step = st.step;
    let train_t0 = Instant::now();
    // throughput is measured from the end of the first step
    let mut warm: Option<(Instant, usize)> = None;
    let mut first_loss = f32::NAN;
    let mut order: Vec<usize> = vec![];
    let mut order_epoch = usize::MAX;
    // seconds in the teacher, the training graph, and the optimizer/bookkeeping
    let mut timing = [0.0f64; 3];
    while st.step < total {
        let epoch = st.step / steps_per_epoch;
        let pos = st.step % steps_per_epoch;
        if order_epoch != epoch {
            order = (0..data.samples.len()).collect();
            order.shuffle(&mut StdRng::seed_from_u64(opts.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)));
            order_epoch = epoch;
        }
        let idx = &order[pos * opts.batch..(pos + 1) * opts.batch];
        let mut rng = StdRng::seed_from_u64(opts.seed ^ (st.step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for (k, &i) in idx.iter().enumerate() {
            let dst = &mut xbuf[k * sample_len..(k + 1) * sample_len];
            dst.copy_from_slice(data.samples[i].x.as_slice().ok_or_else(|| Error::tensor(&data.samples[i].name, "not contiguous"))?);
            if opts.augment {
                augment(dst, &sample_shape, &mut rng);
            }
            if labels_needed {
                let row = &mut ybuf[k * tg.classes..(k + 1) * tg.classes];
                row.fill(0.0);
                if let Some(l) = data.samples[i].label.filter(|&l| l < tg.classes) {
                    row[l] = 1.0;
                }
            }
        }
        let tt0 = Instant::now();
        // teacher
        let mut teacher_vals: Vec<Vec<f32>> = vec![];
        if cache_teacher && idx.iter().all(|i| teacher_cache.contains_key(i)) {
            teacher_vals.push(idx.iter().flat_map(|i| teacher_cache[i].iter().copied()).collect());
        } else {
            let outs = runtime::run(&mut tsess, &[Feed { name: &t_input, shape: input_shape.clone(), data: &xbuf }], &teacher_outputs)?;
            for o in outs {
                teacher_vals.push(o.iter().copied().collect());
            }
            if cache_teacher {
                for (k, &i) in idx.iter().enumerate() {
                    teacher_cache.insert(i, teacher_vals[0][k * tg.classes..(k + 1) * tg.classes].to_vec());
                }
            }
        }
        let mut feeds = vec![Feed { name: &tg.input, shape: input_shape.clone(), data: &xbuf }];
        for (j, (tname, iname, shape)) in tg.teacher_inputs.iter().enumerate() {
            let k = if tname == "logits" { 0 } else { 1 + loss.features.iter().position(|f| f == tname).unwrap_or(j) };
            feeds.push(Feed { name: iname, shape: shape.clone(), data: &teacher_vals[k] });
        }
        if let Some(l) = &tg.labels_input {
            feeds.push(Feed { name: l, shape: vec![opts.batch, tg.classes], data: &ybuf });
        }
        for (i, p) in tg.params.iter().enumerate() {
            feeds.push(Feed { name: p, shape: tg.param_shapes[i].clone(), data: &st.params[i] });
        }
        let mut want: Vec<String> = tg.loss_outputs.clone();
        want.extend(tg.grads.iter().cloned());
        for b in &tg.bn {
            want.push(b.batch_mean.clone());
            want.push(b.batch_var.clone());
        }
        let tt1 = Instant::now();
        let out = runtime::run(&mut sess, &feeds, &want)?;
        let tt2 = Instant::now();
        timing[0] += (tt1 - tt0).as_secs_f64();
        timing[1] += (tt2 - tt1).as_secs_f64();
        let nl = tg.loss_outputs.len();
        let loss_v = out[0].iter().next().copied().unwrap_or(f32::NAN);
        if !loss_v.is_finite() {
            return Err(Error::Eval(format!("loss became {loss_v} at step {}; lower --lr", st.step)));
        }
        if first_loss.is_nan() {
            first_loss = loss_v;
        }
        let lr = lr_at(opts, st.step, total);
        let t = (st.step + 1) as i32;
        for (i, g) in out[nl..nl + tg.params.len()].iter().enumerate() {
            let g = g.as_slice().ok_or_else(|| Error::Eval("non-contiguous gradient".into()))?;
            let wd = if decay[i] { opts.weight_decay } else { 0.0 };
            let (p, m, v) = (&mut st.params[i], &mut st.m[i], &mut st.v[i]);
            match opts.optimizer {
                Optimizer::Adamw => {
                    let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                    for j in 0..p.len() {
                        m[j] = b1 * m[j] + (1.0 - b1) * g[j];
                        v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
                        p[j] -= lr * ((m[j] / c1) / ((v[j] / c2).sqrt() + eps) + wd * p[j]);
                    }
                }
                Optimizer::Sgd => {
                    for j in 0..p.len() {
                        m[j] = opts.momentum * m[j] + g[j] + wd * p[j];
                        p[j] -= lr * m[j];
                    }
                }
            }
        }
        for (i, b) in tg.bn.iter().enumerate() {
            let bm = &out[nl + tg.params.len() + 2 * i];
            let bv = &out[nl + tg.params.len() + 2 * i + 1];
            let unbias = b.count as f32 / (b.count.max(2) - 1) as f32;
            for (j, (m, v)) in bm.iter().zip(bv.iter()).enumerate() {
                st.bn_mean[i][j] = b.momentum * st.bn_mean[i][j] + (1.0 - b.momentum) * m;
                st.bn_var[i][j] = b.momentum * st.bn_var[i][j] + (1.0 - b.momentum) * v * unbias;
            }
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
        bar.set_message(format!("loss {e:.4}  {:.0} samples/s", (done * opts.batch) as f64 / train_t0.elapsed().as_secs_f64()));
        let mut point = CurvePoint {
            step: st.step,
            epoch: st.step as f64 / steps_per_epoch as f64,
            lr,
            loss: loss_v,
            components: out[1..nl].iter().map(|a| a.iter().next().copied().unwrap_or(f32::NAN)).collect(),
            eval_accuracy: None,
        };
        let epoch_end = st.step % steps_per_epoch == 0 || st.step == total;
        if epoch_end {
            if let Some(s) = eval_sess.as_mut() {
                let acc = evaluate(s, &st)?;
                point.eval_accuracy = Some(acc);
                let line = format!("epoch {:.2}: loss {e:.4}, eval accuracy {acc:.2}%", point.epoch);
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
        }
        curve.push(point);
        if let Some(c) = &opts.checkpoint {
            if st.step % opts.checkpoint_every.max(1) == 0 || st.step == total {
                save_checkpoint(c, &st, &tg, fingerprint)?;
            }
        }
        interrupted = onnx::was_interrupted();
        paused = opts.stop_after.is_some_and(|n| st.step >= n && st.step < total);
        if interrupted || paused {
            if let Some(c) = &opts.checkpoint {
                save_checkpoint(c, &st, &tg, fingerprint)?;
            }
            break;
        }
    }
    bar.finish_and_clear();
    let n = (st.step - start_step).max(1) as f64;
    log::info!("per step: teacher {:.1} ms, training graph {:.1} ms, optimizer and bookkeeping {:.1} ms", 1e3 * timing[0] / n, 1e3 * timing[1] / n, 1e3 * timing[2] / n);
    let trained = write_back(original, &tg, &st)?;
    let secs = train_t0.elapsed().as_secs_f64();
    let eval_after = curve.iter().rev().find_map(|p| p.eval_accuracy).or(eval_before.filter(|_| st.step == start_step));
    let summary = Summary {
        steps: st.step,
        epochs: st.step as f64 / steps_per_epoch as f64,
        seconds: t0.elapsed().as_secs_f64(),
        samples_per_sec: match warm {
            Some((t, s0)) if st.step > s0 => ((st.step - s0) * opts.batch) as f64 / t.elapsed().as_secs_f64().max(1e-9),
            _ => ((st.step - start_step) * opts.batch) as f64 / secs.max(1e-9),
        },
        params_trained: tg.param_shapes.iter().map(|s| s.iter().product::<usize>()).sum(),
        tensors_trained: tg.params.len(),
        loss_names: tg.loss_outputs.clone(),
        features: loss.features.clone(),
        first_loss,
        final_loss: ema.unwrap_or(f32::NAN),
        eval_before,
        eval_after,
        interrupted,
        paused,
        checkpoint: opts.checkpoint.clone(),
        curve,
    };
    Ok((trained, summary))
}

/// Write the loss curve as CSV and as an SVG plot beside it.
pub fn write_curve(s: &Summary, csv_path: &Path) -> Result<PathBuf> {
    let mut text = String::from("step,epoch,lr,loss");
    for n in s.loss_names.iter().skip(1) {
        text.push(',');
        text.push_str(n);
    }
    text.push_str(",eval_accuracy\n");
    for p in &s.curve {
        text.push_str(&format!("{},{:.4},{:.6e},{:.6}", p.step, p.epoch, p.lr, p.loss));
        for c in &p.components {
            text.push_str(&format!(",{c:.6}"));
        }
        text.push_str(&format!(",{}\n", p.eval_accuracy.map(|a| format!("{a:.2}")).unwrap_or_default()));
    }
    std::fs::write(csv_path, text).map_err(|e| Error::io(csv_path, e))?;
    let svg = csv_path.with_extension("svg");
    plot(s, &svg).map_err(|e| Error::io(&svg, std::io::Error::other(e)))?;
    Ok(svg)
}

fn plot(s: &Summary, path: &Path) -> std::result::Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let evals: Vec<(f64, f64)> = s.curve.iter().filter_map(|p| p.eval_accuracy.map(|a| (p.epoch, a))).collect();
    let (top, bottom) = if evals.is_empty() { (root.clone(), None) } else { let (a, b) = root.split_vertically(300); (a, Some(b)) };
    let max_x = s.curve.last().map_or(1.0, |p| p.epoch).max(1e-3);
    // smoothed loss
    let mut pts = vec![];
    let mut e: Option<f64> = None;
    for p in &s.curve {
        let v = e.map_or(p.loss as f64, |e| 0.9 * e + 0.1 * p.loss as f64);
        e = Some(v);
        pts.push((p.epoch, v.max(1e-6)));
    }
    let (lo, hi) = pts.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &(_, v)| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo >= hi { (lo * 0.5, lo * 2.0 + 1e-6) } else { (lo * 0.9, hi * 1.1) };
    let mut chart = ChartBuilder::on(&top)
        .caption("training loss (smoothed)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, lo..hi)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("epoch").y_desc("loss").draw().map_err(|e| e.to_string())?;
    chart.draw_series(LineSeries::new(pts, &BLUE)).map_err(|e| e.to_string())?;
    if let Some(b) = bottom {
        let (alo, ahi) = evals.iter().fold((100.0f64, 0.0f64), |(lo, hi), &(_, a)| (lo.min(a), hi.max(a)));
        let mut all = evals.clone();
        if let Some(b0) = s.eval_before {
            all.insert(0, (0.0, b0));
        }
        let alo = alo.min(s.eval_before.unwrap_or(alo));
        let mut c = ChartBuilder::on(&b)
            .caption("held-out accuracy (%)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, (alo - 2.0).max(0.0)..(ahi + 2.0).min(100.0))
            .map_err(|e| e.to_string())?;
        c.configure_mesh().x_desc("epoch").y_desc("accuracy").draw().map_err(|e| e.to_string())?;
        c.draw_series(LineSeries::new(all.clone(), &RED)).map_err(|e| e.to_string())?;
        c.draw_series(all.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

//! What training reads from and writes to the model: the parameters to train,
//! the tensors matched to the teacher, weights kept in Constant nodes, the
//! batch a model was exported with, and the trained values written back.

use std::collections::{HashMap, HashSet};

use ndarray::ArrayD;

use super::checkpoint::State;
use super::graph::TrainGraph;
use super::TrainSet;
use crate::error::{Error, Result};
use crate::passes::{self, lift_constants::LiftConstants, rebatch::Rebatch};
use crate::onnx::{self, ModelProto};
use crate::exec::runtime::{self, Feed};
use crate::onnx::tensor::Tensor;

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
    // nodes that read (directly or not) a value a rewritten block computes
    let mut tainted: HashSet<&str> = HashSet::new();
    let mut downstream = vec![false; g.node.len()];
    for (i, n) in g.node.iter().enumerate() {
        if n.name().contains(".fuse") || n.input.iter().any(|x| tainted.contains(x.as_str())) {
            downstream[i] = true;
            tainted.extend(n.output.iter().map(String::as_str));
        }
    }
    // a model fusec did not rewrite: all of it
    if !downstream.iter().any(|&d| d) {
        downstream.fill(true);
    }
    // a weight behind fake quantization (`quantized::lift`): DequantizeLinear(QuantizeLinear(float))
    let producer: HashMap<&str, &onnx::NodeProto> = g.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let through_quantization = |name: &str| -> Option<String> {
        let dq = producer.get(name).filter(|n| n.op_type() == "DequantizeLinear")?;
        let q = producer.get(dq.input.first()?.as_str()).filter(|n| n.op_type() == "QuantizeLinear")?;
        q.input.first().filter(|x| floats.contains_key(x.as_str())).cloned()
    };
    for (ni, n) in g.node.iter().enumerate() {
        let is_fuse = |s: &str| s.contains(".fuse.");
        let slots: &[usize] = match n.op_type() {
            "Conv" | "ConvTranspose" => &[1, 2],
            "BatchNormalization" | "LayerNormalization" => &[1, 2],
            "Gemm" => &[0, 1, 2],
            "MatMul" | "Add" | "Mul" | "Sub" => &[0, 1],
            _ => &[],
        };
        for &i in slots {
            let Some(name) = n.input.get(i) else { continue };
            let lifted = through_quantization(name);
            let name = lifted.as_ref().unwrap_or(name);
            let take = match set {
                TrainSet::All => true,
                TrainSet::Downstream => downstream[ni],
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
/// so that they can be trained (the `lift_constants` pass); `write_back` puts the values
/// back where they came from.
pub fn lift_constants(model: &ModelProto) -> Result<ModelProto> {
    Ok(passes::run_on_model(model, &[Box::new(LiftConstants)])?.0)
}

/// The model with some initializers turned into graph inputs (fed at run time).
pub fn with_inputs(model: &ModelProto, names: &[String]) -> ModelProto {
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

/// The student with trained parameters and BN statistics written back.
pub fn write_back(student: &ModelProto, tg: &TrainGraph, st: &State) -> Result<ModelProto> {
    let mut m = student.clone();
    let g = m.graph.as_mut().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))?;
    let mut values: HashMap<&str, (&[usize], &[f32])> = HashMap::new();
    for (i, p) in tg.params.iter().enumerate() {
        values.insert(p, (&tg.param_shapes[i], &st.weights()[i]));
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

pub use crate::onnx::declared_batch;

/// The model for batches of `b` when it was exported for a fixed batch `b0`
/// (the `rebatch` pass: the input declares `b`, and every shape constant that
/// carries the batch equal to `b0` becomes `b`). The result is checked:
/// each sample of a random batch must give the outputs the original gives it
/// alone. `None` when the graph does not allow it (the caller then trains
/// with batches of `b0` and accumulates gradients).
pub fn rebatch(model: &ModelProto, input: &str, sample: &[usize], b: usize) -> Result<Option<ModelProto>> {
    let Some(b0) = declared_batch(model, input) else { return Ok(Some(model.clone())) };
    if b0 as usize == b {
        return Ok(Some(model.clone()));
    }
    let pass = Rebatch { input: input.to_string(), from: b0, to: b as i64 };
    let (m, reports) = match passes::run_on_model(model, &[Box::new(pass)]) {
        Ok(r) => r,
        Err(e) => {
            log::info!("rebatching to {b} fails ({e}); accumulating batches of {b0}");
            return Ok(None);
        }
    };
    let changed = reports.first().and_then(|(_, r)| r.rewrites.first()).map(|r| r.detail.clone()).unwrap_or_default();
    // check numerically against the original, one sample at a time
    let len: usize = sample.iter().product();
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let x: Vec<f32> = (0..b * len)
        .map(|_| {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            (rng_state % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let mut shape = vec![b];
    shape.extend(sample);
    let batched = match runtime::session(&m, 0).and_then(|mut s| runtime::run(&mut s, &[Feed { name: input, shape: shape.clone(), data: &x }], &[])) {
        Ok(o) => o,
        Err(e) => {
            log::info!("rebatching to {b} fails ({e}); accumulating batches of {b0}");
            return Ok(None);
        }
    };
    let mut one = vec![b0 as usize];
    one.extend(sample);
    let mut orig = runtime::session(model, 0)?;
    for k in 0..b {
        let xs = &x[k * len..(k + 1) * len];
        // a fixed batch above 1: the sample repeated
        let rep: Vec<f32> = xs.iter().copied().cycle().take(b0 as usize * len).collect();
        let o = runtime::run(&mut orig, &[Feed { name: input, shape: one.clone(), data: &rep }], &[])?;
        for (yb, y1) in batched.iter().zip(&o) {
            if yb.shape().first() != Some(&b) || yb.len() != b * (y1.len() / b0 as usize) {
                log::info!("rebatching to {b}: output shape {:?}; accumulating batches of {b0}", yb.shape());
                return Ok(None);
            }
            let per = y1.len() / b0 as usize;
            let a = yb.as_slice().map(|s| &s[k * per..(k + 1) * per]);
            let r = y1.as_slice().map(|s| &s[..per]);
            let (Some(a), Some(r)) = (a, r) else { return Ok(None) };
            let bad = a.iter().zip(r).any(|(p, q)| (p - q).abs() > 1e-3 + 1e-3 * q.abs());
            if bad {
                log::info!("rebatching to {b} changes the outputs; accumulating batches of {b0}");
                return Ok(None);
            }
        }
    }
    log::info!("rebatched ({changed})");
    Ok(Some(m))
}

//! The training graph: the student's forward graph at a fixed batch size, its
//! loss against the teacher (and labels), and the backward graph from
//! [`super::grad`], as one ONNX model that a plain ONNX Runtime session runs.
//! Trainable parameters are graph inputs (fed every step); their gradients,
//! the loss and the batch statistics of training-mode BatchNormalization are
//! outputs.

use std::collections::{HashMap, HashSet};

pub use super::forward::{model_proto, value_shapes, BnStat, TRAIN_OPSET};
use super::forward::{batch_bn, forward_for_training, probe_shapes, sorted_nodes};
use super::grad::{differentiate, Emitter};
use super::loss::{self, Emphasis, LossKind, OutputLoss, OutputLossArg};
use crate::error::{Error, Result};
use crate::onnx::{self, a_int, dtype, Dim, ModelProto, NodeProto};
use crate::onnx::tensor::Tensor;


crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    pub enum BnMode {
        /// Normalise with batch statistics and update the running averages (like PyTorch's train()).
        Train = "train",
        /// Keep the stored statistics; train only scale and bias.
        Frozen = "frozen",
    }
}

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    pub enum Distill {
        /// KL divergence between softened teacher and student distributions (× τ²).
        Kl = "kl",
        /// Mean squared error between logits.
        Mse = "mse",
        /// No distillation on the outputs (labels and/or features only).
        None = "none",
    }
}

impl Distill {
    /// The loss class-score outputs get.
    pub fn kind(self) -> LossKind {
        match self {
            Distill::Kl => LossKind::Kl,
            Distill::Mse => LossKind::Mse,
            Distill::None => LossKind::None,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LossSpec {
    /// The loss on class scores (outputs of a Softmax, or `[N, C]` logits).
    pub distill: Distill,
    pub temperature: f32,
    /// Extra weight of the teacher's map edges (BCE) and character steps (KL).
    pub emphasis: Emphasis,
    /// Weight of every output loss (besides its own weight).
    pub distill_weight: f32,
    /// Per-output overrides (`--output-loss`).
    pub overrides: Vec<OutputLossArg>,
    /// The resolved loss of each output (filled by `finetune` from both graphs).
    pub outputs: Vec<OutputLoss>,
    /// Cross-entropy weight (needs labels).
    pub label_weight: f32,
    /// Weight of the intermediate-feature loss (normalised squared error, averaged over the matched tensors).
    pub feature_weight: f32,
    /// Student tensors matched to the teacher's tensors of the same name.
    pub features: Vec<String>,
    /// Weight of the CTC loss on the first `[N, T, C]` class-score output (its
    /// gradient computed on the host, `ctc.rs`).
    pub ctc_weight: f32,
}


#[derive(Debug, Clone)]
pub struct TrainGraph {
    pub model: ModelProto,
    pub input: String,
    pub input_shape: Vec<usize>,
    /// The output losses, in the order of `teacher_inputs`.
    pub outputs: Vec<OutputLoss>,
    /// Classes of the labelled output (`labels_input`), 0 without labels.
    pub classes: usize,
    pub params: Vec<String>,
    pub param_shapes: Vec<Vec<usize>>,
    /// Output carrying the gradient of each parameter.
    pub grads: Vec<String>,
    pub bn: Vec<BnStat>,
    /// Graph inputs for the teacher's values: (teacher tensor, input name, shape with
    /// the batch), the output losses' first, then the features'.
    pub teacher_inputs: Vec<(String, String, Vec<usize>)>,
    /// Per-pixel weight inputs of probability-map losses (`Emphasis::region`): (index in
    /// `teacher_inputs` of the teacher's map they are computed from, input name).
    pub region_inputs: Vec<(usize, String)>,
    pub labels_input: Option<String>,
    /// The CTC term's inputs, fed from the host each step.
    pub ctc: Option<CtcInputs>,
    /// "loss" first, then each component.
    pub loss_outputs: Vec<String>,
    /// Parameters that no loss reaches (gradient always zero).
    pub unreachable: Vec<String>,
}

/// Where the host-computed CTC loss enters the training graph.
#[derive(Debug, Clone)]
pub struct CtcInputs {
    /// The output loss (KL on `[N, T, C]` class scores) whose logits the CTC reads.
    pub output: usize,
    /// The student's logits tensor and its shape `[N, T, C]`.
    pub tensor: String,
    pub shape: Vec<usize>,
    /// Input of the loss value (a scalar, weighted) and of its gradient seed (weighted).
    pub loss_input: String,
    pub grad_input: String,
}

/// The tensor holding a model's logits: the input of a trailing Softmax, else the first output.
pub fn logits_of(nodes: &[NodeProto], output: &str) -> String {
    for n in nodes {
        if n.output.first().is_some_and(|o| o == output) && matches!(n.op_type(), "Softmax" | "LogSoftmax") {
            return n.input[0].clone();
        }
    }
    output.to_string()
}


fn f32_info(name: &str, shape: &[i64]) -> onnx::ValueInfoProto {
    let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Known(d)).collect();
    onnx::make_value_info(name, dtype::FLOAT, Some(&dims))
}

/// Everything the training graph needs to know.
pub struct Spec<'a> {
    pub batch: usize,
    /// Input shape including the batch.
    pub input_shape: Vec<usize>,
    pub trainable: &'a [String],
    pub bn: BnMode,
    pub loss: &'a LossSpec,
    pub labels: bool,
    /// Shapes (with the batch) of the teacher tensors the losses read.
    pub teacher_shapes: HashMap<String, Vec<usize>>,
}

/// Build the training graph of `student` (an inference model with a single float input).
pub fn build(student: &ModelProto, spec: &Spec) -> Result<TrainGraph> {
    let Forward { nodes, inits, mut em, bn, input, train_opset } = forward(student, spec)?;
    let mut heads = Heads { inputs: vec![f32_info(&input, &spec.input_shape.iter().map(|&d| d as i64).collect::<Vec<_>>())], ..Heads::default() };
    output_heads(&mut em, spec, &mut heads)?;
    let (labels_input, classes) = match label_head(&mut em, spec, &mut heads)? {
        Some((y, c)) => (Some(y), c),
        None => (None, 0),
    };
    let ctc = ctc_head(&mut em, spec, &mut heads)?;
    feature_head(&mut em, spec, &mut heads)?;
    if heads.seeds.is_empty() {
        return Err(Error::option("--distill", "no loss: enable distillation (--distill, --output-loss), labels (--label-weight) or --feature-weight"));
    }
    let Heads { inputs, teacher_inputs, region_inputs, seeds, loss_parts } = heads;
    let b = backward(em, nodes, inits, inputs, &seeds, &loss_parts, &bn, &spec.trainable, train_opset)?;
    Ok(TrainGraph {
        model: b.model,
        input,
        input_shape: spec.input_shape.clone(),
        outputs: spec.loss.outputs.clone(),
        classes,
        params: b.params,
        param_shapes: b.param_shapes,
        grads: b.grads,
        bn,
        teacher_inputs,
        region_inputs,
        labels_input,
        ctc,
        loss_outputs: b.loss_outputs,
        unreachable: b.unreachable,
    })
}

/// The student's forward nodes prepared for training (training opset, batch-statistics
/// BN), with an emitter that knows every value's shape and the constants.
struct Forward {
    nodes: Vec<NodeProto>,
    inits: Vec<onnx::TensorProto>,
    em: Emitter,
    bn: Vec<BnStat>,
    input: String,
    train_opset: i64,
}

fn forward(student: &ModelProto, spec: &Spec) -> Result<Forward> {
    let gp = student.graph.as_ref().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))?;
    let opset = onnx::opset_of(student);
    let (nodes, _) = sorted_nodes(student)?;
    let input = onnx::data_input(student)?;
    let input_shape = spec.input_shape.clone();
    if gp.output.is_empty() {
        return Err(Error::InvalidGraph("model has no output".into()));
    }
    let (mut nodes, mut inits, train_opset) = forward_for_training(nodes, gp, opset, &input, &spec.input_shape, spec.trainable)?;
    let trainable: HashSet<&str> = spec.trainable.iter().map(String::as_str).collect();
    // shapes first (batch-statistics BN needs its input shapes)
    let mut shapes = probe_shapes(train_opset, &nodes, &inits, &input, &input_shape)?;
    let mut bn = vec![];
    if spec.bn == BnMode::Train {
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            let train_this = n.op_type() == "BatchNormalization" && (trainable.contains(n.input[1].as_str()) || trainable.contains(n.input[2].as_str()));
            if train_this {
                let xs = shapes.get(&n.input[0]).cloned().ok_or_else(|| Error::tensor(&n.input[0], "shape unknown"))?;
                let added = out.len();
                bn.push(batch_bn(&n, &xs, train_opset, &mut out, &mut inits));
                // the statistics are per channel; the BN output keeps its shape
                for o in out[added..].iter().filter(|m| m.op_type() != "BatchNormalization").flat_map(|m| m.output.iter()) {
                    shapes.insert(o.clone(), vec![xs[1]]);
                }
            } else {
                out.push(n);
            }
        }
        nodes = out;
    }
    let mut consts: HashMap<String, Tensor> = HashMap::new();
    for t in &inits {
        if let Ok(t) = Tensor::from_proto(t.clone()) {
            consts.insert(t.name().to_string(), t);
        }
    }
    for n in &nodes {
        if n.op_type() == "Constant" {
            if let Some(v) = crate::ir::constant_node_value(n) {
                consts.insert(n.output[0].clone(), v);
            }
        }
    }
    let mut em = Emitter::new(shapes, consts, train_opset, "g/");
    em.batch_bn = bn.iter().map(|b| b.node.clone()).collect();
    Ok(Forward { nodes, inits, em, bn, input, train_opset })
}

/// What the loss heads add: graph inputs (the teacher's values, weights, labels, CTC
/// terms), each head's loss value and the gradient seeds (value, d loss / d value).
#[derive(Default)]
struct Heads {
    inputs: Vec<onnx::ValueInfoProto>,
    teacher_inputs: Vec<(String, String, Vec<usize>)>,
    region_inputs: Vec<(usize, String)>,
    seeds: Vec<(String, String)>,
    loss_parts: Vec<(String, String)>,
}

/// Distillation on the outputs: one loss per output against the teacher's.
fn output_heads(em: &mut Emitter, spec: &Spec, h: &mut Heads) -> Result<()> {
    let ls = spec.loss;
    for l in &ls.outputs {
        let ts = em.shape(&l.tensor)?;
        let t_in = format!("teacher/{}", l.teacher_tensor);
        let want: Vec<usize> = ts.iter().map(|&d| d as usize).collect();
        if let Some(have) = spec.teacher_shapes.get(&l.teacher_tensor).filter(|h| **h != want) {
            return Err(Error::option("--teacher", format!("output '{}': the teacher's '{}' has shape {have:?}, the model's '{}' {want:?}", l.output, l.teacher_tensor, l.tensor)));
        }
        h.inputs.push(f32_info(&t_in, &ts));
        em.shapes.insert(t_in.clone(), ts.clone());
        let pixel_w = (l.kind == LossKind::Bce && ls.emphasis.region > 0.0).then(|| format!("weight/{}", l.teacher_tensor));
        if let Some(pw) = &pixel_w {
            h.inputs.push(f32_info(pw, &ts));
            em.shapes.insert(pw.clone(), ts.clone());
            h.region_inputs.push((h.teacher_inputs.len(), pw.clone()));
        }
        h.teacher_inputs.push((l.teacher_tensor.clone(), t_in.clone(), want));
        let mut scaled = l.clone();
        scaled.weight *= ls.distill_weight;
        let (value, seed) = loss::emit(em, &scaled, &t_in, ls.temperature, ls.emphasis, pixel_w.as_deref())?;
        // one output: "loss/kl"; several: "loss/kl:<output>"
        let name = if ls.outputs.len() == 1 { format!("loss/{}", kind_name(l.kind)) } else { format!("loss/{}:{}", kind_name(l.kind), l.output) };
        h.loss_parts.push((name, value));
        h.seeds.push((l.tensor.clone(), seed));
    }
    Ok(())
}

/// Labels: cross-entropy on the first `[N, C]` class-score output; the one-hot input
/// and the number of classes.
fn label_head(em: &mut Emitter, spec: &Spec, h: &mut Heads) -> Result<Option<(String, usize)>> {
    let ls = spec.loss;
    if !(spec.labels && ls.label_weight > 0.0) {
        return Ok(None);
    }
    let b = spec.batch as f32;
    let logits = ls
        .outputs
        .iter()
        .find(|l| l.kind == LossKind::Kl && em.shape(&l.tensor).is_ok_and(|s| s.len() == 2))
        .map(|l| l.tensor.clone())
        .ok_or_else(|| Error::option("--label-weight", "labels need a classifier output ([N, C] class scores with the KL loss)"))?;
    let shape = em.shape(&logits)?;
    let classes = shape[1] as usize;
    let y = "labels/onehot".to_string();
    h.inputs.push(f32_info(&y, &shape));
    em.shapes.insert(y.clone(), shape.clone());
    let lps = em.op("LogSoftmax", &[&logits], vec![a_int("axis", 1)], shape.clone());
    let ps = em.op("Softmax", &[&logits], vec![a_int("axis", 1)], shape.clone());
    let p = em.bin("Mul", &y, &lps)?;
    let tot = em.reduce("ReduceSum", &p, &[0, 1], false)?;
    let k = em.c_f32(-ls.label_weight / b);
    h.loss_parts.push(("loss/ce".into(), em.bin("Mul", &tot, &k)?));
    let diff = em.bin("Sub", &ps, &y)?;
    let gk = em.c_f32(ls.label_weight / b);
    let g = em.bin("Mul", &diff, &gk)?;
    h.seeds.push((logits, g));
    Ok(Some((y, classes)))
}

/// CTC on the first `[N, T, C]` class-score output: its loss and gradient are computed
/// on the host (`ctc.rs`) and enter as inputs.
fn ctc_head(em: &mut Emitter, spec: &Spec, h: &mut Heads) -> Result<Option<CtcInputs>> {
    let ls = spec.loss;
    if ls.ctc_weight <= 0.0 {
        return Ok(None);
    }
    let (output, l) = ls
        .outputs
        .iter()
        .enumerate()
        .find(|(_, l)| l.kind == LossKind::Kl && em.shape(&l.tensor).is_ok_and(|s| s.len() == 3) && (l.axis == -1 || l.axis == 2))
        .ok_or_else(|| Error::option("--ctc-weight", "CTC needs a recognizer output: [N, T, C] class scores on the last axis with the KL loss"))?;
    let shape = em.shape(&l.tensor)?;
    let (loss_input, grad_input) = ("ctc/loss".to_string(), "ctc/grad".to_string());
    h.inputs.push(f32_info(&loss_input, &[]));
    h.inputs.push(f32_info(&grad_input, &shape));
    em.shapes.insert(grad_input.clone(), shape.clone());
    em.shapes.insert(loss_input.clone(), vec![]);
    h.loss_parts.push(("loss/ctc".into(), loss_input.clone()));
    h.seeds.push((l.tensor.clone(), grad_input.clone()));
    Ok(Some(CtcInputs { output, tensor: l.tensor.clone(), shape: shape.iter().map(|&d| d as usize).collect(), loss_input, grad_input }))
}

/// Feature matching: a normalised squared error per matched intermediate value.
fn feature_head(em: &mut Emitter, spec: &Spec, h: &mut Heads) -> Result<()> {
    let ls = spec.loss;
    if ls.feature_weight <= 0.0 || ls.features.is_empty() {
        return Ok(());
    }
    let wf = ls.feature_weight / ls.features.len() as f32;
    let mut parts = vec![];
    for f in &ls.features {
        let fs = em.shape(f)?;
        let t_in = format!("teacher/{f}");
        h.inputs.push(f32_info(&t_in, &fs));
        em.shapes.insert(t_in.clone(), fs.clone());
        h.teacher_inputs.push((f.clone(), t_in.clone(), fs.iter().map(|&d| d as usize).collect()));
        let (l, g) = loss::nse(em, f, &t_in, wf)?;
        parts.push(l);
        h.seeds.push((f.to_string(), g));
    }
    h.loss_parts.push(("loss/feature".into(), em.sum(&parts)?));
    Ok(())
}

/// The training model and what `build` reports of its backward side.
struct Backward {
    model: ModelProto,
    params: Vec<String>,
    param_shapes: Vec<Vec<usize>>,
    grads: Vec<String>,
    loss_outputs: Vec<String>,
    unreachable: Vec<String>,
}

/// The backward graph from the heads' gradient seeds, the loss outputs (`loss_parts`
/// summed into "loss"), a gradient output per parameter and the BN batch statistics,
/// assembled with the forward nodes and the heads' graph `inputs` into one model.
#[allow(clippy::too_many_arguments)]
fn backward(mut em: Emitter, nodes: Vec<NodeProto>, mut inits: Vec<onnx::TensorProto>, mut inputs: Vec<onnx::ValueInfoProto>, seeds: &[(String, String)], loss_parts: &[(String, String)], bn: &[BnStat], trainable: &[String], train_opset: i64) -> Result<Backward> {
    let params: Vec<String> = trainable.to_vec();
    let grads = differentiate(&mut em, &nodes, &params, seeds)?;
    let mut outputs = vec![];
    let mut extra = vec![];
    let comps: Vec<String> = loss_parts.iter().map(|(_, v)| v.clone()).collect();
    let total = em.sum(&comps)?;
    let mut loss_outputs = vec!["loss".to_string()];
    extra.push(identity(&total, "loss"));
    outputs.push(f32_info("loss", &[]));
    for (name, v) in loss_parts {
        extra.push(identity(v, name));
        outputs.push(f32_info(name, &[]));
        loss_outputs.push(name.clone());
    }
    let mut grad_names = vec![];
    let mut param_shapes = vec![];
    let mut unreachable = vec![];
    let mut param_inputs = vec![];
    for p in &params {
        let shape = em.shape(p)?;
        let gname = format!("grad/{p}");
        match grads.get(p).cloned().flatten() {
            Some(g) => extra.push(identity(&g, &gname)),
            None => {
                unreachable.push(p.clone());
                let z = em.zeros(&shape);
                extra.push(identity(&z, &gname));
            }
        }
        outputs.push(f32_info(&gname, &shape));
        grad_names.push(gname);
        param_shapes.push(shape.iter().map(|&d| d as usize).collect());
        param_inputs.push(f32_info(p, &shape));
    }
    for s in bn {
        let c = em.shape(&s.batch_mean)?;
        outputs.push(f32_info(&s.batch_mean, &c));
        outputs.push(f32_info(&s.batch_var, &c));
    }
    let param_set: HashSet<&str> = params.iter().map(String::as_str).collect();
    let used: HashSet<&str> = nodes.iter().chain(em.nodes.iter()).flat_map(|n| n.input.iter().map(String::as_str)).collect();
    inits.retain(|t| !param_set.contains(t.name()) && used.contains(t.name()));
    inits.extend(em.inits.drain(..));
    inputs.extend(param_inputs);
    let mut all_nodes = nodes;
    all_nodes.append(&mut em.nodes);
    all_nodes.extend(extra);
    let model = model_proto(train_opset, all_nodes, inits, inputs, outputs);
    Ok(Backward { model, params, param_shapes, grads: grad_names, loss_outputs, unreachable })
}

fn kind_name(k: LossKind) -> &'static str {
    match k {
        LossKind::Kl => "kl",
        LossKind::Mse => "mse",
        LossKind::Bce => "bce",
        LossKind::Nse => "nse",
        LossKind::None => "none",
    }
}

fn identity(from: &str, to: &str) -> NodeProto {
    onnx::make_node(&format!("{to}/identity"), "Identity", &[from], &[to], vec![])
}

/// A gradient-only model for checking backward rules: inputs are the forward
/// graph inputs, `wrt` (as inputs) and one cotangent `d/<out>` per output;
/// outputs are `grad/<w>` for every `wrt`.
pub fn gradient_model(model: &ModelProto, wrt: &[String], input_shapes: &[(String, Vec<usize>)]) -> Result<ModelProto> {
    let gp = model.graph.as_ref().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))?;
    let opset = onnx::opset_of(model);
    let (nodes, _) = sorted_nodes(model)?;
    let (iname, ishape) = input_shapes.first().ok_or_else(|| Error::InvalidGraph("no input".into()))?;
    let (mut nodes, mut inits, train_opset) = forward_for_training(nodes, gp, opset, iname, ishape, wrt)?;
    let mut shapes = probe_shapes(train_opset, &nodes, &inits, iname, ishape)?;
    for (n, s) in input_shapes {
        shapes.insert(n.clone(), s.iter().map(|&d| d as i64).collect());
    }
    let mut consts = HashMap::new();
    for t in &inits {
        if let Ok(t) = Tensor::from_proto(t.clone()) {
            consts.insert(t.name().to_string(), t);
        }
    }
    let mut em = Emitter::new(shapes, consts, train_opset, "g/");
    let mut inputs: Vec<onnx::ValueInfoProto> = input_shapes.iter().map(|(n, s)| f32_info(n, &s.iter().map(|&d| d as i64).collect::<Vec<_>>())).collect();
    let mut seeds = vec![];
    for o in &gp.output {
        let s = em.shape(o.name())?;
        let d = format!("d/{}", o.name());
        inputs.push(f32_info(&d, &s));
        em.shapes.insert(d.clone(), s);
        seeds.push((o.name().to_string(), d));
    }
    let grads = differentiate(&mut em, &nodes, wrt, &seeds)?;
    let mut outputs = vec![];
    let mut extra = vec![];
    for w in wrt {
        let s = em.shape(w)?;
        let g = match grads.get(w).cloned().flatten() {
            Some(g) => g,
            None => em.zeros(&s),
        };
        extra.push(identity(&g, &format!("grad/{w}")));
        outputs.push(f32_info(&format!("grad/{w}"), &s));
    }
    let wset: HashSet<&str> = wrt.iter().map(String::as_str).collect();
    for w in wrt {
        if let Some(t) = inits.iter().find(|t| t.name() == w) {
            inputs.push(f32_info(w, &t.dims));
        }
    }
    inits.retain(|t| !wset.contains(t.name()));
    inits.extend(em.inits.drain(..));
    nodes.append(&mut em.nodes);
    nodes.extend(extra);
    Ok(model_proto(train_opset, nodes, inits, inputs, outputs))
}

//! Fine-tuning a quantized (QDQ) student: the integer weights behind
//! DequantizeLinear become float initializers behind a QuantizeLinear →
//! DequantizeLinear pair ("fake quantization") with the model's own scales and
//! zero points, so that training updates floats while the forward pass computes
//! exactly what the INT8 model computes; the gradient passes the pair straight
//! through (`grad::quant`). Integer biases are trained as floats. After
//! training, [`lower`] rounds the floats back onto the same integer grid: the
//! written model is the model that was trained, in its original QDQ form.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::onnx::{self, attr_int, dtype, ModelProto, NodeProto, TensorProto};
use crate::onnx::tensor::Tensor;

/// One integer weight (and its bias) lifted to floats.
#[derive(Debug, Clone)]
struct LiftedWeight {
    /// The integer initializer's name: in the lifted model, the QuantizeLinear's output.
    int_name: String,
    float_name: String,
    original: TensorProto,
    initial: Vec<f32>,
    scale: Vec<f32>,
    zero_point: Vec<i64>,
    /// Elements per step of the quantization axis, and its length (1, 1 per tensor).
    inner: usize,
    channels: usize,
    bias: Option<LiftedBias>,
}

/// An int32 bias behind a DequantizeLinear: in the lifted model a float
/// initializer named as the DequantizeLinear's output.
#[derive(Debug, Clone)]
struct LiftedBias {
    node: NodeProto,
    original: TensorProto,
    initial: Vec<f32>,
    scale: Vec<f32>,
}

/// What [`lift`] changed, for [`lower`].
#[derive(Debug, Clone, Default)]
pub struct Lifted {
    weights: Vec<LiftedWeight>,
}

impl Lifted {
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
    pub fn len(&self) -> usize {
        self.weights.len()
    }
}

fn float_values(t: &TensorProto) -> Option<Vec<f32>> {
    Tensor::from_proto(t.clone()).ok()?.to_f32().ok().map(|a| a.iter().copied().collect())
}

fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    Tensor::from_proto(t.clone()).ok()?.to_i64().ok()
}

/// (scale per channel, zero point per channel, elements per axis step, channels) of a
/// DequantizeLinear over `dims`; None when the scale or zero point is not a constant.
fn grid(n: &NodeProto, inits: &HashMap<&str, &TensorProto>, dims: &[i64]) -> Option<(Vec<f32>, Vec<i64>, usize, usize)> {
    let scale = float_values(inits.get(n.input.get(1)?.as_str())?)?;
    let zero_point = match n.input.get(2).filter(|z| !z.is_empty()) {
        Some(z) => int_values(inits.get(z.as_str())?)?,
        None => vec![0; scale.len()],
    };
    if scale.len() != zero_point.len() || scale.is_empty() || scale.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
        return None;
    }
    if scale.len() == 1 {
        return Some((scale, zero_point, dims.iter().product::<i64>().max(1) as usize, 1));
    }
    let rank = dims.len() as i64;
    let a = attr_int(n, "axis").unwrap_or(1);
    let a = if a < 0 { a + rank } else { a };
    if !(0..rank).contains(&a) || dims[a as usize] as usize != scale.len() {
        return None;
    }
    let inner: i64 = dims[a as usize + 1..].iter().product();
    let channels = scale.len();
    Some((scale, zero_point, inner.max(1) as usize, channels))
}

fn channel(i: usize, inner: usize, channels: usize) -> usize {
    if channels == 1 { 0 } else { (i / inner) % channels }
}

/// Replace every integer weight that a DequantizeLinear feeds to one Conv, Gemm
/// or MatMul (and that op's int32 bias) with trainable floats behind fake
/// quantization. A model without such weights comes back unchanged.
pub fn lift(model: &ModelProto) -> (ModelProto, Lifted) {
    let mut m = model.clone();
    let mut lifted = Lifted::default();
    let Some(g) = m.graph.as_mut() else { return (m, lifted) };
    let inits: HashMap<&str, &TensorProto> = g.initializer.iter().map(|t| (t.name(), t)).collect();
    let mut consumers: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for (s, x) in n.input.iter().enumerate() {
            consumers.entry(x.as_str()).or_default().push((i, s));
        }
    }
    let graph_outputs: HashSet<&str> = g.output.iter().map(|o| o.name()).collect();
    let producer: HashMap<&str, usize> = g.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    // (index of the weight's DequantizeLinear, weight record, index of the bias's DequantizeLinear)
    let mut plan: Vec<(usize, LiftedWeight, Option<usize>)> = vec![];
    for (i, n) in g.node.iter().enumerate() {
        if n.op_type() != "DequantizeLinear" || n.domain.as_deref().is_some_and(|d| !d.is_empty() && d != "ai.onnx") || n.output.len() != 1 {
            continue;
        }
        let Some(t) = n.input.first().and_then(|x| inits.get(x.as_str())) else { continue };
        if !matches!(t.data_type(), dtype::INT8 | dtype::UINT8) || graph_outputs.contains(n.output[0].as_str()) {
            continue;
        }
        let users = consumers.get(n.output[0].as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let &[(c, 1)] = users else { continue };
        let op = &g.node[c];
        if !matches!(op.op_type(), "Conv" | "Gemm" | "MatMul") {
            continue;
        }
        // an integer weight read by anything else stays as it is
        if consumers.get(t.name()).is_some_and(|u| u.len() != 1) {
            continue;
        }
        let (Some(ints), Some((scale, zero_point, inner, channels))) = (int_values(t), grid(n, &inits, &t.dims)) else { continue };
        let initial: Vec<f32> = ints.iter().enumerate().map(|(k, &q)| {
            let ch = channel(k, inner, channels);
            (q - zero_point[ch]) as f32 * scale[ch]
        }).collect();
        // the bias: DequantizeLinear(int32 initializer, scale) read only by this op
        let bias = op.input.get(2).filter(|b| !b.is_empty()).and_then(|b| {
            let &bi = producer.get(b.as_str())?;
            let bn = &g.node[bi];
            let bt = inits.get(bn.input.first()?.as_str())?;
            let only_here = consumers.get(b.as_str()).is_some_and(|u| u.len() == 1) && consumers.get(bt.name()).is_some_and(|u| u.len() == 1);
            if bn.op_type() != "DequantizeLinear" || bt.data_type() != dtype::INT32 || !only_here || graph_outputs.contains(b.as_str()) {
                return None;
            }
            let q = int_values(bt)?;
            let (s, z, inner, ch) = grid(bn, &inits, &bt.dims)?;
            let initial = q.iter().enumerate().map(|(k, &v)| (v - z[channel(k, inner, ch)]) as f32 * s[channel(k, inner, ch)]).collect();
            let per = q.iter().enumerate().map(|(k, _)| s[channel(k, inner, ch)]).collect();
            z.iter().all(|&v| v == 0).then(|| (bi, LiftedBias { node: bn.clone(), original: (*bt).clone(), initial, scale: per }))
        });
        let (bias_node, bias) = match bias {
            Some((bi, b)) => (Some(bi), Some(b)),
            None => (None, None),
        };
        let rec = LiftedWeight {
            int_name: t.name().to_string(),
            float_name: format!("{}.float", t.name()),
            original: (*t).clone(),
            initial,
            scale,
            zero_point,
            inner,
            channels,
            bias,
        };
        plan.push((i, rec, bias_node));
    }
    if plan.is_empty() {
        return (m, lifted);
    }
    let taken: HashSet<&str> = g.initializer.iter().map(|t| t.name()).chain(g.node.iter().flat_map(|n| n.output.iter().map(String::as_str))).collect();
    plan.retain(|(_, w, _)| !taken.contains(w.float_name.as_str()));
    let int_names: HashSet<String> = plan.iter().map(|(_, w, _)| w.int_name.clone()).collect();
    let bias_names: HashSet<String> = plan.iter().filter_map(|(_, w, _)| w.bias.as_ref().map(|b| b.original.name().to_string())).collect();
    let bias_nodes: HashSet<usize> = plan.iter().filter_map(|(_, _, b)| *b).collect();
    let quantize_before: HashMap<usize, &LiftedWeight> = plan.iter().map(|(i, w, _)| (*i, w)).collect();
    let mut new_inits: Vec<TensorProto> = vec![];
    let mut nodes = Vec::with_capacity(g.node.len() + plan.len());
    for (i, n) in g.node.iter().enumerate() {
        if bias_nodes.contains(&i) {
            continue;
        }
        if let Some(w) = quantize_before.get(&i) {
            new_inits.push(float_tensor(&w.float_name, &w.original.dims, &w.initial));
            let mut q = onnx::make_node(&format!("{}.fake_quantize", w.int_name), "QuantizeLinear", &[&w.float_name], &[&w.int_name], n.attribute.clone());
            q.input.extend(n.input[1..].iter().cloned());
            // QuantizeLinear's output type follows the zero point: an int8 weight without one gets zeros
            if n.input.get(2).is_none_or(|z| z.is_empty()) && w.original.data_type() == dtype::INT8 {
                let z = format!("{}.zero_point", w.int_name);
                let mut zt = Tensor::from_int8(&z, &[w.scale.len() as i64], &vec![0; w.scale.len()]).into_proto();
                if w.scale.len() == 1 {
                    zt.dims.clear();
                }
                new_inits.push(zt);
                q.input.resize(3, String::new());
                q.input[2] = z;
            }
            nodes.push(q);
        }
        nodes.push(n.clone());
    }
    for (_, w, _) in &plan {
        if let Some(b) = &w.bias {
            new_inits.push(float_tensor(&b.node.output[0], &b.original.dims, &b.initial));
        }
    }
    g.node = nodes;
    g.initializer.retain(|t| !int_names.contains(t.name()) && !bias_names.contains(t.name()));
    g.initializer.extend(new_inits);
    lifted.weights = plan.into_iter().map(|(_, w, _)| w).collect();
    (m, lifted)
}

/// Round the trained floats of a lifted model back onto their integer grids
/// (the scales and zero points they were trained with): the QDQ model again.
/// Weights training did not change keep their original tensors bit for bit.
pub fn lower(model: &ModelProto, lifted: &Lifted) -> Result<ModelProto> {
    let mut m = model.clone();
    let g = m.graph.as_mut().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))?;
    let values: HashMap<String, Vec<f32>> = g
        .initializer
        .iter()
        .filter(|t| t.data_type() == dtype::FLOAT)
        .filter_map(|t| Some((t.name().to_string(), float_values(t)?)))
        .collect();
    let mut drop: HashSet<String> = HashSet::new();
    let mut add: Vec<TensorProto> = vec![];
    let mut bias_nodes: HashMap<String, NodeProto> = HashMap::new();
    for w in &lifted.weights {
        let v = values.get(&w.float_name).ok_or_else(|| Error::tensor(&w.float_name, "the trained weight is missing"))?;
        drop.insert(w.float_name.clone());
        drop.insert(format!("{}.zero_point", w.int_name));
        if *v == w.initial {
            add.push(w.original.clone());
        } else {
            let (lo, hi) = if w.original.data_type() == dtype::INT8 { (-128, 127) } else { (0, 255) };
            let q: Vec<i64> = v
                .iter()
                .enumerate()
                .map(|(k, &x)| {
                    let ch = channel(k, w.inner, w.channels);
                    ((x / w.scale[ch]).round_ties_even() as i64 + w.zero_point[ch]).clamp(lo, hi)
                })
                .collect();
            let t = Tensor::from_ints(&w.int_name, w.original.data_type(), &w.original.dims, &q).ok_or_else(|| Error::tensor(&w.int_name, "unsupported integer type"))?;
            add.push(t.into_proto());
        }
        if let Some(b) = &w.bias {
            let name = &b.node.output[0];
            let v = values.get(name).ok_or_else(|| Error::tensor(name, "the trained bias is missing"))?;
            drop.insert(name.clone());
            if *v == b.initial {
                add.push(b.original.clone());
            } else {
                let q: Vec<i64> = v.iter().zip(&b.scale).map(|(&x, &s)| ((x as f64 / s as f64).round() as i64).clamp(i32::MIN as i64, i32::MAX as i64)).collect();
                add.push(Tensor::from_int32(b.original.name(), &b.original.dims, &q).into_proto());
            }
            bias_nodes.insert(name.clone(), b.node.clone());
        }
    }
    let fake: HashSet<String> = lifted.weights.iter().map(|w| format!("{}.fake_quantize", w.int_name)).collect();
    let mut nodes = Vec::with_capacity(g.node.len() + bias_nodes.len());
    for n in g.node.drain(..) {
        if n.op_type() == "QuantizeLinear" && fake.contains(n.name()) {
            continue;
        }
        for x in &n.input {
            if let Some(b) = bias_nodes.remove(x) {
                nodes.push(b);
            }
        }
        nodes.push(n);
    }
    g.node = nodes;
    g.initializer.retain(|t| !drop.contains(t.name()));
    g.initializer.extend(add);
    Ok(m)
}

/// A float initializer of `dims` holding `values` (read from a tensor of those dims).
fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto { name: Some(name.to_string()), dims: dims.to_vec(), data_type: Some(dtype::FLOAT), float_data: values.to_vec(), ..Default::default() }
}

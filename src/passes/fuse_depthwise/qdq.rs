//! QDQ models: a depthwise conv as ONNX Runtime's `quantize_static` (and
//! TensorRT, OpenVINO, PyTorch) writes it,
//!
//! ```text
//! x_q ─DQ─▶ x ──Conv(W = DQ(int8, per-channel scale), b = DQ(int32))──▶ y ─Q─▶ y_q
//! ```
//!
//! is rewritten from its dequantized kernel like a float one, and the block
//! keeps the Q/DQ structure, so the result is still a QDQ model that runtimes
//! fuse into integer kernels:
//!
//! ```text
//! x ─Split─┬─Q─DQ─ Conv(1×K, DQ(int8), DQ(int32)) ─Q─DQ─┐
//!          └─Q─DQ─ Conv(K×1, DQ(int8), DQ(int32)) ─Q─DQ─┴─Concat─▶ y ─Q─▶ y_q
//! ```
//!
//! The Q/DQ after the Split reuse the input's scale and zero point (the values
//! are already on that grid, so they change nothing); those after each 1-D conv
//! reuse the output's (the Concat is then exact). Weights are requantized per
//! output channel, symmetric int8: a 1-D kernel whose values lie on the
//! original channel's grid (`center` takes a row of the integer kernel) keeps
//! its integers and scale, so a layer the variant represents exactly computes
//! exactly what the quantized original did; other kernels (`sum`, `lsq`) get
//! the scale max|w| / 127. Biases become int32 at scale x_scale × w_scale.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::ir::{Graph, Node, Patch};
use crate::onnx::{self, a_int, dtype, NodeProto};
use crate::passes::fuse_depthwise::Names;
use crate::onnx::tensor::Tensor;

/// The quantization around a quantized depthwise conv: the scale and
/// zero-point initializers of its input (its DequantizeLinear, or the
/// QLinearConv's own inputs) and output (the QuantizeLinear reading it, or the
/// QLinearConv's), and the per-channel weight scales.
#[derive(Debug, Clone)]
pub struct Qdq {
    /// QOperator form: a QLinearConv on integer tensors (the block is Split →
    /// QLinearConv ×2 → Concat of the integers, which share the output's scale).
    pub qlinear: bool,
    pub x_scale: String,
    pub x_zp: Option<String>,
    pub y_scale: String,
    pub y_zp: Option<String>,
    pub x_scale_value: f32,
    /// Scale of every output channel's weights in the original.
    pub w_scale: Vec<f32>,
}

/// A QDQ conv's dequantized weight and bias and its [`Qdq`]; `Ok(None)` when
/// the weight is not behind a DequantizeLinear, `Err(reason)` when it is but
/// the pattern is not one the pass rewrites.
pub type Matched = (ArrayD<f32>, Option<ArrayD<f32>>, Qdq);

fn scalar_const(g: &Graph, v: &str) -> Option<f32> {
    let t = g.const_tensor(v)?;
    (t.len() == 1).then(|| t.to_f32().ok()?.iter().next().copied())?
}

/// (values, per-axis scales) of a DequantizeLinear of constants with zero
/// points all zero; the scales are repeated to `channels` when per-tensor.
fn dequantize(g: &Graph, dq: &Node, channels: usize, what: &str) -> std::result::Result<(ArrayD<f32>, Vec<f32>), String> {
    let (Some(q), Some(s)) = (dq.input(0).and_then(|v| g.const_tensor(v)), dq.input(1).and_then(|v| g.const_tensor(v))) else {
        return Err(format!("the {what}'s DequantizeLinear does not read constants"));
    };
    let ints = q.to_i64().map_err(|e| format!("the {what} is not integer data: {e}"))?;
    let scales: Vec<f32> = s.to_f32().map_err(|e| format!("the {what}'s scale: {e}"))?.iter().copied().collect();
    if let Some(zp) = dq.input(2).filter(|v| !v.is_empty()) {
        let z = g.const_tensor(zp).and_then(|t| t.to_i64().ok()).ok_or_else(|| format!("the {what}'s zero point is not a constant"))?;
        if z.iter().any(|&v| v != 0) {
            return Err(format!("the {what} is quantized asymmetrically (zero point not 0)"));
        }
    }
    let axis = onnx::attr_int(&dq.proto, "axis").unwrap_or(1);
    let scales = match scales.len() {
        1 => vec![scales[0]; channels],
        n if n == channels && (axis == 0 || what == "bias") => scales,
        n => return Err(format!("the {what}'s scale has {n} values on axis {axis}: only per-tensor or per-output-channel (axis 0) scales are rewritten")),
    };
    let shape: Vec<usize> = q.shape();
    let per = ints.len() / channels.max(1);
    let data: Vec<f32> = ints.iter().enumerate().map(|(i, &v)| v as f32 * scales[i / per.max(1)]).collect();
    Ok((ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| e.to_string())?, scales))
}

/// Match the QDQ pattern around depthwise conv `n` (see the module docs).
pub fn match_qdq(g: &Graph, n: &Node) -> std::result::Result<Option<Matched>, String> {
    let dq_of = |v: Option<&str>| v.and_then(|v| g.producer(v)).map(|(p, _)| g.node(p)).filter(|p| p.op() == "DequantizeLinear" && p.is_default_domain());
    let Some(wdq) = dq_of(n.input(1)) else { return Ok(None) };
    let wq = wdq.input(0).and_then(|v| g.const_tensor(v)).ok_or("the weight's DequantizeLinear does not read a constant")?;
    if wq.dtype() != dtype::INT8 {
        return Err(format!("the weight is {}: int8 weights are rewritten", dtype::name(wq.dtype())));
    }
    let c = *wq.dims().first().ok_or("weight without dims")? as usize;
    let (weight, w_scale) = dequantize(g, wdq, c, "weight")?;
    let xdq = dq_of(n.input(0)).ok_or("the input is not dequantized (no DequantizeLinear before the conv)")?;
    let x_scale = xdq.input(1).ok_or("input DequantizeLinear without scale")?.to_string();
    let x_scale_value = scalar_const(g, &x_scale).ok_or("the input's scale is not one constant")?;
    let bias = match n.input(2).filter(|v| !v.is_empty()) {
        None => None,
        Some(b) => match dq_of(Some(b)) {
            Some(bdq) => Some(dequantize(g, bdq, c, "bias")?.0),
            None => Some(g.const_tensor(b).and_then(|t| t.to_f32().ok()).ok_or("the bias is neither quantized nor a float constant")?),
        },
    };
    let y = n.output(0).ok_or("conv without output")?;
    let readers = g.consumers(y);
    let q = match readers {
        [(q, 0)] if g.node(*q).op() == "QuantizeLinear" && !g.is_graph_output(y) => g.node(*q),
        _ => return Err("the output is not read by one QuantizeLinear alone".into()),
    };
    let y_scale = q.input(1).ok_or("output QuantizeLinear without scale")?.to_string();
    scalar_const(g, &y_scale).ok_or("the output's scale is not one constant")?;
    let qdq = Qdq {
        qlinear: false,
        x_scale,
        x_zp: xdq.input(2).filter(|v| !v.is_empty()).map(str::to_string),
        y_scale,
        y_zp: q.input(2).filter(|v| !v.is_empty()).map(str::to_string),
        x_scale_value,
        w_scale,
    };
    Ok(Some((weight, bias, qdq)))
}

/// Match a depthwise QLinearConv (inputs x, x_scale, x_zp, w, w_scale, w_zp,
/// y_scale, y_zp, B): int8 weights with zero points 0, per-channel or
/// per-tensor scales, constant scalar activation scales.
pub fn match_qlinear(g: &Graph, n: &Node) -> std::result::Result<Matched, String> {
    let input = |i: usize| n.input(i).filter(|v| !v.is_empty());
    let wq = input(3).and_then(|v| g.const_tensor(v)).ok_or("the weight is not a constant")?;
    if wq.dtype() != dtype::INT8 {
        return Err(format!("the weight is {}: int8 weights are rewritten", dtype::name(wq.dtype())));
    }
    let c = *wq.dims().first().ok_or("weight without dims")? as usize;
    let ints = wq.to_i64().map_err(|e| e.to_string())?;
    let scales: Vec<f32> = input(4).and_then(|v| g.const_tensor(v)).and_then(|t| t.to_f32().ok()).ok_or("the weight scale is not a constant")?.iter().copied().collect();
    let w_scale = match scales.len() {
        1 => vec![scales[0]; c],
        k if k == c => scales,
        k => return Err(format!("the weight scale has {k} values for {c} channels")),
    };
    if let Some(z) = input(5) {
        let z = g.const_tensor(z).and_then(|t| t.to_i64().ok()).ok_or("the weight zero point is not a constant")?;
        if z.iter().any(|&v| v != 0) {
            return Err("the weight is quantized asymmetrically (zero point not 0)".into());
        }
    }
    let name = |i: usize, what: &str| input(i).map(str::to_string).ok_or(format!("QLinearConv without {what}"));
    let x_scale = name(1, "x_scale")?;
    let x_scale_value = scalar_const(g, &x_scale).ok_or("the input's scale is not one constant")?;
    let y_scale = name(6, "y_scale")?;
    scalar_const(g, &y_scale).ok_or("the output's scale is not one constant")?;
    let per = ints.len() / c.max(1);
    let weight = ArrayD::from_shape_vec(IxDyn(&wq.shape()), ints.iter().enumerate().map(|(i, &v)| v as f32 * w_scale[i / per.max(1)]).collect()).map_err(|e| e.to_string())?;
    let bias = match input(8) {
        None => None,
        Some(b) => {
            let bi = g.const_tensor(b).and_then(|t| t.to_i64().ok()).ok_or("the bias is not a constant")?;
            Some(ArrayD::from_shape_vec(IxDyn(&[c]), bi.iter().zip(&w_scale).map(|(&v, &s)| v as f32 * s * x_scale_value).collect()).map_err(|e| e.to_string())?)
        }
    };
    let qdq = Qdq { qlinear: true, x_scale, x_zp: input(2).map(str::to_string), y_scale, y_zp: input(7).map(str::to_string), x_scale_value, w_scale };
    Ok((weight, bias, qdq))
}

/// A branch's requantized weight as initializers: the int8 weight, its
/// per-channel scales and zero points (the inputs of a QLinearConv or of a
/// DequantizeLinear), the int32 bias at input scale × weight scale, and those
/// bias scales.
pub struct IntWeights {
    pub weight: [String; 3],
    pub bias: Option<String>,
    pub bias_scales: Vec<f32>,
}

pub fn int_weights(names: &mut Names, patch: &mut Patch, prefix: &str, w: &ArrayD<f32>, grid: &[f32], bias: Option<&ArrayD<f32>>, x_scale: f32) -> IntWeights {
    let c = w.shape()[0];
    let dims: Vec<i64> = w.shape().iter().map(|&d| d as i64).collect();
    let (ints, scales) = requantize(w, grid);
    let mut add = |suffix: &str, t: Tensor| -> String {
        let n = names.fresh(&format!("{prefix}.{suffix}"));
        patch.initializers.push(t.renamed(&n));
        n
    };
    let wq = add("weight_quantized", Tensor::from_int8("", &dims, &ints));
    let ws = add("weight_scale", Tensor::from_f32("", &ndarray::Array1::from(scales.clone()).into_dyn()));
    let wz = add("weight_zero_point", Tensor::from_int8("", &[c as i64], &vec![0; c]));
    let bias_scales: Vec<f32> = scales.iter().map(|s| s * x_scale).collect();
    let bias = bias.map(|b| {
        let bi: Vec<i64> = b.iter().zip(&bias_scales).map(|(&v, &s)| (v / s).round() as i64).collect();
        add("bias_quantized", Tensor::from_int32("", &[c as i64], &bi))
    });
    IntWeights { weight: [wq, ws, wz], bias, bias_scales }
}

/// Per-channel symmetric int8 of kernels [C, 1, kh, kw]: a channel whose
/// values are integers times `grid[c]` (within int8) keeps that scale and
/// those integers; others get max|w| / 127.
pub fn requantize(w: &ArrayD<f32>, grid: &[f32]) -> (Vec<i64>, Vec<f32>) {
    let mut ints = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(grid.len());
    for (c, k) in w.axis_iter(Axis(0)).enumerate() {
        let on_grid = grid[c] > 0.0 && k.iter().all(|&v| {
            let q = v / grid[c];
            (q - q.round()).abs() < 1e-3 && q.round().abs() <= 127.0
        });
        let s = if on_grid {
            grid[c]
        } else {
            let m = k.iter().fold(0f32, |a, v| a.max(v.abs()));
            if m > 0.0 { m / 127.0 } else { 1.0 }
        };
        ints.extend(k.iter().map(|&v| (v / s).round().clamp(-127.0, 127.0) as i64));
        scales.push(s);
    }
    (ints, scales)
}

fn dq_node(name: &str, inputs: Vec<String>, output: &str, axis: Option<i64>) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some("DequantizeLinear".into()),
        input: inputs,
        output: vec![output.into()],
        attribute: axis.map(|a| vec![a_int("axis", a)]).unwrap_or_default(),
        ..Default::default()
    }
}

/// A QuantizeLinear / DequantizeLinear pair on `value` with the given scale
/// and zero point (initializer names); returns the dequantized value.
pub fn requantized(names: &mut Names, patch: &mut Patch, pos: u64, base: &str, value: &str, scale: &str, zp: Option<&str>) -> String {
    let q = names.fresh(&format!("{value}.q"));
    let dq = names.fresh(&format!("{value}.dq"));
    let mut args = vec![scale.to_string()];
    args.extend(zp.map(str::to_string));
    let mut qin = vec![value.to_string()];
    qin.extend(args.iter().cloned());
    patch.add.push((
        NodeProto { name: Some(names.fresh(&format!("{base}.fuse.quantize"))), op_type: Some("QuantizeLinear".into()), input: qin, output: vec![q.clone()], ..Default::default() },
        pos,
    ));
    let mut dqin = vec![q];
    dqin.extend(args);
    patch.add.push((dq_node(&names.fresh(&format!("{base}.fuse.dequantize")), dqin, &dq, None), pos));
    dq
}

/// The int8 weight of a branch (and int32 bias) behind DequantizeLinear nodes;
/// returns the names of the dequantized weight and bias. `grid`: the original
/// scale of each of the branch's channels.
#[allow(clippy::too_many_arguments)]
pub fn quantized_weight(names: &mut Names, patch: &mut Patch, pos: u64, prefix: &str, w: &ArrayD<f32>, grid: &[f32], bias: Option<&ArrayD<f32>>, x_scale: f32) -> (String, Option<String>) {
    let c = w.shape()[0];
    let IntWeights { weight, bias, bias_scales } = int_weights(names, patch, prefix, w, grid, bias, x_scale);
    let wout = names.fresh(&format!("{prefix}.weight"));
    let node = dq_node(&names.fresh(&format!("{prefix}.weight_dequantize")), weight.to_vec(), &wout, Some(0));
    patch.add.push((node, pos));
    let bout = bias.map(|bq| {
        let mut add = |suffix: &str, t: Tensor| -> String {
            let n = names.fresh(&format!("{prefix}.{suffix}"));
            patch.initializers.push(t.renamed(&n));
            n
        };
        let bs = add("bias_scale", Tensor::from_f32("", &ndarray::Array1::from(bias_scales).into_dyn()));
        let bz = add("bias_zero_point", Tensor::from_int32("", &[c as i64], &vec![0; c]));
        let out = names.fresh(&format!("{prefix}.bias"));
        let node = dq_node(&names.fresh(&format!("{prefix}.bias_dequantize")), vec![bq, bs, bz], &out, Some(0));
        patch.add.push((node, pos));
        out
    });
    (wout, bout)
}

//! The shape rule of each op: output dtypes, shapes and (for small integer
//! tensors) values from the input facts.

use super::{unknown, ValueFact};
use crate::error::{Error, Result};
use crate::ir::op::Window;
use crate::ir::{values, Graph, Node};
use crate::onnx::{self, attr_int, attr_ints, attr_string, dtype, Dim};

/// Ops with a shape rule in [`infer_node`].
pub(super) const KNOWN_OPS: &[&str] = &[
    "Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Softmax", "LogSoftmax", "Identity", "Neg", "Abs",
    "Sqrt", "Exp", "Log", "Erf", "Reciprocal", "PRelu", "Softplus", "Mish", "Gelu", "BatchNormalization", "InstanceNormalization", "LRN", "Floor",
    "Ceil", "Round", "Sign", "Relu6", "Not", "CumSum", "LayerNormalization", "Dropout", "Cast", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod",
    "Equal", "Less", "Greater", "And", "Or", "LessOrEqual", "GreaterOrEqual", "Where", "Constant", "Shape", "Size", "Conv", "ConvTranspose", "MaxPool",
    "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
    "ArgMax", "ArgMin", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gemm", "MatMul", "Transpose", "Pad", "Expand", "Tile",
    "ConstantOfShape", "Range", "Resize", "Upsample", "Gather",
];

/// A Conv's channel counts as ONNX defines them: weight [M, C/group, k...] on an
/// input of C channels, M a multiple of `group` (what runtimes refuse to run).
fn check_conv_channels(p: &onnx::NodeProto, xs: &[Dim], ws: &[Dim]) -> Result<()> {
    let group = attr_int(p, "group").unwrap_or(1);
    if group < 1 {
        return Err(Error::InvalidGraph(format!("group = {group}: must be at least 1")));
    }
    if let Some(m) = ws[0].known().filter(|m| m % group != 0) {
        return Err(Error::InvalidGraph(format!("weight has {m} output channels, not a multiple of group = {group}")));
    }
    if let (Some(c), Some(per_group)) = (xs[1].known(), ws[1].known())
        && per_group.checked_mul(group) != Some(c)
    {
        return Err(Error::InvalidGraph(format!(
            "input has {c} channels but the weight [{}] with group = {group} expects {}",
            ws.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            per_group.saturating_mul(group)
        )));
    }
    Ok(())
}

fn same(ins: &[ValueFact]) -> Vec<Option<ValueFact>> {
    vec![ins.first().cloned()]
}

fn known_all(s: &[Dim]) -> Option<Vec<i64>> {
    s.iter().map(Dim::known).collect()
}

fn broadcast(ins: &[ValueFact]) -> Option<Vec<Dim>> {
    let shapes: Option<Vec<&Vec<Dim>>> = ins.iter().map(|f| f.shape.as_ref()).collect();
    let shapes = shapes.filter(|s| !s.is_empty())?;
    let rank = shapes.iter().map(|s| s.len()).max()?;
    let mut out = vec![Dim::Known(1); rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, d) in s.iter().enumerate() {
            let cur = &out[off + i];
            out[off + i] = match (cur, d) {
                (Dim::Known(1), x) => x.clone(),
                (x, Dim::Known(1)) => x.clone(),
                (Dim::Known(a), Dim::Known(b)) if a == b => Dim::Known(*a),
                (Dim::Known(_), Dim::Known(_)) => return None,
                (Dim::Known(a), Dim::Sym(_)) => Dim::Known(*a),
                (Dim::Sym(a), _) => Dim::Sym(a.clone()),
            };
        }
    }
    Some(out)
}

/// A fully known integer input (a constant, or a folded shape computation).
fn in_ints(ins: &[ValueFact], slot: usize) -> Option<Vec<i64>> {
    ins.get(slot).and_then(|f| f.value.as_deref()).and_then(values::known)
}

/// Known product and symbol names of a shape; `None` if a dim is anonymous.
fn factor(s: &[Dim]) -> Option<(i64, Vec<String>)> {
    let mut k = 1i64;
    let mut syms = vec![];
    for d in s {
        match d {
            Dim::Known(v) => k = k.checked_mul(*v)?,
            Dim::Sym(n) if n.is_empty() => return None,
            Dim::Sym(n) => syms.push(n.clone()),
        }
    }
    Some((k, syms))
}

/// The `-1` of a Reshape target: the input's size over the other target dims,
/// with named symbols cancelling (`[batch, C, 1, 1]` → `[batch, -1]` gives C).
fn reshape_rest(input: &[Dim], others: &[Dim]) -> Dim {
    let (Some((kin, mut syms)), Some((krest, rsyms))) = (factor(input), factor(others)) else { return unknown() };
    for s in rsyms {
        match syms.iter().position(|x| *x == s) {
            Some(i) => {
                syms.remove(i);
            }
            None => return unknown(),
        }
    }
    match syms.as_slice() {
        [] if krest > 0 && kin % krest == 0 => Dim::Known(kin / krest),
        [one] if krest == kin => Dim::Sym(one.clone()),
        _ => unknown(),
    }
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

pub(super) fn infer_node(g: &Graph, node: &Node, ins: &[ValueFact]) -> Result<Vec<Option<ValueFact>>> {
    if super::quant::is_quant_op(node) {
        return super::quant::infer(node, ins, &|op, view| infer_op(g, node, op, view));
    }
    if !node.is_default_domain() {
        return Ok(vec![]);
    }
    infer_op(g, node, node.op(), ins)
}

/// The rule of `op` (the node's own op, or the float op a quantized node computes)
/// on `ins`, with the node's attributes.
fn infer_op(g: &Graph, node: &Node, op: &str, ins: &[ValueFact]) -> Result<Vec<Option<ValueFact>>> {
    let p = &node.proto;
    let x = ins.first().cloned().unwrap_or_default();
    let xs = x.shape.clone();
    let dt = x.dtype;
    let one = |shape: Option<Vec<Dim>>| Ok(vec![Some(ValueFact::new(dt, shape))]);
    match op {
        "Relu" | "Clip" | "HardSigmoid" | "HardSwish" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Elu" | "Selu" | "Softmax" | "LogSoftmax"
        | "Identity" | "Neg" | "Abs" | "Sqrt" | "Exp" | "Log" | "Erf" | "Reciprocal" | "PRelu" | "Softplus" | "Mish" | "Gelu"
        | "BatchNormalization" | "InstanceNormalization" | "LRN" | "Floor" | "Ceil" | "Round" | "Sign" | "Relu6" | "CumSum"
        | "LayerNormalization" => {
            let mut v = same(ins);
            if matches!(op, "BatchNormalization" | "LayerNormalization") {
                v.truncate(1);
            }
            Ok(v)
        }
        "Dropout" => Ok(vec![ins.first().cloned(), Some(ValueFact::new(Some(dtype::BOOL), xs))]),
        "Cast" => Ok(vec![Some(ValueFact::new(attr_int(p, "to").map(|v| v as i32), xs))]),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Mod" => {
            let dt = ins.iter().find_map(|f| f.dtype);
            Ok(vec![Some(ValueFact::new(dt, broadcast(ins)))])
        }
        "Equal" | "Less" | "Greater" | "And" | "Or" | "Not" | "LessOrEqual" | "GreaterOrEqual" => {
            Ok(vec![Some(ValueFact::new(Some(dtype::BOOL), broadcast(ins)))])
        }
        "Where" => Ok(vec![Some(ValueFact::new(ins.get(1).and_then(|f| f.dtype), broadcast(ins)))]),
        "Constant" => Ok(vec![crate::ir::constant_node_value(p).map(|t| {
            ValueFact::new(Some(t.dtype()), Some(t.dims().iter().map(|&d| Dim::Known(d)).collect()))
        })]),
        "Shape" => {
            let len = x.rank().map(|r| {
                let r = r as i64;
                let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
                let (s, e) = (clampi(attr_int(p, "start").unwrap_or(0)), clampi(attr_int(p, "end").unwrap_or(r)));
                vec![Dim::Known((e - s).max(0))]
            });
            Ok(vec![Some(ValueFact::new(Some(dtype::INT64), len))])
        }
        "Size" => Ok(vec![Some(ValueFact::new(Some(dtype::INT64), Some(vec![])))]),
        "Conv" => {
            let (Some(xs), Some(ws)) = (xs, ins.get(1).and_then(|f| f.shape.clone())) else { return Ok(vec![]) };
            if xs.len() < 3 || ws.len() != xs.len() {
                return Err(Error::InvalidGraph(format!("Conv input rank {} and weight rank {} do not fit", xs.len(), ws.len())));
            }
            check_conv_channels(p, &xs, &ws)?;
            let kernel = attr_ints(p, "kernel_shape").or_else(|| known_all(&ws[2..])).unwrap_or_default();
            if kernel.len() != xs.len() - 2 {
                return Ok(vec![]);
            }
            let w = Window::parse(&node.proto, kernel)?;
            let mut out = vec![xs[0].clone(), ws[0].clone()];
            let spatial = w.out_dims(&xs[2..], false);
            if spatial.iter().any(|d| d.known() == Some(0)) {
                return Err(Error::InvalidGraph(format!("Conv window (kernel {:?}, dilations {:?}) does not fit the padded input {}", w.kernel, w.dilations, onnx::fmt_shape(&xs))));
            }
            out.extend(spatial);
            one(Some(out))
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let kernel = attr_ints(p, "kernel_shape").unwrap_or_default();
            if xs.len() < 3 || kernel.len() != xs.len() - 2 {
                return Ok(vec![]);
            }
            let w = Window::parse(&node.proto, kernel)?;
            let ceil = attr_int(p, "ceil_mode").unwrap_or(0) != 0;
            let mut out = xs[..2].to_vec();
            out.extend(w.out_dims(&xs[2..], ceil));
            Ok(vec![Some(ValueFact::new(dt, Some(out.clone()))), Some(ValueFact::new(Some(dtype::INT64), Some(out)))])
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let mut out = xs.clone();
            for d in out.iter_mut().skip(2) {
                *d = Dim::Known(1);
            }
            one(Some(out))
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let keep = attr_int(p, "keepdims").unwrap_or(1) != 0;
            let axes_from_input = op == "ReduceSum" && g.opset >= 13 || g.opset >= 18;
            let axes = if axes_from_input { in_ints(ins, 1) } else { attr_ints(p, "axes") };
            if axes_from_input && node.input(1).is_some() && axes.is_none() {
                return Ok(vec![]);
            }
            let axes: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => a.iter().filter_map(|&a| norm_axis(a, xs.len())).collect(),
                _ => {
                    if attr_int(p, "noop_with_empty_axes").unwrap_or(0) != 0 {
                        return one(Some(xs));
                    }
                    (0..xs.len()).collect()
                }
            };
            let out = xs
                .iter()
                .enumerate()
                .filter_map(|(i, d)| if axes.contains(&i) { keep.then_some(Dim::Known(1)) } else { Some(d.clone()) })
                .collect();
            one(Some(out))
        }
        "Flatten" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let axis = norm_axis(attr_int(p, "axis").unwrap_or(1), xs.len() + 1).unwrap_or(1);
            let prod = |s: &[Dim]| s.iter().map(Dim::known).try_fold(1i64, |a, d| d.and_then(|d| a.checked_mul(d)));
            let a = prod(&xs[..axis]).map(Dim::Known).unwrap_or_else(|| if axis == 1 { xs[0].clone() } else { unknown() });
            let b = prod(&xs[axis..]).map(Dim::Known).unwrap_or_else(unknown);
            one(Some(vec![a, b]))
        }
        "Reshape" => {
            let Some(target) = ins.get(1).and_then(|f| f.value.clone()) else { return Ok(vec![]) };
            let allowzero = attr_int(p, "allowzero").unwrap_or(0) != 0;
            let mut out: Vec<Dim> = Vec::with_capacity(target.len());
            for (i, t) in target.iter().enumerate() {
                out.push(match t {
                    Dim::Known(0) if !allowzero => xs.as_ref().and_then(|s| s.get(i).cloned()).unwrap_or_else(unknown),
                    Dim::Known(-1) => unknown(),
                    Dim::Known(t) if *t < -1 => return Err(Error::InvalidGraph(format!("Reshape target {} has a negative entry", onnx::fmt_shape(&target)))),
                    d => d.clone(),
                });
            }
            if let (Some(pos), Some(xs)) = (target.iter().position(|t| *t == Dim::Known(-1)), xs.as_ref()) {
                let others: Vec<Dim> = out.iter().enumerate().filter(|(i, _)| *i != pos).map(|(_, d)| d.clone()).collect();
                out[pos] = reshape_rest(xs, &others);
            }
            one(Some(out))
        }
        "Squeeze" | "Unsqueeze" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let axes = if g.opset >= 13 { in_ints(ins, 1) } else { attr_ints(p, "axes") };
            if g.opset >= 13 && node.input(1).is_some() && axes.is_none() {
                return Ok(vec![]);
            }
            if op == "Squeeze" {
                let axes: Vec<usize> = match axes {
                    Some(a) => a.iter().filter_map(|&a| norm_axis(a, xs.len())).collect(),
                    None => xs.iter().enumerate().filter(|(_, d)| **d == Dim::Known(1)).map(|(i, _)| i).collect(),
                };
                one(Some(xs.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect()))
            } else {
                let Some(axes) = axes else { return Ok(vec![]) };
                let r = xs.len() + axes.len();
                let mut ax: Vec<usize> = axes.iter().filter_map(|&a| norm_axis(a, r)).collect();
                ax.sort_unstable();
                let mut it = xs.into_iter();
                one(Some((0..r).map(|i| if ax.contains(&i) { Dim::Known(1) } else { it.next().unwrap_or_else(unknown) }).collect()))
            }
        }
        "Concat" => {
            let shapes: Option<Vec<Vec<Dim>>> = ins.iter().map(|f| f.shape.clone()).collect();
            let Some(shapes) = shapes.filter(|s| !s.is_empty()) else { return Ok(vec![]) };
            let rank = shapes[0].len();
            let Some(axis) = norm_axis(attr_int(p, "axis").unwrap_or(0), rank) else {
                return Err(Error::InvalidGraph(format!("Concat axis out of range for rank {rank}")));
            };
            if shapes.iter().any(|s| s.len() != rank) {
                return Err(Error::InvalidGraph("Concat inputs have different ranks".into()));
            }
            let mut out = shapes[0].clone();
            out[axis] = shapes.iter().try_fold(0i64, |a, s| s[axis].known().and_then(|d| a.checked_add(d))).map(Dim::Known).unwrap_or_else(unknown);
            Ok(vec![Some(ValueFact::new(ins.iter().find_map(|f| f.dtype), Some(out)))])
        }
        "Split" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let Some(axis) = norm_axis(attr_int(p, "axis").unwrap_or(0), xs.len()) else { return Ok(vec![]) };
            let n = p.output.len();
            let sizes = if g.opset >= 13 { in_ints(ins, 1) } else { attr_ints(p, "split") };
            if g.opset >= 13 && node.input(1).is_some() && sizes.is_none() {
                return Ok(vec![]);
            }
            let sizes: Option<Vec<i64>> = match sizes {
                Some(s) if !s.is_empty() => Some(s),
                _ => xs[axis].known().map(|d| {
                    let chunk = (d + n as i64 - 1) / n as i64;
                    (0..n as i64).map(|i| (d - i * chunk).clamp(0, chunk)).collect()
                }),
            };
            Ok((0..n)
                .map(|i| {
                    let mut s = xs.clone();
                    s[axis] = sizes.as_ref().and_then(|v| v.get(i).copied()).map(Dim::Known).unwrap_or_else(unknown);
                    Some(ValueFact::new(dt, Some(s)))
                })
                .collect())
        }
        "Slice" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let (starts, ends, axes, steps) = if g.opset >= 10 {
                let (Some(s), Some(e)) = (in_ints(ins, 1), in_ints(ins, 2)) else { return Ok(vec![]) };
                let axes = if node.input(3).is_some() { in_ints(ins, 3) } else { Some((0..s.len() as i64).collect()) };
                let steps = if node.input(4).is_some() { in_ints(ins, 4) } else { Some(vec![1; s.len()]) };
                let (Some(a), Some(st)) = (axes, steps) else { return Ok(vec![]) };
                (s, e, a, st)
            } else {
                let s = attr_ints(p, "starts").unwrap_or_default();
                let e = attr_ints(p, "ends").unwrap_or_default();
                let a = attr_ints(p, "axes").unwrap_or_else(|| (0..s.len() as i64).collect());
                let n = s.len();
                (s, e, a, vec![1; n])
            };
            let mut out = xs.clone();
            for i in 0..starts.len().min(ends.len()).min(axes.len()).min(steps.len()) {
                let Some(ax) = norm_axis(axes[i], xs.len()) else { continue };
                let Some(d) = xs[ax].known() else {
                    out[ax] = unknown();
                    continue;
                };
                let step = steps[i];
                if step == 0 {
                    return Err(Error::InvalidGraph("Slice step is 0".into()));
                }
                let clampi = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
                let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
                let (s, e) = if step > 0 {
                    (clampi(norm(starts[i]), 0, d), clampi(norm(ends[i]), 0, d))
                } else {
                    (clampi(norm(starts[i]), 0, d - 1), clampi(norm(ends[i]), -1, d - 1))
                };
                let (s, e, step) = (s as i128, e as i128, step as i128);
                let len = if step > 0 { (e - s + step - 1).max(0) / step } else { (s - e - step - 1).max(0) / (-step) };
                out[ax] = Dim::Known(len as i64);
            }
            one(Some(out))
        }
        "Gemm" => {
            let (Some(a), Some(b)) = (xs, ins.get(1).and_then(|f| f.shape.clone())) else { return Ok(vec![]) };
            if a.len() != 2 || b.len() != 2 {
                return Err(Error::InvalidGraph(format!("Gemm needs 2-D inputs, got ranks {} and {}", a.len(), b.len())));
            }
            let ta = attr_int(p, "transA").unwrap_or(0) != 0;
            let tb = attr_int(p, "transB").unwrap_or(0) != 0;
            let m = if ta { a[1].clone() } else { a[0].clone() };
            let n = if tb { b[0].clone() } else { b[1].clone() };
            one(Some(vec![m, n]))
        }
        "MatMul" => {
            let (Some(a), Some(b)) = (xs, ins.get(1).and_then(|f| f.shape.clone())) else { return Ok(vec![]) };
            if a.len() < 2 || b.len() < 2 {
                return Ok(vec![]);
            }
            let batch_a = ValueFact::new(None, Some(a[..a.len() - 2].to_vec()));
            let batch_b = ValueFact::new(None, Some(b[..b.len() - 2].to_vec()));
            let mut out = broadcast(&[batch_a, batch_b]).unwrap_or_default();
            out.push(a[a.len() - 2].clone());
            out.push(b[b.len() - 1].clone());
            one(Some(out))
        }
        "Transpose" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let perm = attr_ints(p, "perm").unwrap_or_else(|| (0..xs.len() as i64).rev().collect());
            if perm.len() != xs.len() {
                return Err(Error::InvalidGraph(format!("Transpose perm {perm:?} does not fit rank {}", xs.len())));
            }
            let out: Option<Vec<Dim>> = perm.iter().map(|&i| norm_axis(i, xs.len()).map(|i| xs[i].clone())).collect();
            one(out)
        }
        "Pad" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let pads = if g.opset >= 11 { in_ints(ins, 1) } else { attr_ints(p, "pads") };
            let Some(pads) = pads else { return Ok(vec![]) };
            if g.opset >= 18 && node.input(3).is_some() || pads.len() != 2 * xs.len() {
                return Ok(vec![]);
            }
            let r = xs.len();
            one(Some(
                xs.iter()
                    .enumerate()
                    .map(|(i, d)| match d.known() {
                        _ if pads[i] == 0 && pads[i + r] == 0 => d.clone(),
                        Some(v) => v.checked_add(pads[i]).and_then(|v| v.checked_add(pads[i + r])).map(Dim::Known).unwrap_or_else(unknown),
                        None => unknown(),
                    })
                    .collect(),
            ))
        }
        "Expand" => {
            let (Some(xs), Some(target)) = (xs, ins.get(1).and_then(|f| f.value.clone())) else { return Ok(vec![]) };
            one(broadcast(&[ValueFact::new(None, Some(xs)), ValueFact::new(None, Some(target))]))
        }
        "Tile" => {
            let (Some(xs), Some(reps)) = (xs, ins.get(1).and_then(|f| f.value.clone())) else { return Ok(vec![]) };
            if reps.len() != xs.len() {
                return Err(Error::InvalidGraph(format!("Tile repeats {} do not fit rank {}", onnx::fmt_shape(&reps), xs.len())));
            }
            one(Some(xs.iter().zip(&reps).map(|(d, r)| match (d, r) {
                (d, Dim::Known(1)) => d.clone(),
                (Dim::Known(a), Dim::Known(b)) => a.checked_mul(*b).map(Dim::Known).unwrap_or_else(unknown),
                _ => unknown(),
            }).collect()))
        }
        "ConstantOfShape" => {
            let dt = p.attribute.iter().find(|a| a.name() == "value").and_then(|a| a.t.as_ref()).and_then(|t| t.data_type).or(Some(dtype::FLOAT));
            Ok(vec![Some(ValueFact::new(dt, ins.first().and_then(|f| f.value.clone())))])
        }
        "Range" => {
            let len = match (in_ints(ins, 0), in_ints(ins, 1), in_ints(ins, 2)) {
                (Some(s), Some(l), Some(d)) if s.len() == 1 && l.len() == 1 && d.len() == 1 && d[0] != 0 => Dim::Known(values::range_len(s[0], l[0], d[0])),
                _ => unknown(),
            };
            one(Some(vec![len]))
        }
        "Resize" | "Upsample" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let r = xs.len();
            if attr_string(p, "keep_aspect_ratio_policy").is_some_and(|k| k != "stretch") {
                return one(Some(vec![unknown(); r]));
            }
            let axes: Vec<usize> = match attr_ints(p, "axes") {
                Some(a) => a.iter().filter_map(|&a| norm_axis(a, r)).collect(),
                None => (0..r).collect(),
            };
            let sizes_slot = if op == "Resize" && g.opset >= 11 { Some(3) } else { None };
            let scales_slot = match (op, g.opset) {
                ("Resize", o) if o >= 11 => Some(2),
                ("Resize", _) | ("Upsample", 9..) => Some(1),
                _ => None,
            };
            let mut out = xs.clone();
            if let Some(sizes) = sizes_slot.and_then(|i| node.input(i)).and_then(|_| ins.get(3)).and_then(|f| f.value.clone()).filter(|v| !v.is_empty()) {
                if sizes.len() != axes.len() {
                    return Err(Error::InvalidGraph(format!("Resize sizes {} do not fit {} axes", onnx::fmt_shape(&sizes), axes.len())));
                }
                for (a, d) in axes.iter().zip(sizes) {
                    out[*a] = d;
                }
                return one(Some(out));
            }
            let scales: Option<Vec<f32>> = match scales_slot {
                Some(i) => node.input(i).and_then(|n| g.const_tensor(n)).and_then(|t| t.to_f32().ok()).map(|a| a.iter().copied().collect()),
                None => p.attribute.iter().find(|a| a.name() == "scales").map(|a| a.floats.clone()),
            };
            let Some(scales) = scales.filter(|v| v.len() == axes.len()) else { return one(Some(vec![unknown(); r])) };
            for (a, sc) in axes.iter().zip(scales) {
                out[*a] = match xs[*a].known() {
                    Some(d) => Dim::Known((d as f64 * sc as f64).floor() as i64),
                    None if sc == 1.0 => xs[*a].clone(),
                    None => unknown(),
                };
            }
            one(Some(out))
        }
        "Gather" => {
            let (Some(xs), Some(is)) = (xs, ins.get(1).and_then(|f| f.shape.clone())) else { return Ok(vec![]) };
            let Some(axis) = norm_axis(attr_int(p, "axis").unwrap_or(0), xs.len()) else {
                return Err(Error::InvalidGraph(format!("Gather axis out of range for rank {}", xs.len())));
            };
            let mut out = xs[..axis].to_vec();
            out.extend(is);
            out.extend_from_slice(&xs[axis + 1..]);
            one(Some(out))
        }
        "ArgMax" | "ArgMin" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let Some(axis) = norm_axis(attr_int(p, "axis").unwrap_or(0), xs.len()) else { return Ok(vec![]) };
            let keep = attr_int(p, "keepdims").unwrap_or(1) != 0;
            let out = xs.iter().enumerate().filter_map(|(i, d)| if i == axis { keep.then_some(Dim::Known(1)) } else { Some(d.clone()) }).collect();
            Ok(vec![Some(ValueFact::new(Some(dtype::INT64), Some(out)))])
        }
        "ConvTranspose" => {
            let (Some(xs), Some(ws)) = (xs, ins.get(1).and_then(|f| f.shape.clone())) else { return Ok(vec![]) };
            if xs.len() < 3 || ws.len() != xs.len() {
                return Err(Error::InvalidGraph(format!("ConvTranspose input rank {} and weight rank {} do not fit", xs.len(), ws.len())));
            }
            let r = xs.len() - 2;
            let kernel = attr_ints(p, "kernel_shape").or_else(|| known_all(&ws[2..])).unwrap_or_default();
            if kernel.len() != r {
                return Ok(vec![]);
            }
            let w = Window::parse(&node.proto, kernel)?;
            let group = attr_int(p, "group").unwrap_or(1);
            let mut out = vec![xs[0].clone(), ws[1].known().and_then(|c| c.checked_mul(group)).map(Dim::Known).unwrap_or_else(unknown)];
            if let Some(os) = attr_ints(p, "output_shape").filter(|o| o.len() == r) {
                out.extend(os.into_iter().map(Dim::Known));
                return one(Some(out));
            }
            let opad = attr_ints(p, "output_padding").unwrap_or_else(|| vec![0; r]);
            for i in 0..r {
                out.push(match xs[2 + i].known() {
                    Some(n) => {
                        let full = w.strides[i] * (n - 1) + opad.get(i).copied().unwrap_or(0) + (w.kernel[i] - 1) * w.dilations[i] + 1;
                        match w.auto_pad.as_str() {
                            "SAME_UPPER" | "SAME_LOWER" => Dim::Known(n * w.strides[i]),
                            "VALID" => Dim::Known(full),
                            _ => Dim::Known(full - w.pads[i] - w.pads[i + r]),
                        }
                    }
                    None => unknown(),
                });
            }
            one(Some(out))
        }
        _ => Ok(vec![]),
    }
}

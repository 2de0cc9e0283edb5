//! Shape and dtype inference for the ops of mobile CNNs. Ops we do not know
//! keep the shapes recorded in the model's value_info (or stay unknown).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ir::{Graph, Node};
use crate::onnx::{self, attr_int, attr_ints, attr_string, dtype, Dim};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueFact {
    pub dtype: Option<i32>,
    pub shape: Option<Vec<Dim>>,
}

impl ValueFact {
    pub fn new(dtype: Option<i32>, shape: Option<Vec<Dim>>) -> Self {
        ValueFact { dtype, shape }
    }
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }
}

/// Largest dimension we accept from a model's declared or inferred shapes.
pub const MAX_DIM: i64 = 1 << 31;

fn unknown() -> Dim {
    Dim::Sym(String::new())
}

/// Run inference over the whole graph in topological order.
pub fn infer(g: &mut Graph) -> Result<()> {
    let mut facts: HashMap<String, ValueFact> = HashMap::new();
    let kinds = [("graph input", &g.inputs), ("graph output", &g.outputs)];
    let declared = kinds.iter().flat_map(|(k, v)| v.iter().map(move |vi| (*k, vi))).chain(g.recorded.values().map(|vi| ("value", vi)));
    for (kind, vi) in declared {
        let (dt, shape) = onnx::value_info_type(vi);
        if let Some(s) = &shape
            && let Some((i, d)) = s.iter().enumerate().find_map(|(i, d)| d.known().filter(|&v| !(0..=MAX_DIM).contains(&v)).map(|v| (i, v))) {
                return Err(Error::InvalidGraph(format!(
                    "{kind} '{}' declares dimension {i} as {d} (a dimension is 0..={MAX_DIM}, or -1 / a name for a dynamic one)",
                    vi.name()
                )));
            }
        facts.insert(vi.name().to_string(), ValueFact::new(dt, shape));
    }
    for (name, shape) in &g.input_overrides {
        let f = facts.entry(name.clone()).or_default();
        f.shape = Some(shape.clone());
    }
    for (name, t) in &g.initializers {
        facts.insert(name.clone(), ValueFact::new(Some(t.dtype()), Some(t.dims().iter().map(|&d| Dim::Known(d)).collect())));
    }
    for ix in g.toposort()? {
        let node = &g.g[ix];
        let ins: Vec<ValueFact> = node
            .proto
            .input
            .iter()
            .map(|i| if i.is_empty() { ValueFact::default() } else { facts.get(i).cloned().unwrap_or_default() })
            .collect();
        let outs = infer_node(g, node, &ins).map_err(|e| match e {
            Error::InvalidGraph(r) => Error::node(node.label(), r),
            other => other,
        })?;
        for (slot, o) in node.proto.output.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            let recorded = facts.get(o).cloned().unwrap_or_default();
            let mut f = outs.get(slot).cloned().flatten().unwrap_or_default();
            if f.dtype.is_none() {
                f.dtype = recorded.dtype;
            }
            match (&f.shape, &recorded.shape) {
                (None, _) => f.shape = recorded.shape.clone(),
                (Some(ours), Some(rec)) if ours.len() == rec.len() => {
                    // keep symbolic names from the model where we only know "unknown"
                    let merged = ours
                        .iter()
                        .zip(rec)
                        .map(|(a, b)| match (a, b) {
                            (Dim::Sym(s), b) if s.is_empty() => b.clone(),
                            (a, _) => a.clone(),
                        })
                        .collect();
                    f.shape = Some(merged);
                }
                _ => {}
            }
            if let Some(d) = f.shape.as_ref().and_then(|s| s.iter().find_map(|d| d.known().filter(|&v| !(0..=MAX_DIM).contains(&v)))) {
                return Err(Error::node(node.label(), format!("output '{o}' would have dimension {d}, outside 0..={MAX_DIM}")));
            }
            facts.insert(o.clone(), f);
        }
    }
    g.facts = facts;
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

/// Output size of a sliding window along one axis.
pub fn window_out(input: i64, k: i64, stride: i64, dil: i64, pad_begin: i64, pad_end: i64, ceil: bool) -> i64 {
    let eff = dil * (k - 1) + 1;
    let span = input + pad_begin + pad_end - eff;
    if span < 0 {
        return 0;
    }
    if ceil { (span + stride - 1) / stride + 1 } else { span / stride + 1 }
}

/// Resolved sliding-window geometry of a Conv/Pool node on a known input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub kernel: Vec<i64>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    /// begin pads then end pads, as ONNX writes them
    pub pads: Vec<i64>,
    pub auto_pad: String,
}

impl Window {
    pub fn from_node(n: &Node, kernel: Vec<i64>) -> Result<Window> {
        let r = kernel.len();
        let strides = attr_ints(&n.proto, "strides").unwrap_or_else(|| vec![1; r]);
        let dilations = attr_ints(&n.proto, "dilations").unwrap_or_else(|| vec![1; r]);
        let pads = attr_ints(&n.proto, "pads").unwrap_or_else(|| vec![0; 2 * r]);
        let auto_pad = attr_string(&n.proto, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        let bad = |what: &str, v: &[i64]| Error::UnsupportedAttr { node: n.label(), name: what.into(), value: format!("{v:?}") };
        if strides.len() != r || strides.iter().any(|&s| s < 1) {
            return Err(bad("strides", &strides));
        }
        if dilations.len() != r || dilations.iter().any(|&s| s < 1) {
            return Err(bad("dilations", &dilations));
        }
        if pads.len() != 2 * r || pads.iter().any(|&p| p < 0) {
            return Err(bad("pads", &pads));
        }
        if kernel.iter().any(|&k| !(1..=MAX_DIM).contains(&k)) {
            return Err(bad("kernel_shape", &kernel));
        }
        if strides.iter().chain(&dilations).chain(&pads).any(|&v| v > MAX_DIM) {
            return Err(bad("strides/dilations/pads", &[strides.clone(), dilations.clone(), pads.clone()].concat()));
        }
        if !matches!(auto_pad.as_str(), "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID" | "") {
            return Err(Error::UnsupportedAttr { node: n.label(), name: "auto_pad".into(), value: auto_pad });
        }
        Ok(Window { kernel, strides, dilations, pads, auto_pad })
    }

    /// Explicit pads for a known input spatial size (resolving auto_pad).
    pub fn explicit_pads(&self, spatial: &[i64]) -> Vec<i64> {
        let r = self.kernel.len();
        match self.auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut p = vec![0; 2 * r];
                for i in 0..r {
                    let out = (spatial[i] + self.strides[i] - 1) / self.strides[i];
                    let eff = self.dilations[i] * (self.kernel[i] - 1) + 1;
                    let total = ((out - 1) * self.strides[i] + eff - spatial[i]).max(0);
                    let small = total / 2;
                    let big = total - small;
                    if self.auto_pad == "SAME_UPPER" {
                        p[i] = small;
                        p[i + r] = big;
                    } else {
                        p[i] = big;
                        p[i + r] = small;
                    }
                }
                p
            }
            "VALID" => vec![0; 2 * r],
            _ => self.pads.clone(),
        }
    }

    /// Explicit pads where they can be known: always for NOTSET and VALID, and
    /// for SAME when the spatial size is known or every stride is 1 (then the
    /// pads do not depend on the size). `None`: SAME with a stride > 1 on a
    /// symbolic size.
    pub fn resolved_pads(&self, spatial: Option<&[i64]>) -> Option<Vec<i64>> {
        let same = matches!(self.auto_pad.as_str(), "SAME_UPPER" | "SAME_LOWER");
        match spatial {
            Some(sp) => Some(self.explicit_pads(sp)),
            None if same && self.strides.iter().any(|&s| s > 1) => None,
            None => Some(self.explicit_pads(&vec![1; self.kernel.len()])),
        }
    }

    /// The middle tap of the kernel along each axis: the row a 1×K FuSe branch
    /// keeps (and the column a K×1 branch keeps). For odd K it is (K−1)/2. For
    /// even K there are two middle taps, (K−1)/2 and K/2; the one kept is the
    /// tap that the node's padding aligns with each output pixel (output i
    /// reads input row i·stride through tap pad_begin / dilation): K/2 under
    /// SAME_LOWER or any padding with the extra pixel at the start, (K−1)/2
    /// otherwise (SAME_UPPER, VALID, unknown pads).
    pub fn centre_taps(&self, pads: Option<&[i64]>) -> Vec<usize> {
        (0..self.kernel.len())
            .map(|i| {
                let k = self.kernel[i].max(1) as usize;
                let lo = (k - 1) / 2;
                let aligned_hi = k % 2 == 0 && pads.is_some_and(|p| p[i] == (lo as i64 + 1) * self.dilations[i]);
                if aligned_hi { lo + 1 } else { lo }
            })
            .collect()
    }

    pub fn out_dims(&self, spatial: &[Dim], ceil: bool) -> Vec<Dim> {
        let r = self.kernel.len();
        let known: Option<Vec<i64>> = spatial.iter().map(Dim::known).collect();
        let Some(sp) = known else {
            return (0..r)
                .map(|i| match (&spatial[i], self.kernel[i], self.strides[i], self.auto_pad.as_str()) {
                    // a 1-wide window with stride 1 and no pads keeps a symbolic dim
                    (d, 1, 1, _) if self.pads[i] == 0 && self.pads[i + r] == 0 => d.clone(),
                    (d, _, 1, "SAME_UPPER" | "SAME_LOWER") => d.clone(),
                    _ => unknown(),
                })
                .collect();
        };
        let pads = self.explicit_pads(&sp);
        (0..r)
            .map(|i| Dim::Known(window_out(sp[i], self.kernel[i], self.strides[i], self.dilations[i], pads[i], pads[i + r], ceil)))
            .collect()
    }
}

fn const_ints(g: &Graph, node: &Node, slot: usize) -> Option<Vec<i64>> {
    g.const_tensor(node.input(slot)?).and_then(|t| t.to_i64().ok())
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

fn infer_node(g: &Graph, node: &Node, ins: &[ValueFact]) -> Result<Vec<Option<ValueFact>>> {
    if !node.is_default_domain() {
        return Ok(vec![]);
    }
    let p = &node.proto;
    let x = ins.first().cloned().unwrap_or_default();
    let xs = x.shape.clone();
    let dt = x.dtype;
    let one = |shape: Option<Vec<Dim>>| Ok(vec![Some(ValueFact::new(dt, shape))]);
    match node.op() {
        "Relu" | "Clip" | "HardSigmoid" | "HardSwish" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Elu" | "Selu" | "Softmax" | "LogSoftmax"
        | "Identity" | "Neg" | "Abs" | "Sqrt" | "Exp" | "Log" | "Erf" | "Reciprocal" | "PRelu" | "Softplus" | "Mish" | "Gelu"
        | "BatchNormalization" | "InstanceNormalization" | "LRN" | "Floor" | "Ceil" | "Round" | "Sign" | "Relu6" => {
            let mut v = same(ins);
            if node.op() == "BatchNormalization" {
                v.truncate(1);
            }
            Ok(v)
        }
        "Dropout" => Ok(vec![ins.first().cloned(), Some(ValueFact::new(Some(dtype::BOOL), xs))]),
        "Cast" => Ok(vec![Some(ValueFact::new(attr_int(p, "to").map(|v| v as i32), xs))]),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" => {
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
        "Shape" => Ok(vec![Some(ValueFact::new(Some(dtype::INT64), x.rank().map(|r| vec![Dim::Known(r as i64)])))]),
        "Conv" => {
            let (Some(xs), Some(ws)) = (xs, ins.get(1).and_then(|f| f.shape.clone())) else { return Ok(vec![]) };
            if xs.len() < 3 || ws.len() != xs.len() {
                return Err(Error::InvalidGraph(format!("Conv input rank {} and weight rank {} do not fit", xs.len(), ws.len())));
            }
            let kernel = attr_ints(p, "kernel_shape").or_else(|| known_all(&ws[2..])).unwrap_or_default();
            if kernel.len() != xs.len() - 2 {
                return Ok(vec![]);
            }
            let w = Window::from_node(node, kernel)?;
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
            let w = Window::from_node(node, kernel)?;
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
            let axes_from_input = node.op() == "ReduceSum" && g.opset >= 13 || g.opset >= 18;
            let axes = if axes_from_input { const_ints(g, node, 1) } else { attr_ints(p, "axes") };
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
            let Some(target) = const_ints(g, node, 1) else { return Ok(vec![]) };
            let allowzero = attr_int(p, "allowzero").unwrap_or(0) != 0;
            let mut out: Vec<Dim> = Vec::with_capacity(target.len());
            for (i, &t) in target.iter().enumerate() {
                out.push(match t {
                    0 if !allowzero => xs.as_ref().and_then(|s| s.get(i).cloned()).unwrap_or_else(unknown),
                    -1 => unknown(),
                    t if t < -1 => return Err(Error::InvalidGraph(format!("Reshape target {target:?} has a negative entry"))),
                    t => Dim::Known(t),
                });
            }
            if let (Some(pos), Some(total)) = (target.iter().position(|&t| t == -1), xs.as_ref().and_then(|s| known_all(s))) {
                let total = total.iter().try_fold(1i64, |a, &d| a.checked_mul(d));
                let rest = out.iter().enumerate().filter(|(i, _)| *i != pos).try_fold(1i64, |a, (_, d)| d.known().and_then(|d| a.checked_mul(d)));
                if let (Some(t), Some(r)) = (total, rest.filter(|&r| r > 0)) {
                    out[pos] = Dim::Known(t / r);
                }
            }
            one(Some(out))
        }
        "Squeeze" | "Unsqueeze" => {
            let Some(xs) = xs else { return Ok(vec![]) };
            let axes = if g.opset >= 13 { const_ints(g, node, 1) } else { attr_ints(p, "axes") };
            if node.op() == "Squeeze" {
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
            let sizes = if g.opset >= 13 { const_ints(g, node, 1) } else { attr_ints(p, "split") };
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
                let (Some(s), Some(e)) = (const_ints(g, node, 1), const_ints(g, node, 2)) else { return Ok(vec![]) };
                let axes = if node.input(3).is_some() { const_ints(g, node, 3) } else { Some((0..s.len() as i64).collect()) };
                let steps = if node.input(4).is_some() { const_ints(g, node, 4) } else { Some(vec![1; s.len()]) };
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
            let pads = if g.opset >= 11 { const_ints(g, node, 1) } else { attr_ints(p, "pads") };
            let Some(pads) = pads else { return Ok(vec![]) };
            if g.opset >= 18 && node.input(3).is_some() || pads.len() != 2 * xs.len() {
                return Ok(vec![]);
            }
            let r = xs.len();
            one(Some(xs.iter().enumerate().map(|(i, d)| d.known().and_then(|v| v.checked_add(pads[i])?.checked_add(pads[i + r])).map(Dim::Known).unwrap_or_else(unknown)).collect()))
        }
        _ => Ok(vec![]),
    }
}

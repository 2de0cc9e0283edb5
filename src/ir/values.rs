//! Values of the small integer tensors that exporters compute shapes with
//! (`Shape → Gather → Unsqueeze → Concat → Reshape`, `torch.chunk`'s
//! `Shape → Gather → Div → Slice`, `F.interpolate(size=...)`), known element
//! by element.
//!
//! A value is its elements in row-major order, each a [`Dim`]: `Known(v)` for
//! a number, `Sym(name)` for "equal to the named symbolic dimension" (what
//! `Shape` gives for a dimension declared as `batch`), `Sym("")` for unknown.
//! So `Shape(x)` of an `[batch, 16, 56, 56]` tensor is `[batch, 16, 56, 56]`
//! and `Gather(Shape(x), 1)` is the known `16` whatever the batch is.
//!
//! Only integer-valued tensors of at most [`MAX_ELEMS`] elements carry values;
//! a float tensor carries them while every element is an integer (exporters
//! cast sizes to float to scale them and back), and an element that would not
//! be an integer becomes unknown. Integer division truncates, as ONNX Runtime.

use crate::ir::{Graph, Node};
use crate::onnx::{attr_int, attr_ints, dtype, Dim};
use crate::onnx::tensor::Tensor;

/// What shape inference knows of a value: its element type, its shape, and
/// (for small integer tensors) its elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueFact {
    pub dtype: Option<i32>,
    pub shape: Option<Vec<Dim>>,
    /// The elements, for small integer tensors computed from shapes and
    /// constants (this module); `None` when not tracked.
    pub value: Option<Vec<Dim>>,
}

impl ValueFact {
    pub fn new(dtype: Option<i32>, shape: Option<Vec<Dim>>) -> Self {
        ValueFact { dtype, shape, value: None }
    }
    /// Every dimension known or a named symbol (no anonymous unknown).
    pub fn is_complete(&self) -> bool {
        self.shape.as_ref().is_some_and(|s| s.iter().all(|d| !matches!(d, Dim::Sym(n) if n.is_empty())))
    }
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }
}

/// Largest tensor whose elements are tracked.
pub const MAX_ELEMS: usize = 1024;

pub type Value = Vec<Dim>;

fn unknown() -> Dim {
    Dim::Sym(String::new())
}

fn is_int_type(dt: Option<i32>) -> bool {
    matches!(dt, Some(dtype::INT64 | dtype::INT32 | dtype::INT16 | dtype::INT8 | dtype::UINT8 | dtype::UINT16 | dtype::UINT32 | dtype::UINT64 | dtype::BOOL))
}

fn is_float_type(dt: Option<i32>) -> bool {
    matches!(dt, Some(dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 | dtype::BFLOAT16))
}

/// The elements of a constant tensor, if it is small and integer-valued.
pub fn of_tensor(t: &Tensor) -> Option<Value> {
    if t.len() as usize > MAX_ELEMS {
        return None;
    }
    let dt = Some(t.dtype());
    if is_int_type(dt) {
        return t.to_i64().ok().map(|v| v.into_iter().map(Dim::Known).collect());
    }
    // float constants take part in size arithmetic as scalars and short vectors (a
    // scale of 2.0, Resize scales); BN parameters and biases do not, and are not decoded
    if is_float_type(dt) && t.len() <= 8 {
        let a = t.to_f32().ok()?;
        return a.iter().map(|&x| (x.fract() == 0.0 && x.abs() < 9.0e15).then_some(Dim::Known(x as i64))).collect();
    }
    None
}

/// Every element known: the numbers.
pub fn known(v: &[Dim]) -> Option<Vec<i64>> {
    v.iter().map(Dim::known).collect()
}

fn elems(shape: &[Dim]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, d| d.known().and_then(|d| usize::try_from(d).ok()).and_then(|d| a.checked_mul(d)))
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// A value input: the value itself, from the input's fact.
fn val<'a>(ins: &'a [ValueFact], i: usize) -> Option<&'a Value> {
    ins.get(i).and_then(|f| f.value.as_ref())
}

fn ints(ins: &[ValueFact], i: usize) -> Option<Vec<i64>> {
    val(ins, i).and_then(|v| known(v))
}

/// Output values of one node, given its inputs' facts (with values) and its
/// outputs' inferred facts (shapes and dtypes). `None` where not tracked.
pub fn infer(g: &Graph, node: &Node, ins: &[ValueFact], outs: &[Option<ValueFact>]) -> Vec<Option<Value>> {
    if !node.is_default_domain() {
        return vec![];
    }
    let out_fact = outs.first().cloned().flatten().unwrap_or_default();
    let out_shape = out_fact.shape.clone();
    let out_len = out_shape.as_deref().and_then(elems);
    if out_len.is_none_or(|n| n > MAX_ELEMS) && node.op() != "Shape" {
        return vec![];
    }
    let one = |v: Option<Value>| vec![v.filter(|v| out_len.is_none_or(|n| n == v.len()))];
    let p = &node.proto;
    match node.op() {
        "Constant" => vec![crate::ir::constant_node_value(p).and_then(|t| of_tensor(&t))],
        "Shape" => {
            let Some(xs) = ins.first().and_then(|f| f.shape.clone()) else { return vec![] };
            let r = xs.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clampi(attr_int(p, "start").unwrap_or(0));
            let end = clampi(attr_int(p, "end").unwrap_or(r));
            vec![Some(xs[start..end.max(start)].to_vec())]
        }
        "Size" => {
            let Some(xs) = ins.first().and_then(|f| f.shape.clone()) else { return vec![] };
            vec![Some(vec![elems(&xs).map(|n| Dim::Known(n as i64)).unwrap_or_else(unknown)])]
        }
        "Identity" | "Squeeze" | "Unsqueeze" | "Reshape" | "Flatten" => one(val(ins, 0).cloned()),
        "Cast" => {
            let to = attr_int(p, "to").map(|t| t as i32);
            if !(is_int_type(to) || is_float_type(to)) {
                return vec![];
            }
            one(val(ins, 0).cloned())
        }
        "Gather" => {
            let (Some(data), Some(ds), Some(idx)) = (val(ins, 0), ins[0].shape.as_ref(), ints(ins, 1)) else { return vec![] };
            if ds.len() != 1 || norm_axis(attr_int(p, "axis").unwrap_or(0), 1) != Some(0) {
                return vec![];
            }
            let n = data.len() as i64;
            let picked: Option<Value> = idx.iter().map(|&i| {
                let i = if i < 0 { i + n } else { i };
                (0..n).contains(&i).then(|| data[i as usize].clone())
            }).collect();
            one(picked)
        }
        "Slice" => {
            let Some(data) = val(ins, 0) else { return vec![] };
            if ins[0].rank() != Some(1) {
                return vec![];
            }
            let (starts, ends, axes, steps) = if g.opset >= 10 {
                let (Some(s), Some(e)) = (ints(ins, 1), ints(ins, 2)) else { return vec![] };
                let a = if node.input(3).is_some() { ints(ins, 3) } else { Some(vec![0]) };
                let st = if node.input(4).is_some() { ints(ins, 4) } else { Some(vec![1]) };
                let (Some(a), Some(st)) = (a, st) else { return vec![] };
                (s, e, a, st)
            } else {
                (attr_ints(p, "starts").unwrap_or_default(), attr_ints(p, "ends").unwrap_or_default(), attr_ints(p, "axes").unwrap_or_else(|| vec![0]), vec![1])
            };
            if starts.len() != 1 || ends.len() != 1 || norm_axis(axes.first().copied().unwrap_or(0), 1) != Some(0) || steps.first().copied().unwrap_or(1) == 0 {
                return vec![];
            }
            let d = data.len() as i64;
            let step = steps.first().copied().unwrap_or(1);
            let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
            let (mut i, e) = if step > 0 { (norm(starts[0]).clamp(0, d), norm(ends[0]).clamp(0, d)) } else { (norm(starts[0]).clamp(0, d - 1), norm(ends[0]).clamp(-1, d - 1)) };
            let mut out = vec![];
            while (step > 0 && i < e) || (step < 0 && i > e) {
                out.push(data[i as usize].clone());
                i += step;
            }
            one(Some(out))
        }
        "Concat" => {
            let Some(shape) = &out_shape else { return vec![] };
            if shape.len() > 1 {
                return vec![];
            }
            let parts: Option<Vec<&Value>> = (0..p.input.len()).map(|i| val(ins, i)).collect();
            one(parts.map(|ps| ps.into_iter().flatten().cloned().collect()))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Max" | "Min" | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
            let float = is_float_type(out_fact.dtype) || is_float_type(ins.first().and_then(|f| f.dtype));
            let fmod = attr_int(p, "fmod").unwrap_or(0) != 0;
            let op = node.op().to_string();
            one(elementwise(ins, out_shape.as_deref(), |a, b| binary(&op, a, b, float, fmod)))
        }
        "Where" => {
            let Some(shape) = &out_shape else { return vec![] };
            let (Some(c), Some(a), Some(b)) = (val(ins, 0), val(ins, 1), val(ins, 2)) else { return vec![] };
            let (Some(cs), Some(as_), Some(bs)) = (ins[0].shape.as_ref(), ins[1].shape.as_ref(), ins[2].shape.as_ref()) else { return vec![] };
            let Some(n) = elems(shape) else { return vec![] };
            let out: Value = (0..n)
                .map(|i| {
                    let pick = |v: &Value, s: &[Dim]| broadcast_index(i, shape, s).map(|j| v[j].clone()).unwrap_or_else(unknown);
                    match pick(c, cs).known() {
                        Some(0) => pick(b, bs),
                        Some(_) => pick(a, as_),
                        None => unknown(),
                    }
                })
                .collect();
            one(Some(out))
        }
        "Neg" | "Abs" | "Floor" | "Ceil" | "Round" | "Not" | "Sign" => {
            let op = node.op();
            one(val(ins, 0).map(|v| {
                v.iter()
                    .map(|d| match (d.known(), op) {
                        (Some(x), "Neg") => Dim::Known(-x),
                        (Some(x), "Abs") => Dim::Known(x.abs()),
                        (Some(x), "Not") => Dim::Known((x == 0) as i64),
                        (Some(x), "Sign") => Dim::Known(x.signum()),
                        (Some(x), _) => Dim::Known(x),
                        (None, "Floor" | "Ceil" | "Round") => d.clone(),
                        _ => unknown(),
                    })
                    .collect()
            }))
        }
        "Range" => {
            let (Some(s), Some(l), Some(d)) = (ints(ins, 0), ints(ins, 1), ints(ins, 2)) else { return vec![] };
            let (s, l, d) = (s.first().copied(), l.first().copied(), d.first().copied());
            let (Some(s), Some(l), Some(d)) = (s, l, d) else { return vec![] };
            if d == 0 {
                return vec![];
            }
            let n = range_len(s, l, d);
            if n as usize > MAX_ELEMS {
                return vec![];
            }
            one(Some((0..n).map(|i| Dim::Known(s + i * d)).collect()))
        }
        "ConstantOfShape" => {
            let Some(n) = out_len else { return vec![] };
            let fill = p.attribute.iter().find(|a| a.name() == "value").and_then(|a| a.t.clone()).and_then(|t| Tensor::from_proto(t).ok()).and_then(|t| of_tensor(&t));
            let fill = match fill {
                Some(f) if f.len() == 1 => f[0].clone(),
                Some(_) => return vec![],
                None => Dim::Known(0),
            };
            one(Some(vec![fill; n]))
        }
        "Expand" | "Tile" => {
            let (Some(shape), Some(x), Some(xs)) = (&out_shape, val(ins, 0), ins.first().and_then(|f| f.shape.as_ref())) else { return vec![] };
            if node.op() == "Tile" {
                return vec![];
            }
            let Some(n) = elems(shape) else { return vec![] };
            let out: Option<Value> = (0..n).map(|i| broadcast_index(i, shape, xs).map(|j| x[j].clone())).collect();
            one(out)
        }
        "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" => {
            let (Some(x), Some(xs)) = (val(ins, 0), ins.first().and_then(|f| f.shape.as_ref())) else { return vec![] };
            // whole-tensor reductions of vectors (Shape → Slice → ReduceProd)
            if xs.len() != 1 || out_len != Some(1) {
                return vec![];
            }
            let Some(k) = known(x) else { return vec![Some(vec![unknown()])] };
            let r = match node.op() {
                "ReduceProd" => k.iter().try_fold(1i64, |a, &b| a.checked_mul(b)),
                "ReduceSum" => k.iter().try_fold(0i64, |a, &b| a.checked_add(b)),
                "ReduceMax" => k.iter().copied().max(),
                _ => k.iter().copied().min(),
            };
            one(Some(vec![r.map(Dim::Known).unwrap_or_else(unknown)]))
        }
        _ => vec![],
    }
}

pub fn range_len(start: i64, limit: i64, delta: i64) -> i64 {
    let span = limit as i128 - start as i128;
    let d = delta as i128;
    let n = if (span > 0) == (d > 0) && span != 0 { (span + d - d.signum()) / d } else { 0 };
    n.clamp(0, i64::MAX as i128) as i64
}

/// Index into an input of shape `s` broadcast to `out` for flat output index `i`.
fn broadcast_index(i: usize, out: &[Dim], s: &[Dim]) -> Option<usize> {
    let od: Vec<usize> = out.iter().map(|d| d.known().map(|v| v as usize)).collect::<Option<_>>()?;
    let sd: Vec<usize> = s.iter().map(|d| d.known().map(|v| v as usize)).collect::<Option<_>>()?;
    if sd.len() > od.len() {
        return None;
    }
    let off = od.len() - sd.len();
    let mut rem = i;
    let mut idx = vec![0usize; od.len()];
    for k in (0..od.len()).rev() {
        idx[k] = rem % od[k].max(1);
        rem /= od[k].max(1);
    }
    let mut j = 0usize;
    for (k, &d) in sd.iter().enumerate() {
        let c = if d == 1 { 0 } else { idx[off + k] };
        if c >= d {
            return None;
        }
        j = j * d + c;
    }
    Some(j)
}

fn elementwise(ins: &[ValueFact], out: Option<&[Dim]>, f: impl Fn(&Dim, &Dim) -> Dim) -> Option<Value> {
    let out = out?;
    let (a, b) = (val(ins, 0)?, val(ins, 1)?);
    let (sa, sb) = (ins[0].shape.as_deref()?, ins[1].shape.as_deref()?);
    let n = elems(out)?;
    (0..n).map(|i| Some(f(&a[broadcast_index(i, out, sa)?], &b[broadcast_index(i, out, sb)?]))).collect()
}

fn binary(op: &str, a: &Dim, b: &Dim, float: bool, fmod: bool) -> Dim {
    // symbols survive identities (b·1, b+0, max(b, b)) and equality with themselves
    match (op, a, b) {
        ("Mul" | "Div", Dim::Sym(s), Dim::Known(1)) | ("Mul", Dim::Known(1), Dim::Sym(s)) if !s.is_empty() => return Dim::Sym(s.clone()),
        ("Add" | "Sub", Dim::Sym(s), Dim::Known(0)) | ("Add", Dim::Known(0), Dim::Sym(s)) if !s.is_empty() => return Dim::Sym(s.clone()),
        ("Max" | "Min", Dim::Sym(s), Dim::Sym(t)) if !s.is_empty() && s == t => return Dim::Sym(s.clone()),
        ("Equal", Dim::Sym(s), Dim::Sym(t)) if !s.is_empty() && s == t => return Dim::Known(1),
        _ => {}
    }
    let (Some(x), Some(y)) = (a.known(), b.known()) else { return unknown() };
    let r = match op {
        "Add" => x.checked_add(y),
        "Sub" => x.checked_sub(y),
        "Mul" => x.checked_mul(y),
        "Div" if y == 0 => None,
        "Div" if float && x % y != 0 => None,
        "Div" => Some(x / y),
        "Mod" if y == 0 => None,
        "Mod" if fmod => Some(x % y),
        "Mod" => Some(((x % y) + y) % y),
        "Max" => Some(x.max(y)),
        "Min" => Some(x.min(y)),
        "Equal" => Some((x == y) as i64),
        "Less" => Some((x < y) as i64),
        "Greater" => Some((x > y) as i64),
        "LessOrEqual" => Some((x <= y) as i64),
        "GreaterOrEqual" => Some((x >= y) as i64),
        "And" => Some((x != 0 && y != 0) as i64),
        "Or" => Some((x != 0 || y != 0) as i64),
        _ => None,
    };
    r.map(Dim::Known).unwrap_or_else(unknown)
}

//! Reverse-mode differentiation of an ONNX graph, expressed in standard ONNX
//! ops so that a stock ONNX Runtime (no training build) can run it.
//!
//! [`differentiate`] takes a forward node list in topological order, the
//! static shape of every float value, the values to differentiate with
//! respect to, and "seeds" (the cotangent of some forward values, already
//! present in the graph), and appends the backward nodes. Each op has one
//! backward rule below; `tests/train.rs` checks every rule against finite
//! differences.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::onnx::{self, a_float, a_int, a_ints, attr_float, attr_int, attr_ints, attr_string, NodeProto, TensorProto};
use crate::tensor::Tensor;

/// Ops whose outputs never carry a gradient (integer or boolean results, shapes).
const NON_DIFFERENTIABLE: &[&str] = &[
    "Shape", "Size", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor", "ArgMax", "ArgMin",
    "NonZero", "ConstantOfShape", "Constant", "Range", "Floor", "Ceil", "Round", "Sign", "EyeLike", "RandomNormal", "RandomUniform",
    "RandomNormalLike", "RandomUniformLike", "IsNaN", "IsInf",
];

/// Ops with a backward rule (for error messages).
pub const SUPPORTED: &[&str] = &[
    "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Mul", "Add", "Sub", "Div",
    "Neg", "Sqrt", "Exp", "Concat", "Split", "Slice", "Pad", "GlobalAveragePool", "AveragePool", "MaxPool", "Flatten", "Reshape",
    "Squeeze", "Unsqueeze", "Identity", "Dropout", "Transpose", "Gemm", "MatMul", "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceSumSquare",
    "Cast",
];

/// Emits backward nodes: fresh names, constants as initializers, shapes of
/// everything it creates.
pub struct Emitter {
    pub nodes: Vec<NodeProto>,
    pub inits: Vec<TensorProto>,
    pub shapes: HashMap<String, Vec<i64>>,
    /// Constant values of the forward graph (initializers and Constant nodes), for Slice/Pad/Reshape arguments.
    pub consts: HashMap<String, Tensor>,
    pub opset: i64,
    /// BatchNormalization nodes (by label) normalised with batch statistics computed from their input.
    pub batch_bn: HashSet<String>,
    prefix: String,
    counter: usize,
}

impl Emitter {
    pub fn new(shapes: HashMap<String, Vec<i64>>, consts: HashMap<String, Tensor>, opset: i64, prefix: &str) -> Self {
        Emitter { nodes: vec![], inits: vec![], shapes, consts, opset, batch_bn: HashSet::new(), prefix: prefix.to_string(), counter: 0 }
    }

    pub fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{}{}_{}", self.prefix, base, self.counter)
    }

    pub fn shape(&self, v: &str) -> Result<Vec<i64>> {
        self.shapes.get(v).cloned().ok_or_else(|| Error::tensor(v, "shape unknown (needed for the gradient)"))
    }

    /// One node with one output of the given shape.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<onnx::AttributeProto>, shape: Vec<i64>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.node(op, inputs, &[out.as_str()], attrs);
        self.shapes.insert(out.clone(), shape);
        out
    }

    pub fn node(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<onnx::AttributeProto>) {
        let name = self.fresh(op);
        self.nodes.push(onnx::make_node(&name, op, inputs, outputs, attrs));
    }

    pub fn c_i64(&mut self, v: &[i64]) -> String {
        let name = self.fresh("c");
        self.inits.push(Tensor::from_i64(&name, &[v.len() as i64], v).into_proto());
        name
    }

    pub fn c_f32(&mut self, v: f32) -> String {
        let name = self.fresh("c");
        let a = ndarray::arr0(v).into_dyn();
        self.inits.push(Tensor::from_f32(&name, &a).into_proto());
        self.shapes.insert(name.clone(), vec![]);
        name
    }

    pub fn c_array(&mut self, a: &ndarray::ArrayD<f32>) -> String {
        let name = self.fresh("c");
        self.inits.push(Tensor::from_f32(&name, a).into_proto());
        self.shapes.insert(name.clone(), a.shape().iter().map(|&d| d as i64).collect());
        name
    }

    pub fn zeros(&mut self, shape: &[i64]) -> String {
        let s = self.c_i64(shape);
        let z = Tensor::from_f32("value", &ndarray::arr1(&[0.0f32]).into_dyn()).into_proto();
        self.op("ConstantOfShape", &[&s], vec![onnx::a_tensor("value", z)], shape.to_vec())
    }

    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> Result<String> {
        if self.shape(x)? == shape {
            return Ok(x.to_string());
        }
        let s = self.c_i64(shape);
        Ok(self.op("Reshape", &[x, &s], vec![], shape.to_vec()))
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> Result<String> {
        let s = self.shape(x)?;
        let out: Vec<i64> = perm.iter().map(|&p| s[p as usize]).collect();
        Ok(self.op("Transpose", &[x], vec![a_ints("perm", perm)], out))
    }

    pub fn bin(&mut self, op: &str, a: &str, b: &str) -> Result<String> {
        let shape = broadcast(&self.shape(a)?, &self.shape(b)?);
        Ok(self.op(op, &[a, b], vec![], shape))
    }

    pub fn reduce(&mut self, op: &str, x: &str, axes: &[i64], keepdims: bool) -> Result<String> {
        let s = self.shape(x)?;
        let r = s.len() as i64;
        let axes: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + r } else { a }).collect();
        let out: Vec<i64> = s
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| if axes.contains(&(i as i64)) { keepdims.then_some(1) } else { Some(d) })
            .collect();
        let axes_as_input = op == "ReduceSum" && self.opset >= 13 || self.opset >= 18;
        if axes_as_input {
            let a = self.c_i64(&axes);
            Ok(self.op(op, &[x, &a], vec![a_int("keepdims", keepdims as i64)], out))
        } else {
            Ok(self.op(op, &[x], vec![a_ints("axes", &axes), a_int("keepdims", keepdims as i64)], out))
        }
    }

    pub fn slice(&mut self, x: &str, axes: &[i64], starts: &[i64], ends: &[i64]) -> Result<String> {
        let mut shape = self.shape(x)?;
        for ((&a, &s), &e) in axes.iter().zip(starts).zip(ends) {
            shape[a as usize] = e - s;
        }
        if shape == self.shape(x)? {
            return Ok(x.to_string());
        }
        let (s, e, a) = (self.c_i64(starts), self.c_i64(ends), self.c_i64(axes));
        Ok(self.op("Slice", &[x, &s, &e, &a], vec![], shape))
    }

    /// Zero padding; `pads` in ONNX order (all begins, then all ends).
    pub fn pad(&mut self, x: &str, pads: &[i64]) -> Result<String> {
        if pads.iter().all(|&p| p == 0) {
            return Ok(x.to_string());
        }
        let s = self.shape(x)?;
        let r = s.len();
        let out: Vec<i64> = (0..r).map(|i| s[i] + pads[i] + pads[i + r]).collect();
        let p = self.c_i64(pads);
        Ok(self.op("Pad", &[x, &p], vec![], out))
    }

    pub fn expand(&mut self, x: &str, shape: &[i64]) -> Result<String> {
        if self.shape(x)? == shape {
            return Ok(x.to_string());
        }
        let s = self.c_i64(shape);
        Ok(self.op("Expand", &[x, &s], vec![], shape.to_vec()))
    }

    /// Sum a broadcast gradient back to the shape of the operand it came from.
    pub fn unbroadcast(&mut self, g: &str, target: &[i64]) -> Result<String> {
        let gs = self.shape(g)?;
        if gs == target {
            return Ok(g.to_string());
        }
        let off = gs.len() - target.len().min(gs.len());
        let axes: Vec<i64> = (0..gs.len())
            .filter(|&i| if i < off { true } else { target[i - off] == 1 && gs[i] != 1 })
            .map(|i| i as i64)
            .collect();
        let r = if axes.is_empty() { g.to_string() } else { self.reduce("ReduceSum", g, &axes, true)? };
        self.reshape(&r, target)
    }

    /// Sum several gradient contributions.
    pub fn sum(&mut self, parts: &[String]) -> Result<String> {
        match parts {
            [] => Err(Error::InvalidGraph("empty gradient sum".into())),
            [one] => Ok(one.clone()),
            many => {
                let shape = self.shape(&many[0])?;
                let refs: Vec<&str> = many.iter().map(String::as_str).collect();
                Ok(self.op("Sum", &refs, vec![], shape))
            }
        }
    }

    fn const_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.consts.get(name).and_then(|t| t.to_i64().ok())
    }
}

pub fn broadcast(a: &[i64], b: &[i64]) -> Vec<i64> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            if da == 1 { db } else { da }
        })
        .collect()
}

/// Which values depend on `wrt` through differentiable ops.
pub fn requires_grad(nodes: &[NodeProto], wrt: &HashSet<String>) -> HashSet<String> {
    let mut req = wrt.clone();
    for n in nodes {
        if NON_DIFFERENTIABLE.contains(&n.op_type()) {
            continue;
        }
        if n.op_type() == "Cast" && attr_int(n, "to") != Some(onnx::dtype::FLOAT as i64) {
            continue;
        }
        if n.input.iter().any(|i| req.contains(i)) {
            // MaxPool's second output (indices) is integer
            let outs = if n.op_type() == "MaxPool" { &n.output[..1] } else { &n.output[..] };
            req.extend(outs.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    req
}

/// Append the backward pass of `nodes` to `em`. `seeds` maps forward values to
/// the name of their cotangent. Returns the gradient of each `wrt` value
/// (None when it does not influence any seed).
pub fn differentiate(em: &mut Emitter, nodes: &[NodeProto], wrt: &[String], seeds: &[(String, String)]) -> Result<HashMap<String, Option<String>>> {
    let wrt_set: HashSet<String> = wrt.iter().cloned().collect();
    let req = requires_grad(nodes, &wrt_set);
    let mut grads: HashMap<String, Vec<String>> = HashMap::new();
    for (v, g) in seeds {
        grads.entry(v.clone()).or_default().push(g.clone());
    }
    for n in nodes.iter().rev() {
        let need: Vec<bool> = n.input.iter().map(|i| !i.is_empty() && req.contains(i)).collect();
        if !need.iter().any(|&b| b) || !n.output.iter().any(|o| grads.get(o).is_some_and(|g| !g.is_empty())) {
            continue;
        }
        // contributions from several consumers are summed once, here
        let outs_with_grad: Vec<Option<String>> = n
            .output
            .iter()
            .map(|o| grads.get(o).filter(|g| !g.is_empty()).cloned())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|parts| parts.map(|p| em.sum(&p)).transpose())
            .collect::<Result<_>>()?;
        let label = onnx::node_label(n);
        let gin = backward(em, n, &outs_with_grad, &need).map_err(|e| match e {
            Error::Node { .. } => e,
            other => Error::node(&label, other.to_string()),
        })?;
        for (i, g) in gin.into_iter().enumerate() {
            if let (Some(g), true) = (g, need.get(i).copied().unwrap_or(false)) {
                grads.entry(n.input[i].clone()).or_default().push(g);
            }
        }
    }
    let mut out = HashMap::new();
    for w in wrt {
        let g = match grads.get(w) {
            Some(p) if !p.is_empty() => Some(em.sum(p)?),
            _ => None,
        };
        out.insert(w.clone(), g);
    }
    Ok(out)
}

fn in_shape(em: &Emitter, n: &NodeProto, i: usize) -> Result<Vec<i64>> {
    em.shape(&n.input[i])
}

/// Explicit begin/end pads of a windowed op over its spatial dims.
fn window_pads(n: &NodeProto, x: &[i64], y: &[i64], k: &[i64], s: &[i64], d: &[i64]) -> Result<Vec<i64>> {
    let sp = x.len() - 2;
    let auto = attr_string(n, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" | "" => Ok(attr_ints(n, "pads").unwrap_or_else(|| vec![0; 2 * sp])),
        "VALID" => Ok(vec![0; 2 * sp]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut b = vec![0; sp];
            let mut e = vec![0; sp];
            for i in 0..sp {
                let total = ((y[i + 2] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - x[i + 2]).max(0);
                let small = total / 2;
                if auto == "SAME_UPPER" {
                    b[i] = small;
                    e[i] = total - small;
                } else {
                    b[i] = total - small;
                    e[i] = small;
                }
            }
            Ok([b, e].concat())
        }
        other => Err(Error::node(onnx::node_label(n), format!("auto_pad {other}"))),
    }
}

/// Gradient of a windowed op's input from a ConvTranspose result over the full
/// (unpadded) extent: crop the pads, zero-fill positions no window touched.
fn crop_to_input(em: &mut Emitter, full: &str, x: &[i64], pads: &[i64]) -> Result<String> {
    let fs = em.shape(full)?;
    let sp = x.len() - 2;
    let axes: Vec<i64> = (2..2 + sp as i64).collect();
    let starts: Vec<i64> = (0..sp).map(|i| pads[i]).collect();
    let ends: Vec<i64> = (0..sp).map(|i| (pads[i] + x[i + 2]).min(fs[i + 2])).collect();
    let cropped = em.slice(full, &axes, &starts, &ends)?;
    let mut p = vec![0; 2 * x.len()];
    for i in 0..sp {
        p[x.len() + 2 + i] = x[i + 2] - (ends[i] - starts[i]);
    }
    em.pad(&cropped, &p)
}

fn conv_backward(em: &mut Emitter, n: &NodeProto, gy: &str, need: &[bool]) -> Result<Vec<Option<String>>> {
    let x = in_shape(em, n, 0)?;
    let w = in_shape(em, n, 1)?;
    let y = em.shape(gy)?;
    if x.len() != 4 {
        return Err(Error::node(onnx::node_label(n), format!("training supports 2-D convolutions only (input rank {})", x.len())));
    }
    let k = w[2..].to_vec();
    let s = attr_ints(n, "strides").unwrap_or_else(|| vec![1; 2]);
    let d = attr_ints(n, "dilations").unwrap_or_else(|| vec![1; 2]);
    let g = attr_int(n, "group").unwrap_or(1);
    let pads = window_pads(n, &x, &y, &k, &s, &d)?;
    let mut out = vec![None, None, None];
    let pointwise = g == 1 && k == [1, 1] && s == [1, 1] && pads.iter().all(|&p| p == 0);
    if need[0] && pointwise {
        // dX[n] = Wᵀ · dY[n], one batched MatMul with the (small) transposed weight
        let (m, c, hw) = (w[0], w[1], x[2] * x[3]);
        let w2 = em.reshape(&n.input[1], &[m, c])?;
        let wt = em.transpose(&w2, &[1, 0])?;
        let y3 = em.reshape(gy, &[x[0], m, hw])?;
        let dx = em.op("MatMul", &[&wt, &y3], vec![], vec![x[0], c, hw]);
        out[0] = Some(em.reshape(&dx, &x)?);
    } else if need[0] {
        let full: Vec<i64> = vec![x[0], x[1], s[0] * (y[2] - 1) + (k[0] - 1) * d[0] + 1, s[1] * (y[3] - 1) + (k[1] - 1) * d[1] + 1];
        let ct = em.op("ConvTranspose", &[gy, &n.input[1]], vec![a_ints("strides", &s), a_ints("dilations", &d), a_int("group", g)], full);
        out[0] = Some(crop_to_input(em, &ct, &x, &pads)?);
    }
    if need.get(1).copied().unwrap_or(false) {
        let (nb, c, m) = (x[0], x[1], w[0]);
        let (cg, mg) = (c / g, m / g);
        if pointwise {
            // dW = Σ_n dY[n] · X[n]ᵀ as a batched MatMul, transposing only the smaller of
            // X and dY (per sample), then a sum over the batch
            let hw = x[2] * x[3];
            let x3 = em.reshape(&n.input[0], &[nb, c, hw])?;
            let y3 = em.reshape(gy, &[nb, m, hw])?;
            let dw = if m <= c {
                let yt = em.transpose(&y3, &[0, 2, 1])?;
                let p = em.op("MatMul", &[&x3, &yt], vec![], vec![nb, c, m]);
                let q = em.reduce("ReduceSum", &p, &[0], false)?;
                em.transpose(&q, &[1, 0])?
            } else {
                let xt = em.transpose(&x3, &[0, 2, 1])?;
                let p = em.op("MatMul", &[&y3, &xt], vec![], vec![nb, m, c]);
                em.reduce("ReduceSum", &p, &[0], false)?
            };
            out[1] = Some(em.reshape(&dw, &[m, c, 1, 1])?);
            if need.get(2).copied().unwrap_or(false) {
                out[2] = Some(em.reduce("ReduceSum", gy, &[0, 2, 3], false)?);
            }
            return Ok(out);
        }
        let depthwise = g == c && m == c;
        if depthwise && k[0] * k[1] <= 9 {
            // small (FuSe 1×K / K×1) kernels: one strided slice of the padded input per tap,
            // dW[c, i, j] = Σ dY · X[.., i·d + p·s, j·d + q·s] (no transposes; measured 1.5 ms
            // against 2.6 ms for the grouped-conv form on a [32, 100, 2, 96] 1×5 layer)
            let mut p = vec![0; 8];
            p[2] = pads[0];
            p[3] = pads[1];
            p[6] = pads[2];
            p[7] = pads[3];
            let xp = em.pad(&n.input[0], &p)?;
            let (ax, st) = (em.c_i64(&[2, 3]), em.c_i64(&s));
            let mut taps = vec![];
            for i in 0..k[0] {
                for j in 0..k[1] {
                    let b = [i * d[0], j * d[1]];
                    let e = [b[0] + (y[2] - 1) * s[0] + 1, b[1] + (y[3] - 1) * s[1] + 1];
                    let (bs, es) = (em.c_i64(&b), em.c_i64(&e));
                    let xs = em.op("Slice", &[&xp, &bs, &es, &ax, &st], vec![], y.clone());
                    let prod = em.bin("Mul", &xs, gy)?;
                    let r = em.reduce("ReduceSum", &prod, &[0, 2, 3], false)?;
                    taps.push(em.reshape(&r, &[c, 1])?);
                }
            }
            let refs: Vec<&str> = taps.iter().map(String::as_str).collect();
            let cat = em.op("Concat", &refs, vec![a_int("axis", 1)], vec![c, k[0] * k[1]]);
            out[1] = Some(em.reshape(&cat, &[c, 1, k[0], k[1]])?);
        } else if depthwise {
            // one group per (sample, channel): x as [1, N·C, H, W] and dY as [N·C, 1, Ho, Wo]
            // need no transposes; the per-sample kernels are summed afterwards
            let x1 = em.reshape(&n.input[0], &[1, nb * c, x[2], x[3]])?;
            let w1 = em.reshape(gy, &[nb * c, 1, y[2], y[3]])?;
            let oh: Vec<i64> = (0..2).map(|i| (x[i + 2] + pads[i] + pads[i + 2] - ((y[i + 2] - 1) * s[i] + 1)) / d[i] + 1).collect();
            let cv = em.op(
                "Conv",
                &[&x1, &w1],
                vec![a_ints("strides", &d), a_ints("dilations", &s), a_ints("pads", &pads), a_int("group", nb * c)],
                vec![1, nb * c, oh[0], oh[1]],
            );
            let cropped = em.slice(&cv, &[2, 3], &[0, 0], &[k[0], k[1]])?;
            let per = em.reshape(&cropped, &[nb, c, k[0], k[1]])?;
            let sum = em.reduce("ReduceSum", &per, &[0], false)?;
            out[1] = Some(em.reshape(&sum, &[c, 1, k[0], k[1]])?);
        }
        if depthwise {
            if need.get(2).copied().unwrap_or(false) {
                out[2] = Some(em.reduce("ReduceSum", gy, &[0, 2, 3], false)?);
            }
            return Ok(out);
        }
        let xt = if g == 1 {
            em.transpose(&n.input[0], &[1, 0, 2, 3])?
        } else {
            let r = em.reshape(&n.input[0], &[nb, g, cg, x[2], x[3]])?;
            let t = em.transpose(&r, &[2, 1, 0, 3, 4])?;
            em.reshape(&t, &[cg, g * nb, x[2], x[3]])?
        };
        let wt = if g == 1 {
            em.transpose(gy, &[1, 0, 2, 3])?
        } else {
            let r = em.reshape(gy, &[nb, g, mg, y[2], y[3]])?;
            let t = em.transpose(&r, &[1, 2, 0, 3, 4])?;
            em.reshape(&t, &[m, nb, y[2], y[3]])?
        };
        let oh: Vec<i64> = (0..2).map(|i| (x[i + 2] + pads[i] + pads[i + 2] - ((y[i + 2] - 1) * s[i] + 1)) / d[i] + 1).collect();
        let cv = em.op(
            "Conv",
            &[&xt, &wt],
            vec![a_ints("strides", &d), a_ints("dilations", &s), a_ints("pads", &pads), a_int("group", g)],
            vec![cg, m, oh[0], oh[1]],
        );
        let cropped = em.slice(&cv, &[2, 3], &[0, 0], &[k[0], k[1]])?;
        out[1] = Some(em.transpose(&cropped, &[1, 0, 2, 3])?);
    }
    if need.get(2).copied().unwrap_or(false) {
        out[2] = Some(em.reduce("ReduceSum", gy, &[0, 2, 3], false)?);
    }
    Ok(out)
}

fn bn_backward(em: &mut Emitter, n: &NodeProto, gy: &str, need: &[bool]) -> Result<Vec<Option<String>>> {
    if attr_int(n, "training_mode") == Some(1) {
        return Err(Error::node(onnx::node_label(n), "BatchNormalization with training_mode=1 (fusec computes batch statistics itself)"));
    }
    if need.get(3).copied().unwrap_or(false) || need.get(4).copied().unwrap_or(false) {
        if !em.batch_bn.contains(&onnx::node_label(n)) {
            return Err(Error::node(onnx::node_label(n), "gradient with respect to BN running statistics"));
        }
    }
    let x = in_shape(em, n, 0)?;
    let c = x[1];
    let mut bshape = vec![1; x.len()];
    bshape[1] = c;
    let axes: Vec<i64> = (0..x.len() as i64).filter(|&a| a != 1).collect();
    let count: i64 = x.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, &d)| d).product();
    let eps = attr_float(n, "epsilon").unwrap_or(1e-5);
    let e = em.c_f32(eps);
    let ve = em.bin("Add", &n.input[4], &e)?;
    let sd = em.op("Sqrt", &[&ve], vec![], vec![c]);
    let one = em.c_f32(1.0);
    let inv = em.bin("Div", &one, &sd)?;
    let k = em.bin("Mul", &n.input[1], &inv)?;
    let batch = em.batch_bn.contains(&onnx::node_label(n));
    let mut out = vec![None; 5];
    // Σdy and Σdy·x̂ per channel, with Σdy·x̂ = (Σdy·x − μ·Σdy)/σ (no x̂ tensor)
    let sums = if batch || need[1] || need[2] {
        let sdy = em.reduce("ReduceSum", gy, &axes, false)?;
        let sdyxh = if batch || need[1] {
            let p = em.bin("Mul", gy, &n.input[0])?;
            let sdyx = em.reduce("ReduceSum", &p, &axes, false)?;
            let ms = em.bin("Mul", &n.input[3], &sdy)?;
            let d = em.bin("Sub", &sdyx, &ms)?;
            Some(em.bin("Mul", &d, &inv)?)
        } else {
            None
        };
        Some((sdy, sdyxh))
    } else {
        None
    };
    if need[0] {
        let k4 = em.reshape(&k, &bshape)?;
        let kdy = em.bin("Mul", gy, &k4)?;
        out[0] = Some(match (&sums, batch) {
            (Some((sdy, Some(sdyxh))), true) => {
                // statistics of this batch: dx = k·dy − k/M·Σdy − k/M·x̂·Σ(dy·x̂) = k·dy + c1·x + c0,
                // the affine part c1·x + c0 as one inference-mode BatchNormalization
                let cm = em.c_f32(-1.0 / count as f32);
                let km = em.bin("Mul", &k, &cm)?;
                let a = em.bin("Mul", &km, &sdyxh)?;
                let c1 = em.bin("Mul", &a, &inv)?;
                let t = em.bin("Mul", &c1, &n.input[3])?;
                let b = em.bin("Mul", &km, sdy)?;
                let c0 = em.bin("Sub", &b, &t)?;
                let s = em.c_f32((1.0 + eps).sqrt());
                let c1s = em.bin("Mul", &c1, &s)?;
                let (zero, ones) = (em.c_array(&ndarray::ArrayD::zeros(ndarray::IxDyn(&[c as usize]))), em.c_array(&ndarray::ArrayD::ones(ndarray::IxDyn(&[c as usize]))));
                let aff = em.op("BatchNormalization", &[&n.input[0], &c1s, &c0, &zero, &ones], vec![a_float("epsilon", eps)], x.clone());
                em.bin("Add", &kdy, &aff)?
            }
            _ => kdy,
        });
    }
    if let Some((sdy, sdyxh)) = sums {
        if need[1] {
            out[1] = sdyxh;
        }
        if need[2] {
            out[2] = Some(sdy);
        }
    }
    Ok(out)
}

fn where_mask(em: &mut Emitter, mask: &str, g: &str) -> Result<String> {
    let z = em.c_f32(0.0);
    let shape = em.shape(g)?;
    Ok(em.op("Where", &[mask, g, &z], vec![], shape))
}

fn cmp(em: &mut Emitter, op: &str, a: &str, b: &str) -> Result<String> {
    let shape = broadcast(&em.shape(a)?, &em.shape(b)?);
    Ok(em.op(op, &[a, b], vec![], shape))
}

fn pool_backward(em: &mut Emitter, n: &NodeProto, gy: &str) -> Result<String> {
    let label = onnx::node_label(n);
    let x = in_shape(em, n, 0)?;
    let y = em.shape(gy)?;
    if x.len() != 4 {
        return Err(Error::node(&label, "training supports 2-D pooling only"));
    }
    let k = attr_ints(n, "kernel_shape").ok_or_else(|| Error::node(&label, "no kernel_shape"))?;
    let s = attr_ints(n, "strides").unwrap_or_else(|| vec![1; 2]);
    let d = vec![1, 1];
    let pads = window_pads(n, &x, &y, &k, &s, &d)?;
    if n.op_type() == "MaxPool" {
        let idx = n.output.get(1).filter(|o| !o.is_empty()).ok_or_else(|| Error::node(&label, "MaxPool backward needs the Indices output"))?;
        let numel: i64 = x.iter().product();
        let flat_i = em.reshape(idx, &[y.iter().product()])?;
        let flat_g = em.reshape(gy, &[y.iter().product()])?;
        let z = em.zeros(&[numel]);
        let sc = em.op("ScatterElements", &[&z, &flat_i, &flat_g], vec![a_int("axis", 0), onnx::a_string("reduction", "add")], vec![numel]);
        return em.reshape(&sc, &x);
    }
    let include = attr_int(n, "count_include_pad").unwrap_or(0) == 1;
    if !include && pads.iter().any(|&p| p != 0) {
        return Err(Error::node(&label, "AveragePool backward with padding and count_include_pad=0 is not supported"));
    }
    if attr_int(n, "ceil_mode").unwrap_or(0) == 1 {
        let exact = (0..2).all(|i| (x[i + 2] + pads[i] + pads[i + 2] - k[i]) % s[i] == 0);
        if !exact {
            return Err(Error::node(&label, "AveragePool backward with ceil_mode=1 and partial windows is not supported"));
        }
    }
    let c = x[1];
    let w = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[c as usize, 1, k[0] as usize, k[1] as usize]), 1.0 / (k[0] * k[1]) as f32);
    let wn = em.c_array(&w);
    let full = vec![x[0], c, s[0] * (y[2] - 1) + k[0], s[1] * (y[3] - 1) + k[1]];
    let ct = em.op("ConvTranspose", &[gy, &wn], vec![a_ints("strides", &s), a_int("group", c)], full);
    crop_to_input(em, &ct, &x, &pads)
}

/// The attribute or input form of `axes` etc. (opset dependent).
fn list_arg(em: &Emitter, n: &NodeProto, attr: &str, input: usize) -> Option<Vec<i64>> {
    attr_ints(n, attr).or_else(|| n.input.get(input).filter(|s| !s.is_empty()).and_then(|s| em.const_ints(s)))
}

fn backward(em: &mut Emitter, n: &NodeProto, gys: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>> {
    let label = onnx::node_label(n);
    let op = n.op_type();
    let gy0 = || gys.first().cloned().flatten().ok_or_else(|| Error::node(&label, "missing output gradient"));
    let inp = |i: usize| n.input[i].as_str();
    let yname = n.output.first().cloned().unwrap_or_default();
    let one = |g: String| Ok(vec![Some(g)]);
    match op {
        "Conv" => conv_backward(em, n, &gy0()?, need),
        "BatchNormalization" => bn_backward(em, n, &gy0()?, need),
        "Relu" => {
            let z = em.c_f32(0.0);
            let m = cmp(em, "Greater", inp(0), &z)?;
            one(where_mask(em, &m, &gy0()?)?)
        }
        "LeakyRelu" => {
            let alpha = attr_float(n, "alpha").unwrap_or(0.01);
            let (z, a) = (em.c_f32(0.0), em.c_f32(alpha));
            let m = cmp(em, "Greater", inp(0), &z)?;
            let g = gy0()?;
            let ga = em.bin("Mul", &g, &a)?;
            let shape = em.shape(&g)?;
            one(em.op("Where", &[&m, &g, &ga], vec![], shape))
        }
        "Clip" => {
            // the gradient passes where the value was not clipped, i.e. where y == x
            let m = cmp(em, "Equal", inp(0), &yname)?;
            one(where_mask(em, &m, &gy0()?)?)
        }
        "HardSigmoid" => {
            let alpha = attr_float(n, "alpha").unwrap_or(0.2);
            let (z, o, a) = (em.c_f32(0.0), em.c_f32(1.0), em.c_f32(alpha));
            let m1 = cmp(em, "Greater", &yname, &z)?;
            let m2 = cmp(em, "Less", &yname, &o)?;
            let m = cmp(em, "And", &m1, &m2)?;
            let g = gy0()?;
            let ga = em.bin("Mul", &g, &a)?;
            one(where_mask(em, &m, &ga)?)
        }
        "HardSwish" => {
            let (third, half, m3, p3, z, o) = (em.c_f32(1.0 / 3.0), em.c_f32(0.5), em.c_f32(-3.0), em.c_f32(3.0), em.c_f32(0.0), em.c_f32(1.0));
            let t = em.bin("Mul", inp(0), &third)?;
            let t = em.bin("Add", &t, &half)?;
            let hi = cmp(em, "Greater", inp(0), &p3)?;
            let shape = em.shape(&t)?;
            let t = em.op("Where", &[&hi, &o, &t], vec![], shape.clone());
            let lo = cmp(em, "Less", inp(0), &m3)?;
            let dt = em.op("Where", &[&lo, &z, &t], vec![], shape);
            one(em.bin("Mul", &gy0()?, &dt)?)
        }
        "Sigmoid" => {
            let o = em.c_f32(1.0);
            let om = em.bin("Sub", &o, &yname)?;
            let d = em.bin("Mul", &yname, &om)?;
            one(em.bin("Mul", &gy0()?, &d)?)
        }
        "Tanh" => {
            let o = em.c_f32(1.0);
            let y2 = em.bin("Mul", &yname, &yname)?;
            let d = em.bin("Sub", &o, &y2)?;
            one(em.bin("Mul", &gy0()?, &d)?)
        }
        "Exp" => one(em.bin("Mul", &gy0()?, &yname)?),
        "Neg" => {
            let shape = em.shape(&gy0()?)?;
            one(em.op("Neg", &[&gy0()?], vec![], shape))
        }
        "Sqrt" => {
            let h = em.c_f32(0.5);
            let g = em.bin("Mul", &gy0()?, &h)?;
            one(em.bin("Div", &g, &yname)?)
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let g = gy0()?;
            let (sa, sb) = (in_shape(em, n, 0)?, in_shape(em, n, 1)?);
            let mut out = vec![None, None];
            if need[0] {
                let ga = match op {
                    "Add" | "Sub" => g.clone(),
                    "Mul" => em.bin("Mul", &g, inp(1))?,
                    _ => em.bin("Div", &g, inp(1))?,
                };
                out[0] = Some(em.unbroadcast(&ga, &sa)?);
            }
            if need[1] {
                let gb = match op {
                    "Add" => g.clone(),
                    "Sub" => {
                        let shape = em.shape(&g)?;
                        em.op("Neg", &[&g], vec![], shape)
                    }
                    "Mul" => em.bin("Mul", &g, inp(0))?,
                    _ => {
                        let t = em.bin("Mul", &g, &yname)?;
                        let t = em.bin("Div", &t, inp(1))?;
                        let shape = em.shape(&t)?;
                        em.op("Neg", &[&t], vec![], shape)
                    }
                };
                out[1] = Some(em.unbroadcast(&gb, &sb)?);
            }
            Ok(out)
        }
        "Concat" => {
            let axis = attr_int(n, "axis").unwrap_or(0);
            let ys = em.shape(&gy0()?)?;
            let axis = if axis < 0 { axis + ys.len() as i64 } else { axis } as usize;
            let sizes: Vec<i64> = (0..n.input.len()).map(|i| in_shape(em, n, i).map(|s| s[axis])).collect::<Result<_>>()?;
            let outs: Vec<String> = (0..sizes.len()).map(|_| em.fresh("split")).collect();
            let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
            let sp = em.c_i64(&sizes);
            let g = gy0()?;
            em.node("Split", &[&g, &sp], &refs, vec![a_int("axis", axis as i64)]);
            for (o, &sz) in outs.iter().zip(&sizes) {
                let mut s = ys.clone();
                s[axis] = sz;
                em.shapes.insert(o.clone(), s);
            }
            Ok(outs.into_iter().map(Some).collect())
        }
        "Split" => {
            let xs = in_shape(em, n, 0)?;
            let axis = attr_int(n, "axis").unwrap_or(0);
            let axis = if axis < 0 { axis + xs.len() as i64 } else { axis };
            let mut parts = vec![];
            for (i, o) in n.output.iter().enumerate() {
                parts.push(match gys.get(i).cloned().flatten() {
                    Some(g) => g,
                    None => {
                        let s = em.shape(o)?;
                        em.zeros(&s)
                    }
                });
            }
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            one(em.op("Concat", &refs, vec![a_int("axis", axis)], xs))
        }
        "Slice" => {
            let xs = in_shape(em, n, 0)?;
            let r = xs.len() as i64;
            let starts = list_arg(em, n, "starts", 1).ok_or_else(|| Error::node(&label, "Slice starts must be constant for training"))?;
            let ends = list_arg(em, n, "ends", 2).ok_or_else(|| Error::node(&label, "Slice ends must be constant for training"))?;
            let axes = list_arg(em, n, "axes", 3).unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = n.input.get(4).filter(|s| !s.is_empty()).and_then(|s| em.const_ints(s)).unwrap_or_else(|| vec![1; starts.len()]);
            if steps.iter().any(|&s| s != 1) {
                return Err(Error::node(&label, "Slice backward with steps other than 1 is not supported"));
            }
            let mut pads = vec![0; 2 * xs.len()];
            for (j, &a) in axes.iter().enumerate() {
                let a = if a < 0 { a + r } else { a } as usize;
                let dim = xs[a];
                let norm = |v: i64| if v < 0 { (v + dim).max(0) } else { v.min(dim) };
                let (b, e) = (norm(starts[j]), norm(ends[j]).max(norm(starts[j])));
                pads[a] = b;
                pads[a + xs.len()] = dim - e;
            }
            one(em.pad(&gy0()?, &pads)?)
        }
        "Pad" => {
            let mode = attr_string(n, "mode").unwrap_or_else(|| "constant".into());
            let pads = list_arg(em, n, "pads", 1).ok_or_else(|| Error::node(&label, "Pad pads must be constant for training"))?;
            if mode != "constant" || pads.iter().any(|&p| p < 0) || n.input.get(3).is_some_and(|s| !s.is_empty()) {
                return Err(Error::node(&label, "Pad backward supports constant mode with non-negative pads over all axes"));
            }
            let xs = in_shape(em, n, 0)?;
            let r = xs.len();
            let axes: Vec<i64> = (0..r as i64).collect();
            let starts: Vec<i64> = pads[..r].to_vec();
            let ends: Vec<i64> = (0..r).map(|i| pads[i] + xs[i]).collect();
            one(em.slice(&gy0()?, &axes, &starts, &ends)?)
        }
        "GlobalAveragePool" => {
            let xs = in_shape(em, n, 0)?;
            let hw: i64 = xs[2..].iter().product();
            let c = em.c_f32(1.0 / hw as f32);
            let g = em.bin("Mul", &gy0()?, &c)?;
            one(em.expand(&g, &xs)?)
        }
        "AveragePool" | "MaxPool" => one(pool_backward(em, n, &gy0()?)?),
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" | "Identity" | "Dropout" | "Cast" => {
            let xs = in_shape(em, n, 0)?;
            one(em.reshape(&gy0()?, &xs)?)
        }
        "Transpose" => {
            let xs = in_shape(em, n, 0)?;
            let perm = attr_ints(n, "perm").unwrap_or_else(|| (0..xs.len() as i64).rev().collect());
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p as usize] = i as i64;
            }
            one(em.transpose(&gy0()?, &inv)?)
        }
        "Gemm" => {
            let g = gy0()?;
            let (ta, tb) = (attr_int(n, "transA").unwrap_or(0) == 1, attr_int(n, "transB").unwrap_or(0) == 1);
            let alpha = attr_float(n, "alpha").unwrap_or(1.0);
            let beta = attr_float(n, "beta").unwrap_or(1.0);
            let (sa, sb) = (in_shape(em, n, 0)?, in_shape(em, n, 1)?);
            let mut out = vec![None, None, None];
            if need[0] {
                // dA' = alpha * dY * B'^T, with B' = op(B)
                let (m, k) = if ta { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
                let da = em.op("Gemm", &[&g, inp(1)], vec![a_int("transB", (!tb) as i64), a_float("alpha", alpha)], vec![m, k]);
                out[0] = Some(if ta { em.transpose(&da, &[1, 0])? } else { da });
            }
            if need[1] {
                // dB' = alpha * A'^T * dY
                let (k, nn) = if tb { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
                let db = em.op("Gemm", &[inp(0), &g], vec![a_int("transA", (!ta) as i64), a_float("alpha", alpha)], vec![k, nn]);
                out[1] = Some(if tb { em.transpose(&db, &[1, 0])? } else { db });
            }
            if need.get(2).copied().unwrap_or(false) {
                let sc = in_shape(em, n, 2)?;
                let b = em.c_f32(beta);
                let gb = em.bin("Mul", &g, &b)?;
                out[2] = Some(em.unbroadcast(&gb, &sc)?);
            }
            Ok(out)
        }
        "MatMul" => {
            let g = gy0()?;
            let (sa, sb) = (in_shape(em, n, 0)?, in_shape(em, n, 1)?);
            if sa.len() < 2 || sb.len() < 2 || (sb.len() != 2 && sa.len() != sb.len()) || (sb.len() > 2 && sa[..sa.len() - 2] != sb[..sb.len() - 2]) {
                return Err(Error::node(&label, format!("MatMul backward for shapes {sa:?} x {sb:?} (supported: [.., M, K] x [K, N], or equal batch dims)")));
            }
            let mut out = vec![None, None];
            let rb = sb.len();
            let mut perm_b: Vec<i64> = (0..rb as i64).collect();
            perm_b.swap(rb - 2, rb - 1);
            if need[0] {
                let bt = em.transpose(inp(1), &perm_b)?;
                out[0] = Some(em.op("MatMul", &[&g, &bt], vec![], sa.clone()));
            }
            if need[1] {
                let (k, nn) = (sa[sa.len() - 1], sb[rb - 1]);
                if rb == 2 {
                    let a2 = em.reshape(inp(0), &[sa[..sa.len() - 1].iter().product(), k])?;
                    let g2 = em.reshape(&g, &[sa[..sa.len() - 1].iter().product(), nn])?;
                    let at = em.transpose(&a2, &[1, 0])?;
                    out[1] = Some(em.op("MatMul", &[&at, &g2], vec![], sb.clone()));
                } else {
                    let at = em.transpose(inp(0), &perm_b)?;
                    out[1] = Some(em.op("MatMul", &[&at, &g], vec![], sb.clone()));
                }
            }
            Ok(out)
        }
        "Softmax" | "LogSoftmax" => {
            let xs = in_shape(em, n, 0)?;
            let axis = attr_int(n, "axis").unwrap_or(if em.opset >= 13 { -1 } else { 1 });
            let axis = if axis < 0 { axis + xs.len() as i64 } else { axis };
            if em.opset < 13 && axis != xs.len() as i64 - 1 {
                return Err(Error::node(&label, "Softmax before opset 13 over a non-last axis"));
            }
            let g = gy0()?;
            if op == "Softmax" {
                let gyy = em.bin("Mul", &g, &yname)?;
                let s = em.reduce("ReduceSum", &gyy, &[axis], true)?;
                let d = em.bin("Sub", &g, &s)?;
                one(em.bin("Mul", &d, &yname)?)
            } else {
                let s = em.reduce("ReduceSum", &g, &[axis], true)?;
                let p = em.op("Exp", &[&yname], vec![], xs);
                let t = em.bin("Mul", &p, &s)?;
                one(em.bin("Sub", &g, &t)?)
            }
        }
        "ReduceMean" | "ReduceSum" | "ReduceSumSquare" => {
            let xs = in_shape(em, n, 0)?;
            let r = xs.len() as i64;
            let axes: Vec<i64> = list_arg(em, n, "axes", 1)
                .unwrap_or_else(|| (0..r).collect())
                .into_iter()
                .map(|a| if a < 0 { a + r } else { a })
                .collect();
            let keep: Vec<i64> = (0..r).map(|i| if axes.contains(&i) { 1 } else { xs[i as usize] }).collect();
            let g = em.reshape(&gy0()?, &keep)?;
            let g = if op == "ReduceMean" {
                let count: i64 = axes.iter().map(|&a| xs[a as usize]).product();
                let c = em.c_f32(1.0 / count as f32);
                em.bin("Mul", &g, &c)?
            } else {
                g
            };
            if op == "ReduceSumSquare" {
                let two = em.c_f32(2.0);
                let x2 = em.bin("Mul", inp(0), &two)?;
                one(em.bin("Mul", &x2, &g)?)
            } else {
                one(em.expand(&g, &xs)?)
            }
        }
        _ => Err(Error::node(&label, format!("no gradient rule for {op} (rules exist for: {})", SUPPORTED.join(", ")))),
    }
    .map(|mut v: Vec<Option<String>>| {
        v.resize(n.input.len(), None);
        v
    })
    .map_err(|e| if let Error::Node { .. } = e { e } else { Error::node(&label, e.to_string()) })
}

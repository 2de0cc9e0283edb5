//! Which grouped convs the pass can rewrite, and why not: the read-only
//! match, separate from the rewrite.

use ndarray::{ArrayD, IxDyn};
use petgraph::stable_graph::NodeIndex;

use crate::error::{Error, Result};
use crate::ir::op::{ConvAttrs, Window};
use crate::ir::Graph;
use crate::onnx::{self, attr_int, Dim};

/// A depthwise conv the pass can rewrite.
#[derive(Debug, Clone)]
pub struct DepthwiseConv {
    pub node: NodeIndex,
    pub name: String,
    /// Index among all depthwise-like convs of the graph, in topological order.
    pub index: usize,
    pub channels: usize,
    pub kernel: [i64; 2],
    pub window: Window,
    pub input: String,
    pub output: String,
    pub input_shape: Option<Vec<Dim>>,
    pub output_shape: Option<Vec<Dim>>,
    /// Explicit pads [top, left, bottom, right] where they can be known (see
    /// [`Window::resolved_pads`]).
    pub pads: Option<Vec<i64>>,
    /// The kernel row kept by 1×K and the column kept by K×1 ([`Window::centre_taps`]).
    pub centre: [usize; 2],
    /// The kernel each channel keeps, [C, 1, kh, kw]: the depthwise weight,
    /// or for a dense conv its diagonal (channel c to channel c).
    pub weight: ArrayD<f32>,
    pub bias: Option<ArrayD<f32>>,
    /// A dense (group 1, C → C) conv rewritten with `--dense`: the block
    /// drops its cross-channel terms.
    pub dense: bool,
    /// A QDQ conv: the quantization its block keeps (weight and bias above are dequantized).
    pub qdq: Option<super::qdq::Qdq>,
}

impl DepthwiseConv {
    /// Channels that go to the 1×K branch in Half (⌈C/2⌉, as torch.chunk).
    pub fn half_split(&self) -> usize {
        self.channels.div_ceil(2)
    }
    /// Parameters of the original conv (a dense one holds C×C kernels).
    pub fn params(&self) -> u64 {
        let per_channel = if self.dense { self.channels as u64 } else { 1 };
        self.weight.len() as u64 * per_channel + self.bias.as_ref().map_or(0, |b| b.len() as u64)
    }
    /// "3x3 depthwise" or "3x3 dense".
    pub fn kind(&self) -> String {
        format!("{}x{} {}", self.kernel[0], self.kernel[1], if self.dense { "dense" } else { "depthwise" })
    }
}

/// What `find` says about a grouped Conv.
#[derive(Debug, Clone)]
pub enum Candidate {
    Convertible(Box<DepthwiseConv>),
    Skipped { node: NodeIndex, name: String, index: usize, reason: String },
}

impl Candidate {
    pub fn index(&self) -> usize {
        match self {
            Candidate::Convertible(d) => d.index,
            Candidate::Skipped { index, .. } => *index,
        }
    }
    pub fn name(&self) -> &str {
        match self {
            Candidate::Convertible(d) => &d.name,
            Candidate::Skipped { name, .. } => name,
        }
    }
    pub fn node(&self) -> NodeIndex {
        match self {
            Candidate::Convertible(d) => d.node,
            Candidate::Skipped { node, .. } => *node,
        }
    }
}

/// Every grouped (depthwise-like) Conv of the graph, in topological order,
/// with whether it can be converted and why not.
pub fn depthwise_convs(g: &Graph) -> Result<Vec<Candidate>> {
    candidates(g, false)
}

/// [`depthwise_convs`], and with `dense` also every group-1 Conv with a
/// K×K kernel (kh, kw > 1), all in one topological order (the indices
/// `--layers` selects by).
pub fn candidates(g: &Graph, dense: bool) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for ix in g.toposort()? {
        let n = g.node(ix);
        if !matches!(n.op(), "Conv" | "QLinearConv") || !n.is_default_domain() {
            continue;
        }
        let index = out.len();
        if attr_int(&n.proto, "group").unwrap_or(1) > 1 {
            out.push(find(g, ix, index)?);
        } else if dense && n.op() == "Conv" && is_spatial(g, ix) {
            out.push(find_dense(g, ix, index)?);
        }
    }
    Ok(out)
}

/// A Conv whose constant weight has a kernel larger than 1 on both axes.
fn is_spatial(g: &Graph, ix: NodeIndex) -> bool {
    let n = g.node(ix);
    let from_attr = onnx::attr_ints(&n.proto, "kernel_shape").map(|k| k.len() == 2 && k[0] > 1 && k[1] > 1);
    let from_weight = || n.input(1).and_then(|w| g.const_tensor(w)).map(|t| t.dims().len() == 4 && t.dims()[2] > 1 && t.dims()[3] > 1);
    from_attr.or_else(from_weight).unwrap_or(false)
}

/// Channel-wise ops a dense conv's output may pass through on its way to the
/// op that mixes channels again.
const CHANNEL_WISE: &[&str] = &[
    "BatchNormalization", "InstanceNormalization", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Softplus", "Mish", "Gelu", "Identity", "Dropout",
];

/// Whether every path from `value` reaches a channel-mixing op (a pointwise
/// group-1 Conv, Gemm or MatMul) through channel-wise ops only; the reason
/// if not.
pub fn reaches_mixing(g: &Graph, value: &str) -> std::result::Result<(), String> {
    let mut stack = vec![value.to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v.clone()) {
            continue;
        }
        if g.is_graph_output(&v) {
            return Err(format!("'{v}' is a graph output before any op mixes its channels"));
        }
        let consumers = g.consumers(&v);
        if consumers.is_empty() {
            return Err(format!("'{v}' is not read by an op that mixes channels"));
        }
        for &(ix, _) in consumers {
            let n = g.node(ix);
            let op = n.op();
            let pointwise = op == "Conv"
                && n.input(0) == Some(v.as_str())
                && attr_int(&n.proto, "group").unwrap_or(1) == 1
                && n.input(1).and_then(|w| g.const_tensor(w)).is_some_and(|t| t.dims().len() == 4 && t.dims()[2] == 1 && t.dims()[3] == 1);
            if pointwise || matches!(op, "Gemm" | "MatMul") {
                continue;
            }
            if CHANNEL_WISE.contains(&op) && n.input(0) == Some(v.as_str()) && n.is_default_domain() {
                stack.extend(n.output(0).map(str::to_string));
                continue;
            }
            return Err(format!("'{v}' reaches {op} '{}' before an op that mixes channels (a pointwise conv or Gemm)", n.label()));
        }
    }
    Ok(())
}

/// Match a dense K×K conv for `--dense`: group 1, C → C channels, constant
/// weight, not reading a graph input, every path from its output reaching a
/// channel-mixing op. The kernels the FuSe block starts from are its
/// diagonal W[c, c].
pub fn find_dense(g: &Graph, ix: NodeIndex, index: usize) -> Result<Candidate> {
    let n = g.node(ix);
    let skip = |reason: String| Ok(Candidate::Skipped { node: ix, name: n.label(), index, reason });
    if let Some(x) = n.input(0)
        && g.inputs.iter().any(|i| i.name() == x)
    {
        return skip(format!("dense conv on the graph input '{x}' (the network's first conv): left dense"));
    }
    let found = find(g, ix, index)?;
    if let (Candidate::Convertible(d), Some(y)) = (&found, n.output(0))
        && let Err(reason) = reaches_mixing(g, y)
    {
        return Ok(Candidate::Skipped { node: ix, name: d.name.clone(), index, reason: format!("dense conv whose output does not reach a channel-mixing op: {reason}") });
    }
    Ok(found)
}

/// W[c, c, :, :] of a [C, C, kh, kw] weight, as [C, 1, kh, kw].
fn diagonal(w: &ArrayD<f32>) -> ArrayD<f32> {
    let s = w.shape();
    let (c, kh, kw) = (s[0], s[2], s[3]);
    ArrayD::from_shape_fn(IxDyn(&[c, 1, kh, kw]), |i| w[[i[0], i[0], i[2], i[3]]])
}

/// Grouped convs inside If/Loop/Scan bodies, as (owning node, conv label).
pub fn subgraph_depthwise(g: &Graph) -> Vec<(String, String)> {
    fn walk(gp: &crate::onnx::GraphProto, owner: &str, out: &mut Vec<(String, String)>) {
        for n in &gp.node {
            if n.op_type() == "Conv" && crate::onnx::attr_int(n, "group").unwrap_or(1) > 1 {
                out.push((owner.to_string(), onnx::node_label(n)));
            }
            for a in &n.attribute {
                for sg in a.g.iter().chain(a.graphs.iter()) {
                    walk(sg, owner, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for n in g.g.node_weights() {
        for a in &n.proto.attribute {
            for sg in a.g.iter().chain(a.graphs.iter()) {
                walk(sg, &n.label(), &mut out);
            }
        }
    }
    out
}

/// Match one grouped Conv: [`Candidate::Convertible`], or
/// [`Candidate::Skipped`] with the reason (a non-match is a value, not an
/// error; `Err` is for an invalid graph). Reserves no names.
pub fn find(g: &Graph, ix: NodeIndex, index: usize) -> Result<Candidate> {
    let n = g.node(ix);
    let label = n.label();
    let skip = |reason: String| Ok(Candidate::Skipped { node: ix, name: n.label(), index, reason });
    let quantized = match n.op() {
        "QLinearConv" => match super::qdq::match_qlinear(g, n) {
            Ok(q) => Some(q),
            Err(reason) => return skip(format!("a QLinearConv the pass cannot rewrite: {reason}; convert the float model, then quantize")),
        },
        _ => match super::qdq::match_qdq(g, n) {
            Ok(q) => q,
            Err(reason) => return skip(format!("a QDQ conv the pass cannot rewrite: {reason}")),
        },
    };
    let dense = attr_int(&n.proto, "group").unwrap_or(1) == 1;
    if dense && quantized.is_some() {
        return skip("a quantized dense conv: --dense rewrites float models only".into());
    }
    let (Some(x), Some(wname), Some(y)) = (n.input(0), n.input(1), n.output(0)) else {
        return skip("Conv without input, weight or output".into());
    };
    if let Some(v) = [Some(wname), n.input(2)].into_iter().flatten().find(|v| g.is_overridable(v)) {
        return skip(format!(
            "'{v}' is an initializer that is also a graph input (a default a caller may override): rewriting it would drop that input from the model's interface"
        ));
    }
    let (weight, qbias, qdq) = match quantized {
        Some((w, b, q)) => (w, b, Some(q)),
        None => {
            let Some(wt) = g.const_tensor(wname) else {
                return skip("weight is not a constant".into());
            };
            if wt.dtype() != onnx::dtype::FLOAT {
                return skip(format!("weight is {}, only float32 is rewritten", onnx::dtype::name(wt.dtype())));
            }
            (wt.to_f32()?, None, None)
        }
    };
    let wd: Vec<i64> = weight.shape().iter().map(|&d| d as i64).collect();
    if wd.len() != 4 {
        return skip(format!("not a 2-D convolution (weight rank {})", wd.len()));
    }
    let attrs = ConvAttrs::parse(&n.proto, &wd)?;
    let (m, cin_per_group, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
    let group = attrs.group;
    if dense {
        if m != cin_per_group {
            return skip(format!("dense conv with {cin_per_group} input and {m} output channels: FuSe keeps the channel count (C_in = C_out)"));
        }
    } else {
        if cin_per_group != 1 {
            return skip(format!("grouped conv with {cin_per_group} input channels per group is not depthwise"));
        }
        if !attrs.is_depthwise(group, m) {
            return skip(format!("channel multiplier {} > 1 (group {group}, {m} output channels)", m / group.max(1)));
        }
        if let Some(c) = g.shape_of(x).and_then(|xs| xs.get(1)).and_then(Dim::known)
            && c != group
        {
            return Err(Error::ShapeMismatch { node: label, expected: format!("{group} input channels"), actual: format!("{c}") });
        }
    }
    let kind = if dense { "dense" } else { "depthwise" };
    if kh == 1 && kw == 1 {
        return skip(format!("1×1 {kind} kernel: nothing to separate"));
    }
    if kh == 1 || kw == 1 {
        return skip(format!("kernel {kh}×{kw} is already 1-D"));
    }
    let bias = match n.input(2) {
        _ if qdq.is_some() => qbias,
        None => None,
        Some(b) => match g.const_tensor(b) {
            Some(t) if t.dtype() == onnx::dtype::FLOAT && t.len() == m as u64 => Some(t.to_f32()?.into_shape_with_order(IxDyn(&[m as usize])).map_err(|e| Error::node(&label, e.to_string()))?),
            Some(_) => return skip("bias is not a float32 vector of C values".into()),
            None => return skip("bias is not a constant".into()),
        },
    };
    let window = attrs.window;
    let spatial: Option<Vec<i64>> = g.shape_of(x).filter(|s| s.len() == 4).and_then(|s| s[2..].iter().map(Dim::known).collect());
    let pads = window.resolved_pads(spatial.as_deref());
    let taps = window.centre_taps(pads.as_deref());
    Ok(Candidate::Convertible(Box::new(DepthwiseConv {
        node: ix,
        pads,
        centre: [taps[0], taps[1]],
        name: label,
        index,
        channels: m as usize,
        kernel: [kh, kw],
        window,
        input: x.to_string(),
        output: y.to_string(),
        input_shape: g.shape_of(x).map(<[Dim]>::to_vec),
        output_shape: g.shape_of(y).map(<[Dim]>::to_vec),
        weight: if dense { diagonal(&weight) } else { weight },
        bias,
        dense,
        qdq,
    })))
}

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
    pub weight: ArrayD<f32>,
    pub bias: Option<ArrayD<f32>>,
}

impl DepthwiseConv {
    /// Channels that go to the 1×K branch in Half (⌈C/2⌉, as torch.chunk).
    pub fn half_split(&self) -> usize {
        self.channels.div_ceil(2)
    }
    pub fn params(&self) -> u64 {
        self.weight.len() as u64 + self.bias.as_ref().map_or(0, |b| b.len() as u64)
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
    let mut out = Vec::new();
    for ix in g.toposort()? {
        let n = g.node(ix);
        if !matches!(n.op(), "Conv" | "QLinearConv") || !n.is_default_domain() || attr_int(&n.proto, "group").unwrap_or(1) <= 1 {
            continue;
        }
        let index = out.len();
        out.push(find(g, ix, index)?);
    }
    Ok(out)
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
    if n.op() == "QLinearConv" {
        return skip("a quantized QLinearConv (QOperator form): rewriting it is not supported yet; convert the float model, then quantize".into());
    }
    if let Some((p, _)) = n.input(1).and_then(|w| g.producer(w))
        && g.node(p).op() == "DequantizeLinear"
    {
        return skip("the weight is quantized (a DequantizeLinear): rewriting QDQ models is not supported yet; convert the float model, then quantize".into());
    }
    let (Some(x), Some(wname), Some(y)) = (n.input(0), n.input(1), n.output(0)) else {
        return skip("Conv without input, weight or output".into());
    };
    if let Some(v) = [Some(wname), n.input(2)].into_iter().flatten().find(|v| g.is_overridable(v)) {
        return skip(format!(
            "'{v}' is an initializer that is also a graph input (a default a caller may override): rewriting it would drop that input from the model's interface"
        ));
    }
    let Some(wt) = g.const_tensor(wname) else {
        return skip("weight is not a constant".into());
    };
    if wt.dtype() != onnx::dtype::FLOAT {
        return skip(format!("weight is {}, only float32 is rewritten", onnx::dtype::name(wt.dtype())));
    }
    let wd = wt.dims().to_vec();
    if wd.len() != 4 {
        return skip(format!("not a 2-D convolution (weight rank {})", wd.len()));
    }
    let attrs = ConvAttrs::parse(&n.proto, &wd)?;
    let (m, cin_per_group, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
    let group = attrs.group;
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
    if kh == 1 && kw == 1 {
        return skip("1×1 depthwise kernel: nothing to separate".into());
    }
    if kh == 1 || kw == 1 {
        return skip(format!("kernel {kh}×{kw} is already 1-D"));
    }
    let bias = match n.input(2) {
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
        weight: wt.to_f32()?,
        bias,
    })))
}

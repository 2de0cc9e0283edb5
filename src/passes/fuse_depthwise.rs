//! `fuse_depthwise`: rewrite K×K depthwise convolutions into FuSe blocks.
//!
//! ```text
//! Before:  x ──Conv(group=C, K×K)──▶ y ──▶ BN ─▶ act ─▶ [SE] ─▶ pointwise
//!
//! Half:    x ─Split[⌈C/2⌉,⌊C/2⌋]─┬─ Conv(1×K, group ⌈C/2⌉) ─┐
//!                                └─ Conv(K×1, group ⌊C/2⌋) ─┴─ Concat ▶ y (C ch.) ▶ unchanged
//!
//! Full:    x ─┬─ Conv(1×K, group C) ─┐
//!             └─ Conv(K×1, group C) ─┴─ Concat ▶ y' (2C ch.) ▶ widened BN/act/SE ▶ widened pointwise
//! ```
//!
//! Preconditions (a Conv that fails one is left alone and reported with the reason):
//! 1. 2-D Conv in the default domain, group == C_in == C_out > 1 (channel multiplier 1);
//! 2. constant float weight [C, 1, kh, kw] with kh > 1 and kw > 1 (1×1 and already-1-D
//!    kernels are skipped, which makes the pass idempotent); constant bias if any;
//! 3. Full only: every consumer of y can be widened (see below).
//!
//! Weight mapping (`--init`): with c_h and c_w the middle row and column of
//! the kernel (⌊(K−1)/2⌋ for odd K; for even K the middle tap the padding
//! aligns with the output, see `Window::centre_taps`), `center` takes row c_h
//! of each kernel for 1×K and column c_w for K×1;
//! `sum` sums the rows (1×K) or the columns (K×1). Half gives channels
//! [0, ⌈C/2⌉) to 1×K and the rest to K×1, each with its share of the bias;
//! Full gives every channel to both branches, each with the whole bias.
//!
//! Padding: the 1×K branch keeps the original pads along the width; along the
//! height it drops the pads that centred the K rows (pad_top − c_h·d_h, and the
//! rest at the bottom), so its output is aligned with the original's centre
//! row and has the same size. Where that would need negative pads (VALID,
//! or SAME with stride 2) the input is cropped with a Slice instead. K×1 is
//! the same with height and width swapped. `auto_pad` SAME on inputs whose
//! spatial size is symbolic and whose stride is > 1 keeps `auto_pad` on the
//! 1-D convs (same output size; alignment may differ by one pixel).
//!
//! BN and activations stay after the Concat: they act per channel, so one op
//! over the concatenated channels equals each branch keeping its own share
//! (Half) or its own copy (Full).
//!
//! Full widening: the 2C tensor (layout [1×K branch; K×1 branch]) is
//! propagated through channel-wise consumers (BN and per-channel constants
//! duplicated, elementwise activations, pooling, Flatten/Reshape of a pooled
//! vector) until the ops that mix channels. A pointwise Conv / Gemm / MatMul
//! there gets its input weights duplicated and halved (it computes the mean of
//! the two branches). A squeeze-excite block (pooled vector → Conv/Gemm/MatMul
//! → … → gate multiplied back onto the widened tensor) becomes an SE over 2C
//! with doubled hidden width: every SE weight becomes the 2×2 block matrix
//! [[W/2, W/2], [W/2, W/2]] and biases are duplicated, so for equal branch
//! inputs it computes the original gate on both halves. Anything else
//! (Concat, Split, residual Add with an unwidened tensor, graph output, use
//! inside a subgraph) leaves the layer unconverted, with the reason.

use std::collections::{HashMap, HashSet, VecDeque};

use ndarray::{concatenate, s, ArrayD, Axis, IxDyn};
use petgraph::stable_graph::NodeIndex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::shape::Window;
use crate::ir::{Graph, Patch, IMPLICIT_SLOT};
use crate::onnx::{self, a_int, a_ints, a_string, attr_int, attr_ints, Dim, NodeProto};
use crate::passes::{LayerSelection, PassReport, Rewrite};
use crate::tensor::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Split channels in two: 1×K on the first half, K×1 on the second.
    Half,
    /// 1×K and K×1 on all channels, concatenated to 2C; consumers widened.
    Full,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Variant::Half => "half",
            Variant::Full => "full",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// Centre row (1×K) and centre column (K×1) of the original kernel.
    #[default]
    Center,
    /// Rows (1×K) or columns (K×1) of the original kernel summed.
    Sum,
    /// Least squares on calibration activations (needs `--calib DATA`).
    Lsq,
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Init::Center => "center",
            Init::Sum => "sum",
            Init::Lsq => "lsq",
        })
    }
}

/// Kernels for one converted layer: 1×K weights [C_row, 1, 1, kw] and K×1
/// weights [C_col, 1, kh, 1], with biases.
#[derive(Debug, Clone)]
pub struct FuseKernels {
    pub row: ArrayD<f32>,
    pub col: ArrayD<f32>,
    pub row_bias: Option<ArrayD<f32>>,
    pub col_bias: Option<ArrayD<f32>>,
}

/// Chooses the 1-D kernels of a layer. `center` and `sum` derive them from
/// the K×K weights alone; a data-driven initializer implements the same trait.
pub trait KernelInit {
    fn kernels(&self, dw: &DepthwiseConv, variant: Variant) -> Result<FuseKernels>;
}

impl KernelInit for Init {
    fn kernels(&self, dw: &DepthwiseConv, variant: Variant) -> Result<FuseKernels> {
        let w = &dw.weight; // [C, 1, kh, kw]
        let [ch, cw] = dw.centre;
        let row_all: ArrayD<f32> = match self {
            Init::Center => w.slice(s![.., .., ch..ch + 1, ..]).to_owned().into_dyn(),
            Init::Sum => w.sum_axis(Axis(2)).insert_axis(Axis(2)).into_dyn(),
            Init::Lsq => return Err(Error::option("--init", "lsq needs calibration data (--calib DATA)")),
        };
        let col_all: ArrayD<f32> = match self {
            Init::Center => w.slice(s![.., .., .., cw..cw + 1]).to_owned().into_dyn(),
            Init::Sum => w.sum_axis(Axis(3)).insert_axis(Axis(3)).into_dyn(),
            Init::Lsq => return Err(Error::option("--init", "lsq needs calibration data (--calib DATA)")),
        };
        Ok(split_kernels(dw, variant, row_all, col_all))
    }
}

/// Assign per-channel kernels computed for all C channels to the branches.
pub fn split_kernels(dw: &DepthwiseConv, variant: Variant, row_all: ArrayD<f32>, col_all: ArrayD<f32>) -> FuseKernels {
    match variant {
        Variant::Full => FuseKernels { row: row_all, col: col_all, row_bias: dw.bias.clone(), col_bias: dw.bias.clone() },
        Variant::Half => {
            let c1 = dw.half_split();
            FuseKernels {
                row: row_all.slice_axis(Axis(0), (..c1).into()).to_owned(),
                col: col_all.slice_axis(Axis(0), (c1..).into()).to_owned(),
                row_bias: dw.bias.as_ref().map(|b| b.slice_axis(Axis(0), (..c1).into()).to_owned()),
                col_bias: dw.bias.as_ref().map(|b| b.slice_axis(Axis(0), (c1..).into()).to_owned()),
            }
        }
    }
}

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
        if n.op() != "Conv" || !n.is_default_domain() || attr_int(&n.proto, "group").unwrap_or(1) <= 1 {
            continue;
        }
        let index = out.len();
        out.push(match find(g, ix, index)? {
            Ok(d) => Candidate::Convertible(Box::new(d)),
            Err(reason) => Candidate::Skipped { node: ix, name: n.label(), index, reason },
        });
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

/// Match one grouped Conv. `Ok(Err(reason))` is a non-match, not an error.
pub fn find(g: &Graph, ix: NodeIndex, index: usize) -> Result<std::result::Result<DepthwiseConv, String>> {
    let n = g.node(ix);
    let label = n.label();
    let group = attr_int(&n.proto, "group").unwrap_or(1);
    let (Some(x), Some(wname), Some(y)) = (n.input(0), n.input(1), n.output(0)) else {
        return Ok(Err("Conv without input, weight or output".into()));
    };
    let Some(wt) = g.const_tensor(wname) else {
        return Ok(Err("weight is not a constant".into()));
    };
    if wt.dtype() != onnx::dtype::FLOAT {
        return Ok(Err(format!("weight is {}, only float32 is rewritten", onnx::dtype::name(wt.dtype()))));
    }
    let wd = wt.dims().to_vec();
    if wd.len() != 4 {
        return Ok(Err(format!("not a 2-D convolution (weight rank {})", wd.len())));
    }
    let (m, cin_per_group, kh, kw) = (wd[0], wd[1], wd[2], wd[3]);
    if cin_per_group != 1 {
        return Ok(Err(format!("grouped conv with {cin_per_group} input channels per group is not depthwise")));
    }
    if m != group {
        return Ok(Err(format!("channel multiplier {} > 1 (group {group}, {m} output channels)", m / group.max(1))));
    }
    if let Some(xs) = g.shape_of(x)
        && let Some(c) = xs.get(1).and_then(Dim::known)
            && c != group {
                return Err(Error::ShapeMismatch { node: label, expected: format!("{group} input channels"), actual: format!("{c}") });
            }
    if kh == 1 && kw == 1 {
        return Ok(Err("1×1 depthwise kernel: nothing to separate".into()));
    }
    if kh == 1 || kw == 1 {
        return Ok(Err(format!("kernel {kh}×{kw} is already 1-D")));
    }
    if let Some(ks) = attr_ints(&n.proto, "kernel_shape")
        && ks != [kh, kw] {
            return Err(Error::UnsupportedAttr { node: label, name: "kernel_shape".into(), value: format!("{ks:?} (weight is {kh}×{kw})") });
        }
    let window = Window::from_node(n, vec![kh, kw])?;
    let bias = match n.input(2) {
        None => None,
        Some(b) => match g.const_tensor(b) {
            Some(t) if t.dtype() == onnx::dtype::FLOAT && t.len() == m as u64 => Some(t.to_f32()?.into_shape_with_order(IxDyn(&[m as usize])).map_err(|e| Error::node(&label, e.to_string()))?),
            Some(_) => return Ok(Err("bias is not a float32 vector of C values".into())),
            None => return Ok(Err("bias is not a constant".into())),
        },
    };
    let spatial: Option<Vec<i64>> = g.shape_of(x).filter(|s| s.len() == 4).and_then(|s| s[2..].iter().map(Dim::known).collect());
    let pads = window.resolved_pads(spatial.as_deref());
    let taps = window.centre_taps(pads.as_deref());
    Ok(Ok(DepthwiseConv {
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
    }))
}

/// Options of the pass, shared by the CLI and pipeline TOML files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub variant: Variant,
    #[serde(default)]
    pub init: Init,
    #[serde(default)]
    pub layers: LayerSelection,
    #[serde(default)]
    pub skip: Vec<String>,
}

pub struct FuseDepthwise {
    pub opts: Options,
    pub init: Box<dyn KernelInit>,
}

impl FuseDepthwise {
    pub fn new(opts: Options) -> Result<Self> {
        opts.layers.validate()?;
        for s in &opts.skip {
            crate::passes::Selector::parse(s)?;
        }
        let init = Box::new(opts.init);
        Ok(FuseDepthwise { opts, init })
    }

    pub fn with_init(mut self, init: Box<dyn KernelInit>) -> Self {
        self.init = init;
        self
    }
}

pub struct Names {
    pub(crate) used: HashSet<String>,
}

impl Names {
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.used.contains(&name) {
            name = format!("{base}.{i}");
            i += 1;
        }
        self.used.insert(name.clone());
        name
    }
}

impl crate::passes::Pass for FuseDepthwise {
    fn name(&self) -> &'static str {
        "fuse_depthwise"
    }
    fn semantics(&self) -> crate::passes::Semantics {
        crate::passes::Semantics::Changing
    }

    fn run(&self, g: &mut Graph, cx: &crate::passes::PassCx) -> Result<PassReport> {
        let mut report = PassReport::default();
        for (owner, conv) in subgraph_depthwise(g) {
            report.skipped.push((conv, format!("inside a subgraph of '{owner}': subgraphs are left unchanged")));
        }
        let cands = depthwise_convs(g)?;
        let selected = self.opts.layers.resolve(&cands)?;
        let skip: Vec<crate::passes::Selector> = self.opts.skip.iter().map(|s| crate::passes::Selector::parse(s)).collect::<Result<_>>()?;
        let mut names = Names { used: g.used_names() };
        let mut patch = Patch::default();
        // Full widenings must not overlap: two layers feeding one Concat-free region
        let mut claimed: HashSet<NodeIndex> = HashSet::new();
        for cand in cands {
            let dw = match cand {
                Candidate::Skipped { name, reason, .. } => {
                    report.skipped.push((name, reason));
                    continue;
                }
                Candidate::Convertible(d) => *d,
            };
            if !selected.contains(&dw.index) {
                report.skipped.push((dw.name.clone(), "not selected".into()));
                continue;
            }
            if skip.iter().any(|s| s.matches(dw.index, &dw.name)) {
                report.skipped.push((dw.name.clone(), "excluded by --skip".into()));
                continue;
            }
            if cx.max_rewrites.is_some_and(|m| report.rewrites.len() >= m) {
                report.skipped.push((dw.name.clone(), "over --max-rewrites".into()));
                continue;
            }
            let widen = match self.opts.variant {
                Variant::Half => None,
                Variant::Full => match plan_widen(g, &dw.output, dw.channels as i64, &mut names) {
                    Ok(p) => {
                        if p.edits.iter().any(|(ix, _)| claimed.contains(ix)) {
                            report.skipped.push((dw.name.clone(), "its widened region overlaps another converted layer".into()));
                            continue;
                        }
                        Some(p)
                    }
                    Err(reason) => {
                        report.skipped.push((dw.name.clone(), format!("cannot widen for Full: {reason}")));
                        continue;
                    }
                },
            };
            let kernels = self.init.kernels(&dw, self.opts.variant)?;
            let before = dw.params();
            build_block(g, &dw, self.opts.variant, &kernels, &mut names, &mut patch)?;
            let mut extra_params: i64 = 0;
            if let Some(w) = widen {
                for (ix, p) in w.edits {
                    claimed.insert(ix);
                    patch.replace.push((ix, p));
                }
                extra_params += w.added_params;
                patch.initializers.extend(w.initializers);
            }
            let after = kernels.row.len() + kernels.col.len() + kernels.row_bias.as_ref().map_or(0, |b| b.len()) + kernels.col_bias.as_ref().map_or(0, |b| b.len());
            report.rewrites.push(Rewrite {
                node: dw.name.clone(),
                index: dw.index,
                rule: format!("fuse_depthwise.{}", self.opts.variant),
                detail: format!("{}x{} depthwise, {} ch → 1x{} + {}x1", dw.kernel[0], dw.kernel[1], dw.channels, dw.kernel[1], dw.kernel[0]),
                params_delta: after as i64 - before as i64 + extra_params,
            });
        }
        if !patch.is_empty() {
            patch.apply(g)?;
        }
        Ok(report)
    }
}

fn conv_node(name: &str, inputs: Vec<String>, output: &str, kernel: [i64; 2], strides: &[i64], dil: [i64; 2], pads: Option<&[i64]>, auto_pad: Option<&str>, group: usize) -> NodeProto {
    let mut attribute = vec![a_int("group", group as i64), a_ints("kernel_shape", &kernel), a_ints("strides", strides), a_ints("dilations", &dil)];
    match (auto_pad, pads) {
        (Some(ap), _) => attribute.push(a_string("auto_pad", ap)),
        (None, Some(p)) => attribute.push(a_ints("pads", p)),
        (None, None) => {}
    }
    NodeProto {
        name: Some(name.into()),
        op_type: Some("Conv".into()),
        input: inputs,
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// Pads of one 1-D branch along the axis whose kernel collapses to tap
/// `centre`, given the original begin/end pads there. Returns (begin, end,
/// crop_begin, crop_end).
fn collapsed_pads(pb: i64, pe: i64, k: i64, d: i64, centre: i64) -> (i64, i64, i64, i64) {
    let c = centre * d;
    let nb = pb - c;
    let ne = pe - (d * (k - 1) - c);
    (nb.max(0), ne.max(0), (-nb).max(0), (-ne).max(0))
}

/// Emit the Split / 1-D convs / Concat replacing `dw`.
fn build_block(g: &mut Graph, dw: &DepthwiseConv, variant: Variant, k: &FuseKernels, names: &mut Names, patch: &mut Patch) -> Result<()> {
    let pos = g.node(dw.node).pos;
    let base = dw.name.clone();
    let w = &dw.window;
    let pads = &dw.pads;
    let opset = g.opset;
    let (c_row, c_col) = match variant {
        Variant::Half => (dw.half_split(), dw.channels - dw.half_split()),
        Variant::Full => (dw.channels, dw.channels),
    };
    let (x_row, x_col) = match variant {
        Variant::Full => (dw.input.clone(), dw.input.clone()),
        Variant::Half => {
            let a = names.fresh(&format!("{}.fuse.in_row", dw.output));
            let b = names.fresh(&format!("{}.fuse.in_col", dw.output));
            let mut split = NodeProto {
                name: Some(names.fresh(&format!("{base}.fuse.split"))),
                op_type: Some("Split".into()),
                input: vec![dw.input.clone()],
                output: vec![a.clone(), b.clone()],
                attribute: vec![a_int("axis", 1)],
                ..Default::default()
            };
            let sizes = [c_row as i64, c_col as i64];
            if opset >= 13 {
                let sname = names.fresh(&format!("{base}.fuse.split_sizes"));
                patch.initializers.push(Tensor::from_i64(&sname, &[2], &sizes));
                split.input.push(sname);
            } else {
                split.attribute.push(a_ints("split", &sizes));
            }
            patch.add.push((split, pos));
            (a, b)
        }
    };
    let mut branch = |tag: &str, x: String, c: usize, weight: &ArrayD<f32>, bias: &Option<ArrayD<f32>>, row: bool| -> String {
        let (kh, kw) = (dw.kernel[0], dw.kernel[1]);
        let (dh, dwl) = (w.dilations[0], w.dilations[1]);
        let kernel = if row { [1, kw] } else { [kh, 1] };
        let dil = if row { [1, dwl] } else { [dh, 1] };
        let wname = names.fresh(&format!("{base}.fuse.{tag}.weight"));
        patch.initializers.push(Tensor::from_f32(&wname, weight));
        let mut inputs = vec![x.clone(), wname];
        if let Some(b) = bias {
            let bname = names.fresh(&format!("{base}.fuse.{tag}.bias"));
            patch.initializers.push(Tensor::from_f32(&bname, b));
            inputs.push(bname);
        }
        let out = names.fresh(&format!("{}.fuse.{tag}", dw.output));
        let (node_pads, auto_pad, crop) = match &pads {
            None => (None, Some(w.auto_pad.as_str()), None),
            Some(p) => {
                // p = [top, left, bottom, right]
                if row {
                    let (b, e, cb, ce) = collapsed_pads(p[0], p[2], kh, dh, dw.centre[0] as i64);
                    (Some(vec![b, p[1], e, p[3]]), None, Some((2i64, cb, ce)))
                } else {
                    let (b, e, cb, ce) = collapsed_pads(p[1], p[3], kw, dwl, dw.centre[1] as i64);
                    (Some(vec![p[0], b, p[2], e]), None, Some((3i64, cb, ce)))
                }
            }
        };
        let conv_in = match crop {
            Some((axis, cb, ce)) if cb > 0 || ce > 0 => {
                let cropped = names.fresh(&format!("{}.fuse.{tag}.crop", dw.output));
                let end = if ce > 0 { -ce } else { i64::MAX };
                let mut slice = NodeProto {
                    name: Some(names.fresh(&format!("{base}.fuse.{tag}.crop"))),
                    op_type: Some("Slice".into()),
                    input: vec![x],
                    output: vec![cropped.clone()],
                    ..Default::default()
                };
                if opset >= 10 {
                    for (suffix, v) in [("starts", cb), ("ends", end), ("axes", axis)] {
                        let n = names.fresh(&format!("{base}.fuse.{tag}.crop_{suffix}"));
                        patch.initializers.push(Tensor::from_i64(&n, &[1], &[v]));
                        slice.input.push(n);
                    }
                } else {
                    slice.attribute = vec![a_ints("starts", &[cb]), a_ints("ends", &[end]), a_ints("axes", &[axis])];
                }
                patch.add.push((slice, pos));
                cropped
            }
            _ => x,
        };
        inputs[0] = conv_in;
        let node = conv_node(&names.fresh(&format!("{base}.fuse.{tag}")), inputs, &out, kernel, &w.strides, dil, node_pads.as_deref(), auto_pad, c);
        patch.add.push((node, pos));
        out
    };
    let y_row = branch("row", x_row, c_row, &k.row, &k.row_bias, true);
    let y_col = branch("col", x_col, c_col, &k.col, &k.col_bias, false);
    let concat = NodeProto {
        name: Some(names.fresh(&format!("{base}.fuse.concat"))),
        op_type: Some("Concat".into()),
        input: vec![y_row, y_col],
        output: vec![dw.output.clone()],
        attribute: vec![a_int("axis", 1)],
        ..Default::default()
    };
    patch.add.push((concat, pos));
    patch.remove.push(dw.node);
    Ok(())
}

/// Node edits that widen everything downstream of a Full block.
pub struct WidenPlan {
    pub edits: Vec<(NodeIndex, NodeProto)>,
    pub initializers: Vec<Tensor>,
    /// widened values and their original channel counts
    pub widened: HashMap<String, i64>,
    pub added_params: i64,
}

fn dup_axis(a: &ArrayD<f32>, axis: usize, scale: f32) -> Result<ArrayD<f32>, String> {
    let h = a.mapv(|v| v * scale);
    concatenate(Axis(axis), &[h.view(), h.view()]).map_err(|e| e.to_string())
}

/// Plan the Full widening from `start` (the Concat output with 2C channels).
pub fn plan_widen(g: &Graph, start: &str, c: i64, names: &mut Names) -> std::result::Result<WidenPlan, String> {
    let mut widened: HashMap<String, i64> = HashMap::new();
    let mut queue: VecDeque<(String, i64)> = VecDeque::new();
    let mut edits: HashMap<NodeIndex, NodeProto> = HashMap::new();
    let mut inits: Vec<Tensor> = Vec::new();
    let mut pending: Vec<NodeIndex> = Vec::new();
    let mut visited: HashSet<NodeIndex> = HashSet::new();
    let mut added: i64 = 0;
    widened.insert(start.to_string(), c);
    queue.push_back((start.to_string(), c));
    // bounded: a region larger than the graph means something is wrong
    let mut budget = g.g.node_count() * 4 + 16;
    while let Some((v, c)) = queue.pop_front() {
        if g.is_graph_output(&v) {
            return Err(format!("'{v}' is a graph output"));
        }
        for &(ix, slot) in g.consumers(&v) {
            budget = budget.checked_sub(1).ok_or("widening did not terminate")?;
            let n = g.node(ix);
            let label = n.label();
            if slot == IMPLICIT_SLOT {
                return Err(format!("'{v}' is used inside the subgraph of '{label}'"));
            }
            if !visited.insert(ix) {
                continue;
            }
            let mut p = n.proto.clone();
            let new_const = |orig: &str, a: &ArrayD<f32>, names: &mut Names, inits: &mut Vec<Tensor>| -> String {
                let nm = names.fresh(&format!("{orig}.fuse.wide"));
                inits.push(Tensor::from_f32(&nm, a));
                nm
            };
            let out0 = n.output(0).map(str::to_string);
            let mut out_channels = Some(c);
            match n.op() {
                "Relu" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "LeakyRelu" | "Elu" | "Selu" | "Identity" | "Softplus"
                | "Gelu" | "Neg" | "Abs" | "GlobalAveragePool" | "GlobalMaxPool" | "MaxPool" | "AveragePool" | "Clip" | "Mish"
                    if slot == 0 =>
                {
                    if n.op() == "Clip" && (1..3).any(|i| n.input(i).is_some_and(|m| !g.is_const(m))) {
                        return Err(format!("'{label}' clips with non-constant bounds"));
                    }
                    if n.op() == "MaxPool" && n.output(1).is_some() {
                        return Err(format!("'{label}' returns indices"));
                    }
                }
                "Dropout" if slot == 0 => {
                    if n.output(1).is_some_and(|m| !g.consumers(m).is_empty()) {
                        return Err(format!("the mask of '{label}' is used"));
                    }
                }
                "BatchNormalization" if slot == 0 => {
                    if n.proto.output.iter().skip(1).any(|o| !o.is_empty()) {
                        return Err(format!("'{label}' is in training mode"));
                    }
                    for i in 1..5 {
                        let pn = n.input(i).ok_or_else(|| format!("'{label}' lacks input {i}"))?;
                        let t = g.const_tensor(pn).ok_or_else(|| format!("'{label}' input '{pn}' is not constant"))?;
                        let a = t.to_f32().map_err(|e| e.to_string())?;
                        if a.len() as i64 != c {
                            return Err(format!("'{label}' input '{pn}' has {} values, expected {c}", a.len()));
                        }
                        let wide = dup_axis(&a, 0, 1.0)?;
                        added += c;
                        p.input[i] = new_const(pn, &wide, names, &mut inits);
                    }
                }
                "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "PRelu" => {
                    let rank = g.shape_of(&v).map(<[Dim]>::len).unwrap_or(4);
                    for (i, other) in n.proto.input.iter().enumerate() {
                        if i == slot || other.is_empty() || widened.contains_key(other) {
                            continue;
                        }
                        if let Some(t) = g.const_tensor(other) {
                            if t.len() <= 1 {
                                continue;
                            }
                            let dims = t.dims().to_vec();
                            // align the constant's dims to the right of the widened tensor's
                            if dims.len() > rank {
                                return Err(format!("'{label}' constant '{other}' has rank {} > {rank}", dims.len()));
                            }
                            let ch_axis = 1 + dims.len() as i64 - rank as i64;
                            if ch_axis < 0 || dims[ch_axis as usize] == 1 {
                                continue; // broadcasts along channels: keep
                            }
                            if dims[ch_axis as usize] != c {
                                return Err(format!("'{label}' constant '{other}' has {} channels, expected {c}", dims[ch_axis as usize]));
                            }
                            let a = t.to_f32().map_err(|e| format!("'{label}' constant '{other}': {e}"))?;
                            let wide = dup_axis(&a, ch_axis as usize, 1.0)?;
                            added += t.len() as i64;
                            p.input[i] = new_const(other, &wide, names, &mut inits);
                        } else {
                            pending.push(ix);
                        }
                    }
                }
                "ReduceMean" | "ReduceMax" | "ReduceSum" if slot == 0 => {
                    let axes = attr_ints(&n.proto, "axes").or_else(|| n.input(1).and_then(|a| g.const_tensor(a)).and_then(|t| t.to_i64().ok()));
                    let keep = attr_int(&n.proto, "keepdims").unwrap_or(1) != 0;
                    let rank = g.shape_of(&v).map(<[Dim]>::len).unwrap_or(4) as i64;
                    match axes {
                        Some(a) if a.iter().all(|&x| { let x = if x < 0 { x + rank } else { x }; x >= 2 || (keep && x == 0) }) => {}
                        _ => return Err(format!("'{label}' reduces over the channel axis (or its axes are unknown)")),
                    }
                }
                "Flatten" if slot == 0 => {
                    let ok = attr_int(&n.proto, "axis").unwrap_or(1) == 1 && g.shape_of(&v).is_some_and(|s| s.iter().skip(2).all(|d| *d == Dim::Known(1)));
                    if !ok {
                        return Err(format!("'{label}' flattens spatial positions into channels"));
                    }
                }
                "Reshape" if slot == 0 => {
                    let sname = n.input(1).ok_or("Reshape without shape")?;
                    let t = g.const_tensor(sname).ok_or_else(|| format!("'{label}' reshapes to a computed shape"))?;
                    let mut target = t.to_i64().map_err(|e| e.to_string())?;
                    let xs = g.shape_of(&v).ok_or_else(|| format!("'{label}' input shape unknown"))?;
                    let spatial_one = xs.iter().skip(2).all(|d| *d == Dim::Known(1));
                    let tail_one = target.iter().skip(2).all(|&d| d == 1);
                    if !spatial_one || !tail_one || target.len() < 2 {
                        return Err(format!("'{label}' reshape {target:?} mixes channels with other axes"));
                    }
                    match target[1] {
                        -1 | 0 => {}
                        t1 if t1 == c => {
                            target[1] = 2 * c;
                            let nm = names.fresh(&format!("{sname}.fuse.wide"));
                            inits.push(Tensor::from_i64(&nm, &[target.len() as i64], &target));
                            p.input[1] = nm;
                        }
                        other => return Err(format!("'{label}' reshapes to {other} channels")),
                    }
                }
                "Conv" if slot == 0 => {
                    let group = attr_int(&n.proto, "group").unwrap_or(1);
                    let wn = n.input(1).ok_or("Conv without weight")?;
                    let t = g.const_tensor(wn).ok_or_else(|| format!("'{label}' weight is not constant"))?;
                    let a = t.to_f32().map_err(|e| e.to_string())?;
                    if group == c && a.shape()[1] == 1 && a.shape()[0] as i64 == c {
                        // another depthwise conv: widen to 2C groups
                        p.input[1] = new_const(wn, &dup_axis(&a, 0, 1.0)?, names, &mut inits);
                        added += a.len() as i64;
                        if let Some(bn) = n.input(2) {
                            let b = g.const_tensor(bn).ok_or("bias not constant")?.to_f32().map_err(|e| e.to_string())?;
                            p.input[2] = new_const(bn, &dup_axis(&b, 0, 1.0)?, names, &mut inits);
                        }
                        p.attribute.retain(|a| a.name() != "group");
                        p.attribute.push(a_int("group", 2 * c));
                    } else if group == 1 && a.shape()[1] as i64 == c {
                        let se = is_squeeze_excite(g, ix, &widened);
                        let win = dup_axis(&a, 1, 0.5)?;
                        if se {
                            p.input[1] = new_const(wn, &dup_axis(&win, 0, 1.0)?, names, &mut inits);
                            out_channels = Some(a.shape()[0] as i64);
                            added += 3 * a.len() as i64;
                            if let Some(bn) = n.input(2) {
                                let b = g.const_tensor(bn).ok_or("bias not constant")?.to_f32().map_err(|e| e.to_string())?;
                                added += b.len() as i64;
                                p.input[2] = new_const(bn, &dup_axis(&b, 0, 1.0)?, names, &mut inits);
                            }
                        } else {
                            p.input[1] = new_const(wn, &win, names, &mut inits);
                            added += a.len() as i64;
                            out_channels = None;
                        }
                    } else {
                        return Err(format!("'{label}' is a grouped conv (group {group}) over the widened channels"));
                    }
                }
                "Gemm" | "MatMul" if slot == 0 => {
                    let trans_a = attr_int(&n.proto, "transA").unwrap_or(0) != 0;
                    if trans_a {
                        return Err(format!("'{label}' uses transA"));
                    }
                    let trans_b = n.op() == "Gemm" && attr_int(&n.proto, "transB").unwrap_or(0) != 0;
                    let wn = n.input(1).ok_or("no weight")?;
                    let t = g.const_tensor(wn).ok_or_else(|| format!("'{label}' weight is not constant"))?;
                    let a = t.to_f32().map_err(|e| e.to_string())?;
                    if a.ndim() != 2 {
                        return Err(format!("'{label}' weight is not a matrix"));
                    }
                    let (in_ax, out_ax) = if trans_b { (1, 0) } else { (0, 1) };
                    if a.shape()[in_ax] as i64 != c {
                        return Err(format!("'{label}' weight does not take {c} inputs"));
                    }
                    let win = dup_axis(&a, in_ax, 0.5)?;
                    if is_squeeze_excite(g, ix, &widened) {
                        p.input[1] = new_const(wn, &dup_axis(&win, out_ax, 1.0)?, names, &mut inits);
                        out_channels = Some(a.shape()[out_ax] as i64);
                        added += 3 * a.len() as i64;
                        if let Some(bn) = n.input(2) {
                            let bt = g.const_tensor(bn).ok_or("bias not constant")?;
                            if bt.len() > 1 {
                                let b = bt.to_f32().map_err(|e| e.to_string())?;
                                let axis = b.ndim().saturating_sub(1);
                                added += b.len() as i64;
                                p.input[2] = new_const(bn, &dup_axis(&b, axis, 1.0)?, names, &mut inits);
                            }
                        }
                        // a MatMul's bias comes as a following Add: it is widened as a per-channel constant
                    } else {
                        p.input[1] = new_const(wn, &win, names, &mut inits);
                        added += a.len() as i64;
                        out_channels = None;
                    }
                }
                op => return Err(format!("consumer '{label}' ({op}) cannot be widened")),
            }
            edits.insert(ix, p);
            if let (Some(oc), Some(o)) = (out_channels, out0)
                && !widened.contains_key(&o) {
                    widened.insert(o.clone(), oc);
                    queue.push_back((o, oc));
                }
        }
    }
    for ix in pending {
        let n = g.node(ix);
        for i in &n.proto.input {
            if !i.is_empty() && !widened.contains_key(i) && !g.is_const(i) {
                return Err(format!("'{}' combines the widened tensor with '{i}', which is not widened", n.label()));
            }
        }
    }
    Ok(WidenPlan { edits: edits.into_iter().collect(), initializers: inits, widened, added_params: added })
}

/// Does the output of channel-mixing node `ix` come back (within a few ops)
/// as a factor on a widened tensor? Then it is inside a squeeze-excite block.
fn is_squeeze_excite(g: &Graph, ix: NodeIndex, widened: &HashMap<String, i64>) -> bool {
    let n = g.node(ix);
    // SE runs on a pooled vector: spatial dims all 1 (or a 2-D [N, C] tensor)
    let pooled = n.input(0).and_then(|i| g.shape_of(i)).is_some_and(|s| s.len() == 2 || s.iter().skip(2).all(|d| *d == Dim::Known(1)));
    if !pooled {
        return false;
    }
    let mut frontier: Vec<String> = n.proto.output.iter().filter(|o| !o.is_empty()).cloned().collect();
    for _depth in 0..8 {
        let mut next = Vec::new();
        for v in &frontier {
            for &(cix, slot) in g.consumers(v) {
                if slot == IMPLICIT_SLOT {
                    continue;
                }
                let c = g.node(cix);
                if matches!(c.op(), "Mul" | "Add" | "Div" | "Sub")
                    && c.proto.input.iter().enumerate().any(|(i, x)| i != slot && widened.contains_key(x))
                {
                    return true;
                }
                next.extend(c.proto.output.iter().filter(|o| !o.is_empty()).cloned());
            }
        }
        frontier = next;
    }
    false
}

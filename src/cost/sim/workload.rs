//! What each node asks of the hardware: GEMMs for the array, 1-D
//! convolutions for the FuSe extension, element work for the vector unit,
//! nothing for views. Read from a graph (ONNX padding, or SCALE-Sim's
//! unpadded convention) or from a SCALE-Sim topology CSV; written back as one.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::cost::hw::schedule::{fc_dims, ConvGeom};
use crate::ir::Graph;
use crate::onnx::Dim;
use crate::cost::sim::compute::{Fuse1d, Gemm};
use crate::cost::hw::{HwKind, VectorClass};

/// A convolution layer in SCALE-Sim's terms (its topology CSV row), with the
/// padding convention already applied to the ifmap size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ConvLayer {
    pub ifmap_h: u64,
    pub ifmap_w: u64,
    pub filt_h: u64,
    pub filt_w: u64,
    pub channels: u64,
    pub filters: u64,
    pub stride_h: u64,
    pub stride_w: u64,
    pub batch: u64,
    /// SCALE-Sim's output size, `ceil((H − R + s) / s)`: a partial last window
    /// counts (its missing addresses are null requests); ONNX floors.
    pub ceil_windows: bool,
}

impl ConvLayer {
    fn out(&self, n: u64, k: u64, s: u64) -> u64 {
        let (span, s) = (n.saturating_sub(k), s.max(1));
        if self.ceil_windows { span.div_ceil(s) + 1 } else { span / s + 1 }
    }
    pub fn out_h(&self) -> u64 {
        self.out(self.ifmap_h, self.filt_h, self.stride_h)
    }
    pub fn out_w(&self) -> u64 {
        self.out(self.ifmap_w, self.filt_w, self.stride_w)
    }
    /// Distinct ifmap elements the windows read (rows and columns that some
    /// window covers, times channels and batch): what an ifmap SRAM large
    /// enough to keep everything fetches from DRAM.
    pub fn ifmap_touched(&self) -> u64 {
        let covered = |n: u64, k: u64, s: u64, e: u64| -> u64 { (0..e).map(|i| (i * s + k).min(n).saturating_sub(i * s)).sum::<u64>().min(if k >= s { (e.saturating_sub(1) * s + k).min(n) } else { n }) };
        covered(self.ifmap_h, self.filt_h, self.stride_h.max(1), self.out_h()) * covered(self.ifmap_w, self.filt_w, self.stride_w.max(1), self.out_w()) * self.channels * self.batch
    }

    /// The GEMM of one group (`channels` input channels, `filters` filters).
    pub fn gemm(&self) -> Gemm {
        Gemm { m: self.batch * self.out_h() * self.out_w(), k: self.filt_h * self.filt_w * self.channels, n: self.filters }
    }
}

/// The work of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "unit", rename_all = "kebab-case")]
pub enum Work {
    /// `repeat` identical GEMMs back to back on the array (a depthwise conv is
    /// one single-channel GEMM per channel; a grouped conv one per group).
    Array { gemm: Gemm, repeat: u64, conv: Option<ConvLayer> },
    /// A 1×K or K×1 depthwise conv in the FuSe broadcast dataflow.
    Fuse { fuse: Fuse1d },
    /// Element-wise work on the vector unit.
    Vector { class: VectorClass, elements: u64 },
    /// Views and shape bookkeeping: no work.
    None,
}

/// How input sizes are taken for the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Padding {
    /// The ONNX node's padding is applied (the input grows by the pads).
    Onnx,
    /// SCALE-Sim's convention: the ifmap is taken as it is, without padding.
    ScaleSim,
}

fn numel(g: &Graph, v: &str, batch: u64) -> Option<u64> {
    let s = g.shape_of(v)?;
    s.iter().enumerate().try_fold(1u64, |a, (i, d)| match d {
        Dim::Known(k) => Some(a.saturating_mul(*k as u64)),
        Dim::Sym(_) if i == 0 => Some(a.saturating_mul(batch)),
        Dim::Sym(_) => None,
    })
}

/// The work of one node of a graph.
pub fn node_work(g: &Graph, ix: petgraph::stable_graph::NodeIndex, hw: HwKind, padding: Padding, batch: u64) -> Result<Work> {
    let n = g.node(ix);
    if n.op() == "Constant" || g.is_const_node(ix) {
        return Ok(Work::None);
    }
    let out_elems = || n.output(0).and_then(|o| numel(g, o, batch)).ok_or_else(|| Error::node(n.label(), "output shape unknown; pass --input-shape"));
    let in_elems = || n.input(0).and_then(|o| numel(g, o, batch)).ok_or_else(|| Error::node(n.label(), "input shape unknown; pass --input-shape"));
    let vector = |class: VectorClass, elements: u64| Ok(Work::Vector { class, elements });
    if let Some(a) = crate::ir::op::array_op(n) {
        return array_work(g, n, a, hw, padding, batch);
    }
    if crate::ir::op::is_quantization(n) {
        // (de)quantizing is folded into the ops around it (requantization at the accumulator)
        return Ok(Work::None);
    }
    // a QOperator op other than Conv/Gemm/MatMul works as the float op it computes
    let op = match n.op() {
        "QLinearGlobalAveragePool" => "GlobalAveragePool",
        "QLinearConcat" => "Concat",
        other => crate::ir::op::float_view(n).map_or(other, |(op, _)| op),
    };
    match op {
        "Relu" | "Clip" | "LeakyRelu" | "PRelu" | "Relu6" | "Abs" | "Neg" | "Floor" | "Ceil" | "Round" | "Sign" | "Cast" => vector(VectorClass::Activation, out_elems()?),
        "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Elu" | "Selu" | "Softplus" | "Mish" | "Gelu" | "Erf" | "Exp" | "Log" | "Sqrt"
        | "Reciprocal" | "Pow" => vector(VectorClass::Transcendental, out_elems()?),
        "BatchNormalization" | "InstanceNormalization" | "LayerNormalization" => vector(VectorClass::Normalization, out_elems()?),
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Sum" | "Mean" | "Where" | "Equal" | "Less" | "Greater" | "And" | "Or" | "Not" | "Mod" => {
            vector(VectorClass::Elementwise, out_elems()?)
        }
        "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" | "LpPool" | "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin"
        | "ReduceL2" | "ReduceProd" | "ReduceSumSquare" | "ArgMax" | "ArgMin" => vector(VectorClass::Pool, in_elems()?),
        "Concat" | "Split" | "Slice" | "Pad" | "Transpose" | "Tile" | "Expand" | "Gather" | "DepthToSpace" | "SpaceToDepth" => vector(VectorClass::Copy, out_elems()?),
        "Resize" | "Upsample" => vector(VectorClass::Resize, out_elems()?),
        "Softmax" | "LogSoftmax" => vector(VectorClass::Softmax, out_elems()?),
        "ConvTranspose" => {
            // a transposed conv is a GEMM of the input with the kernel, scattered: [H·W, C] × [C, M·kh·kw]
            let label = n.label();
            let x = n.input(0).and_then(|v| g.shape_of(v)).ok_or_else(|| Error::node(&label, "input shape unknown"))?;
            let w = n.input(1).and_then(|v| g.shape_of(v)).ok_or_else(|| Error::node(&label, "weight shape unknown"))?;
            let xv: Option<Vec<u64>> = x.iter().enumerate().map(|(i, d)| d.known().map(|v| v as u64).or((i == 0).then_some(batch))).collect();
            let wv: Option<Vec<u64>> = w.iter().map(|d| d.known().map(|v| v as u64)).collect();
            let (Some(xv), Some(wv)) = (xv, wv) else { return Err(Error::node(&label, "shapes unknown")) };
            let group = crate::onnx::attr_int(&n.proto, "group").unwrap_or(1).max(1) as u64;
            let spatial: u64 = xv[2..].iter().product();
            let kk: u64 = wv[2..].iter().product();
            Ok(Work::Array { gemm: Gemm { m: xv[0] * spatial, k: xv[1] / group, n: wv[1] * kk }, repeat: group, conv: None })
        }
        _ => Ok(Work::None),
    }
}

/// The work of a Conv, Gemm or MatMul, float or quantized ([`array_op`](crate::ir::op::array_op)).
fn array_work(g: &Graph, n: &crate::ir::Node, a: crate::ir::op::ArrayOp, hw: HwKind, padding: Padding, batch: u64) -> Result<Work> {
    match a.op {
        "Conv" => {
            let geo = ConvGeom::of(g, n, batch)?;
            let (h, w) = match padding {
                Padding::Onnx => geo.padded(),
                Padding::ScaleSim => (geo.x[2], geo.x[3]),
            };
            let (kh, kw) = geo.kernel();
            let [sh, sw] = geo.strides;
            let batch = geo.x[0];
            if geo.is_depthwise() && hw == HwKind::Fuse && (kh == 1) != (kw == 1) {
                let fuse = if kh == 1 {
                    Fuse1d { convs: batch * h * geo.x[1], width: w, taps: kw, stride: sw }
                } else {
                    Fuse1d { convs: batch * w * geo.x[1], width: h, taps: kh, stride: sh }
                };
                return Ok(Work::Fuse { fuse });
            }
            let per_group_c = geo.x[1] / geo.group.max(1);
            let per_group_m = geo.w[0] / geo.group.max(1);
            let conv = ConvLayer {
                ifmap_h: h,
                ifmap_w: w,
                filt_h: kh,
                filt_w: kw,
                channels: per_group_c,
                filters: per_group_m,
                stride_h: sh,
                stride_w: sw,
                batch,
                ceil_windows: padding == Padding::ScaleSim,
            };
            if kh > h || kw > w {
                return Err(Error::node(n.label(), format!("kernel {kh}x{kw} is larger than the unpadded input {h}x{w} (SCALE-Sim's convention)")));
            }
            Ok(Work::Array { gemm: conv.gemm(), repeat: geo.group, conv: Some(conv) })
        }
        _ => match fc_dims(g, n, batch)? {
            Some((m, k, nn)) => Ok(Work::Array { gemm: Gemm { m, k, n: nn }, repeat: 1, conv: None }),
            None => {
                // a product of two computed tensors (attention): batched GEMMs
                let (a, b) = (g.shape_of(a.x), g.shape_of(a.w));
                let (Some(a), Some(b)) = (a, b) else { return Err(Error::node(n.label(), "MatMul shapes unknown")) };
                let known = |d: &Dim, i: usize| d.known().map(|v| v as u64).or((i == 0).then_some(batch));
                let av: Option<Vec<u64>> = a.iter().enumerate().map(|(i, d)| known(d, i)).collect();
                let bv: Option<Vec<u64>> = b.iter().enumerate().map(|(i, d)| known(d, i)).collect();
                let (Some(av), Some(bv)) = (av, bv) else { return Err(Error::node(n.label(), "MatMul shapes unknown")) };
                if av.len() < 2 || bv.len() < 2 {
                    return Err(Error::node(n.label(), "MatMul of vectors"));
                }
                let rep: u64 = av[..av.len() - 2].iter().product::<u64>().max(bv[..bv.len() - 2].iter().product());
                Ok(Work::Array { gemm: Gemm { m: av[av.len() - 2], k: av[av.len() - 1], n: bv[bv.len() - 1] }, repeat: rep.max(1), conv: None })
            }
        },
    }
}

/// A layer of a SCALE-Sim topology CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologyRow {
    pub name: String,
    pub conv: ConvLayer,
    /// The name contains `DP`: SCALE-Sim runs one layer per channel.
    pub depthwise: bool,
}

/// Read a SCALE-Sim topology CSV (`Layer name, IFMAP Height, IFMAP Width,
/// Filter Height, Filter Width, Channels, Num Filter, Strides,` with a
/// trailing comma; one stride for both axes; a name containing `DP` marks a
/// depthwise layer, which SCALE-Sim splits into one single-channel layer per
/// channel).
pub fn read_topology(path: &std::path::Path) -> Result<Vec<TopologyRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = vec![];
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |why: &str| Error::option("--topology", format!("{}: line {}: {why}", path.display(), i + 1));
        if fields.len() < 8 {
            return Err(bad("expected 8 columns: name, ifmap h, ifmap w, filter h, filter w, channels, filters, stride"));
        }
        let num = |j: usize| fields[j].parse::<u64>().map_err(|_| bad(&format!("column {} is not a number: '{}'", j + 1, fields[j])));
        let conv = ConvLayer {
            ifmap_h: num(1)?,
            ifmap_w: num(2)?,
            filt_h: num(3)?,
            filt_w: num(4)?,
            channels: num(5)?,
            filters: num(6)?,
            stride_h: num(7)?,
            stride_w: num(7)?,
            batch: 1,
            ceil_windows: true,
        };
        if conv.filt_h > conv.ifmap_h || conv.filt_w > conv.ifmap_w || conv.stride_h == 0 || [conv.ifmap_h, conv.ifmap_w, conv.filt_h, conv.filt_w, conv.channels, conv.filters].contains(&0) {
            return Err(bad("a filter larger than the ifmap, or a zero dimension or stride"));
        }
        rows.push(TopologyRow { name: fields[0].to_string(), depthwise: fields[0].contains("DP"), conv });
    }
    Ok(rows)
}

/// A topology CSV of a graph's array layers in SCALE-Sim's conventions (ifmap
/// sizes as the array sees them under `padding`; depthwise layers named with
/// `DP` and given one filter, so SCALE-Sim splits them per channel).
pub fn write_topology(g: &Graph, padding: Padding, batch: u64) -> Result<String> {
    let mut out = String::from("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n");
    for ix in g.toposort()? {
        let n = g.node(ix);
        if let Work::Array { conv: Some(c), repeat, .. } = node_work(g, ix, HwKind::Systolic, padding, batch)? {
            if c.stride_h != c.stride_w {
                return Err(Error::node(n.label(), "SCALE-Sim's topology has one stride for both axes"));
            }
            let name = n.label().replace([',', ' '], "_");
            let (name, channels) = if repeat > 1 && c.channels == 1 && c.filters == 1 { (format!("{name}_DP"), repeat) } else { (name, c.channels * repeat) };
            if repeat > 1 && !(c.channels == 1 && c.filters == 1) {
                return Err(Error::node(n.label(), format!("grouped conv (group {repeat}) has no SCALE-Sim topology form")));
            }
            out.push_str(&format!("{name}, {}, {}, {}, {}, {channels}, {}, {},\n", c.ifmap_h, c.ifmap_w, c.filt_h, c.filt_w, c.filters, c.stride_h));
        }
    }
    Ok(out)
}

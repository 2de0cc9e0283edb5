//! Map every node of a graph onto the array in topological order.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::cost::hw::analytical::{fuse_cycles, gemm_cycles, ConvDims};
use crate::cost::hw::{HwConfig, HwKind};
use crate::ir::Graph;
use crate::onnx::{attr_int, Dim};

/// How a layer maps onto the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    Pointwise,
    Depthwise,
    #[serde(rename = "fuse-1xk")]
    FuseRow,
    #[serde(rename = "fuse-kx1")]
    FuseCol,
    OtherConv,
    Fc,
    /// Not run on the array under this model (activations, pooling, ...).
    Other,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerCost {
    pub name: String,
    pub op: String,
    pub kind: LayerKind,
    pub input_shape: Vec<i64>,
    pub kernel: Option<[i64; 2]>,
    pub stride: Option<[i64; 2]>,
    pub macs: u64,
    pub params: u64,
    pub cycles: u64,
    pub start: u64,
    pub end: u64,
    /// MACs / (cycles × rows × cols).
    pub utilization: f64,
}

/// Why the shape of `v` is not known: where inference stopped (the node and
/// op), or a symbolic input dimension that `--input-shape` can fix.
fn unknown_shape(g: &Graph, v: &str, node: &str) -> Error {
    let shape = g.shape_of(v).map(crate::onnx::fmt_shape).unwrap_or_else(|| "unknown".into());
    match g.shape_stops.get(v) {
        Some(stop) => Error::node(node, format!("shape of '{v}' is {shape}: {stop}")),
        None => Error::node(node, format!("shape of '{v}' is {shape}; pass --input-shape")),
    }
}

fn dims(g: &Graph, v: &str, batch: u64, node: &str) -> Result<Vec<u64>> {
    let s = g.shape_of(v).ok_or_else(|| unknown_shape(g, v, node))?;
    s.iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Known(k) => Ok(*k as u64),
            Dim::Sym(_) if i == 0 => Ok(batch),
            Dim::Sym(name) if !name.is_empty() => Err(Error::node(node, format!("'{v}' has the symbolic dimension '{name}' in {}; pass --input-shape", crate::onnx::fmt_shape(s)))),
            Dim::Sym(_) => Err(unknown_shape(g, v, node)),
        })
        .collect()
}

/// The geometry of a Conv node as the latency models see it: input and
/// weight dims (a symbolic batch taken as `batch`), explicit pads, strides,
/// group. Shared by the analytical schedule and the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvGeom {
    /// [N, C, H, W]
    pub x: Vec<u64>,
    /// [M, C/group, kh, kw]
    pub w: Vec<u64>,
    /// [top, left, bottom, right]
    pub pads: [u64; 4],
    pub strides: [u64; 2],
    pub group: u64,
}

impl ConvGeom {
    pub fn of(g: &Graph, n: &crate::ir::Node, batch: u64) -> Result<ConvGeom> {
        let label = n.label();
        let a = crate::ir::op::array_op(n).ok_or_else(|| Error::node(&label, "not a convolution"))?;
        let x = dims(g, a.x, batch, &label)?;
        let w = dims(g, a.w, batch, &label)?;
        if x.len() != 4 || w.len() != 4 {
            return Err(Error::node(&label, "only 2-D convolutions are costed"));
        }
        let attrs = crate::ir::op::ConvAttrs::parse(&n.proto, &w.iter().map(|&v| v as i64).collect::<Vec<_>>())?;
        let pads = attrs.window.explicit_pads(&[x[2] as i64, x[3] as i64]);
        Ok(ConvGeom {
            pads: [pads[0] as u64, pads[1] as u64, pads[2] as u64, pads[3] as u64],
            strides: [attrs.window.strides[0] as u64, attrs.window.strides[1] as u64],
            group: attrs.group as u64,
            x,
            w,
        })
    }
    /// Padded input height and width (the paper's and fusec's convention).
    pub fn padded(&self) -> (u64, u64) {
        (self.x[2] + self.pads[0] + self.pads[2], self.x[3] + self.pads[1] + self.pads[3])
    }
    pub fn kernel(&self) -> (u64, u64) {
        (self.w[2], self.w[3])
    }
    /// Depthwise with channel multiplier 1.
    pub fn is_depthwise(&self) -> bool {
        self.group > 1 && self.group == self.x[1] && self.group == self.w[0]
    }
}

/// The dims of a GEMM-like node with a constant weight (Gemm, MatMul, their
/// quantized forms; a weight behind a DequantizeLinear counts as constant):
/// (rows of the input, K, N), or None for a MatMul of two computed tensors.
pub fn fc_dims(g: &Graph, n: &crate::ir::Node, batch: u64) -> Result<Option<(u64, u64, u64)>> {
    let label = n.label();
    let Some(a) = crate::ir::op::array_op(n) else { return Ok(None) };
    if !g.is_weight(a.w) {
        return Ok(None);
    }
    let w = dims(g, a.w, batch, &label)?;
    let trans_b = a.op == "Gemm" && attr_int(&n.proto, "transB").unwrap_or(0) != 0;
    let (k, m) = if trans_b { (w[1], w[0]) } else { (w[0], w[w.len() - 1]) };
    let x = dims(g, a.x, batch, &label)?;
    let rows_in: u64 = x[..x.len().saturating_sub(1)].iter().fold(1u64, |a, &d| a.saturating_mul(d));
    Ok(Some((rows_in, k, m)))
}

/// Cost every node; nodes the array does not run cost 0 cycles.
pub fn schedule(g: &Graph, hw: &HwConfig, batch: u64) -> Result<Vec<LayerCost>> {
    let (rows, cols) = (hw.rows, hw.cols);
    let mut out = Vec::new();
    let mut clock = 0u64;
    for ix in g.toposort()? {
        let n = g.node(ix);
        if n.op() == "Constant" || g.is_const_node(ix) {
            continue;
        }
        let label = n.label();
        let params = crate::stats::node_params(g, ix);
        let macs = crate::stats::node_macs(g, ix).unwrap_or(0);
        let mut cost = LayerCost {
            name: label.clone(),
            op: n.op().to_string(),
            kind: LayerKind::Other,
            input_shape: vec![],
            kernel: None,
            stride: None,
            macs,
            params,
            cycles: 0,
            start: clock,
            end: clock,
            utilization: 0.0,
        };
        match crate::ir::op::array_op(n).map(|a| a.op) {
            Some("Conv") => {
                let geo = ConvGeom::of(g, n, batch)?;
                let (hp, wp) = geo.padded();
                let (kh, kw) = geo.kernel();
                let [sh, sw] = geo.strides;
                let (cin, cout) = (geo.x[1], geo.w[0]);
                let gemm = |c: u64, m: u64| gemm_cycles(rows, cols, &ConvDims { ifmap_h: hp, ifmap_w: wp, filt_h: kh, filt_w: kw, channels: c, stride_h: sh, stride_w: sw, filters: m, batch });
                cost.input_shape = geo.x.iter().map(|&v| v as i64).collect();
                cost.kernel = Some([kh as i64, kw as i64]);
                cost.stride = Some([sh as i64, sw as i64]);
                if geo.group == 1 {
                    cost.kind = if kh == 1 && kw == 1 { LayerKind::Pointwise } else { LayerKind::OtherConv };
                    cost.cycles = gemm(cin, cout);
                } else if hw.kind == HwKind::Systolic || (kh != 1 && kw != 1) {
                    cost.kind = LayerKind::Depthwise;
                    cost.cycles = gemm(1, 1) * cout;
                } else if kh == 1 {
                    cost.kind = LayerKind::FuseRow;
                    cost.cycles = fuse_cycles(rows, cols, &ConvDims { ifmap_h: hp, ifmap_w: wp, filt_h: kh, filt_w: kw, channels: cin, stride_h: sh, stride_w: sw, filters: 1, batch });
                } else {
                    cost.kind = LayerKind::FuseCol;
                    cost.cycles = fuse_cycles(rows, cols, &ConvDims { ifmap_h: wp, ifmap_w: hp, filt_h: kw, filt_w: kh, channels: cin, stride_h: sw, stride_w: sh, filters: 1, batch });
                }
            }
            Some(_) => {
                if let Some((rows_in, k, m)) = fc_dims(g, n, batch)? {
                    let x = dims(g, n.input(0).unwrap_or_default(), batch, &label)?;
                    cost.kind = LayerKind::Fc;
                    cost.input_shape = x.iter().map(|&v| v as i64).collect();
                    cost.cycles = gemm_cycles(rows, cols, &ConvDims { ifmap_h: 1, ifmap_w: 1, filt_h: 1, filt_w: 1, channels: k, stride_h: 1, stride_w: 1, filters: m, batch: rows_in });
                }
            }
            _ => {}
        }
        cost.end = clock.saturating_add(cost.cycles);
        clock = cost.end;
        if cost.cycles > 0 {
            cost.utilization = cost.macs as f64 / (cost.cycles as f64 * rows as f64 * cols as f64);
        }
        out.push(cost);
    }
    Ok(out)
}

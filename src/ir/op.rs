//! Typed attributes of the ops fusec reasons about, parsed once with the
//! ONNX spec's defaults written out: the sliding window of Conv, ConvTranspose
//! and pooling nodes ([`Window`]) and the convolution attributes
//! ([`ConvAttrs`]) used by the FuSe pass, the latency schedule and the
//! gradient rules alike.

use crate::error::{Error, Result};
use crate::onnx::{self, attr_int, attr_ints, attr_string, Dim, NodeProto};

fn unknown() -> Dim {
    Dim::Sym(String::new())
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
    /// The window attributes of a Conv / ConvTranspose / pooling node with
    /// the spec's defaults, checked (strides and dilations ≥ 1, pads ≥ 0, one
    /// value per spatial axis, a known `auto_pad`).
    pub fn parse(n: &NodeProto, kernel: Vec<i64>) -> Result<Window> {
        let r = kernel.len();
        let strides = attr_ints(n, "strides").unwrap_or_else(|| vec![1; r]);
        let dilations = attr_ints(n, "dilations").unwrap_or_else(|| vec![1; r]);
        let pads = attr_ints(n, "pads").unwrap_or_else(|| vec![0; 2 * r]);
        let auto_pad = attr_string(n, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        let label = || onnx::node_label(n);
        let bad = |what: &str, v: &[i64]| Error::UnsupportedAttr { node: label(), name: what.into(), value: format!("{v:?}") };
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
            return Err(Error::UnsupportedAttr { node: label(), name: "auto_pad".into(), value: auto_pad });
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

/// A Conv node's attributes: its window and group count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvAttrs {
    pub window: Window,
    pub group: i64,
}

impl ConvAttrs {
    /// Parse a Conv (or ConvTranspose) node whose weight has dims `weight`
    /// ([M, C/group, k...]): the kernel comes from `kernel_shape` and must
    /// agree with the weight.
    pub fn parse(n: &NodeProto, weight: &[i64]) -> Result<ConvAttrs> {
        if weight.len() < 3 {
            return Err(Error::node(onnx::node_label(n), format!("convolution weight of rank {} (need [M, C, k...])", weight.len())));
        }
        let from_weight = weight[2..].to_vec();
        let kernel = match attr_ints(n, "kernel_shape") {
            Some(k) if k != from_weight => {
                return Err(Error::UnsupportedAttr { node: onnx::node_label(n), name: "kernel_shape".into(), value: format!("{k:?} (weight is {from_weight:?})") });
            }
            _ => from_weight,
        };
        let group = attr_int(n, "group").unwrap_or(1);
        if group < 1 {
            return Err(Error::UnsupportedAttr { node: onnx::node_label(n), name: "group".into(), value: group.to_string() });
        }
        Ok(ConvAttrs { window: Window::parse(n, kernel)?, group })
    }

    pub fn kernel(&self) -> &[i64] {
        &self.window.kernel
    }

    /// Depthwise with channel multiplier 1: group = C_in = C_out > 1.
    pub fn is_depthwise(&self, c_in: i64, c_out: i64) -> bool {
        self.group > 1 && self.group == c_in && self.group == c_out
    }
}

/// What a node computes on the array: a Conv, Gemm or MatMul, in float form or
/// quantized (QLinearConv and ConvInteger compute a Conv; QLinearMatMul and
/// MatMulInteger a MatMul; `com.microsoft` QGemm a Gemm), with the names of its
/// data input, weight and bias. A QDQ model's Conv reads a DequantizeLinear as
/// its weight and is a plain Conv here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayOp<'a> {
    /// "Conv", "Gemm" or "MatMul".
    pub op: &'static str,
    pub x: &'a str,
    pub w: &'a str,
    pub bias: Option<&'a str>,
    /// A QOperator op (integer operands; scales and zero points among its inputs).
    pub quantized: bool,
}

pub fn array_op(n: &crate::ir::Node) -> Option<ArrayOp<'_>> {
    let (op, slots, quantized): (&'static str, &[usize], bool) = if n.is_default_domain() && matches!(n.op(), "Conv" | "Gemm" | "MatMul") {
        let op = match n.op() {
            "Conv" => "Conv",
            "Gemm" => "Gemm",
            _ => "MatMul",
        };
        (op, &[0, 1, 2], false)
    } else {
        let (op, slots) = float_view(n)?;
        if !matches!(op, "Conv" | "Gemm" | "MatMul") {
            return None;
        }
        (op, slots, true)
    };
    Some(ArrayOp { op, x: n.input(slots[0])?, w: n.input(slots[1])?, bias: slots.get(2).and_then(|&s| n.input(s)), quantized })
}

/// QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear: the conversions
/// between float and integer tensors that QDQ models put around each op.
pub fn is_quantization(n: &crate::ir::Node) -> bool {
    n.is_default_domain() && matches!(n.op(), "QuantizeLinear" | "DequantizeLinear" | "DynamicQuantizeLinear")
}

/// Largest dimension we accept from a model's declared or inferred shapes.
pub const MAX_DIM: i64 = 1 << 31;

/// Ops that only move elements: a value after them holds the same numbers
/// (a loss summed over elements, a Sigmoid's output looked at through a Reshape).
pub const ELEMENT_MOVES: &[&str] = &["Identity", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"];

/// The float op a quantized op computes, and which of its inputs are that op's
/// inputs (the rest are scales and zero points).
pub fn float_view(n: &crate::ir::Node) -> Option<(&'static str, &'static [usize])> {
    let domain = match n.proto.domain() {
        "ai.onnx" => "",
        d => d,
    };
    Some(match (domain, n.op()) {
        ("", "QLinearConv") => ("Conv", &[0, 3, 8]),
        ("", "ConvInteger") => ("Conv", &[0, 1]),
        ("", "QLinearMatMul") => ("MatMul", &[0, 3]),
        ("", "MatMulInteger") => ("MatMul", &[0, 1]),
        ("com.microsoft", "QGemm") => ("Gemm", &[0, 3, 6]),
        ("com.microsoft", "QLinearAdd") => ("Add", &[0, 3]),
        ("com.microsoft", "QLinearMul") => ("Mul", &[0, 3]),
        ("com.microsoft", "QLinearAveragePool") => ("AveragePool", &[0]),
        ("com.microsoft", "QLinearSoftmax") => ("Softmax", &[0]),
        ("com.microsoft", "QLinearSigmoid") => ("Sigmoid", &[0]),
        ("com.microsoft", "QLinearLeakyRelu") => ("LeakyRelu", &[0]),
        _ => return None,
    })
}


#[cfg(test)]
mod tests {
    use super::*;

    fn node(domain: &str, op: &str) -> crate::ir::Node {
        let mut proto = onnx::make_node("n", op, &["x"], &["y"], vec![]);
        proto.domain = Some(domain.to_string());
        crate::ir::Node { proto, pos: 0 }
    }

    /// The float op behind each quantized op, and which inputs are its data.
    #[test]
    fn float_view_names_the_op_and_its_data_inputs() {
        assert_eq!(float_view(&node("", "QLinearConv")), Some(("Conv", &[0usize, 3, 8][..])));
        assert_eq!(float_view(&node("ai.onnx", "QLinearMatMul")), Some(("MatMul", &[0usize, 3][..])));
        assert_eq!(float_view(&node("com.microsoft", "QLinearAdd")), Some(("Add", &[0usize, 3][..])));
        // a contrib op under the default domain, and a float op, are not quantized ops
        assert_eq!(float_view(&node("", "QLinearAdd")), None);
        assert_eq!(float_view(&node("", "Conv")), None);
        assert!(is_quantization(&node("", "DequantizeLinear")) && !is_quantization(&node("", "Conv")));
    }
}

//! Shape rules of quantized ops, in both forms quantizers write: QDQ
//! (QuantizeLinear / DequantizeLinear around float ops) and QOperator
//! (QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger, and ONNX Runtime's
//! `com.microsoft` QGemm, QLinearAdd/Mul, QLinearGlobalAveragePool,
//! QLinearConcat, ...). A QOperator op computes what its float op computes:
//! its shape comes from that op's rule on the data inputs ([`float_view`](crate::ir::op::float_view)),
//! its element type from its output zero point (or the op's fixed type).

use super::ValueFact;
use crate::error::Result;
use crate::ir::op::float_view;
use crate::ir::Node;
use crate::onnx::{attr_int, dtype, Dim};

/// Ops with a rule here, by domain ("" is ONNX's).
pub(super) const QUANT_OPS: &[(&str, &str)] = &[
    ("", "QuantizeLinear"),
    ("", "DequantizeLinear"),
    ("", "DynamicQuantizeLinear"),
    ("", "QLinearConv"),
    ("", "ConvInteger"),
    ("", "QLinearMatMul"),
    ("", "MatMulInteger"),
    ("com.microsoft", "QGemm"),
    ("com.microsoft", "QLinearAdd"),
    ("com.microsoft", "QLinearMul"),
    ("com.microsoft", "QLinearGlobalAveragePool"),
    ("com.microsoft", "QLinearAveragePool"),
    ("com.microsoft", "QLinearConcat"),
    ("com.microsoft", "QLinearSoftmax"),
    ("com.microsoft", "QLinearSigmoid"),
    ("com.microsoft", "QLinearLeakyRelu"),
];

fn domain(n: &Node) -> &str {
    match n.proto.domain() {
        "ai.onnx" => "",
        d => d,
    }
}

pub(super) fn is_quant_op(n: &Node) -> bool {
    QUANT_OPS.iter().any(|&(d, op)| d == domain(n) && op == n.op())
}

/// The element type of a quantized output: its zero point's, else `default`.
fn zp_type(ins: &[ValueFact], slot: usize, default: i32) -> i32 {
    ins.get(slot).and_then(|f| f.dtype).unwrap_or(default)
}

/// The facts of a quantized op's outputs; `float_rule` runs the rule of a float
/// op (by name) on the given inputs.
pub(super) fn infer(node: &Node, ins: &[ValueFact], float_rule: &dyn Fn(&str, &[ValueFact]) -> Result<Vec<Option<ValueFact>>>) -> Result<Vec<Option<ValueFact>>> {
    let p = &node.proto;
    let x = ins.first().cloned().unwrap_or_default();
    let with_type = |mut outs: Vec<Option<ValueFact>>, dt: i32| {
        if let Some(Some(f)) = outs.first_mut() {
            f.dtype = Some(dt);
            f.value = None;
        }
        outs
    };
    if let Some((op, slots)) = float_view(node) {
        let view: Vec<ValueFact> = slots.iter().map(|&s| if node.input(s).is_some() { ins.get(s).cloned().unwrap_or_default() } else { ValueFact::default() }).collect();
        let outs = float_rule(op, &view)?;
        let dt = match node.op() {
            "ConvInteger" | "MatMulInteger" => dtype::INT32,
            // QGemm without an output scale writes float
            "QGemm" if node.input(7).is_none() => dtype::FLOAT,
            "QGemm" => zp_type(ins, 8, dtype::UINT8),
            "QLinearConv" | "QLinearMatMul" | "QLinearAdd" | "QLinearMul" => zp_type(ins, 7, x.dtype.unwrap_or(dtype::UINT8)),
            _ => zp_type(ins, 4, x.dtype.unwrap_or(dtype::UINT8)),
        };
        return Ok(with_type(outs, dt));
    }
    let same = |dt: i32| Ok(vec![Some(ValueFact::new(Some(dt), x.shape.clone()))]);
    match node.op() {
        // opset 21 names the type with output_dtype when there is no zero point
        "QuantizeLinear" => {
            let by_attr = attr_int(p, "output_dtype").filter(|&t| t != 0).map(|t| t as i32);
            same(ins.get(2).and_then(|f| f.dtype).or(by_attr).unwrap_or(dtype::UINT8))
        }
        "DequantizeLinear" => same(ins.get(1).and_then(|f| f.dtype).unwrap_or(dtype::FLOAT)),
        "DynamicQuantizeLinear" => Ok(vec![
            Some(ValueFact::new(Some(dtype::UINT8), x.shape.clone())),
            Some(ValueFact::new(Some(dtype::FLOAT), Some(vec![]))),
            Some(ValueFact::new(Some(dtype::UINT8), Some(vec![]))),
        ]),
        "QLinearGlobalAveragePool" => {
            let Some(mut s) = x.shape.clone() else { return Ok(vec![]) };
            let channels_last = attr_int(p, "channels_last").unwrap_or(0) != 0;
            let r = s.len();
            let spatial = if channels_last { 1..r.saturating_sub(1) } else { 2.min(r)..r };
            for d in &mut s[spatial] {
                *d = Dim::Known(1);
            }
            Ok(vec![Some(ValueFact::new(Some(zp_type(ins, 4, x.dtype.unwrap_or(dtype::UINT8))), Some(s)))])
        }
        "QLinearConcat" => {
            // Y_scale, Y_zero_point, then (X, scale, zero point) per input
            let xs: Vec<ValueFact> = ins.iter().skip(2).step_by(3).cloned().collect();
            if xs.is_empty() {
                return Ok(vec![]);
            }
            let outs = float_rule("Concat", &xs)?;
            Ok(with_type(outs, zp_type(ins, 1, xs[0].dtype.unwrap_or(dtype::UINT8))))
        }
        _ => Ok(vec![]),
    }
}

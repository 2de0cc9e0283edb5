//! Parameter and MAC counts of a graph.

use serde::Serialize;

use crate::ir::Graph;
use crate::onnx::{attr_int, dtype, Dim};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Float weights (initializers and Constant nodes, without BatchNormalization
    /// running statistics), in elements.
    pub params: u64,
    /// Multiply-accumulates of Conv, Gemm and MatMul at batch 1.
    pub macs: u64,
}

/// Dims as numbers, with a symbolic leading (batch) dim taken as 1.
fn known_b1(s: &[Dim]) -> Option<Vec<u64>> {
    s.iter()
        .enumerate()
        .map(|(i, d)| match d.known() {
            Some(v) => Some(v.max(0) as u64),
            None if i == 0 => Some(1),
            None => None,
        })
        .collect()
}

/// Elements of one node's weights: a Conv's, Gemm's or MatMul's weight and bias
/// (integer ones behind a DequantizeLinear, or a QOperator op's, included), else
/// the constant inputs after the first (BN parameters). Scales and zero points
/// of quantization are not parameters.
pub fn node_params(g: &Graph, ix: petgraph::stable_graph::NodeIndex) -> u64 {
    let n = g.node(ix);
    if let Some(a) = crate::ir::op::array_op(n) {
        let numel = |v: &str| g.is_weight(v).then(|| g.shape_of(v).and_then(|s| s.iter().map(Dim::known).collect::<Option<Vec<_>>>())).flatten().map_or(0, |s| s.iter().map(|&d| d.max(0) as u64).product());
        return numel(a.w) + a.bias.map_or(0, numel);
    }
    if crate::ir::op::is_quantization(n) || crate::ir::op::float_view(n).is_some() {
        return 0;
    }
    n.proto.input.iter().skip(1).filter_map(|i| g.const_tensor(i)).map(|t| t.len()).sum()
}

/// MACs of one node at batch 1, when its shapes are known.
pub fn node_macs(g: &Graph, ix: petgraph::stable_graph::NodeIndex) -> Option<u64> {
    let n = g.node(ix);
    let a = crate::ir::op::array_op(n)?;
    match a.op {
        "Conv" => {
            let w = known_b1(g.shape_of(a.w)?)?;
            let y = known_b1(g.shape_of(n.output(0)?)?)?;
            // per output element: (C_in / group) x kernel
            let prod = |v: &[u64]| v.iter().fold(1u64, |a, &d| a.saturating_mul(d));
            Some(prod(&w[1..]).saturating_mul(prod(&y)))
        }
        _ => {
            let op = a.op;
            let a = known_b1(g.shape_of(a.x)?)?;
            let y = known_b1(g.shape_of(n.output(0)?)?)?;
            let k = if op == "Gemm" && attr_int(&n.proto, "transA").unwrap_or(0) != 0 { a[0] } else { *a.last()? };
            Some(y.iter().fold(k, |a, &d| a.saturating_mul(d)))
        }
    }
}

pub fn stats(g: &Graph) -> Stats {
    let mut s = Stats::default();
    // BatchNormalization running statistics are buffers, not parameters (as PyTorch counts)
    let mut buffers = std::collections::HashSet::new();
    for n in g.g.node_weights().filter(|n| n.op() == "BatchNormalization") {
        buffers.extend(n.proto.input.iter().skip(3).take(2).cloned());
    }
    // scales and zero points of quantized tensors are not weights either
    for ix in g.g.node_indices() {
        let n = g.node(ix);
        let data: Vec<usize> = if crate::ir::op::is_quantization(n) {
            vec![0]
        } else if n.op() == "QLinearConcat" {
            (2..n.proto.input.len()).step_by(3).collect()
        } else if let Some((_, slots)) = crate::ir::op::float_view(n) {
            slots.to_vec()
        } else if n.op() == "QLinearGlobalAveragePool" {
            vec![0]
        } else {
            continue;
        };
        buffers.extend(n.proto.input.iter().enumerate().filter(|(i, _)| !data.contains(i)).map(|(_, v)| v.clone()));
    }
    for (name, t) in &g.initializers {
        // scalars (Clip bounds, constants of decomposed activations) are not weights; integer
        // weights of quantized models are (int32: their biases)
        let weight_type = matches!(t.dtype(), dtype::FLOAT | dtype::FLOAT16 | dtype::DOUBLE | dtype::BFLOAT16 | dtype::INT8 | dtype::UINT8 | dtype::INT16 | dtype::INT32 | 21 | 22);
        if weight_type && !buffers.contains(name) && t.len() > 1 {
            s.params = s.params.saturating_add(t.len());
        }
    }
    for ix in g.g.node_indices() {
        let n = g.node(ix);
        if n.op() == "Constant" && !n.proto.output.iter().any(|o| buffers.contains(o))
            && let Some(t) = crate::ir::constant_node_value(&n.proto)
                && matches!(t.dtype(), dtype::FLOAT | dtype::FLOAT16 | dtype::DOUBLE) && t.len() > 1 {
                    s.params += t.len();
                }
        s.macs = s.macs.saturating_add(node_macs(g, ix).unwrap_or(0));
    }
    s
}

/// 1234567 → "1.23M": counts for people.
pub fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

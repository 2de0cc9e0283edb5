//! Shape folding: evaluate the shape computations exporters emit and replace
//! the known ones by constants.
//!
//! ```text
//! Before:  x ─Shape─▶ s ─Gather(1)─▶ c ─Unsqueeze─┐
//!          x ─Shape─▶ s' ─Gather(0)─▶ n ─Unsqueeze─┴─Concat─▶ t ─▶ Reshape(y, t)
//! After (x: [batch, 16, 1, 1]):
//!          c' = Constant [16] ────────────────────┐
//!          x ─Shape─▶ s' ─Gather(0)─▶ n ─Unsqueeze─┴─Concat─▶ t ─▶ Reshape(y, t)
//! ```
//!
//! Shape inference tracks the elements of small integer tensors
//! ([`crate::ir::values`]) dimension by dimension, so `Shape(x)[1]` is known
//! whatever the batch is. This pass replaces every node whose outputs are
//! fully known by `Constant` nodes with the same output names (so nothing
//! downstream is renamed), and removes what that leaves unused. A node whose
//! value depends on a symbolic dimension stays, with its known elements still
//! feeding shape inference. Semantics-preserving: the model computes the same
//! for every input its declared shapes allow. The pass only ever sees the
//! model's own declarations (commands fold before `--input-shape` applies), so
//! symbolic dimensions stay symbolic in a saved model.
//!
//! The pass `fold_shapes` runs the same in a pipeline.
//!
//! Left alone: nodes outside the default domain, nodes with subgraphs, nodes
//! already `Constant`, and values larger than [`values::MAX_ELEMS`].

use std::collections::HashSet;

use serde::Serialize;

use crate::error::Result;
use crate::ir::{values, Graph, Patch};
use crate::onnx::{a_tensor, make_node};
use crate::onnx::tensor::Tensor;

/// What folding did to a graph.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FoldReport {
    /// Shape computations replaced by a constant (each the result of a folded subgraph).
    pub folded: usize,
    /// Nodes gone in all (the folded ones and the `Shape`/`Gather`/... nodes that fed only them).
    pub removed_nodes: usize,
}

/// Nodes whose outputs are all known and small, and which something not
/// foldable (or a graph output) uses: these become constants. Each with the
/// constant tensors of its outputs.
fn frontier(g: &Graph) -> Vec<(petgraph::stable_graph::NodeIndex, Vec<Tensor>)> {
    let Ok(order) = g.toposort() else { return vec![] };
    let mut foldable: HashSet<petgraph::stable_graph::NodeIndex> = HashSet::new();
    let mut tensors = Vec::new();
    for ix in order {
        let n = g.node(ix);
        if !n.is_default_domain() || n.op() == "Constant" || n.proto.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty()) || n.proto.output.is_empty() {
            continue;
        }
        let mut outs = Vec::new();
        for o in &n.proto.output {
            let t = (!o.is_empty()).then(|| g.fact(o)).flatten().and_then(|f| {
                let v = values::known(f.value.as_deref()?)?;
                let dims: Vec<i64> = f.shape.as_deref()?.iter().map(|d| d.known()).collect::<Option<_>>()?;
                Tensor::from_ints(o, f.dtype?, &dims, &v)
            });
            match t {
                Some(t) => outs.push(t),
                None => break,
            }
        }
        if outs.len() == n.proto.output.len() {
            foldable.insert(ix);
            tensors.push((ix, outs));
        }
    }
    tensors
        .into_iter()
        .filter(|(ix, _)| {
            g.node(*ix).proto.output.iter().any(|o| g.is_graph_output(o) || g.consumers(o).iter().any(|(c, _)| !foldable.contains(c)))
        })
        .collect()
}

/// Replace every known shape computation by constants; returns what it did.
/// Only what the model's own declarations determine is folded: shapes given
/// with `--input-shape` (input overrides) are set aside while folding.
pub fn fold(g: &mut Graph) -> Result<FoldReport> {
    if g.input_overrides.is_empty() {
        return fold_declared(g);
    }
    let overrides = std::mem::take(&mut g.input_overrides);
    crate::ir::shape::infer(g)?;
    let r = fold_declared(g);
    g.input_overrides = overrides;
    crate::ir::shape::infer(g)?;
    r
}

fn fold_declared(g: &mut Graph) -> Result<FoldReport> {
    let front = frontier(g);
    if front.is_empty() {
        return Ok(FoldReport::default());
    }
    let nodes_before = g.g.node_count();
    let mut patch = Patch::default();
    let folded = front.len();
    for (ix, outs) in front {
        let pos = g.node(ix).pos;
        let label = g.node(ix).label();
        for t in outs {
            let out = t.name().to_string();
            let name = if g.node(ix).proto.output.len() == 1 { label.clone() } else { format!("{label}:{out}") };
            patch.add.push((make_node(&name, "Constant", &[], &[&out], vec![a_tensor("value", t.into_proto())]), pos));
        }
        patch.remove.push(ix);
    }
    let added = patch.add.len();
    patch.apply(g)?;
    let r = FoldReport { folded, removed_nodes: (nodes_before + added).saturating_sub(g.g.node_count()) };
    g.folded.folded += r.folded;
    g.folded.removed_nodes += r.removed_nodes;
    Ok(r)
}

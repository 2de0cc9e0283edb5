//! A `Patch` is the only way a pass mutates the graph: nodes to remove,
//! nodes to replace in place, nodes to add, new initializers, new values of
//! existing ones, new declarations of graph inputs and outputs. `apply`
//! rewires, checks for cycles and dangling inputs, sweeps what the patch made
//! dead (constants and side-effect-free nodes), and re-runs shape inference.

use std::collections::HashSet;

use petgraph::stable_graph::NodeIndex;

use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::onnx::{NodeProto, ValueInfoProto};
use crate::onnx::tensor::Tensor;

#[derive(Debug, Default, Clone)]
pub struct Patch {
    pub remove: Vec<NodeIndex>,
    pub replace: Vec<(NodeIndex, NodeProto)>,
    /// New nodes, each placed just after the given position key.
    pub add: Vec<(NodeProto, u64)>,
    pub initializers: Vec<Tensor>,
    /// New values of existing initializers (same name; dtype and shape may change).
    pub update: Vec<Tensor>,
    /// New declarations of graph inputs or outputs, by name. The value_info the
    /// model recorded for intermediate values was worked out from the old
    /// declarations: it is dropped, and inference recomputes what it can.
    pub declare: Vec<ValueInfoProto>,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.replace.is_empty() && self.add.is_empty() && self.initializers.is_empty() && self.update.is_empty() && self.declare.is_empty()
    }

    pub fn apply(self, g: &mut Graph) -> Result<()> {
        let mut candidates: HashSet<String> = HashSet::new();
        for &ix in self.remove.iter().chain(self.replace.iter().map(|(ix, _)| ix)) {
            let n = g.g.node_weight(ix).ok_or_else(|| Error::InvalidGraph("patch names a node that is gone".into()))?;
            candidates.extend(n.proto.input.iter().filter(|s| !s.is_empty()).cloned());
        }
        for t in self.initializers {
            let name = t.name().to_string();
            if g.initializers.contains_key(&name) {
                return Err(Error::tensor(name, "patch adds an initializer whose name is taken"));
            }
            g.initializers.insert(name, t);
        }
        for t in self.update {
            let slot = g.initializers.get_mut(t.name()).ok_or_else(|| Error::tensor(t.name(), "patch updates an initializer that does not exist"))?;
            *slot = t;
        }
        if !self.declare.is_empty() {
            for vi in self.declare {
                let Some(slot) = g.inputs.iter_mut().chain(g.outputs.iter_mut()).find(|v| v.name() == vi.name()) else {
                    return Err(Error::InvalidGraph(format!("patch declares '{}', which is not a graph input or output", vi.name())));
                };
                *slot = vi;
            }
            g.recorded.clear();
        }
        for (ix, proto) in self.replace {
            if let Some(n) = g.g.node_weight_mut(ix) {
                n.proto = proto;
            }
        }
        for ix in self.remove {
            g.g.remove_node(ix);
        }
        for (proto, after) in self.add {
            let pos = g.pos_after(after);
            g.add_node(proto, pos);
        }
        g.rebuild()?;
        g.toposort()?;
        sweep(g, candidates)?;
        crate::ir::shape::infer(g)?;
        Ok(())
    }
}

/// Could this node go without changing what the graph computes, once nothing
/// reads its outputs? Standard ops without subgraphs have no side effects.
fn is_pure(n: &crate::ir::Node) -> bool {
    n.is_default_domain() && !n.proto.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty())
}

/// Remove initializers and nodes among the producers of `candidates` that
/// nothing uses any more (transitively): constants, and any standard op whose
/// outputs the patch left unread (the `Shape` → `Gather` chains a fold replaced).
pub fn sweep(g: &mut Graph, mut candidates: HashSet<String>) -> Result<()> {
    loop {
        let mut changed = false;
        let mut next = HashSet::new();
        for v in candidates.drain() {
            if !g.consumers(&v).is_empty() || g.is_graph_output(&v) {
                continue;
            }
            if g.is_overridable(&v) {
                // part of the model's interface: a caller may still feed it
                continue;
            }
            if g.initializers.contains_key(&v) {
                g.initializers.shift_remove(&v);
                changed = true;
            } else if let Some((ix, _)) = g.producer(&v) {
                let all_dead = g.g[ix].proto.output.iter().all(|o| g.consumers(o).is_empty() && !g.is_graph_output(o));
                if all_dead && (g.is_const_node(ix) || is_pure(&g.g[ix])) {
                    next.extend(g.g[ix].proto.input.iter().filter(|s| !s.is_empty()).cloned());
                    g.g.remove_node(ix);
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(());
        }
        g.rebuild()?;
        candidates = next;
    }
}

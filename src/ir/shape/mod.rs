//! Shape and dtype inference for the ops of mobile CNNs. Ops we do not know
//! keep the shapes recorded in the model's value_info (or stay unknown).
//! The driver is here; the rule of each op is in `rules.rs`.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ir::op::MAX_DIM;
pub use crate::ir::values::ValueFact;
use crate::ir::{values, Graph, Node};
use crate::onnx::{self, Dim};

mod quant;
mod rules;
use rules::{infer_node, KNOWN_OPS};

/// Where shape inference stopped for a value whose shape is not fully known:
/// the first node on its way that could not work out a dimension, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeStop {
    pub node: String,
    pub op: String,
    pub reason: String,
}

impl std::fmt::Display for ShapeStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inference stopped at '{}' ({}): {}", self.node, self.op, self.reason)
    }
}



pub(super) fn unknown() -> Dim {
    Dim::Sym(String::new())
}

thread_local! {
    static NODES_INFERRED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many node rules this thread has run since it started: a count of the
/// work inference does, which tests bound (linear, not quadratic, in the graph's
/// size) where a clock would depend on the machine.
pub fn nodes_inferred() -> u64 {
    NODES_INFERRED.with(|c| c.get())
}

/// Run inference over the whole graph in topological order.
pub fn infer(g: &mut Graph) -> Result<()> {
    let mut facts: HashMap<String, ValueFact> = HashMap::new();
    let kinds = [("graph input", &g.inputs), ("graph output", &g.outputs)];
    let declared = kinds.iter().flat_map(|(k, v)| v.iter().map(move |vi| (*k, vi))).chain(g.recorded.values().map(|vi| ("value", vi)));
    for (kind, vi) in declared {
        let (dt, shape) = onnx::value_info_type(vi);
        if let Some(s) = &shape
            && let Some((i, d)) = s.iter().enumerate().find_map(|(i, d)| d.known().filter(|&v| !(0..=MAX_DIM).contains(&v)).map(|v| (i, v))) {
                return Err(Error::InvalidGraph(format!(
                    "{kind} '{}' declares dimension {i} as {d} (a dimension is 0..={MAX_DIM}, or -1 / a name for a dynamic one)",
                    vi.name()
                )));
            }
        facts.insert(vi.name().to_string(), ValueFact::new(dt, shape));
    }
    for (name, shape) in &g.input_overrides {
        let f = facts.entry(name.clone()).or_default();
        f.shape = Some(shape.clone());
    }
    for (name, t) in &g.initializers {
        let mut f = ValueFact::new(Some(t.dtype()), Some(t.dims().iter().map(|&d| Dim::Known(d)).collect()));
        f.value = values::of_tensor(t);
        facts.insert(name.clone(), f);
    }
    let mut stops: HashMap<String, ShapeStop> = HashMap::new();
    for vi in &g.inputs {
        if let Some(f) = facts.get(vi.name()).filter(|f| !f.is_complete() && !g.initializers.contains_key(vi.name())) {
            let shape = f.shape.as_deref().map(onnx::fmt_shape).unwrap_or_else(|| "without a shape".into());
            stops.insert(vi.name().to_string(), ShapeStop { node: vi.name().to_string(), op: "graph input".into(), reason: format!("declared {shape}; give its size with --input-shape") });
        }
    }
    for ix in g.toposort()? {
        NODES_INFERRED.with(|c| c.set(c.get() + 1));
        let node = &g.g[ix];
        let ins: Vec<ValueFact> = node
            .proto
            .input
            .iter()
            .map(|i| if i.is_empty() { ValueFact::default() } else { facts.get(i).cloned().unwrap_or_default() })
            .collect();
        let mut outs = infer_node(g, node, &ins).map_err(|e| match e {
            Error::InvalidGraph(r) => Error::node(node.label(), r),
            other => other,
        })?;
        let vals = values::infer(g, node, &ins, &outs);
        for (slot, v) in vals.into_iter().enumerate() {
            if let (Some(v), Some(Some(f))) = (v, outs.get_mut(slot)) {
                f.value = Some(v);
            }
        }
        // why an output is incomplete: an incomplete input's reason, or this node's
        let blame = node.proto.input.iter().filter(|i| !i.is_empty()).find_map(|i| stops.get(i).cloned());
        for (slot, o) in node.proto.output.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            let recorded = facts.get(o).cloned().unwrap_or_default();
            let mut f = outs.get(slot).cloned().flatten().unwrap_or_default();
            if f.dtype.is_none() {
                f.dtype = recorded.dtype;
            }
            match (&f.shape, &recorded.shape) {
                (None, _) => f.shape = recorded.shape.clone(),
                (Some(ours), Some(rec)) if ours.len() == rec.len() => {
                    // keep symbolic names from the model where we only know "unknown"
                    let merged = ours
                        .iter()
                        .zip(rec)
                        .map(|(a, b)| match (a, b) {
                            (Dim::Sym(s), b) if s.is_empty() => b.clone(),
                            (a, _) => a.clone(),
                        })
                        .collect();
                    f.shape = Some(merged);
                }
                _ => {}
            }
            if let Some(d) = f.shape.as_ref().and_then(|s| s.iter().find_map(|d| d.known().filter(|&v| !(0..=MAX_DIM).contains(&v)))) {
                return Err(Error::node(node.label(), format!("output '{o}' would have dimension {d}, outside 0..={MAX_DIM}")));
            }
            if !f.is_complete() {
                let stop = blame.clone().unwrap_or_else(|| ShapeStop { node: node.label(), op: node.op().to_string(), reason: why_unknown(node, &f) });
                stops.insert(o.clone(), stop);
            }
            facts.insert(o.clone(), f);
        }
    }
    g.facts = facts;
    g.shape_stops = stops;
    Ok(())
}

fn why_unknown(node: &Node, f: &ValueFact) -> String {
    if !node.is_default_domain() && !quant::is_quant_op(node) {
        return format!("an op of domain '{}' has no shape rule", node.proto.domain());
    }
    if !KNOWN_OPS.contains(&node.op()) && !quant::is_quant_op(node) {
        return format!("fusec has no shape rule for {}", node.op());
    }
    match &f.shape {
        None => "its output shape depends on inputs whose values are not known before run time".into(),
        Some(s) => format!("output {} depends on values computed at run time", onnx::fmt_shape(s)),
    }
}


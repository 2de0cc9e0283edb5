//! The graph IR: ONNX nodes in a petgraph `StableDiGraph`, edges from
//! producer to consumer, initializers as [`Tensor`]s, and inferred value
//! facts (dtype and shape).
//!
//! Nodes keep their `NodeProto` (attributes, subgraphs, doc strings) so that
//! a load/save round trip without a pass is lossless; `pos` orders nodes so
//! the saved node list keeps the input's order.

pub mod fold;
pub(crate) mod op;
pub(crate) mod patch;
pub mod shape;
pub(crate) mod values;

use std::collections::{BinaryHeap, HashMap, HashSet};

use indexmap::IndexMap;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;

use crate::error::{Error, Result};
use crate::onnx::{self, Dim, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::onnx::tensor::Tensor;

pub use patch::Patch;
pub use values::ValueFact;

/// Limits that keep hostile models from making us hang or allocate wildly.
pub const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct Node {
    pub proto: NodeProto,
    /// Ordering key: the saved node list is a topological order that breaks
    /// ties by `pos`, so untouched graphs keep their node order.
    pub pos: u64,
}

impl Node {
    pub fn op(&self) -> &str {
        self.proto.op_type()
    }
    pub fn name(&self) -> &str {
        self.proto.name()
    }
    pub fn label(&self) -> String {
        onnx::node_label(&self.proto)
    }
    pub fn input(&self, i: usize) -> Option<&str> {
        self.proto.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }
    pub fn output(&self, i: usize) -> Option<&str> {
        self.proto.output.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }
    pub fn is_default_domain(&self) -> bool {
        matches!(self.proto.domain(), "" | "ai.onnx")
    }
}

/// An edge: output `src_slot` of the producer feeds input `dst_slot` of the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    pub src_slot: usize,
    pub dst_slot: usize,
}

/// A use of a value that is not an edge: a graph output or a reference from
/// inside a subgraph (If/Loop/Scan bodies see the outer scope).
pub const IMPLICIT_SLOT: usize = usize::MAX;

#[derive(Debug, Clone)]
pub struct Graph {
    pub g: StableDiGraph<Node, Wire>,
    pub initializers: IndexMap<String, Tensor>,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
    /// value_info entries from the model, by name (kept unless the value changes).
    pub recorded: IndexMap<String, ValueInfoProto>,
    /// Inferred dtype and shape of every value we could work out.
    pub facts: HashMap<String, ValueFact>,
    /// For every value whose shape is not fully known: where inference stopped.
    pub shape_stops: HashMap<String, shape::ShapeStop>,
    /// Shape computations folded into constants since loading.
    pub folded: fold::FoldReport,
    /// Everything else of the GraphProto (name, doc string, sparse initializers...).
    pub rest: GraphProto,
    pub opset: i64,
    /// Concrete shapes given by the user for graph inputs (for inference only;
    /// the saved model keeps its own declarations).
    pub input_overrides: HashMap<String, Vec<Dim>>,
    producer: HashMap<String, (NodeIndex, usize)>,
    consumers: HashMap<String, Vec<(NodeIndex, usize)>>,
    next_pos: u64,
}

/// Names used inside a subgraph that it does not define itself.
fn implicit_inputs(g: &GraphProto, out: &mut HashSet<String>) {
    let mut defined: HashSet<&str> = HashSet::new();
    for i in &g.input {
        defined.insert(i.name());
    }
    for t in &g.initializer {
        defined.insert(t.name());
    }
    for n in &g.node {
        for o in &n.output {
            defined.insert(o);
        }
    }
    for n in &g.node {
        for i in &n.input {
            if !i.is_empty() && !defined.contains(i.as_str()) {
                out.insert(i.clone());
            }
        }
        for a in &n.attribute {
            let mut inner = HashSet::new();
            for sg in a.g.iter().chain(a.graphs.iter()) {
                implicit_inputs(sg, &mut inner);
            }
            out.extend(inner.into_iter().filter(|s| !defined.contains(s.as_str())));
        }
    }
    for o in &g.output {
        if !defined.contains(o.name()) {
            out.insert(o.name().to_string());
        }
    }
}

/// The checks `Graph::rebuild` makes of the main graph, made of every subgraph
/// of `n` (recursively): names defined once, each node's inputs defined before
/// it (inside the subgraph or in an enclosing scope, which `rebuild` checks
/// for the names the subgraph leaves open), its outputs produced.
fn check_subgraphs(n: &NodeProto) -> Result<()> {
    for a in &n.attribute {
        for sg in a.g.iter().chain(a.graphs.iter()) {
            check_subgraph(n, a.name(), sg)?;
        }
    }
    Ok(())
}

fn check_subgraph(owner: &NodeProto, attr: &str, sg: &GraphProto) -> Result<()> {
    let at = || format!("{} (subgraph '{attr}')", onnx::node_label(owner));
    let open = {
        let mut s = HashSet::new();
        implicit_inputs(sg, &mut s);
        s
    };
    let mut defined: HashSet<&str> = HashSet::new();
    let names = sg.input.iter().map(|v| (v.name(), "input")).chain(sg.initializer.iter().map(|t| (t.name(), "initializer")));
    for (name, what) in names {
        if name.is_empty() {
            return Err(Error::node(at(), format!("a subgraph {what} has no name")));
        }
        if !defined.insert(name) {
            return Err(Error::node(at(), format!("'{name}' is defined more than once in the subgraph")));
        }
    }
    for node in &sg.node {
        for i in node.input.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(i.as_str()) && !open.contains(i) {
                return Err(Error::node(at(), format!("node {} reads '{i}' before the subgraph defines it", onnx::node_label(node))));
            }
        }
        check_subgraphs(node)?;
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            if !defined.insert(o) {
                return Err(Error::node(at(), format!("'{o}' is defined more than once in the subgraph")));
            }
        }
    }
    Ok(())
}

pub fn node_implicit_inputs(n: &NodeProto) -> HashSet<String> {
    let mut out = HashSet::new();
    for a in &n.attribute {
        for sg in a.g.iter().chain(a.graphs.iter()) {
            implicit_inputs(sg, &mut out);
        }
    }
    out
}

impl Graph {
    pub fn from_proto(gp: &GraphProto, opset: i64) -> Result<Graph> {
        if gp.node.len() > MAX_NODES {
            return Err(Error::Limit(format!("graph has {} nodes; the limit is {MAX_NODES}", gp.node.len())));
        }
        let mut initializers = IndexMap::new();
        for t in &gp.initializer {
            let name = t.name().to_string();
            if name.is_empty() {
                return Err(Error::InvalidGraph("an initializer has no name".into()));
            }
            let t = Tensor::from_proto(t.clone())?;
            if initializers.insert(name.clone(), t).is_some() {
                return Err(Error::tensor(name, "initializer defined twice"));
            }
        }
        // sparse initializers are read as the dense tensors they stand for (and saved dense)
        for sp in &gp.sparse_initializer {
            let t = Tensor::from_sparse(sp)?;
            let name = t.name().to_string();
            if name.is_empty() {
                return Err(Error::InvalidGraph("a sparse initializer has no name".into()));
            }
            if initializers.insert(name.clone(), t).is_some() {
                return Err(Error::tensor(name, "defined twice (as an initializer and a sparse initializer, or twice as a sparse one)"));
            }
        }
        // the fields the IR does not model (cloning all of `gp` would copy every node twice)
        let rest = GraphProto {
            name: gp.name.clone(),
            doc_string: gp.doc_string.clone(),
            quantization_annotation: gp.quantization_annotation.clone(),
            metadata_props: gp.metadata_props.clone(),
            ..Default::default()
        };
        let mut g = Graph {
            g: StableDiGraph::with_capacity(gp.node.len(), gp.node.len() * 2),
            initializers,
            inputs: gp.input.clone(),
            outputs: gp.output.clone(),
            recorded: gp.value_info.iter().map(|v| (v.name().to_string(), v.clone())).collect(),
            facts: HashMap::new(),
            shape_stops: HashMap::new(),
            folded: fold::FoldReport::default(),
            rest,
            opset,
            input_overrides: HashMap::new(),
            producer: HashMap::new(),
            consumers: HashMap::new(),
            next_pos: 0,
        };
        for n in &gp.node {
            let pos = g.next_pos;
            g.next_pos += 1 << 20;
            g.g.add_node(Node { proto: n.clone(), pos });
        }
        g.rebuild()?;
        g.toposort()?;
        shape::infer(&mut g)?;
        Ok(g)
    }

    /// Recompute producer/consumer maps and edges from node input/output names,
    /// checking that every used value is defined exactly once.
    pub fn rebuild(&mut self) -> Result<()> {
        self.producer.clear();
        self.consumers.clear();
        self.g.clear_edges();
        let mut graph_inputs: HashSet<&str> = HashSet::new();
        for v in &self.inputs {
            if v.name().is_empty() {
                return Err(Error::InvalidGraph("a graph input has no name".into()));
            }
            if !graph_inputs.insert(v.name()) {
                return Err(Error::InvalidGraph(format!("graph input '{}' is listed more than once", v.name())));
            }
        }
        for ix in self.g.node_indices() {
            let n = &self.g[ix];
            for (slot, o) in n.proto.output.iter().enumerate() {
                if o.is_empty() {
                    continue;
                }
                if self.producer.insert(o.clone(), (ix, slot)).is_some()
                    || graph_inputs.contains(o.as_str())
                    || self.initializers.contains_key(o)
                {
                    return Err(Error::node(n.label(), format!("output '{o}' is defined more than once")));
                }
            }
        }
        let mut edges = Vec::new();
        for ix in self.g.node_indices() {
            let n = &self.g[ix];
            for (slot, i) in n.proto.input.iter().enumerate() {
                if i.is_empty() {
                    continue;
                }
                self.consumers.entry(i.clone()).or_default().push((ix, slot));
                if let Some(&(src, src_slot)) = self.producer.get(i) {
                    edges.push((src, ix, Wire { src_slot, dst_slot: slot }));
                } else if !graph_inputs.contains(i.as_str()) && !self.initializers.contains_key(i) {
                    return Err(Error::node(n.label(), format!("input '{i}' is never produced (no node, graph input or initializer defines it)")));
                }
            }
            // subgraphs (If/Loop/Scan bodies) are checked as the main graph is; the outer
            // values they read order their node after the producers, as an input does
            check_subgraphs(&n.proto)?;
            for i in node_implicit_inputs(&n.proto) {
                if let Some(&(src, src_slot)) = self.producer.get(&i) {
                    edges.push((src, ix, Wire { src_slot, dst_slot: IMPLICIT_SLOT }));
                } else if !graph_inputs.contains(i.as_str()) && !self.initializers.contains_key(&i) {
                    return Err(Error::node(n.label(), format!("a subgraph reads '{i}', which nothing defines (no node, graph input or initializer, inside or outside it)")));
                }
                self.consumers.entry(i).or_default().push((ix, IMPLICIT_SLOT));
            }
        }
        for (a, b, w) in edges {
            self.g.add_edge(a, b, w);
        }
        for o in &self.outputs {
            let name = o.name();
            if !self.producer.contains_key(name) && !graph_inputs.contains(name) && !self.initializers.contains_key(name) {
                return Err(Error::InvalidGraph(format!("graph output '{name}' is never produced")));
            }
        }
        Ok(())
    }

    /// Node indices in a topological order, ties broken by `pos` (stable).
    pub fn toposort(&self) -> Result<Vec<NodeIndex>> {
        let mut indeg: HashMap<NodeIndex, usize> = HashMap::new();
        for ix in self.g.node_indices() {
            indeg.insert(ix, self.g.edges_directed(ix, petgraph::Direction::Incoming).count());
        }
        let mut heap: BinaryHeap<std::cmp::Reverse<(u64, usize)>> = BinaryHeap::new();
        for (&ix, &d) in &indeg {
            if d == 0 {
                heap.push(std::cmp::Reverse((self.g[ix].pos, ix.index())));
            }
        }
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
            let ix = NodeIndex::new(i);
            order.push(ix);
            for e in self.g.edges_directed(ix, petgraph::Direction::Outgoing) {
                let t = e.target();
                if let Some(d) = indeg.get_mut(&t) {
                    *d -= 1;
                    if *d == 0 {
                        heap.push(std::cmp::Reverse((self.g[t].pos, t.index())));
                    }
                }
            }
        }
        if order.len() != indeg.len() {
            let stuck = indeg
                .iter()
                .filter(|(ix, _)| !order.contains(ix))
                .map(|(ix, _)| self.g[*ix].label())
                .take(3)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::InvalidGraph(format!("the graph has a cycle (involving {stuck})")));
        }
        Ok(order)
    }

    /// Fix the shape of graph inputs for inference: `shape` applies to the
    /// named input, or to the first one when `name` is None. Symbolic batch
    /// dims not given stay symbolic.
    pub fn set_input_shape(&mut self, name: Option<&str>, shape: &[i64]) -> Result<()> {
        let real: Vec<String> = self.inputs.iter().map(|v| v.name().to_string()).filter(|n| !self.initializers.contains_key(n)).collect();
        let target = match name {
            Some(n) if real.iter().any(|r| r == n) => n.to_string(),
            Some(n) => return Err(Error::option("--input-shape", format!("the model has no input '{n}' (inputs: {})", real.join(", ")))),
            None => real.first().cloned().ok_or_else(|| Error::option("--input-shape", "the model has no inputs"))?,
        };
        if let Some(declared) = self.facts.get(&target).and_then(|f| f.shape.clone()) {
            if declared.len() != shape.len() {
                return Err(Error::option("--input-shape", format!("input '{target}' has rank {}, got {} dims", declared.len(), shape.len())));
            }
            for (d, &s) in declared.iter().zip(shape) {
                if d.known().is_some_and(|k| k != s) {
                    return Err(Error::option("--input-shape", format!("input '{target}' is declared {}, got {shape:?}", onnx::fmt_shape(&declared))));
                }
            }
        }
        if shape.iter().any(|&d| !(1..=op::MAX_DIM).contains(&d)) {
            return Err(Error::option("--input-shape", format!("dimensions must be between 1 and {}", op::MAX_DIM)));
        }
        self.input_overrides.insert(target, shape.iter().map(|&d| Dim::Known(d)).collect());
        shape::infer(self)
    }

    /// Structural checks (run after every pass): edges, acyclicity, shapes
    /// that infer, and every graph output keeping the shape the model declares.
    pub fn validate(&mut self) -> Result<()> {
        self.rebuild()?;
        self.toposort()?;
        shape::infer(self)?;
        for o in &self.outputs {
            let (_, declared) = onnx::value_info_type(o);
            if let (Some(d), Some(f)) = (declared, self.shape_of(o.name())) {
                let clash = d.len() != f.len() || d.iter().zip(f).any(|(a, b)| matches!((a.known(), b.known()), (Some(x), Some(y)) if x != y));
                if clash {
                    return Err(Error::ShapeMismatch { node: o.name().to_string(), expected: onnx::fmt_shape(&d), actual: onnx::fmt_shape(f) });
                }
            }
        }
        Ok(())
    }

    pub fn node(&self, ix: NodeIndex) -> &Node {
        &self.g[ix]
    }

    pub fn producer(&self, value: &str) -> Option<(NodeIndex, usize)> {
        self.producer.get(value).copied()
    }

    /// Nodes that read `value` (slot IMPLICIT_SLOT for subgraph references).
    pub fn consumers(&self, value: &str) -> &[(NodeIndex, usize)] {
        self.consumers.get(value).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn is_graph_output(&self, value: &str) -> bool {
        self.outputs.iter().any(|o| o.name() == value)
    }

    /// Every name in use (values, node names, initializers), for fresh names.
    pub fn used_names(&self) -> HashSet<String> {
        let mut s: HashSet<String> = self.initializers.keys().cloned().collect();
        for n in self.g.node_weights() {
            s.insert(n.proto.name().to_string());
            s.extend(n.proto.output.iter().cloned());
            s.extend(n.proto.input.iter().cloned());
        }
        s.extend(self.inputs.iter().map(|v| v.name().to_string()));
        s.extend(self.outputs.iter().map(|v| v.name().to_string()));
        s
    }

    /// Walk back from `value` through ops that only move elements
    /// ([`op::ELEMENT_MOVES`]): the producer of the first value that is not
    /// moved (if a node produces it), and that value.
    pub fn look_through(&self, value: &str) -> (Option<NodeIndex>, String) {
        let mut v = value.to_string();
        for _ in 0..64 {
            match self.producer(&v) {
                Some((ix, _)) if op::ELEMENT_MOVES.contains(&self.g[ix].op()) => match self.g[ix].input(0) {
                    Some(i) => v = i.to_string(),
                    None => return (Some(ix), v),
                },
                Some((ix, _)) => return (Some(ix), v),
                None => return (None, v),
            }
        }
        (None, v)
    }

    pub fn fact(&self, value: &str) -> Option<&ValueFact> {
        self.facts.get(value)
    }

    pub fn shape_of(&self, value: &str) -> Option<&[Dim]> {
        self.facts.get(value).and_then(|f| f.shape.as_deref())
    }

    /// The constant tensor behind a value: an initializer, a `Constant` node,
    /// or an `Identity` chain aliasing either (as PyTorch and Paddle exports do).
    pub fn const_tensor(&self, value: &str) -> Option<Tensor> {
        self.const_tensor_depth(value, 0)
    }

    fn const_tensor_depth(&self, value: &str, depth: usize) -> Option<Tensor> {
        // bounded: a hostile chain of aliases must not recurse without end
        if depth > 64 {
            return None;
        }
        let mut name = value.to_string();
        for _ in 0..64 {
            if let Some(t) = self.initializers.get(&name) {
                // an initializer that is also a graph input is a default the caller may replace
                return (!self.is_overridable(&name)).then(|| t.clone());
            }
            let (ix, _) = self.producer(&name)?;
            let n = &self.g[ix];
            match n.op() {
                "Identity" => name = n.input(0)?.to_string(),
                "Constant" => return constant_node_value(&n.proto),
                // pure data movement of a constant (Paddle reshapes SE biases this way)
                "Reshape" | "Unsqueeze" | "Squeeze" | "Flatten" if n.is_default_domain() => {
                    let src = self.const_tensor_depth(n.input(0)?, depth + 1)?;
                    let shape = self.shape_of(&name)?;
                    let dims: Option<Vec<i64>> = shape.iter().map(|d| d.known()).collect();
                    let dims = dims?;
                    if dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d)) != Some(src.len() as i64) {
                        return None;
                    }
                    let mut p = src.into_proto();
                    p.dims = dims;
                    p.name = Some(name.clone());
                    return Tensor::from_proto(p).ok();
                }
                _ => return None,
            }
        }
        None
    }

    /// An initializer that is also a graph input: a default value that a caller
    /// may override at run time, so not a constant (ONNX IR ≥ 4).
    pub fn is_overridable(&self, value: &str) -> bool {
        self.initializers.contains_key(value) && self.inputs.iter().any(|i| i.name() == value)
    }

    /// A weight: a constant, or a constant behind a DequantizeLinear (QDQ models
    /// keep integer weights and dequantize them in the graph).
    pub fn is_weight(&self, value: &str) -> bool {
        if self.is_const(value) {
            return true;
        }
        let Some((ix, _)) = self.producer(value) else { return false };
        let n = &self.g[ix];
        n.op() == "DequantizeLinear" && n.is_default_domain() && n.input(0).is_some_and(|w| self.is_const(w))
    }

    pub fn is_const(&self, value: &str) -> bool {
        self.const_tensor(value).is_some()
    }

    /// Nodes that would be dead if nothing used them any more: `Constant`
    /// nodes, `Identity` aliases of constants.
    pub fn is_const_node(&self, ix: NodeIndex) -> bool {
        let n = &self.g[ix];
        match n.op() {
            "Constant" => true,
            "Identity" | "Reshape" | "Unsqueeze" | "Squeeze" | "Flatten" => n.output(0).is_some_and(|o| self.is_const(o)),
            _ => false,
        }
    }

    pub fn add_node(&mut self, proto: NodeProto, pos: u64) -> NodeIndex {
        self.g.add_node(Node { proto, pos })
    }

    /// A position just after `after` (for nodes inserted by a pass).
    pub fn pos_after(&mut self, after: u64) -> u64 {
        // positions step by 2^20 between original nodes; new ones fill the gap
        self.next_pos += 1;
        after + 1 + (self.next_pos % ((1 << 20) - 2))
    }

    /// Serialise back to a GraphProto: nodes in (stable) topological order,
    /// initializers in order, value_info refreshed for values whose inferred
    /// shape differs from what was recorded.
    pub fn to_proto(&self) -> Result<GraphProto> {
        let mut gp = self.rest.clone();
        for ix in self.toposort()? {
            gp.node.push(self.g[ix].proto.clone());
        }
        gp.initializer = self.initializers.values().map(|t| t.proto().clone()).collect::<Vec<TensorProto>>();
        gp.input = self.inputs.clone();
        gp.output = self.outputs.clone();
        let live: HashSet<&str> = self.g.node_weights().flat_map(|n| n.proto.output.iter().map(String::as_str)).collect();
        for (name, vi) in &self.recorded {
            if !live.contains(name.as_str()) {
                continue;
            }
            let (rdt, rshape) = onnx::value_info_type(vi);
            match self.facts.get(name) {
                Some(f) if shape_changed(rshape.as_deref(), f.shape.as_deref()) => {
                    let dt = f.dtype.or(rdt).unwrap_or(onnx::dtype::FLOAT);
                    gp.value_info.push(onnx::make_value_info(name, dt, f.shape.as_deref().or(rshape.as_deref())));
                }
                _ => gp.value_info.push(vi.clone()),
            }
        }
        Ok(gp)
    }
}

/// Does an inferred shape contradict the recorded one (rank or a known dim)?
fn shape_changed(recorded: Option<&[Dim]>, inferred: Option<&[Dim]>) -> bool {
    match (recorded, inferred) {
        (Some(r), Some(i)) => r.len() != i.len() || r.iter().zip(i).any(|(a, b)| matches!((a.known(), b.known()), (Some(x), Some(y)) if x != y)),
        _ => false,
    }
}

/// The tensor a `Constant` node produces (value, or value_float(s)/value_int(s)).
pub fn constant_node_value(n: &NodeProto) -> Option<Tensor> {
    let out = n.output.first()?.clone();
    for a in &n.attribute {
        match a.name() {
            "value" => {
                let mut t = a.t.clone()?;
                t.name = Some(out.clone());
                return Tensor::from_proto(t).ok();
            }
            "value_float" => return Some(Tensor::from_f32(&out, &ndarray::arr0(a.f?).into_dyn())),
            "value_floats" => {
                let v = ndarray::Array1::from(a.floats.clone()).into_dyn();
                return Some(Tensor::from_f32(&out, &v));
            }
            "value_int" => return Some(Tensor::from_i64(&out, &[], &[a.i?])),
            "value_ints" => return Some(Tensor::from_i64(&out, &[a.ints.len() as i64], &a.ints)),
            _ => {}
        }
    }
    None
}

/// Load a model file into the IR the way every command does: decode, build
/// the graph, infer shapes, and fold the shape computations the model's own
/// declarations determine ([`fold`]).
pub fn load_graph(path: &std::path::Path) -> Result<(onnx::Model, Graph)> {
    let model = onnx::load(path)?;
    let gp = model.graph()?;
    let mut graph = Graph::from_proto(gp, model.opset()).map_err(|e| e.in_file(path))?;
    fold::fold(&mut graph).map_err(|e| e.in_file(path))?;
    Ok((model, graph))
}

/// A model in memory with its shape computations folded (the proto is rewritten
/// only if something folded). For commands that hand the model to a runtime.
pub fn fold_model(model: &mut onnx::ModelProto) -> Result<fold::FoldReport> {
    let Some(gp) = model.graph.as_ref() else { return Ok(fold::FoldReport::default()) };
    let mut g = Graph::from_proto(gp, onnx::opset_of(model))?;
    let r = fold::fold(&mut g)?;
    if r.folded > 0 {
        model.graph = Some(g.to_proto()?);
    }
    Ok(r)
}

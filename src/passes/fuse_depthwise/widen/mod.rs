//! Full's widening: the 2C tensor a Full block produces (layout [1×K branch;
//! K×1 branch]) is carried forward through channel-wise consumers until the
//! ops that mix channels, and every op on the way is edited to work on 2C
//! channels. Rules, by consumer:
//!
//! | consumer | edit |
//! |---|---|
//! | activations, pooling, Identity, Dropout, Clip (constant bounds) | none |
//! | BatchNormalization, InstanceNormalization | per-channel parameters duplicated |
//! | Add/Sub/Mul/Div/Pow/Max/Min/PRelu | a per-channel constant duplicated; the output of another depthwise conv the pass converts: that conv becomes a Full block in the same rewrite; any other tensor not widened is duplicated with a Concat (each branch gets the same operand, so a residual Add stays a residual) |
//! | Reduce* over spatial axes, Flatten/Reshape of a pooled vector | a target with C at the channel position becomes 2C (a constant, or the constant part of a computed `Concat`) |
//! | Expand | its shape, likewise |
//! | Shape | nothing: at run time it reads 2C; every use of the channel element must be a Reshape/Expand of a widened tensor |
//! | a depthwise Conv the pass converts too | converted in the same rewrite: 1×K on the first C channels, K×1 on the second ([`Layout::Widened`]) |
//! | any other depthwise Conv | weights and bias duplicated, group 2C |
//! | pointwise Conv / Gemm / MatMul | input weights duplicated and halved: the mean of the two branches |
//! | the same inside squeeze-excite | the 2×2 block matrix [[W/2, W/2], [W/2, W/2]], bias duplicated: SE over 2C with doubled hidden width |
//!
//! | Transpose | none: the channel axis moves with the permutation (TensorFlow exports run activations and squeeze-excite in NHWC) |
//! | QuantizeLinear / DequantizeLinear with one scale | none; a weight (bias) behind a DequantizeLinear is widened as integers on its grid ([`quantized`]) |
//! | QLinearConv | as Conv, on its integer weight, scales and int32 bias ([`quantized`]) |
//! | QLinearAdd / QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool, QLinearSigmoid, QLinearLeakyRelu (`com.microsoft`) with per-tensor scales | as their float ops (integer constants duplicated as integers) |
//!
//! Ops with a fixed channel axis (BN, pooling, Conv, Reshape) need it at 1,
//! Gemm/MatMul at the last axis. Anything else (Concat or Split on channels,
//! a graph output, a use inside a subgraph) leaves the layer unconverted,
//! with the reason. The traversal is here; the per-op edits are in `edits.rs`.
//! Planning is read-only: it returns the edits and new nodes, and reserves
//! names only in the [`Names`] it is given (the caller keeps them only when
//! it applies the plan).

use std::collections::{HashMap, HashSet, VecDeque};

use ndarray::{concatenate, ArrayD, Axis};
use petgraph::stable_graph::NodeIndex;

use crate::ir::{Graph, IMPLICIT_SLOT};
use crate::onnx::{a_int, attr_int, attr_ints, make_node, Dim, NodeProto};
use crate::passes::fuse_depthwise::{Layout, Names};
use crate::onnx::tensor::Tensor;

mod edits;
mod quantized;

/// Node edits that widen everything downstream of a Full block.
pub struct WidenPlan {
    /// Other depthwise convs converted in the same rewrite: reached by the
    /// region (their input is widened: [`Layout::Widened`]), or summed with it
    /// ([`Layout::Full`]).
    pub joined: Vec<(NodeIndex, Layout)>,
    pub edits: Vec<(NodeIndex, NodeProto)>,
    /// New nodes (duplicated operands, recomputed shape tensors), each placed
    /// with the position key of the node it feeds.
    pub adds: Vec<(NodeProto, u64)>,
    pub initializers: Vec<Tensor>,
    /// widened values: their original channel count and channel axis
    pub widened: HashMap<String, Wide>,
    pub added_params: i64,
}

type Plan<T> = std::result::Result<T, String>;

/// A widened value: `c` channels became 2C along `axis` (1 in NCHW; a
/// Transpose moves it, as TensorFlow exports do around NHWC ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wide {
    pub c: i64,
    pub axis: usize,
}

fn dup_axis(a: &ArrayD<f32>, axis: usize, scale: f32) -> Plan<ArrayD<f32>> {
    let h = a.mapv(|v| v * scale);
    concatenate(Axis(axis), &[h.view(), h.view()]).map_err(|e| e.to_string())
}

struct Planner<'a> {
    g: &'a Graph,
    names: &'a mut Names,
    /// Depthwise convs that may be converted together with this one.
    joinable: &'a dyn Fn(NodeIndex) -> bool,
    joined: Vec<(NodeIndex, Layout)>,
    widened: HashMap<String, Wide>,
    queue: VecDeque<(String, Wide)>,
    edits: HashMap<NodeIndex, NodeProto>,
    adds: Vec<(NodeProto, u64)>,
    inits: Vec<Tensor>,
    /// (node, input slot, channel axis, c): operands that are neither constant
    /// nor (yet) widened; duplicated once the region is known unless widened by then
    operands: Vec<(NodeIndex, usize, usize, i64)>,
    /// (node, shape input slot, channel position in the shape, c): shape
    /// elements computed at run time; they must come from a widened tensor's Shape
    runtime_shapes: Vec<(NodeIndex, usize, usize, i64)>,
    /// Shape nodes reading a widened tensor, with its channel axis
    shape_reads: Vec<(NodeIndex, usize)>,
    added: i64,
}

/// Plan the Full widening from `start` (the Concat output with 2C channels).
/// `joinable` says which other depthwise convs may be converted in the same
/// rewrite (selected, convertible, not yet converted).
pub fn plan_widen(g: &Graph, start: &str, c: i64, names: &mut Names, joinable: &dyn Fn(NodeIndex) -> bool) -> Plan<WidenPlan> {
    let mut p = Planner {
        g,
        names,
        joinable,
        joined: vec![],
        widened: HashMap::new(),
        queue: VecDeque::new(),
        edits: HashMap::new(),
        adds: vec![],
        inits: vec![],
        operands: vec![],
        runtime_shapes: vec![],
        shape_reads: vec![],
        added: 0,
    };
    let w = Wide { c, axis: 1 };
    p.widened.insert(start.to_string(), w);
    p.queue.push_back((start.to_string(), w));
    let mut visited: HashSet<NodeIndex> = HashSet::new();
    // bounded: a region larger than the graph means something is wrong
    let mut budget = g.g.node_count() * 4 + 16;
    loop {
        p.flood(&mut visited, &mut budget)?;
        // an operand that is the output of another selected depthwise conv: convert
        // that one as a Full block too, and widen from its output
        if !p.join_siblings() {
            break;
        }
    }
    p.finish()
}

impl Planner<'_> {
    fn flood(&mut self, visited: &mut HashSet<NodeIndex>, budget: &mut usize) -> Plan<()> {
        let g = self.g;
        let p = self;
        while let Some((v, w)) = p.queue.pop_front() {
        if g.is_graph_output(&v) {
            return Err(format!("'{v}' is a graph output"));
        }
        for &(ix, slot) in g.consumers(&v) {
            *budget = budget.checked_sub(1).ok_or("widening did not terminate")?;
            if slot == IMPLICIT_SLOT {
                return Err(format!("'{v}' is used inside the subgraph of '{}'", g.node(ix).label()));
            }
            if !visited.insert(ix) {
                continue;
            }
            let out = p.consumer(ix, slot, &v, w)?;
            if let (Some(ow), Some(o)) = (out, g.node(ix).output(0))
                && !p.widened.contains_key(o)
            {
                p.widened.insert(o.to_string(), ow);
                p.queue.push_back((o.to_string(), ow));
            }
        }
        }
        Ok(())
    }

    fn join_siblings(&mut self) -> bool {
        let g = self.g;
        let mut any = false;
        for &(ix, slot, axis, c) in &self.operands {
            let other = &g.node(ix).proto.input[slot];
            if self.widened.contains_key(other) {
                continue;
            }
            // a depthwise conv's output is NCHW: joinable where the operand's channel axis is 1
            if let Some((d, 0)) = g.producer(other)
                && axis == 1
                && (self.joinable)(d)
                && !self.joined.iter().any(|(j, _)| *j == d)
            {
                self.joined.push((d, Layout::Full));
                let w = Wide { c, axis: 1 };
                self.widened.insert(other.clone(), w);
                self.queue.push_back((other.clone(), w));
                any = true;
            }
        }
        any
    }

    /// The edited copy of a node (the first edit starts from the original).
    fn edit(&mut self, ix: NodeIndex) -> &mut NodeProto {
        let g = self.g;
        self.edits.entry(ix).or_insert_with(|| g.node(ix).proto.clone())
    }

    fn new_const(&mut self, base: &str, a: &ArrayD<f32>) -> String {
        let nm = self.names.fresh(&format!("{base}.fuse.wide"));
        self.inits.push(Tensor::from_f32(&nm, a));
        nm
    }

    fn const_f32(&self, name: &str, label: &str) -> Plan<ArrayD<f32>> {
        let t = self.g.const_tensor(name).ok_or_else(|| format!("'{label}' input '{name}' is not constant"))?;
        t.to_f32().map_err(|e| format!("'{label}' input '{name}': {e}"))
    }

    /// Widen consumer `ix`, which reads the widened value `v` at `slot`.
    /// Returns how its output is widened, `None` if the node mixes channels
    /// (the region ends there).
    fn consumer(&mut self, ix: NodeIndex, slot: usize, v: &str, w: Wide) -> Plan<Option<Wide>> {
        let g = self.g;
        let n = g.node(ix);
        let label = n.label();
        let Wide { c, axis } = w;
        let rank = g.shape_of(v).map(<[Dim]>::len).unwrap_or(4);
        let nchw = |what: &str| if axis == 1 { Ok(()) } else { Err(format!("'{label}' ({what}) needs channels on axis 1; they are on axis {axis}")) };
        match (n.op(), slot) {
            ("Relu" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "LeakyRelu" | "Elu" | "Selu" | "Identity" | "Softplus" | "Gelu" | "Erf"
            | "Neg" | "Abs" | "Sqrt" | "Exp" | "Mish" | "Cast", 0) => Ok(Some(w)),
            ("GlobalAveragePool" | "GlobalMaxPool" | "AveragePool", 0) => nchw(n.op()).map(|_| Some(w)),
            ("MaxPool", 0) if n.output(1).is_some() => Err(format!("'{label}' returns indices")),
            ("MaxPool", 0) => nchw("MaxPool").map(|_| Some(w)),
            ("Clip", 0) if (1..3).any(|i| n.input(i).is_some_and(|m| !g.is_const(m))) => Err(format!("'{label}' clips with non-constant bounds")),
            ("Clip", 0) => Ok(Some(w)),
            ("Dropout", 0) if n.output(1).is_some_and(|m| !g.consumers(m).is_empty()) => Err(format!("the mask of '{label}' is used")),
            ("Dropout", 0) => Ok(Some(w)),
            ("BatchNormalization" | "InstanceNormalization", 0) => {
                nchw(n.op())?;
                self.per_channel_params(ix, c).map(|_| Some(w))
            }
            ("Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "PRelu", _) => self.elementwise(ix, slot, rank, w).map(|_| Some(w)),
            ("ReduceMean" | "ReduceMax" | "ReduceSum" | "ReduceL2", 0) => {
                let axes = attr_ints(&n.proto, "axes").or_else(|| n.input(1).and_then(|a| g.fact(a)).and_then(|f| f.value.as_deref()).and_then(crate::ir::values::known));
                let keep = attr_int(&n.proto, "keepdims").unwrap_or(1) != 0;
                let r = rank as i64;
                let Some(axes) = axes.filter(|a| !a.is_empty()) else { return Err(format!("'{label}' reduces over every axis (or its axes are unknown)")) };
                let axes: Vec<usize> = axes.iter().map(|&x| (if x < 0 { x + r } else { x }) as usize).collect();
                if axes.contains(&axis) {
                    return Err(format!("'{label}' reduces over the channel axis"));
                }
                let shift = if keep { 0 } else { axes.iter().filter(|&&x| x < axis).count() };
                Ok(Some(Wide { c, axis: axis - shift }))
            }
            ("Transpose", 0) => {
                let perm = attr_ints(&n.proto, "perm").unwrap_or_else(|| (0..rank as i64).rev().collect());
                let to = perm.iter().position(|&p| p == axis as i64).ok_or_else(|| format!("'{label}' perm {perm:?} drops the channel axis"))?;
                Ok(Some(Wide { c, axis: to }))
            }
            ("Flatten", 0) => {
                nchw("Flatten")?;
                let ok = attr_int(&n.proto, "axis").unwrap_or(1) == 1 && g.shape_of(v).is_some_and(|s| s.iter().skip(2).all(|d| *d == Dim::Known(1)));
                if ok { Ok(Some(w)) } else { Err(format!("'{label}' flattens spatial positions into channels")) }
            }
            ("Reshape", 0) => {
                nchw("Reshape")?;
                let xs = g.shape_of(v).ok_or_else(|| format!("'{label}' input shape unknown"))?;
                let target = n.input(1).and_then(|t| g.fact(t)).and_then(|f| f.value.clone()).ok_or_else(|| format!("'{label}' reshapes to a shape fusec cannot evaluate"))?;
                let spatial_one = xs.iter().skip(2).all(|d| *d == Dim::Known(1));
                let tail_one = target.iter().skip(2).all(|d| *d == Dim::Known(1));
                if !spatial_one || !tail_one || target.len() < 2 {
                    return Err(format!("'{label}' reshape {} mixes channels with other axes", crate::onnx::fmt_shape(&target)));
                }
                self.shape_input(ix, 1, 1, c, &[-1, 0])?;
                Ok(Some(w))
            }
            ("Expand", 0) => {
                let target = n.input(1).and_then(|t| g.fact(t)).and_then(|f| f.value.clone()).ok_or_else(|| format!("'{label}' expands to a shape fusec cannot evaluate"))?;
                let pos = (target.len() + axis).checked_sub(rank).ok_or_else(|| format!("'{label}' expands to a lower rank"))?;
                self.shape_input(ix, 1, pos, c, &[1])?;
                Ok(Some(Wide { c, axis: pos }))
            }
            ("Shape", 0) => {
                self.shape_reads.push((ix, axis));
                Ok(None)
            }
            ("QuantizeLinear" | "DequantizeLinear", 0) if n.is_default_domain() => self.quantize_pass(&label, n.input(1)).map(|_| Some(w)),
            ("Conv", 0) | ("QLinearConv", 0) if n.is_default_domain() => {
                nchw(n.op())?;
                if n.op() == "QLinearConv" {
                    self.per_tensor_slots(&label, n, &[1, 2, 6, 7])?;
                }
                Ok(self.conv(ix, c)?.map(|c| Wide { c, axis: 1 }))
            }
            // QOperator ops of ONNX Runtime on the widened integers, all scales per tensor
            ("QLinearAdd" | "QLinearMul", 0 | 3) if n.proto.domain() == "com.microsoft" => {
                self.per_tensor_slots(&label, n, &[1, 2, 4, 5, 6, 7])?;
                self.elementwise(ix, slot, rank, w).map(|_| Some(w))
            }
            ("QLinearGlobalAveragePool" | "QLinearAveragePool", 0) if n.proto.domain() == "com.microsoft" => {
                if attr_int(&n.proto, "channels_last").unwrap_or(0) != 0 {
                    if axis + 1 != rank {
                        return Err(format!("'{label}' (channels last) needs channels on the last axis; they are on axis {axis}"));
                    }
                } else {
                    nchw(n.op())?;
                }
                self.per_tensor_slots(&label, n, &[1, 2, 3, 4])?;
                Ok(Some(w))
            }
            ("QLinearSigmoid" | "QLinearLeakyRelu", 0) if n.proto.domain() == "com.microsoft" => {
                self.per_tensor_slots(&label, n, &[1, 2, 3, 4])?;
                Ok(Some(w))
            }
            ("Gemm" | "MatMul", 0) => {
                if axis + 1 != rank {
                    return Err(format!("'{label}' contracts its last axis; the channels are on axis {axis}"));
                }
                Ok(self.matmul(ix, c)?.map(|c| Wide { c, axis }))
            }
            (op, _) => Err(format!("consumer '{label}' ({op}) cannot be widened")),
        }
    }

    /// After the region is known: duplicate operands still not widened, and
    /// check that run-time shapes and Shape reads only feed widened tensors.
    fn finish(mut self) -> Plan<WidenPlan> {
        let g = self.g;
        let operands = std::mem::take(&mut self.operands);
        for (ix, slot, axis, _c) in operands {
            let other = g.node(ix).proto.input[slot].clone();
            if self.widened.contains_key(&other) {
                continue;
            }
            let out = self.names.fresh(&format!("{other}.fuse.dup"));
            let name = self.names.fresh(&format!("{}.fuse.dup", g.node(ix).label()));
            self.adds.push((make_node(&name, "Concat", &[&other, &other], &[&out], vec![a_int("axis", axis as i64)]), g.node(ix).pos));
            self.edit(ix).input[slot] = out;
        }
        let reads: HashSet<String> = self.shape_reads.iter().filter_map(|&(ix, _)| g.node(ix).output(0).map(str::to_string)).collect();
        for (ix, slot, pos, c) in std::mem::take(&mut self.runtime_shapes) {
            let s = g.node(ix).proto.input[slot].clone();
            if channel_from_reads(g, &s, pos, &reads) {
                continue; // read from a widened tensor: 2C at run time
            }
            if g.fact(&s).and_then(|f| f.value.as_ref()).and_then(|v| v.get(pos)) == Some(&Dim::Known(c)) {
                let new = self.shape_with(&s, pos, 2 * c, g.node(ix).pos)?;
                self.edit(ix).input[slot] = new;
                continue;
            }
            return Err(format!("'{}' takes the channel count of its shape from '{s}', computed at run time from something other than the widened tensor", g.node(ix).label()));
        }
        for &(ix, axis) in &self.shape_reads {
            self.check_shape_read(ix, axis)?;
        }
        Ok(WidenPlan { joined: self.joined, edits: self.edits.into_iter().collect(), adds: self.adds, initializers: self.inits, widened: self.widened, added_params: self.added })
    }

    /// A Shape node reading a widened tensor gives 2C at run time: follow its
    /// channel element through shape arithmetic; it may only reach the shape
    /// input of a Reshape/Expand whose data is widened.
    fn check_shape_read(&self, ix: NodeIndex, axis: usize) -> Plan<()> {
        let g = self.g;
        let n = g.node(ix);
        let rank = n.input(0).and_then(|v| g.shape_of(v)).map(<[Dim]>::len).unwrap_or(4) as i64;
        let clampi = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank);
        let start = clampi(attr_int(&n.proto, "start").unwrap_or(0));
        let end = clampi(attr_int(&n.proto, "end").unwrap_or(rank));
        let axis = axis as i64;
        if !(start..end).contains(&axis) {
            return Ok(());
        }
        let Some(out) = n.output(0) else { return Ok(()) };
        let mut stack = vec![(out.to_string(), (axis - start) as usize)];
        let mut budget = 256;
        while let Some((v, pos)) = stack.pop() {
            for &(cix, slot) in g.consumers(&v) {
                budget -= 1;
                if budget == 0 {
                    return Err("the shape of the widened tensor is used too widely to check".into());
                }
                let c = g.node(cix);
                let label = c.label();
                let len_of = |name: &str| g.fact(name).and_then(|f| f.value.as_ref()).map(Vec::len);
                match c.op() {
                    "Gather" if slot == 0 => {
                        let idx = c.input(1).and_then(|i| g.fact(i)).and_then(|f| f.value.as_deref()).and_then(crate::ir::values::known);
                        let Some(idx) = idx else { return Err(format!("'{label}' picks from the widened tensor's shape with indices fusec cannot evaluate")) };
                        let n = len_of(&v).unwrap_or(0) as i64;
                        for (j, &i) in idx.iter().enumerate() {
                            if (if i < 0 { i + n } else { i }) == pos as i64 {
                                stack.push((c.output(0).unwrap_or_default().to_string(), j));
                            }
                        }
                    }
                    "Unsqueeze" | "Squeeze" | "Cast" | "Identity" if slot == 0 => stack.push((c.output(0).unwrap_or_default().to_string(), pos)),
                    "Concat" => {
                        let offset: usize = c.proto.input[..slot].iter().map(|p| len_of(p).unwrap_or(0)).sum();
                        stack.push((c.output(0).unwrap_or_default().to_string(), offset + pos));
                    }
                    "Slice" if slot == 0 => {
                        let ints = |i: usize| c.input(i).and_then(|x| g.fact(x)).and_then(|f| f.value.as_deref()).and_then(crate::ir::values::known);
                        let (Some(s), Some(e)) = (ints(1), ints(2)) else { return Err(format!("'{label}' slices the widened tensor's shape at run time")) };
                        let n = len_of(&v).unwrap_or(0) as i64;
                        let norm = |x: i64| (if x < 0 { x + n } else { x }).clamp(0, n);
                        let (s, e) = (norm(s[0]), norm(e[0]));
                        if c.input(4).is_some() && ints(4).is_none_or(|st| st != [1]) {
                            return Err(format!("'{label}' slices the widened tensor's shape with a step"));
                        }
                        if (s..e).contains(&(pos as i64)) {
                            stack.push((c.output(0).unwrap_or_default().to_string(), pos - s as usize));
                        }
                    }
                    "Reshape" | "Expand" if slot == 1 && c.input(0).is_some_and(|d| self.widened.contains_key(d)) => {}
                    op => return Err(format!("'{label}' ({op}) uses the channel count of the widened tensor")),
                }
            }
        }
        Ok(())
    }
}

/// Does element `pos` of shape tensor `s` come from one of the Shape `reads`
/// (through Concat / Unsqueeze / Gather / Cast)?
fn channel_from_reads(g: &Graph, s: &str, pos: usize, reads: &HashSet<String>) -> bool {
    if reads.contains(s) {
        return true;
    }
    let Some((ix, _)) = g.producer(s) else { return false };
    let n = g.node(ix);
    let len_of = |name: &str| g.fact(name).and_then(|f| f.value.as_ref()).map(Vec::len);
    match n.op() {
        "Unsqueeze" | "Squeeze" | "Cast" | "Identity" => n.input(0).is_some_and(|i| channel_from_reads(g, i, pos, reads)),
        "Concat" => {
            let mut offset = 0;
            for part in &n.proto.input {
                let Some(len) = len_of(part) else { return false };
                if (offset..offset + len).contains(&pos) {
                    return channel_from_reads(g, part, pos - offset, reads);
                }
                offset += len;
            }
            false
        }
        "Gather" => {
            let idx = n.input(1).and_then(|i| g.fact(i)).and_then(|f| f.value.as_deref()).and_then(crate::ir::values::known);
            match (idx, n.input(0)) {
                (Some(idx), Some(data)) => idx.get(pos).is_some_and(|&i| {
                    let len = len_of(data).unwrap_or(0) as i64;
                    let i = if i < 0 { i + len } else { i };
                    i >= 0 && channel_from_reads(g, data, i as usize, reads)
                }),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Does the output of channel-mixing node `ix` come back (within a few ops)
/// as a factor on a widened tensor? Then it is inside a squeeze-excite block.
fn is_squeeze_excite(g: &Graph, ix: NodeIndex, widened: &HashMap<String, Wide>) -> bool {
    let n = g.node(ix);
    // SE runs on a pooled vector: spatial dims all 1 (or a 2-D [N, C] tensor)
    let pooled = n.input(0).and_then(|i| g.shape_of(i)).is_some_and(|s| s.len() == 2 || s.iter().skip(2).all(|d| *d == Dim::Known(1)));
    if !pooled {
        return false;
    }
    let mut frontier: Vec<String> = n.proto.output.iter().filter(|o| !o.is_empty()).cloned().collect();
    // an SE gate is a few ops deep: FC, activation, FC, hard-sigmoid (up to
    // three ops decomposed), reshape, expand
    for _depth in 0..12 {
        let mut next = Vec::new();
        for v in &frontier {
            for &(cix, slot) in g.consumers(v) {
                if slot == IMPLICIT_SLOT {
                    continue;
                }
                let c = g.node(cix);
                if matches!(c.op(), "Mul" | "Add" | "Div" | "Sub" | "QLinearMul" | "QLinearAdd") && c.proto.input.iter().enumerate().any(|(i, x)| i != slot && widened.contains_key(x)) {
                    return true;
                }
                next.extend(c.proto.output.iter().filter(|o| !o.is_empty()).cloned());
            }
        }
        frontier = next;
    }
    false
}

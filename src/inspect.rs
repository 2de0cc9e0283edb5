//! `fusec inspect`: what a model contains and which depthwise convs can be converted.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::ir::Graph;
use crate::onnx::{self, fmt_shape, Model};
use crate::passes::fuse_depthwise::{depthwise_convs, Candidate};
use crate::stats::{node_macs, stats, Stats};

#[derive(Debug, Serialize)]
pub struct IoInfo {
    pub name: String,
    pub dtype: String,
    pub shape: String,
}

#[derive(Debug, Serialize)]
pub struct DwInfo {
    pub index: usize,
    pub node: String,
    pub input_shape: String,
    pub output_shape: String,
    pub kernel: String,
    pub stride: Vec<i64>,
    pub pads: String,
    pub params: u64,
    pub macs: Option<u64>,
    pub convertible: bool,
    pub reason: Option<String>,
}

/// Values whose shape inference could not complete, grouped by where it stopped.
#[derive(Debug, Serialize)]
pub struct UnknownShapes {
    /// The node (or graph input) where inference stopped.
    pub node: String,
    pub op: String,
    pub reason: String,
    /// How many values are incomplete because of it, and one of them.
    pub values: usize,
    pub example: String,
    pub example_shape: String,
}

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub path: String,
    pub ir_version: i64,
    pub opset: i64,
    pub producer: String,
    pub inputs: Vec<IoInfo>,
    pub outputs: Vec<IoInfo>,
    pub nodes: usize,
    pub ops: BTreeMap<String, usize>,
    pub totals: Stats,
    /// Shape computations folded into constants when the model was loaded.
    pub folded: crate::ir::fold::FoldReport,
    /// Dimensions left unknown after inference, by where inference stopped.
    pub unknown_shapes: Vec<UnknownShapes>,
    pub depthwise: Vec<DwInfo>,
}

fn io(g: &Graph, v: &onnx::ValueInfoProto) -> IoInfo {
    let (dt, shape) = onnx::value_info_type(v);
    let shape = shape.or_else(|| g.shape_of(v.name()).map(<[onnx::Dim]>::to_vec));
    IoInfo {
        name: v.name().to_string(),
        dtype: dt.map(onnx::dtype::name).unwrap_or("?").to_string(),
        shape: shape.map(|s| fmt_shape(&s)).unwrap_or_else(|| "?".into()),
    }
}

pub fn inspect(model: &Model, g: &Graph) -> Result<Inspection> {
    let mut ops = BTreeMap::new();
    for n in g.g.node_weights() {
        *ops.entry(n.op().to_string()).or_insert(0) += 1;
    }
    let mut depthwise = Vec::new();
    for c in depthwise_convs(g)? {
        let ix = c.node();
        let n = g.node(ix);
        let shape = |v: Option<&str>| v.and_then(|v| g.shape_of(v)).map(fmt_shape).unwrap_or_else(|| "?".into());
        let w = crate::ir::op::array_op(n).and_then(|a| g.shape_of(a.w)).map(<[onnx::Dim]>::to_vec).unwrap_or_default();
        let kernel = if w.len() == 4 { format!("{}x{}", w[2], w[3]) } else { "?".into() };
        let params = crate::stats::node_params(g, ix);
        let pads = match onnx::attr_string(&n.proto, "auto_pad").filter(|a| a != "NOTSET") {
            Some(a) => a,
            None => format!("{:?}", onnx::attr_ints(&n.proto, "pads").unwrap_or_else(|| vec![0; 4])),
        };
        let (convertible, reason) = match &c {
            Candidate::Convertible(_) => (true, None),
            Candidate::Skipped { reason, .. } => (false, Some(reason.clone())),
        };
        depthwise.push(DwInfo {
            index: c.index(),
            node: c.name().to_string(),
            input_shape: shape(n.input(0)),
            output_shape: shape(n.output(0)),
            kernel,
            stride: onnx::attr_ints(&n.proto, "strides").unwrap_or_else(|| vec![1, 1]),
            pads,
            params,
            macs: node_macs(g, ix),
            convertible,
            reason,
        });
    }
    let mut unknown: BTreeMap<(String, String, String), (usize, String)> = BTreeMap::new();
    let mut names: Vec<&String> = g.shape_stops.keys().collect();
    names.sort();
    for v in names {
        let s = &g.shape_stops[v];
        let e = unknown.entry((s.node.clone(), s.op.clone(), s.reason.clone())).or_insert((0, v.clone()));
        e.0 += 1;
    }
    let mut unknown_shapes: Vec<UnknownShapes> = unknown
        .into_iter()
        .map(|((node, op, reason), (values, example))| UnknownShapes {
            example_shape: g.shape_of(&example).map(fmt_shape).unwrap_or_else(|| "?".into()),
            node,
            op,
            reason,
            values,
            example,
        })
        .collect();
    unknown_shapes.sort_by(|a, b| b.values.cmp(&a.values));
    Ok(Inspection {
        folded: g.folded.clone(),
        unknown_shapes,
        path: model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        ir_version: model.proto.ir_version(),
        opset: g.opset,
        producer: format!("{} {}", model.proto.producer_name(), model.proto.producer_version()).trim().to_string(),
        inputs: g.inputs.iter().filter(|i| !g.initializers.contains_key(i.name())).map(|v| io(g, v)).collect(),
        outputs: g.outputs.iter().map(|v| io(g, v)).collect(),
        nodes: g.g.node_count(),
        ops,
        totals: stats(g),
        depthwise,
    })
}

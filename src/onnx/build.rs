//! Attributes, nodes and value infos: typed getters and constructors.

use super::proto;
use super::{AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto};

// ---------------------------------------------------------------- attributes

pub mod attr_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const TENSOR: i32 = 4;
    pub const GRAPH: i32 = 5;
    pub const FLOATS: i32 = 6;
    pub const INTS: i32 = 7;
    pub const STRINGS: i32 = 8;
}

pub fn find_attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}

pub fn attr_int(n: &NodeProto, name: &str) -> Option<i64> {
    find_attr(n, name).and_then(|a| a.i)
}
pub fn attr_float(n: &NodeProto, name: &str) -> Option<f32> {
    find_attr(n, name).and_then(|a| a.f)
}
pub fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    find_attr(n, name).map(|a| a.ints.clone())
}
pub fn attr_string(n: &NodeProto, name: &str) -> Option<String> {
    find_attr(n, name).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
}

pub fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(attr_type::INT), i: Some(v), ..Default::default() }
}
pub fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(attr_type::FLOAT), f: Some(v), ..Default::default() }
}
pub fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(attr_type::INTS), ints: v.to_vec(), ..Default::default() }
}
pub fn a_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attr_type::STRING),
        s: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
        ..Default::default()
    }
}
pub fn a_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(attr_type::TENSOR), t: Some(t), ..Default::default() }
}

/// A default-domain node.
pub fn make_node(name: &str, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: Some(name.to_string()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

pub fn node_label(n: &NodeProto) -> String {
    if !n.name().is_empty() {
        n.name().to_string()
    } else {
        format!("{}({})", n.op_type(), n.output.first().map(String::as_str).unwrap_or("?"))
    }
}

// ---------------------------------------------------------------- value info

/// One dimension of a tensor shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(untagged)]
pub enum Dim {
    Known(i64),
    Sym(String),
}

impl Dim {
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            Dim::Sym(_) => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(s) if s.is_empty() => write!(f, "?"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

pub fn fmt_shape(s: &[Dim]) -> String {
    format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// Element type and shape recorded in a ValueInfoProto (None when absent).
pub fn value_info_type(v: &ValueInfoProto) -> (Option<i32>, Option<Vec<Dim>>) {
    use proto::tensor_shape_proto::dimension::Value as DV;
    use proto::type_proto::Value as TV;
    let Some(TV::TensorType(tt)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return (None, None);
    };
    let shape = tt.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                // some exporters (Paddle) write -1 for a dynamic dim; anything lower is
                // kept as it is so that shape inference refuses it with the value's name
                Some(DV::DimValue(-1)) => Dim::Sym(String::new()),
                Some(DV::DimValue(v)) => Dim::Known(*v),
                // "?" is how some exporters write "unknown", not a name two dims can share
                Some(DV::DimParam(p)) if p == "?" => Dim::Sym(String::new()),
                Some(DV::DimParam(p)) => Dim::Sym(p.clone()),
                None => Dim::Sym(String::new()),
            })
            .collect()
    });
    (tt.elem_type, shape)
}

pub fn make_value_info(name: &str, elem_type: i32, shape: Option<&[Dim]>) -> ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value as DV, Dimension};
    use proto::type_proto::{Tensor as TT, Value as TV};
    let shape = shape.map(|s| TensorShapeProto {
        dim: s
            .iter()
            .map(|d| Dimension {
                value: match d {
                    Dim::Known(v) => Some(DV::DimValue(*v)),
                    Dim::Sym(p) if p.is_empty() => None,
                    Dim::Sym(p) => Some(DV::DimParam(p.clone())),
                },
                denotation: None,
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(TV::TensorType(TT { elem_type: Some(elem_type), shape })), denotation: None }),
        ..Default::default()
    }
}

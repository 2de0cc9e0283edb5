//! Networks fusec builds itself: an ONNX graph builder ([`builder`]), the
//! FuSeConv paper's reference networks ([`zoo`]) and the paper's latency
//! table reproduced on them ([`paper`]).

pub mod builder;
pub mod paper;
pub mod zoo;

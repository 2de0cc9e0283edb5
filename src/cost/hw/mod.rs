//! Systolic-array hardware (one description for both latency models), the
//! paper's analytical model, and the mapping of ONNX layers onto the array.

pub mod analytical;
pub mod config;
pub(crate) mod gate;
pub mod schedule;

pub use config::{Dataflow, HwConfig, HwKind, Memory, VectorClass, VectorUnit, MAX_SIDE, PRESETS};
pub use gate::Gates;

//! fusec: rewrite depthwise-separable ONNX models into FuSe (fully separable)
//! form, fine-tune them back to the original's accuracy, and cost them on
//! systolic arrays.
//!
//! The rooms, lowest first (imports run one way; docs/architecture.md):
//! - [`onnx`]: the format (protobuf types, load/save, tensors);
//! - [`ir`]: the graph, shape inference, patches;
//! - [`passes`]: rewrites (the FuSe pass, layer selection presets);
//! - [`cost`]: the hardware, the analytical model, the simulator, latency reports;
//! - [`exec`]: running models (tract, ONNX Runtime); [`tasks`]: what their
//!   outputs mean; [`train`]: fine-tuning by distillation;
//! - jobs built on them: [`convert`], [`calibrate`], [`select`], [`inspect`];
//!   [`models`]: networks built here.
//!
//! The entry points most programs need are re-exported here.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// module docs name the crate-private rooms they are built from (`cargo doc --document-private-items`)
#![allow(rustdoc::private_intra_doc_links)]

pub mod calibrate;
pub mod cancel;
pub mod choice;
pub mod convert;
pub mod cost;
pub mod error;
pub mod exec;
pub mod inspect;
pub mod ir;
pub mod models;
pub mod onnx;
pub mod passes;
pub mod select;
pub mod stats;
pub mod tasks;
pub mod train;

pub use error::{Error, Result};

pub use convert::{convert_file, ConvertOptions, ConvertSummary};
pub use cost::hw::{Dataflow, HwConfig, HwKind};
pub use cost::report::LatencyReport;
pub use ir::Graph;
pub use onnx::Model;
pub use passes::fuse_depthwise::{Init, Variant};
pub use tasks::Task;
pub use train::{finetune, Trainer};

//! fusec: rewrite depthwise-separable ONNX models into FuSe (fully separable)
//! form and cost them on systolic arrays.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod calibrate;
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

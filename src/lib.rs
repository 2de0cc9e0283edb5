//! fusec: rewrite depthwise-separable ONNX models into FuSe (fully separable)
//! form and cost them on systolic arrays.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod builder;
pub mod calibrate;
pub mod cli;
pub mod convert;
pub mod error;
pub mod exec;
pub mod hw;
pub mod inspect;
pub mod ir;
pub mod onnx;
pub mod paper;
pub mod passes;
pub mod report;
pub mod select;
pub mod sim;
pub mod stats;
pub mod tasks;
pub mod tensor;
pub mod train;
pub mod zoo;

pub use error::{Error, Result};

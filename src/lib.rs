//! fusec: rewrite depthwise-separable ONNX models into FuSe (fully separable)
//! form and cost them on systolic arrays.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod error;
pub mod ir;
pub mod onnx;
pub mod passes;
pub mod tensor;

pub use error::{Error, Result};

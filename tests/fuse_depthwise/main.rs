//! The FuSe pass: exactness on representable kernels (through tract),
//! agreement with an independent naive reference on arbitrary kernels,
//! structure, idempotence, and the cases it must refuse.

#[path = "../common/mod.rs"]
mod common;

mod dense;
mod real_models;
mod reference;
mod refusals;
mod selection;
mod structure;

use common::*;
use fusec::models::builder::{Act, ModelBuilder};
use fusec::exec;
use fusec::onnx::{a_int, Dim, ModelProto};
use fusec::passes::fuse_depthwise::{Init, Variant};
use fusec::passes::{run_pipeline, LayerSelection, PassCx};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

fn run1(m: &ModelProto, x: &ArrayD<f32>) -> ArrayD<f32> {
    exec::run(m, std::slice::from_ref(x)).unwrap().remove(0)
}

/// Convert and check outputs equal the original's on 3 random inputs.
fn check_exact(block: &Block, variant: Variant) {
    let m = block.model(7);
    let (conv, report) = convert(&m, variant, Init::Center);
    assert_eq!(report.rewrites.len(), 1, "{block:?}: {:?}", report.skipped);
    for seed in 0..3 {
        let x = block.input(seed);
        let a = run1(&m, &x);
        let b = run1(&conv, &x);
        assert_close(&b, &a, 1e-4, 1e-5, &format!("{variant:?} {block:?}"));
    }
}

#[test]
fn half_is_exact_on_centre_row_and_column_kernels() {
    for k in [3, 5, 7] {
        for stride in [1, 2] {
            for c in [7, 8] {
                let b = Block { c, k: (k, k), stride: (stride, stride), kernel: Kernel::HalfExact, h: 13, w: 12, ..Default::default() };
                check_exact(&b, Variant::Half);
            }
        }
    }
    let variants = [
        Block { bias: true, bn: false, act: Act::None, kernel: Kernel::HalfExact, ..Default::default() },
        Block { act: Act::Relu6, symbolic_batch: true, kernel: Kernel::HalfExact, ..Default::default() },
        Block { act: Act::HardSwish, se: Some(false), kernel: Kernel::HalfExact, ..Default::default() },
        Block { act: Act::Sigmoid, se: Some(true), se_after_act: true, kernel: Kernel::HalfExact, ..Default::default() },
        Block { opset: 11, c: 9, kernel: Kernel::HalfExact, weights_as_constants: true, ..Default::default() },
        Block { opset: 17, kernel: Kernel::HalfExact, weights_through_identity: true, bias: true, ..Default::default() },
        Block { opset: 9, kernel: Kernel::HalfExact, act: Act::Relu6, ..Default::default() },
        Block { k: (3, 5), stride: (2, 1), kernel: Kernel::HalfExact, ..Default::default() },
    ];
    for b in &variants {
        check_exact(b, Variant::Half);
    }
}

#[test]
fn full_is_exact_on_centre_tap_kernels() {
    for k in [3, 5, 7] {
        for stride in [1, 2] {
            for c in [7, 8] {
                let b = Block { c, k: (k, k), stride: (stride, stride), kernel: Kernel::CenterOnly, h: 13, w: 12, ..Default::default() };
                check_exact(&b, Variant::Full);
            }
        }
    }
    let variants = [
        Block { bias: true, bn: false, act: Act::None, kernel: Kernel::CenterOnly, ..Default::default() },
        Block { act: Act::Relu6, symbolic_batch: true, kernel: Kernel::CenterOnly, ..Default::default() },
        // squeeze-excite before the activation (MobileNetV3 reference) with 1x1 convs
        Block { act: Act::HardSwish, se: Some(false), kernel: Kernel::CenterOnly, c: 12, ..Default::default() },
        // squeeze-excite after the activation with Gemm layers and a Reshape back
        Block { act: Act::Relu, se: Some(true), se_after_act: true, kernel: Kernel::CenterOnly, c: 12, ..Default::default() },
        Block { opset: 11, kernel: Kernel::CenterOnly, weights_as_constants: true, se: Some(false), ..Default::default() },
        Block { opset: 17, kernel: Kernel::CenterOnly, weights_through_identity: true, bias: true, ..Default::default() },
    ];
    for b in &variants {
        check_exact(b, Variant::Full);
    }
}

// ------------------------------------------------------------ helpers

/// A model that is a single depthwise conv (input → dw → [pw] → output).
fn dw_model(c: usize, k: (usize, usize), stride: (usize, usize), pads: Option<[i64; 4]>, auto_pad: Option<&str>, dil: (usize, usize), hw: (usize, usize), bias: bool, pw: bool) -> ModelProto {
    let mut b = ModelBuilder::new(13, 11);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(c as i64), Dim::Known(hw.0 as i64), Dim::Known(hw.1 as i64)]);
    let y = b.conv_full(&x, c, c, k, stride, pads.as_ref().map(|p| &p[..]), auto_pad, c, bias, dil);
    let y = if pw { b.conv(&y, c, 3, (1, 1), (1, 1), (0, 0), 1, true) } else { y };
    b.output(&y);
    b.build()
}

fn tensor(m: &ModelProto, name: &str) -> ArrayD<f32> {
    let t = m.graph.as_ref().unwrap().initializer.iter().find(|t| t.name() == name).unwrap();
    fusec::onnx::tensor::Tensor::from_proto(t.clone()).unwrap().to_f32().unwrap()
}

//! Reference architectures as ONNX, layer for layer as the FuSeConv paper's
//! PyTorch definitions (1000 classes, 1×3×224×224, BN unfused, seeded weights).

use crate::builder::{Act, ModelBuilder};
use crate::error::{Error, Result};
use crate::onnx::{a_int, Dim, ModelProto};

pub const NAMES: &[&str] = &["mobilenet-v2"];

pub fn build(name: &str, seed: u64) -> Result<ModelProto> {
    match name {
        "mobilenet-v2" => Ok(mobilenet_v2(seed)),
        other => Err(Error::option("zoo", format!("unknown network '{other}'; available: {}", NAMES.join(", ")))),
    }
}

fn conv_bn_act(b: &mut ModelBuilder, x: &str, cin: usize, cout: usize, k: usize, stride: usize, groups: usize, act: Act) -> String {
    let pad = (k - 1) / 2;
    let y = b.conv(x, cin, cout, (k, k), (stride, stride), (pad, pad), groups, false);
    let y = b.bn(&y, cout);
    b.act(&y, act)
}

/// `_make_divisible` of the reference (from the TF repository).
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (d).max(((v + d / 2.0) / d).floor() * d);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}

/// Classifier head: global average pool → flatten → Gemm.
fn head(b: &mut ModelBuilder, x: &str, c: usize, classes: usize) -> String {
    let p = b.op("GlobalAveragePool", &[x], vec![]);
    let f = b.op("Flatten", &[&p], vec![a_int("axis", 1)]);
    b.gemm(&f, c, classes, true)
}

/// MobileNetV2 (width 1.0): reference `mobilenetv2.py`, `MobileNetV2Class(InvertedResidual)`.
pub fn mobilenet_v2(seed: u64) -> ModelProto {
    let mut b = ModelBuilder::new(13, seed);
    b.name = "mobilenet-v2".into();
    let x = b.input("input", &[Dim::Known(1), Dim::Known(3), Dim::Known(224), Dim::Known(224)]);
    let setting: [(usize, usize, usize, usize); 7] = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
    let mut c_in = make_divisible(32.0, 8);
    let mut y = conv_bn_act(&mut b, &x, 3, c_in, 3, 2, 1, Act::Relu6);
    for (t, c, n, s) in setting {
        let c_out = make_divisible(c as f64, 8);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = (c_in as f64 * t as f64).round() as usize;
            let mut h = y.clone();
            if t != 1 {
                h = conv_bn_act(&mut b, &h, c_in, hidden, 1, 1, 1, Act::Relu6);
            }
            h = conv_bn_act(&mut b, &h, hidden, hidden, 3, stride, hidden, Act::Relu6);
            h = conv_bn_act(&mut b, &h, hidden, c_out, 1, 1, 1, Act::None);
            y = if stride == 1 && c_in == c_out { b.op("Add", &[&y, &h], vec![]) } else { h };
            c_in = c_out;
        }
    }
    let last = make_divisible(1280.0, 8);
    y = conv_bn_act(&mut b, &y, c_in, last, 1, 1, 1, Act::Relu6);
    let out = head(&mut b, &y, last, 1000);
    b.output(&out);
    b.build()
}

//! Reference architectures as ONNX, layer for layer as the FuSeConv paper's
//! PyTorch definitions (ResNet-50: `scripts/resnet_reference.py`) (1000 classes, 1×3×224×224, BN unfused, seeded weights).

use crate::models::builder::{Act, ModelBuilder};
use crate::error::{Error, Result};
use crate::onnx::{a_int, a_ints, Dim, ModelProto};

pub const NAMES: &[&str] = &["mobilenet-v1", "mobilenet-v2", "mnasnet-b1", "mobilenet-v3-small", "mobilenet-v3-large", "resnet-50"];

pub fn build(name: &str, seed: u64) -> Result<ModelProto> {
    match name {
        "mobilenet-v1" => Ok(mobilenet_v1(seed)),
        "mobilenet-v2" => Ok(mobilenet_v2(seed)),
        "mnasnet-b1" => Ok(mnasnet_b1(seed)),
        "mobilenet-v3-small" => Ok(mobilenet_v3(seed, false)),
        "mobilenet-v3-large" => Ok(mobilenet_v3(seed, true)),
        "resnet-50" => Ok(resnet_50(seed)),
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

fn input_224(b: &mut ModelBuilder) -> String {
    b.input("input", &[Dim::Known(1), Dim::Known(3), Dim::Known(224), Dim::Known(224)])
}

/// Gemm with transB and an optional bias (nn.Linear).
fn linear(b: &mut ModelBuilder, x: &str, cin: usize, cout: usize, bias: bool) -> String {
    b.gemm(x, cin, cout, bias)
}

/// MobileNetV1: reference `mobilenetv1.py`, `MobileNet(Block)`.
pub fn mobilenet_v1(seed: u64) -> ModelProto {
    let mut b = ModelBuilder::new(13, seed);
    b.name = "mobilenet-v1".into();
    let x = input_224(&mut b);
    let mut y = conv_bn_act(&mut b, &x, 3, 32, 3, 2, 1, Act::Relu);
    let cfg: [(usize, usize); 13] = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)];
    let mut c_in = 32;
    for (c, s) in cfg {
        y = conv_bn_act(&mut b, &y, c_in, c_in, 3, s, c_in, Act::Relu);
        y = conv_bn_act(&mut b, &y, c_in, c, 1, 1, 1, Act::Relu);
        c_in = c;
    }
    let out = head(&mut b, &y, 1024, 1000);
    b.output(&out);
    b.build()
}

/// MnasNet-B1: reference `mnasnet.py`, `MnasNetClass(InvertedResidual)`.
pub fn mnasnet_b1(seed: u64) -> ModelProto {
    let mut b = ModelBuilder::new(13, seed);
    b.name = "mnasnet-b1".into();
    let x = input_224(&mut b);
    let mut y = conv_bn_act(&mut b, &x, 3, 32, 3, 2, 1, Act::Relu6);
    // SepConv_3x3(32, 16): dw → BN → ReLU6 → pw → BN
    y = conv_bn_act(&mut b, &y, 32, 32, 3, 1, 32, Act::Relu6);
    y = conv_bn_act(&mut b, &y, 32, 16, 1, 1, 1, Act::None);
    let setting: [(usize, usize, usize, usize, usize); 6] = [(3, 24, 3, 2, 3), (3, 40, 3, 2, 5), (6, 80, 3, 2, 5), (6, 96, 2, 1, 3), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)];
    let mut c_in = 16;
    for (t, c, n, s, k) in setting {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = c_in * t;
            let mut h = conv_bn_act(&mut b, &y, c_in, hidden, 1, 1, 1, Act::Relu6);
            h = conv_bn_act(&mut b, &h, hidden, hidden, k, stride, hidden, Act::Relu6);
            h = conv_bn_act(&mut b, &h, hidden, c, 1, 1, 1, Act::None);
            y = if stride == 1 && c_in == c { b.op("Add", &[&y, &h], vec![]) } else { h };
            c_in = c;
        }
    }
    y = conv_bn_act(&mut b, &y, c_in, 1280, 1, 1, 1, Act::Relu6);
    let out = head(&mut b, &y, 1280, 1000);
    b.output(&out);
    b.build()
}

/// MobileNetV3 Small / Large: reference `mobilenetv3.py`, `MobileNetV3Class(MobileBottleneck)`.
/// The squeeze-excite block sits between the depthwise BN and the activation,
/// with bias-free Linear layers (reduction 4) and a hard sigmoid.
pub fn mobilenet_v3(seed: u64, large: bool) -> ModelProto {
    let mut b = ModelBuilder::new(14, seed);
    b.name = if large { "mobilenet-v3-large" } else { "mobilenet-v3-small" }.into();
    let x = input_224(&mut b);
    // (kernel, exp, out, se, hswish, stride)
    let large_cfg: &[(usize, usize, usize, bool, bool, usize)] = &[
        (3, 16, 16, false, false, 1), (3, 64, 24, false, false, 2), (3, 72, 24, false, false, 1),
        (5, 72, 40, true, false, 2), (5, 120, 40, true, false, 1), (5, 120, 40, true, false, 1),
        (3, 240, 80, false, true, 2), (3, 200, 80, false, true, 1), (3, 184, 80, false, true, 1),
        (3, 184, 80, false, true, 1), (3, 480, 112, true, true, 1), (3, 672, 112, true, true, 1),
        (5, 672, 160, true, true, 2), (5, 960, 160, true, true, 1), (5, 960, 160, true, true, 1),
    ];
    let small_cfg: &[(usize, usize, usize, bool, bool, usize)] = &[
        (3, 16, 16, true, false, 2), (3, 72, 24, false, false, 2), (3, 88, 24, false, false, 1),
        (5, 96, 40, true, true, 2), (5, 240, 40, true, true, 1), (5, 240, 40, true, true, 1),
        (5, 120, 48, true, true, 1), (5, 144, 48, true, true, 1), (5, 288, 96, true, true, 2),
        (5, 576, 96, true, true, 1), (5, 576, 96, true, true, 1),
    ];
    let cfg = if large { large_cfg } else { small_cfg };
    let mut y = conv_bn_act(&mut b, &x, 3, 16, 3, 2, 1, Act::HardSwish);
    let mut c_in = 16;
    for &(k, exp, c, se, hs, s) in cfg {
        let act = if hs { Act::HardSwish } else { Act::Relu };
        let mut h = conv_bn_act(&mut b, &y, c_in, exp, 1, 1, 1, act);
        h = conv_bn_act(&mut b, &h, exp, exp, k, s, exp, Act::None);
        if se {
            let p = b.op("GlobalAveragePool", &[&h], vec![]);
            let f = b.op("Flatten", &[&p], vec![a_int("axis", 1)]);
            let z = linear(&mut b, &f, exp, exp / 4, false);
            let z = b.act(&z, Act::Relu);
            let z = linear(&mut b, &z, exp / 4, exp, false);
            let z = b.act(&z, Act::HardSigmoid);
            let shape = b.constant_i64("se_shape", &[4], &[-1, exp as i64, 1, 1]);
            let z = b.op("Reshape", &[&z, &shape], vec![]);
            h = b.op("Mul", &[&h, &z], vec![]);
        }
        h = b.act(&h, act);
        h = conv_bn_act(&mut b, &h, exp, c, 1, 1, 1, Act::None);
        y = if s == 1 && c_in == c { b.op("Add", &[&y, &h], vec![]) } else { h };
        c_in = c;
    }
    let last_conv = if large { 960 } else { 576 };
    y = conv_bn_act(&mut b, &y, c_in, last_conv, 1, 1, 1, Act::HardSwish);
    let p = b.op("GlobalAveragePool", &[&y], vec![]);
    let z = b.conv(&p, last_conv, 1280, (1, 1), (1, 1), (0, 0), 1, true);
    let z = b.act(&z, Act::HardSwish);
    let f = b.op("Flatten", &[&z], vec![a_int("axis", 1)]);
    let out = linear(&mut b, &f, 1280, 1000, true);
    b.output(&out);
    b.build()
}

/// ResNet-50 (torchvision layout, stride on the 3×3 conv): 7×7 stem, max
/// pool, bottlenecks [3, 4, 6, 3] of widths 64..512 (expansion 4), each
/// 1×1 → 3×3 → 1×1 with BN, the projection shortcut after the third conv as
/// the reference's forward() runs it. `scripts/resnet_reference.py` is the
/// same network in PyTorch form for the reference latency model.
pub fn resnet_50(seed: u64) -> ModelProto {
    let mut b = ModelBuilder::new(13, seed);
    b.name = "resnet-50".into();
    let x = input_224(&mut b);
    let y = b.conv(&x, 3, 64, (7, 7), (2, 2), (3, 3), 1, false);
    let y = b.bn(&y, 64);
    let y = b.act(&y, Act::Relu);
    let mut y = b.op("MaxPool", &[&y], vec![a_ints("kernel_shape", &[3, 3]), a_ints("strides", &[2, 2]), a_ints("pads", &[1, 1, 1, 1])]);
    let mut c_in = 64;
    for (width, blocks, stride) in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)] {
        for i in 0..blocks {
            let s = if i == 0 { stride } else { 1 };
            let c_out = width * 4;
            let mut h = conv_bn_act(&mut b, &y, c_in, width, 1, 1, 1, Act::Relu);
            h = conv_bn_act(&mut b, &h, width, width, 3, s, 1, Act::Relu);
            h = conv_bn_act(&mut b, &h, width, c_out, 1, 1, 1, Act::None);
            let shortcut = if s != 1 || c_in != c_out { conv_bn_act(&mut b, &y, c_in, c_out, 1, s, 1, Act::None) } else { y.clone() };
            let sum = b.op("Add", &[&h, &shortcut], vec![]);
            y = b.act(&sum, Act::Relu);
            c_in = c_out;
        }
    }
    let out = head(&mut b, &y, 2048, 1000);
    b.output(&out);
    b.build()
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
    let x = input_224(&mut b);
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

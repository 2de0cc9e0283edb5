//! The cases the pass must refuse, and how Full widens what it can.

use super::*;

fn skipped_reason(m: &ModelProto, variant: Variant) -> String {
    let (out, report) = convert(m, variant, Init::Center);
    assert_eq!(report.rewrites.len(), 0, "{:?}", report.rewrites);
    assert_eq!(out.graph.as_ref().unwrap().node, m.graph.as_ref().unwrap().node, "a skipped layer must leave the graph unchanged");
    report.skipped.first().map(|s| s.1.clone()).unwrap_or_default()
}

#[test]
fn refuses_what_is_not_depthwise() {
    let mut b = ModelBuilder::new(13, 1);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(8), Dim::Known(8)]);
    let y = b.conv(&x, 4, 8, (3, 3), (1, 1), (1, 1), 4, false); // multiplier 2
    b.output(&y);
    assert!(skipped_reason(&b.build(), Variant::Half).contains("channel multiplier"));

    let mut b = ModelBuilder::new(13, 1);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(8), Dim::Known(8)]);
    let y = b.conv(&x, 4, 4, (1, 1), (1, 1), (0, 0), 4, false);
    b.output(&y);
    assert!(skipped_reason(&b.build(), Variant::Half).contains("1×1"));

    // weight computed at run time
    let mut b = ModelBuilder::new(13, 1);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(8), Dim::Known(8)]);
    let wv = b.input("w", &[Dim::Known(4), Dim::Known(1), Dim::Known(3), Dim::Known(3)]);
    let y = b.op("Conv", &[&x, &wv], vec![a_int("group", 4)]);
    b.output(&y);
    assert!(skipped_reason(&b.build(), Variant::Half).contains("not a constant"));
}

#[test]
fn full_refuses_unwidenable_consumers_and_says_why() {
    // the depthwise output is a graph output
    let m = dw_model(4, (3, 3), (1, 1), Some([1, 1, 1, 1]), None, (1, 1), (6, 6), false, false);
    assert!(skipped_reason(&m, Variant::Full).contains("graph output"));
    // the depthwise output is concatenated with another tensor
    let mut b = ModelBuilder::new(13, 1);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(8), Dim::Known(8)]);
    let y = b.conv(&x, 4, 4, (3, 3), (1, 1), (1, 1), 4, false);
    let cat = b.op("Concat", &[&y, &x], vec![a_int("axis", 1)]);
    let out = b.conv(&cat, 8, 2, (1, 1), (1, 1), (0, 0), 1, false);
    b.output(&out);
    assert!(skipped_reason(&b.build(), Variant::Full).contains("Concat"));
    // the widened channels transposed to the last axis, then flattened with the pixels
    let mut b = ModelBuilder::new(13, 1);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(8), Dim::Known(8)]);
    let y = b.conv(&x, 4, 4, (3, 3), (1, 1), (1, 1), 4, false);
    let t = b.op("Transpose", &[&y], vec![fusec::onnx::a_ints("perm", &[0, 2, 3, 1])]);
    let f = b.op("Flatten", &[&t], vec![a_int("axis", 1)]);
    let o = b.gemm(&f, 256, 3, true);
    b.output(&o);
    let why = skipped_reason(&b.build(), Variant::Full);
    assert!(why.contains("Flatten") && why.contains("axis 3"), "{why}");
}

/// A TensorFlow-style block (tf2onnx): the depthwise conv runs in NCHW between
/// Transposes, BN, activation and squeeze-excite run in NHWC. Full follows the
/// channel axis through each Transpose (exact on a centre-tap kernel).
#[test]
fn full_follows_the_channel_axis_through_transposes() {
    let mut b = ModelBuilder::new(13, 6);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(9), Dim::Known(10), Dim::Known(6)]);
    let nchw = |b: &mut ModelBuilder, v: &str| b.op("Transpose", &[v], vec![fusec::onnx::a_ints("perm", &[0, 3, 1, 2])]);
    let nhwc = |b: &mut ModelBuilder, v: &str| b.op("Transpose", &[v], vec![fusec::onnx::a_ints("perm", &[0, 2, 3, 1])]);
    let t = nchw(&mut b, &x);
    let d = b.conv(&t, 6, 6, (3, 3), (1, 1), (1, 1), 6, false);
    b.set_weight(&d, |i| if i[2] == 1 && i[3] == 1 { 0.6 + 0.1 * i[0] as f32 } else { 0.0 });
    let h = nhwc(&mut b, &d);
    // BN folded to a per-channel scale and shift on the last axis
    let sc = b.uniform(&[6], 0.5).mapv(|v| v + 1.0);
    let sc = b.constant("scale", &sc);
    let sh = b.uniform(&[6], 0.2);
    let sh = b.constant("shift", &sh);
    let h = b.op("Mul", &[&h, &sc], vec![]);
    let h = b.op("Add", &[&h, &sh], vec![]);
    let h = b.act(&h, Act::Relu);
    // squeeze-excite: mean over H, W in NHWC, 1x1 convs in NCHW, gate back in NHWC
    let p = b.op("ReduceMean", &[&h], vec![fusec::onnx::a_ints("axes", &[1, 2]), a_int("keepdims", 1)]);
    let p = nchw(&mut b, &p);
    let s1 = b.conv(&p, 6, 3, (1, 1), (1, 1), (0, 0), 1, true);
    let s1 = b.act(&s1, Act::Relu);
    let s2 = b.conv(&s1, 3, 6, (1, 1), (1, 1), (0, 0), 1, true);
    let s2 = nhwc(&mut b, &s2);
    let gate = b.act(&s2, Act::Sigmoid);
    let h = b.op("Mul", &[&h, &gate], vec![]);
    let h = nchw(&mut b, &h);
    let out = b.conv(&h, 6, 4, (1, 1), (1, 1), (0, 0), 1, true);
    b.output(&out);
    let m = b.build();
    let (conv, r) = convert(&m, Variant::Full, Init::Center);
    assert_eq!(r.rewrites.len(), 1, "{:?}", r.skipped);
    for seed in 0..3 {
        let x = random_input(&[1, 9, 10, 6], seed);
        assert_close(&run1(&conv, &x), &run1(&m, &x), 1e-4, 1e-5, "NHWC Full");
    }
}

/// A residual Add (or Mul, Sub) whose other operand is not widened: Full
/// duplicates that operand to 2C, so each branch gets the same skip and the
/// widened pointwise conv still computes the mean (exact on centre-tap kernels).
#[test]
fn full_duplicates_an_unwidened_residual_operand() {
    for op in ["Add", "Mul", "Sub"] {
        let mut b = ModelBuilder::new(13, 1);
        let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(8), Dim::Known(8)]);
        let y = b.conv(&x, 4, 4, (3, 3), (1, 1), (1, 1), 4, true);
        b.set_weight(&y, |i| if i[2] == 1 && i[3] == 1 { 0.4 + 0.1 * i[0] as f32 } else { 0.0 });
        // the skip also passes through a 1x1 depthwise conv (as PP-OCRv6's rep blocks do)
        let z = b.conv(&x, 4, 4, (1, 1), (1, 1), (0, 0), 4, false);
        let s = b.op(op, &[&y, &z], vec![]);
        let r = b.act(&s, Act::Relu);
        let out = b.conv(&r, 4, 2, (1, 1), (1, 1), (0, 0), 1, true);
        b.output(&out);
        let m = b.build();
        let (conv, r) = convert(&m, Variant::Full, Init::Center);
        assert_eq!(r.rewrites.len(), 1, "{op}: {:?}", r.skipped);
        let dup = conv.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type() == "Concat").count();
        assert_eq!(dup, 2, "{op}: the block's Concat and the duplicated operand");
        for seed in 0..3 {
            let x = random_input(&[1, 4, 8, 8], seed);
            assert_close(&run1(&conv, &x), &run1(&m, &x), 1e-4, 1e-5, op);
        }
    }
}

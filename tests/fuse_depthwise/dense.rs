//! `--dense`: dense K×K convs (group 1, C_in = C_out, output reaching a
//! pointwise conv) rewritten into FuSe blocks, as in the paper's ResNet-50
//! variants: exact where the kernel is what the variant keeps, left alone
//! with the reason where it does not fit, fitted by `lsq` on data.

use super::*;
use fusec::calibrate::{calibrate_with, FitOptions};
use fusec::tasks::data::{Dataset, Sample};
use fusec::passes::fuse_depthwise::{Assign, FuseDepthwise, Options};
use fusec::passes::PassReport;

fn dense_pass(variant: Variant) -> Box<dyn fusec::passes::Pass> {
    Box::new(FuseDepthwise::new(Options { variant, init: Init::Center, assign: Assign::Ordered, layers: LayerSelection::All, skip: vec![], dense: true }).unwrap())
}

fn convert_dense(m: &ModelProto, variant: Variant) -> (ModelProto, PassReport) {
    let mut g = graph_of(m);
    let mut reports = run_pipeline(&mut g, &[dense_pass(variant)], &PassCx::default()).unwrap();
    let mut out = m.clone();
    out.graph = Some(g.to_proto().unwrap());
    (out, reports.remove(0).1)
}

/// x → 1×1 (4→C) → dense 3×3 (C→C, stride s) → BN → ReLU → 1×1 (C→5).
/// `keep(m, c, i, j)`: which taps of the dense kernel are non-zero.
fn bottleneck(stride: usize, keep: impl Fn(usize, usize, usize, usize) -> bool) -> ModelProto {
    const C: usize = 6;
    let mut b = ModelBuilder::new(13, 5);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(9), Dim::Known(11)]);
    let h = b.conv(&x, 4, C, (1, 1), (1, 1), (0, 0), 1, false);
    let d = b.conv(&h, C, C, (3, 3), (stride, stride), (1, 1), 1, true);
    b.set_weight(&d, |i| if keep(i[0], i[1], i[2], i[3]) { 0.3 + 0.1 * ((i[0] * 7 + i[2] * 3 + i[3]) % 5) as f32 } else { 0.0 });
    let y = b.bn(&d, C);
    let y = b.act(&y, Act::Relu);
    let y = b.conv(&y, C, 5, (1, 1), (1, 1), (0, 0), 1, true);
    b.output(&y);
    b.build()
}

fn assert_same_outputs(a: &ModelProto, b: &ModelProto) {
    for seed in 0..3 {
        let x = random_input(&[1, 4, 9, 11], seed);
        assert_close(&run1(a, &x), &run1(b, &x), 1e-4, 1e-5, "dense conv rewritten");
    }
}

#[test]
fn a_dense_conv_whose_kernel_is_what_the_variant_keeps_converts_exactly() {
    for stride in [1, 2] {
        // Half: channels 0..3 keep only their centre row (1×3), 3..6 their centre column (3×1), no cross-channel taps
        let m = bottleneck(stride, |o, c, i, j| o == c && if c < 3 { i == 1 } else { j == 1 });
        let (half, r) = convert_dense(&m, Variant::Half);
        assert_eq!(r.rewrites.len(), 1, "{:?}", r.skipped);
        assert!(r.rewrites[0].detail.starts_with("3x3 dense, 6 ch"), "{}", r.rewrites[0].detail);
        // 6·6·9 weights → 3·3 + 3·3 (bias kept): 306 fewer
        assert_eq!(r.rewrites[0].params_delta, -(6 * 6 * 9 - 18));
        assert_same_outputs(&m, &half);
        // Full: centre taps only (both branches reproduce every channel; the pointwise conv takes their mean)
        let m = bottleneck(stride, |o, c, i, j| o == c && i == 1 && j == 1);
        let (full, r) = convert_dense(&m, Variant::Full);
        assert_eq!(r.rewrites.len(), 1, "{:?}", r.skipped);
        assert_same_outputs(&m, &full);
        let convs = |m: &ModelProto| m.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type() == "Conv").map(|n| fusec::onnx::attr_int(n, "group").unwrap_or(1)).collect::<Vec<_>>();
        assert_eq!(convs(&full), [1, 6, 6, 1], "1×1, the two depthwise 1-D convs, the widened 1×1");
    }
    // without dense = true nothing changes
    let m = bottleneck(1, |o, c, _, _| o == c);
    let (same, r) = convert(&m, Variant::Half, Init::Center);
    assert!(r.rewrites.is_empty() && r.skipped.is_empty());
    assert_eq!(same.graph, m.graph);
}

#[test]
fn dense_convs_that_do_not_fit_are_left_alone_with_the_reason() {
    let mut b = ModelBuilder::new(13, 1);
    let x = b.input("x", &[Dim::Known(1), Dim::Known(6), Dim::Known(8), Dim::Known(8)]);
    // on the graph input (the network's first conv)
    let stem = b.conv(&x, 6, 6, (3, 3), (1, 1), (1, 1), 1, false);
    let stem = b.act(&stem, Act::Relu);
    // C_in ≠ C_out
    let wide = b.conv(&stem, 6, 8, (3, 3), (1, 1), (1, 1), 1, false);
    let wide = b.act(&wide, Act::Relu);
    // straight into a residual Add
    let res = b.conv(&wide, 8, 8, (3, 3), (1, 1), (1, 1), 1, false);
    let sum = b.op("Add", &[&res, &wide], vec![]);
    // a graph output after BN
    let last = b.conv(&sum, 8, 8, (3, 3), (1, 1), (1, 1), 1, false);
    let last = b.bn(&last, 8);
    b.output(&last);
    // a pointwise conv is not a candidate
    let pw = b.conv(&sum, 8, 4, (1, 1), (1, 1), (0, 0), 1, false);
    b.output(&pw);
    let m = b.build();
    let (out, r) = convert_dense(&m, Variant::Half);
    assert!(r.rewrites.is_empty());
    let reasons: Vec<&str> = r.skipped.iter().map(|(_, why)| why.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("graph input 'x'"), "{}", reasons[0]);
    assert!(reasons[1].contains("6 input and 8 output channels"), "{}", reasons[1]);
    assert!(reasons[2].contains("reaches Add"), "{}", reasons[2]);
    assert!(reasons[3].contains("graph output"), "{}", reasons[3]);
    assert_eq!(out.graph, m.graph);
}

/// `--init lsq` on a dense conv fits each channel's 1-D kernel to that
/// channel of the dense output: exact where the dense conv is a 1-D conv per
/// channel, and better than the diagonal's centre row where it mixes channels.
#[test]
fn lsq_fits_the_dense_output_per_channel() {
    let data = |n: usize| Dataset {
        samples: (0..n).map(|i| Sample::new(format!("s{i}"), random_input(&[4, 9, 11], 10 + i as u64).into_dimensionality().unwrap(), None)).collect(),
        classes: vec![],
    };
    let exact = bottleneck(1, |o, c, i, j| o == c && if c < 3 { i == 1 } else { j == 1 });
    let (_, fits) = calibrate_with(&exact, &graph_of(&exact), &data(4), &FitOptions { dense: true, ..FitOptions::new(Variant::Half) }).unwrap();
    assert_eq!(fits.len(), 1);
    assert!(fits[0].lsq < 1e-3 && fits[0].center < 1e-5, "{:?}", fits[0]);
    let mixing = bottleneck(1, |_, _, _, _| true);
    let (_, fits) = calibrate_with(&mixing, &graph_of(&mixing), &data(4), &FitOptions { dense: true, ..FitOptions::new(Variant::Half) }).unwrap();
    // the least-squares optimum over 1-D kernels: below the diagonal's centre row (random
    // channel mixing leaves most of the output unexplained by any per-channel kernel)
    assert!(fits[0].lsq < fits[0].center - 0.01 && fits[0].lsq < fits[0].sum, "{:?}", fits[0]);
    // without dense, the dense conv is not fitted
    let (_, none) = calibrate_with(&mixing, &graph_of(&mixing), &data(4), &FitOptions::new(Variant::Half)).unwrap();
    assert!(none.is_empty());
}

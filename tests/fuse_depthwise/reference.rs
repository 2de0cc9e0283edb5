//! Agreement with an independent naive reference on arbitrary kernels, and even kernels.

use super::*;

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
    let diff = exec::compare(&got, &want, 1e-4, 1e-5).unwrap();
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

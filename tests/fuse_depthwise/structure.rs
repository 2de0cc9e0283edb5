//! The structure a rewrite writes: names, channel split, idempotence, initializers.

use super::*;

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

/// Half with `--assign fit`: channels whose kernel lives on its centre row go
/// to 1×K and those on its centre column to K×1, wherever they sit; the block
/// gathers each branch's channels and restores the order, exactly.
#[test]
fn fit_assignment_gathers_each_channel_to_the_branch_that_keeps_it() {
    use fusec::passes::fuse_depthwise::Assign;
    let mut m = dw_model(6, (3, 3), (1, 1), Some([1, 1, 1, 1]), None, (1, 1), (7, 8), true, true);
    let wname = m.graph.as_ref().unwrap().node[0].input[1].clone();
    let w = tensor(&m, &wname);
    // channels 1, 3, 4 horizontal (centre row only), 0, 2, 5 vertical (centre column only)
    let rows = [1usize, 3, 4];
    let masked = ArrayD::from_shape_fn(w.raw_dim(), |i| if rows.contains(&i[0]) == (i[2] == 1) && (i[2] == 1 || i[3] == 1) { w[&i] } else { 0.0 });
    let t = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name() == wname).unwrap();
    *t = fusec::onnx::tensor::Tensor::from_f32(&wname, &masked).into_proto();
    let (fit, report) = convert_assigned(&m, Variant::Half, Init::Center, Assign::Fit);
    assert!(report.rewrites[0].detail.contains("(4 of 6 channels in the other branch"), "{}", report.rewrites[0].detail);
    let g = fit.graph.as_ref().unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type()).collect();
    assert!(!ops.contains(&"Split"), "{ops:?}");
    assert_eq!(ops.iter().filter(|&&o| o == "Gather").count(), 3, "{ops:?}");
    let ints = |suffix: &str| -> Vec<i64> {
        let n = g.node.iter().find(|n| n.name().ends_with(suffix)).unwrap();
        let t = g.initializer.iter().find(|t| t.name() == n.input[1]).unwrap();
        fusec::onnx::tensor::Tensor::from_proto(t.clone()).unwrap().to_i64().unwrap()
    };
    assert_eq!(ints(".fuse.row_gather"), vec![1, 3, 4]);
    assert_eq!(ints(".fuse.col_gather"), vec![0, 2, 5]);
    // concatenation [1, 3, 4, 0, 2, 5] back to 0..6
    assert_eq!(ints(".fuse.order_gather"), vec![3, 0, 4, 1, 2, 5]);
    let (ordered, _) = convert_assigned(&m, Variant::Half, Init::Center, Assign::Ordered);
    for seed in 0..3 {
        let x = random_input(&[1, 6, 7, 8], seed);
        let want = run1(&m, &x);
        assert_close(&run1(&fit, &x), &want, 1e-4, 1e-5, "fit assignment");
        // the paper's split loses the three channels that sit in the wrong half
        let d = fusec::exec::compare(&run1(&ordered, &x), &want, 1e-4, 1e-5).unwrap();
        assert!(d.max_abs > 1e-2, "ordered split should not be exact here: {}", d.max_abs);
    }
    // an ordered assignment keeps the Split
    let (_, r) = convert_assigned(&dw_model(4, (3, 3), (1, 1), Some([1, 1, 1, 1]), None, (1, 1), (6, 6), false, false), Variant::Half, Init::Center, Assign::Ordered);
    assert!(!r.rewrites[0].detail.contains("other branch"));
}

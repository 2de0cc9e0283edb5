//! Data-driven initialization (`--init lsq`) and `fusec eval`.

mod common;

use common::*;
use fusec::tasks::data::{Dataset, Sample};
use fusec::calibrate::FitOptions;
use fusec::passes::fuse_depthwise::Variant;

/// Spatially smooth inputs (like images: neighbouring rows and columns correlate),
/// where a fitted 1-D kernel can do better than a fixed slice of the K×K one.
fn dataset(n: usize, shape: &[usize], seed: u64) -> Dataset {
    let samples = (0..n)
        .map(|i| {
            let noise = random_input(&[16], seed + i as u64);
            let x = ndarray::Array3::from_shape_fn((shape[0], shape[1], shape[2]), |(c, y, x)| {
                let p = |k: usize| noise[[(c * 3 + k) % 16]];
                (p(0) * 2.0 + 0.4 * y as f32 * p(1)).sin() + (p(2) * 3.0 + 0.3 * x as f32 * p(0)).cos() * 0.5
            });
            Sample::new(format!("s{i}"), x, Some(i % 2))
        })
        .collect();
    Dataset { samples, classes: vec!["a".into(), "b".into()] }
}

#[test]
fn lsq_recovers_representable_kernels_and_beats_the_centre_slice() {
    for (variant, kernel) in [(Variant::Half, Kernel::HalfExact), (Variant::Full, Kernel::CenterOnly)] {
        let b = Block { kernel, bias: true, stride: (2, 1), c: 6, ..Default::default() };
        let m = b.model(4);
        let g = graph_of(&m);
        let (_, fits) = fusec::calibrate::calibrate(&m, &g, &dataset(6, &[3, b.h, b.w], 1), variant).unwrap();
        assert_eq!(fits.len(), 1);
        assert!(fits[0].lsq < 1e-3, "{variant:?}: lsq error {} on a representable kernel", fits[0].lsq);
        assert!(fits[0].center < 1e-4, "{variant:?}: centre slice is exact here ({})", fits[0].center);
    }
    // dense kernels: lsq fits at least as well as either fixed slice, per layer
    for variant in [Variant::Half, Variant::Full] {
        let b = Block { kernel: Kernel::Dense, k: (5, 5), c: 8, ..Default::default() };
        let m = b.model(9);
        let (_, fits) = fusec::calibrate::calibrate(&m, &graph_of(&m), &dataset(6, &[3, b.h, b.w], 3), variant).unwrap();
        let f = &fits[0];
        assert!(f.lsq <= f.center + 1e-9 && f.lsq <= f.sum + 1e-9, "{variant:?}: {f:?}");
        assert!(f.lsq < 0.9 * f.center, "{variant:?}: lsq should clearly improve on dense kernels: {f:?}");
    }
}

#[test]
fn lsq_kernels_are_used_by_the_pass() {
    use fusec::passes::fuse_depthwise::{FuseDepthwise, Init, Options};
    let b = Block { kernel: Kernel::Dense, c: 6, ..Default::default() };
    let m = b.model(2);
    let g0 = graph_of(&m);
    let data = dataset(4, &[3, b.h, b.w], 7);
    let (init, _) = fusec::calibrate::calibrate(&m, &g0, &data, Variant::Half).unwrap();
    let out = |init: Option<Box<dyn fusec::passes::fuse_depthwise::KernelInit>>| {
        let mut g = g0.clone();
        let mut p = FuseDepthwise::new(Options { variant: Variant::Half, init: Init::Center, assign: Default::default(), layers: Default::default(), skip: vec![], dense: false }).unwrap();
        if let Some(i) = init {
            p = p.with_init(i);
        }
        fusec::passes::run_pipeline(&mut g, &[Box::new(p)], &Default::default()).unwrap();
        let mut mm = m.clone();
        mm.graph = Some(g.to_proto().unwrap());
        mm
    };
    let (lsq, center) = (out(Some(Box::new(init))), out(None));
    // on the calibration inputs, the lsq model is closer to the original than the centre slice
    let err = |mm: &fusec::onnx::ModelProto| -> f32 {
        data.samples.iter().map(|s| {
            let x = s.x.clone().insert_axis(ndarray::Axis(0)).into_dyn();
            let a = fusec::exec::run(mm, &[x.clone()]).unwrap().remove(0);
            let b = fusec::exec::run(&m, &[x]).unwrap().remove(0);
            (a - b).mapv(|v| v * v).sum()
        }).sum()
    };
    assert!(err(&lsq) < err(&center), "lsq {} vs center {}", err(&lsq), err(&center));
}

#[test]
fn eval_reports_accuracy_and_teacher_agreement_on_images() {
    // a folder with class subfolders of small PNGs
    let dir = tempfile::tempdir().unwrap();
    for (c, shade) in [("dark", 30u8), ("light", 220u8)] {
        std::fs::create_dir(dir.path().join(c)).unwrap();
        for i in 0..3 {
            let img = image::GrayImage::from_fn(40, 20, |x, y| image::Luma([shade.wrapping_add(((x + y + i) % 7) as u8)]));
            img.save(dir.path().join(c).join(format!("{i}.png"))).unwrap();
        }
    }
    let pre = fusec::tasks::data::Preprocess { height: 9, width: 11, resize: fusec::tasks::data::Resize::Stretch, scale: 1.0 / 255.0, mean: [0.5; 3], std: [0.5; 3], bgr: false };
    let data = fusec::tasks::data::load(dir.path(), &pre, None, None).unwrap();
    assert_eq!(data.samples.len(), 6);
    assert_eq!(data.classes, vec!["dark", "light"]);
    let rot = fusec::tasks::data::load(dir.path(), &pre, Some(fusec::tasks::Task::Rot180), None).unwrap();
    assert_eq!(rot.samples.len(), 12);
    // a 2-output classifier from the builder: GAP of the block output, Gemm to 2 classes
    let m = Block { cout: 2, ..Default::default() }.model(1);
    let r = fusec::tasks::classify::evaluate("m", &m, Some(("m", &m)), &data).unwrap();
    assert_eq!(r.samples, 6);
    assert_eq!(r.teacher_agreement, Some(1.0));
    let top1 = r.top1.unwrap();
    let per: f64 = r.per_class.iter().map(|(_, n, a)| *n as f64 * a).sum::<f64>() / 6.0;
    assert!((per - top1).abs() < 1e-12);
}

#[test]
fn sequential_calibration_fits_each_layer_on_the_students_inputs() {
    // two depthwise layers: the second is fitted on what the rewritten first one produces
    let mut b = fusec::models::builder::ModelBuilder::new(13, 5);
    let d = |v| fusec::onnx::Dim::Known(v);
    let x = b.input("x", &[d(1), d(3), d(9), d(11)]);
    let e = b.conv(&x, 3, 6, (1, 1), (1, 1), (0, 0), 1, true);
    let y1 = b.conv(&e, 6, 6, (3, 3), (1, 1), (1, 1), 6, true);
    let y2 = b.conv(&y1, 6, 6, (3, 3), (1, 1), (1, 1), 6, true);
    b.output(&y2);
    let m = b.build();
    let g = graph_of(&m);
    let data = dataset(4, &[3, 9, 11], 2);
    let (_, indep) = fusec::calibrate::calibrate_with(&m, &g, &data, &FitOptions::new(Variant::Half)).unwrap();
    let (_, seq) = fusec::calibrate::calibrate_with(&m, &g, &data, &FitOptions { sequential: true, ..FitOptions::new(Variant::Half) }).unwrap();
    assert_eq!((indep.len(), seq.len()), (2, 2));
    // the first layer sees the same inputs either way
    assert!((indep[0].lsq - seq[0].lsq).abs() < 1e-9);
    // the second sees the student's inputs, so its errors differ
    assert!((indep[1].center - seq[1].center).abs() > 1e-6, "{indep:?} {seq:?}");
}

#[test]
fn bn_recalibration_stores_the_activation_statistics() {
    let b = Block { c: 6, ..Default::default() };
    let mut m = b.model(3);
    let data = dataset(5, &[3, b.h, b.w], 4);
    let bn = m.graph.as_ref().unwrap().node.iter().find(|n| n.op_type() == "BatchNormalization").unwrap().clone();
    // the BN's input, measured directly
    let mut probe = m.clone();
    probe.graph.as_mut().unwrap().output = vec![fusec::onnx::make_value_info(&bn.input[0], 1, None)];
    let mut sum = vec![0f64; 6];
    let mut sq = vec![0f64; 6];
    let mut n = 0f64;
    for s in &data.samples {
        let y = fusec::exec::run(&probe, &[s.x.clone().insert_axis(ndarray::Axis(0)).into_dyn()]).unwrap().remove(0);
        for (idx, &v) in y.indexed_iter() {
            sum[idx[1]] += v as f64;
            sq[idx[1]] += (v as f64).powi(2);
        }
        n += (y.len() / 6) as f64;
    }
    let updated = fusec::calibrate::recalibrate_bn(&mut m, 13, &data, 1).unwrap();
    assert_eq!(updated, 1);
    let g = m.graph.as_ref().unwrap();
    let bn2 = g.node.iter().find(|x| x.op_type() == "BatchNormalization").unwrap();
    let get = |name: &str| fusec::onnx::tensor::Tensor::from_proto(g.initializer.iter().find(|t| t.name() == name).unwrap().clone()).unwrap().to_f32().unwrap();
    let (mean, var) = (get(&bn2.input[3]), get(&bn2.input[4]));
    for c in 0..6 {
        let mu = sum[c] / n;
        assert!((mean[[c]] as f64 - mu).abs() < 1e-4, "mean of channel {c}");
        assert!((var[[c]] as f64 - (sq[c] / n - mu * mu)).abs() < 1e-3, "variance of channel {c}");
    }
    // the old statistics are gone and the model still runs
    assert!(!g.initializer.iter().any(|t| t.name() == bn.input[3]));
    fusec::exec::run(&m, &[data.samples[0].x.clone().insert_axis(ndarray::Axis(0)).into_dyn()]).unwrap();
}

/// `--assign fit` with `--init lsq`: both branches are fitted for every channel
/// and each channel goes to the one that reproduces it; on kernels that are
/// 1×K or K×1 in channels the paper's split does not expect, that is exact
/// where the ordered split is not.
#[test]
fn lsq_fit_assignment_finds_each_channels_branch() {
    use fusec::passes::fuse_depthwise::Assign;
    let b = Block { kernel: Kernel::HalfExact, bias: true, c: 6, ..Default::default() };
    let mut m = b.model(4);
    // reverse the channels of the depthwise kernel: rows now on channels 3..6
    let g0 = graph_of(&m);
    let dw = fusec::passes::fuse_depthwise::depthwise_convs(&g0).unwrap().remove(0);
    let fusec::passes::fuse_depthwise::Candidate::Convertible(d) = dw else { panic!("not convertible") };
    let wname = g0.node(d.node).input(1).unwrap().to_string();
    let mut w = d.weight.clone();
    w.invert_axis(ndarray::Axis(0));
    let t = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name() == wname).unwrap();
    *t = fusec::onnx::tensor::Tensor::from_f32(&wname, &w).into_proto();
    let g = graph_of(&m);
    let data = dataset(6, &[3, b.h, b.w], 1);
    let (_, ordered) = fusec::calibrate::calibrate_with(&m, &g, &data, &FitOptions::new(Variant::Half)).unwrap();
    let (init, fit) = fusec::calibrate::calibrate_with(&m, &g, &data, &FitOptions { assign: Assign::Fit, ..FitOptions::new(Variant::Half) }).unwrap();
    assert!(fit[0].lsq < 1e-3, "fit assignment: lsq error {} on kernels it can represent", fit[0].lsq);
    assert!(ordered[0].lsq > 0.1, "ordered split: lsq error {} should be large here", ordered[0].lsq);
    let chosen = &init.kernels[&d.name].channels;
    assert_eq!((chosen.row.clone(), chosen.col.clone()), (vec![3, 4, 5], vec![0, 1, 2]));
}

//! The whole training graph (loss + backward, BN frozen and in training
//! mode) against finite differences, and short end-to-end fine-tunes.

use super::*;

use fusec::models::builder::Act;
use fusec::tasks::data::{Dataset, Sample};
use fusec::passes::fuse_depthwise::{Init, Variant};
use fusec::train::graph::{self as tgraph, BnMode, Distill, LossSpec};

/// A small MobileNet-style classifier: stem conv, two depthwise-separable
/// blocks (one with stride 2 and a 5×5 kernel), GAP, Gemm, Softmax.
fn classifier(seed: u64, classes: usize) -> ModelProto {
    classifier_at(14, seed, classes)
}

fn classifier_at(opset: i64, seed: u64, classes: usize) -> ModelProto {
    let mut b = ModelBuilder::new(opset, seed);
    let x = b.input("x", &[Dim::Sym("N".into()), Dim::Known(3), Dim::Known(12), Dim::Known(16)]);
    let mut h = b.conv(&x, 3, 8, (3, 3), (2, 2), (1, 1), 1, false);
    h = b.bn(&h, 8);
    h = b.act(&h, Act::Relu);
    h = b.conv(&h, 8, 8, (3, 3), (1, 1), (1, 1), 8, false);
    h = b.bn(&h, 8);
    h = b.act(&h, Act::HardSwish);
    h = b.conv(&h, 8, 12, (1, 1), (1, 1), (0, 0), 1, false);
    h = b.bn(&h, 12);
    h = b.act(&h, Act::Relu6);
    h = b.conv(&h, 12, 12, (5, 5), (2, 2), (2, 2), 12, false);
    h = b.bn(&h, 12);
    h = b.act(&h, Act::Relu);
    h = b.conv(&h, 12, 16, (1, 1), (1, 1), (0, 0), 1, true);
    h = b.act(&h, Act::Relu);
    h = b.op("GlobalAveragePool", &[&h], vec![]);
    h = b.op("Flatten", &[&h], vec![a_int("axis", 1)]);
    h = b.gemm(&h, 16, classes, true);
    let y = b.op("Softmax", &[&h], vec![a_int("axis", 1)]);
    b.output(&y);
    b.build()
}

/// The classifier with a sharper, balanced head: Gemm weights scaled up and
/// biases shifted so that each class wins on a fair share of `data`.
fn balanced(mut teacher: ModelProto, data: &Dataset) -> ModelProto {
    let gemm = teacher.graph.as_ref().unwrap().node.iter().find(|n| n.op_type() == "Gemm").unwrap().clone();
    let scale = |m: &mut ModelProto, name: &str, f: &dyn Fn(usize, f32) -> f32| {
        let t = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name() == name).unwrap();
        let a = Tensor::from_proto(t.clone()).unwrap().to_f32().unwrap();
        let b = ArrayD::from_shape_vec(a.raw_dim(), a.iter().enumerate().map(|(i, v)| f(i, *v)).collect()).unwrap();
        *t = Tensor::from_f32(name, &b).into_proto();
    };
    scale(&mut teacher, &gemm.input[1], &|_, v| v * 30.0);
    for _ in 0..3 {
        let (_, probs, _) = fusec::tasks::classify::predict(&teacher, data).unwrap();
        let k = probs[0].len();
        let mean: Vec<f32> = (0..k).map(|c| probs.iter().map(|p| p[c].max(1e-12).ln()).sum::<f32>() / probs.len() as f32).collect();
        scale(&mut teacher, &gemm.input[2], &|i, v| v - mean[i]);
    }
    teacher
}

fn images(n: usize, seed: u64) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut samples = vec![];
    for i in 0..n {
        let p: Vec<f32> = rand_vec(9, -1.0, 1.0, &mut rng);
        let x = ndarray::Array3::from_shape_fn((3, 12, 16), |(c, y, x)| {
            (p[c] * 2.0 + 0.5 * y as f32 * p[3 + c]).sin() + (p[6 + c] * 3.0 + 0.4 * x as f32 * p[c]).cos() * 0.7
        });
        samples.push(Sample::new(format!("s{i}"), x, None));
    }
    Dataset { samples, classes: (0..3).map(|c| c.to_string()).collect() }
}

/// Smooth random images; labels are the teacher's own predictions.
fn teacher_labelled(teacher: &ModelProto, n: usize, seed: u64) -> Dataset {
    let mut data = images(n, seed);
    let (pred, _, _) = fusec::tasks::classify::predict(teacher, &data).unwrap();
    for (s, p) in data.samples.iter_mut().zip(pred) {
        s.label = Some(p);
    }
    data
}

pub(crate) fn trainable_initializers(m: &ModelProto) -> Vec<String> {
    fusec::train::trainable(m, fusec::train::TrainSet::All)
}

#[test]
fn training_graph_gradients_match_finite_differences() {
    runtime::init().unwrap();
    // opset 18 moves the reduction axes from attributes to inputs; peak weight 2: each
    // sample's KL weighed by 1 + 2·(1 − its teacher's probability of class 0); miss weight
    // 2: by 3 where the student's best class is not the teacher's
    let mut losses = vec![];
    for (opset, bn, peak, miss) in [(14, BnMode::Frozen, 0.0, 0.0), (14, BnMode::Train, 0.0, 0.0), (18, BnMode::Train, 0.0, 0.0), (14, BnMode::Frozen, 2.0, 0.0), (14, BnMode::Frozen, 0.0, 2.0)] {
        let teacher = classifier_at(opset, 3, 3);
        let (student, _) = common::convert(&teacher, Variant::Half, Init::Center);
        let params = trainable_initializers(&student);
        assert!(params.len() >= 10, "{params:?}");
        // a feature loss on the first block's output (a tensor both models have)
        let feature = student.graph.as_ref().unwrap().node.iter().find(|n| n.op_type() == "Concat").unwrap().output[0].clone();
        let outputs = fusec::train::loss::resolve(student.graph.as_ref().unwrap(), teacher.graph.as_ref().unwrap(), &[2], fusec::train::LossKind::Kl, &[]).unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].kind, fusec::train::LossKind::Kl);
        let loss = LossSpec { distill: Distill::Kl, temperature: 2.0, emphasis: fusec::train::Emphasis { peak, miss, ..Default::default() }, distill_weight: 1.0, overrides: vec![], outputs, label_weight: 0.5, feature_weight: 0.3, features: vec![feature.clone()], ctc_weight: 0.0 };
        let spec = tgraph::Spec { batch: 4, input_shape: vec![4, 3, 12, 16], trainable: &params, bn, loss: &loss, labels: true, teacher_shapes: Default::default() };
        let tg = tgraph::build(&student, &spec).unwrap();
        assert!(tg.unreachable.is_empty(), "{:?}", tg.unreachable);
        assert_eq!(tg.bn.len(), if bn == BnMode::Train { 4 } else { 0 });
        let mut sess = runtime::session(&tg.model, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let x = rand_vec(4 * 3 * 12 * 16, -1.0, 1.0, &mut rng);
        let mut fixed: Vec<(String, Vec<usize>, Vec<f32>)> = vec![(tg.input.clone(), tg.input_shape.clone(), x)];
        for (_, name, shape) in &tg.teacher_inputs {
            fixed.push((name.clone(), shape.clone(), rand_vec(shape.iter().product(), -1.0, 1.0, &mut rng)));
        }
        let mut onehot = vec![0.0f32; 12];
        for i in 0..4 {
            onehot[i * 3 + i % 3] = 1.0;
        }
        fixed.push((tg.labels_input.clone().unwrap(), vec![4, 3], onehot));
        let l = check_loss_gradient(&tg, &student, &mut sess, &fixed, &mut rng, &format!("opset {opset} {bn:?} peak weight {peak} miss weight {miss}"));
        losses.push(l);
    }
    // the same inputs with and without the peak weight: every sample weighs 1 to 3,
    // its class 0 not certain, so the weighted loss lies strictly between
    let (l0, l2, m2) = (losses[0], losses[3], losses[4]);
    assert!(l2 > l0 * 1.05 && l2 < 3.0 * l0, "loss {l0} unweighted, {l2} with peak weight 2");
    assert!(m2 > l0 * 1.05 && m2 < 3.0 * l0, "loss {l0} unweighted, {m2} with miss weight 2");
}

/// The training graph's loss against central finite differences along 3 random
/// directions of its parameters (started from the student's initializers);
/// `fixed` feeds the other inputs (batch, teacher values, labels). Returns the loss.
pub(crate) fn check_loss_gradient(tg: &tgraph::TrainGraph, student: &ModelProto, sess: &mut ort::session::Session, fixed: &[(String, Vec<usize>, Vec<f32>)], rng: &mut StdRng, what: &str) -> f64 {
    let init: std::collections::HashMap<String, Vec<f32>> = student
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .filter(|t| t.data_type() == fusec::onnx::dtype::FLOAT)
        .map(|t| (t.name().to_string(), Tensor::from_proto(t.clone()).unwrap().to_f32().unwrap().iter().copied().collect()))
        .collect();
    let theta: Vec<Vec<f32>> = tg.params.iter().map(|p| init[p].clone()).collect();
    let mut run = |theta: &[Vec<f32>], outputs: &[String]| {
        let mut feeds: Vec<Feed> = fixed.iter().map(|(n, s, v)| Feed { name: n, shape: s.clone(), data: v }).collect();
        for (i, p) in tg.params.iter().enumerate() {
            feeds.push(Feed { name: p, shape: tg.param_shapes[i].clone(), data: &theta[i] });
        }
        runtime::run(sess, &feeds, outputs).unwrap()
    };
    let mut want = vec!["loss".to_string()];
    want.extend(tg.grads.iter().cloned());
    let out = run(&theta, &want);
    for trial in 0..3 {
        let eps = 1e-3f32;
        let dir: Vec<Vec<f32>> = theta.iter().map(|v| rand_vec(v.len(), -1.0, 1.0, rng)).collect();
        let shifted = |sign: f32| -> Vec<Vec<f32>> { theta.iter().zip(&dir).map(|(t, d)| t.iter().zip(d).map(|(a, b)| a + sign * eps * b).collect()).collect() };
        let lp = run(&shifted(1.0), &["loss".to_string()])[0].iter().next().copied().unwrap() as f64;
        let lm = run(&shifted(-1.0), &["loss".to_string()])[0].iter().next().copied().unwrap() as f64;
        let fd = (lp - lm) / (2.0 * eps as f64);
        let an: f64 = out[1..].iter().zip(&dir).map(|(g, d)| g.iter().zip(d).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>()).sum();
        let tol = 3e-2 * fd.abs().max(an.abs()) + 1e-3;
        assert!((fd - an).abs() <= tol, "{what} trial {trial}: finite difference {fd:.6} vs gradient {an:.6}");
        assert!(an.abs() > 1e-2, "{what}: vacuous check ({an})");
    }
    out[0].iter().next().copied().unwrap() as f64
}

fn accuracy(model: &ModelProto, data: &Dataset) -> f64 {
    let (pred, _, _) = fusec::tasks::classify::predict(model, data).unwrap();
    pred.iter().zip(&data.samples).filter(|(p, s)| Some(**p) == s.label).count() as f64 / data.samples.len() as f64
}

#[test]
fn short_finetune_lowers_the_loss_and_recovers_accuracy() {
    let teacher = balanced(classifier(21, 3), &images(192, 1));
    let (student, _) = common::convert(&teacher, Variant::Half, Init::Center);
    let data = teacher_labelled(&teacher, 192, 1);
    let held_out = teacher_labelled(&teacher, 96, 2);
    for c in 0..3 {
        let share = held_out.samples.iter().filter(|s| s.label == Some(c)).count();
        assert!(share >= 96 / 6, "class {c} has {share} of 96 samples: the task is too easy to mean anything");
    }
    let before = accuracy(&student, &held_out);
    let opts = fusec::train::Options { epochs: 12, batch: 16, lr: 1e-2, warmup: 10, ..Default::default() };
    let (tuned, summary) = fusec::train::finetune(&student, &teacher, &data, Some(&held_out), &opts).unwrap();
    let after = accuracy(&tuned, &held_out);
    let early: f32 = summary.curve[..12].iter().map(|p| p.loss).sum::<f32>() / 12.0;
    let late: f32 = summary.curve[summary.curve.len() - 12..].iter().map(|p| p.loss).sum::<f32>() / 12.0;
    assert!(late < 0.5 * early, "loss {early} -> {late}");
    assert!(after > before + 0.1, "held-out agreement with the teacher {before} -> {after}");
    // the in-loop evaluation (ORT, fed weights) agrees with tract on the written model
    assert!((summary.eval_after.unwrap() - 100.0 * after).abs() < 1e-6, "{:?} vs {after}", summary.eval_after);
    assert_eq!(summary.steps, 12 * (192 / 16));
    // same structure as the student: same nodes, same initializer names and shapes
    let (gs, gt) = (student.graph.as_ref().unwrap(), tuned.graph.as_ref().unwrap());
    assert_eq!(gs.node, gt.node);
    let shapes = |g: &fusec::onnx::GraphProto| g.initializer.iter().map(|t| (t.name().to_string(), t.dims.clone())).collect::<Vec<_>>();
    assert_eq!(shapes(gs), shapes(gt));
    // ORT and tract agree on the trained model
    let x = common::random_input(&[2, 3, 12, 16], 3);
    let a = fusec::exec::run(&tuned, &[x.clone()]).unwrap();
    let mut s = runtime::session(&tuned, 1).unwrap();
    let b = runtime::run(&mut s, &[Feed { name: "x", shape: vec![2, 3, 12, 16], data: x.as_slice().unwrap() }], &[]).unwrap();
    common::assert_close(&a[0], &b[0], 1e-4, 1e-5, "tract vs ORT");
}

/// A small ResNet-style classifier: stem conv, two bottlenecks (1×1 → dense
/// 3×3 → 1×1, identity and projection shortcuts), GAP, Gemm, Softmax.
fn resnet_classifier(seed: u64, classes: usize) -> ModelProto {
    let mut b = ModelBuilder::new(14, seed);
    let x = b.input("x", &[Dim::Sym("N".into()), Dim::Known(3), Dim::Known(12), Dim::Known(16)]);
    let mut y = b.conv(&x, 3, 8, (3, 3), (2, 2), (1, 1), 1, false);
    y = b.bn(&y, 8);
    y = b.act(&y, Act::Relu);
    let w = 6;
    let mut c_in = 8;
    for (c_out, stride) in [(8, 1), (12, 2)] {
        let mut h = b.conv(&y, c_in, w, (1, 1), (1, 1), (0, 0), 1, false);
        h = b.bn(&h, w);
        h = b.act(&h, Act::Relu);
        h = b.conv(&h, w, w, (3, 3), (stride, stride), (1, 1), 1, false);
        h = b.bn(&h, w);
        h = b.act(&h, Act::Relu);
        h = b.conv(&h, w, c_out, (1, 1), (1, 1), (0, 0), 1, false);
        h = b.bn(&h, c_out);
        let short = if stride == 1 && c_in == c_out { y.clone() } else { b.conv(&y, c_in, c_out, (1, 1), (stride, stride), (0, 0), 1, false) };
        let sum = b.op("Add", &[&h, &short], vec![]);
        y = b.act(&sum, Act::Relu);
        c_in = c_out;
    }
    y = b.op("GlobalAveragePool", &[&y], vec![]);
    y = b.op("Flatten", &[&y], vec![a_int("axis", 1)]);
    y = b.gemm(&y, c_in, classes, true);
    let y = b.op("Softmax", &[&y], vec![a_int("axis", 1)]);
    b.output(&y);
    b.build()
}

/// `--dense` on a ResNet-style classifier: both bottlenecks' 3×3 convs become
/// FuSe Half blocks (no cross-channel terms left), which costs the model much
/// of its agreement with the original; distillation wins most of it back.
#[test]
fn a_dense_fuse_resnet_recovers_its_teacher_by_distillation() {
    use fusec::passes::fuse_depthwise::{Assign, FuseDepthwise, Options};
    let teacher = balanced(resnet_classifier(23, 3), &images(192, 1));
    let mut g = common::graph_of(&teacher);
    let pass = FuseDepthwise::new(Options { variant: Variant::Half, init: Init::Center, assign: Assign::Ordered, layers: Default::default(), skip: vec![], dense: true }).unwrap();
    let reports = fusec::passes::run_pipeline(&mut g, &[Box::new(pass)], &Default::default()).unwrap();
    let r = &reports[0].1;
    assert_eq!(r.rewrites.len(), 2, "{:?}", r.skipped);
    assert!(r.skipped.iter().any(|(_, why)| why.contains("graph input")), "the stem stays dense: {:?}", r.skipped);
    let mut student = teacher.clone();
    student.graph = Some(g.to_proto().unwrap());
    let data = teacher_labelled(&teacher, 192, 1);
    let train_before = accuracy(&student, &data);
    let held_out = teacher_labelled(&teacher, 96, 2);
    let before = accuracy(&student, &held_out);
    let opts = fusec::train::Options { epochs: 60, batch: 16, lr: 1e-2, warmup: 10, ..Default::default() };
    let (tuned, summary) = fusec::train::finetune(&student, &teacher, &data, Some(&held_out), &opts).unwrap();
    let after = accuracy(&tuned, &held_out);
    let train_after = accuracy(&tuned, &data);
    let early: f32 = summary.curve[..12].iter().map(|p| p.loss).sum::<f32>() / 12.0;
    let late: f32 = summary.curve[summary.curve.len() - 12..].iter().map(|p| p.loss).sum::<f32>() / 12.0;
    eprintln!("dense FuSe ResNet: agreement held out {before:.3} -> {after:.3}, trained on {train_before:.3} -> {train_after:.3}, loss {early:.4} -> {late:.4}");
    // measured: held out 0.750 -> 0.865, trained on 0.750 -> 0.917, loss 17.2 -> 1.8
    assert!(late < 0.25 * early, "loss {early} -> {late}");
    assert!(before < 0.8, "the rewrite should cost agreement ({before}) for the test to mean anything");
    // most of what the rewrite cost is won back on the samples trained on, and clearly on held-out ones
    assert!(train_after - train_before > 0.5 * (1.0 - train_before), "agreement on the training samples {train_before} -> {train_after}");
    assert!(after > before + 0.08, "held-out agreement with the teacher {before} -> {after}");
}

/// A learning rate far too high for plain SGD makes the loss run away (inf at step 17 here);
/// the divergence guard goes back to the last healthy epoch end with half the rate, and
/// training settles.
#[test]
fn the_divergence_guard_rolls_a_runaway_run_back() {
    let teacher = balanced(classifier(21, 3), &images(192, 1));
    let (student, _) = common::convert(&teacher, Variant::Half, Init::Center);
    let data = teacher_labelled(&teacher, 192, 1);
    let opts = fusec::train::Options { epochs: 8, batch: 16, lr: 0.1, warmup: 0, optimizer: fusec::train::Optimizer::Sgd, divergence_ratio: None, ..Default::default() };
    let steps = 8 * (192 / 16);
    // without the guard: the loss ends far above its lowest, or becomes NaN
    match fusec::train::finetune(&student, &teacher, &data, None, &opts) {
        Ok((_, s)) => {
            let lowest = s.curve.iter().map(|p| p.loss).fold(f32::INFINITY, f32::min);
            let late = s.curve[steps - 12..].iter().map(|p| p.loss).sum::<f32>() / 12.0;
            assert!(!(late < 10.0 * lowest), "lr 0.1 should run away: lowest {lowest}, last epoch {late}");
        }
        Err(e) => assert!(e.to_string().contains("loss became"), "{e}"),
    }
    let opts = fusec::train::Options { divergence_ratio: Some(10.0), ..opts };
    let (_, s) = fusec::train::finetune(&student, &teacher, &data, None, &opts).unwrap();
    assert!(!s.rollbacks.is_empty(), "the guard rolled back");
    for (i, r) in s.rollbacks.iter().enumerate() {
        assert!(r.to_step < r.at_step && r.to_step % 12 == 0, "back to an epoch end: {r:?}");
        assert_eq!(r.lr_scale, 0.5f32.powi(i as i32 + 1));
    }
    // the curve is that of the run that stands: one point per step, in order, lr scaled
    assert_eq!(s.curve.len(), steps);
    assert!(s.curve.iter().enumerate().all(|(i, p)| p.step == i + 1 && p.loss.is_finite()));
    let scale = s.rollbacks.last().unwrap().lr_scale;
    let last = s.curve.last().unwrap();
    let lowest = s.curve.iter().map(|p| p.loss).fold(f32::INFINITY, f32::min);
    let late = s.curve[steps - 12..].iter().map(|p| p.loss).sum::<f32>() / 12.0;
    assert!(late < 10.0 * lowest, "settled: lowest {lowest}, last epoch {late}");
    let cos = 0.5 * (1.0 + (std::f32::consts::PI * (steps - 1) as f32 / steps as f32).cos());
    assert!((last.lr - 0.1 * scale * cos).abs() < 1e-8, "{} vs {}", last.lr, 0.1 * scale * cos);
    // the scale is part of the checkpoint: a run paused after the rollbacks resumes at it
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.npz");
    let first = fusec::train::Options { checkpoint: Some(ck.clone()), stop_after: Some(steps - 12), ..opts.clone() };
    let (_, s1) = fusec::train::finetune(&student, &teacher, &data, None, &first).unwrap();
    assert!(s1.paused && s1.rollbacks.last().map(|r| r.lr_scale) == Some(scale), "{:?}", s1.rollbacks);
    let (_, s2) = fusec::train::finetune(&student, &teacher, &data, None, &fusec::train::Options { resume: Some(ck), ..opts.clone() }).unwrap();
    assert!((s2.curve.last().unwrap().lr - last.lr).abs() < 1e-9, "resumed at lr {} instead of {}", s2.curve.last().unwrap().lr, last.lr);
}

#[test]
fn resuming_from_a_checkpoint_gives_the_same_weights() {
    // with --ema: the checkpoint carries the average too
    let teacher = classifier(5, 3);
    let (student, _) = common::convert(&teacher, Variant::Full, Init::Sum);
    let data = teacher_labelled(&teacher, 64, 3);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.npz");
    let base = fusec::train::Options { steps: Some(8), batch: 16, lr: 5e-3, warmup: 2, augment: fusec::train::Augment::ON, seed: 9, ema: Some(0.9), ..Default::default() };
    let (straight, _) = fusec::train::finetune(&student, &teacher, &data, None, &base).unwrap();
    let first = fusec::train::Options { checkpoint: Some(ck.clone()), stop_after: Some(5), ..base.clone() };
    let (_, s1) = fusec::train::finetune(&student, &teacher, &data, None, &first).unwrap();
    assert!(s1.paused && !s1.interrupted && s1.steps == 5);
    let second = fusec::train::Options { resume: Some(ck.clone()), ..base.clone() };
    let (resumed, s2) = fusec::train::finetune(&student, &teacher, &data, None, &second).unwrap();
    assert_eq!(s2.steps, 8);
    assert_eq!(straight.graph.as_ref().unwrap().initializer, resumed.graph.as_ref().unwrap().initializer);
    // a checkpoint of another model is refused
    let other = classifier(6, 4);
    let (other_s, _) = common::convert(&other, Variant::Half, Init::Center);
    let err = fusec::train::finetune(&other_s, &other, &data, None, &second).unwrap_err().to_string();
    assert!(err.contains("--resume") && err.contains("another model"), "{err}");
}

/// The `Trainer` driven step by step is `finetune`: the same weights; its
/// observer hears every step and every epoch's evaluation; a cancel token set
/// during a step stops the run after it, with a checkpoint to resume from.
#[test]
fn the_trainer_step_by_step_is_finetune_and_stops_when_cancelled() {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    let teacher = classifier(5, 3);
    let (student, _) = common::convert(&teacher, Variant::Half, Init::Sum);
    let data = teacher_labelled(&teacher, 64, 3);
    let held = teacher_labelled(&teacher, 16, 4);
    let opts = fusec::train::Options { epochs: 2, batch: 16, lr: 5e-3, warmup: 2, seed: 3, ..Default::default() };
    let (straight, s0) = fusec::train::finetune(&student, &teacher, &data, Some(&held), &opts).unwrap();
    #[derive(Default)]
    struct Heard {
        start: Option<(usize, usize)>,
        steps: Vec<usize>,
        lines: Vec<String>,
        finished: bool,
    }
    struct Recorder(Arc<Mutex<Heard>>);
    impl fusec::train::Observer for Recorder {
        fn start(&mut self, total: usize, at: usize) {
            self.0.lock().unwrap().start = Some((total, at));
        }
        fn step(&mut self, step: usize, _loss: f32, _sps: f64) {
            self.0.lock().unwrap().steps.push(step);
        }
        fn line(&mut self, line: &str) {
            self.0.lock().unwrap().lines.push(line.to_string());
        }
        fn finish(&mut self) {
            self.0.lock().unwrap().finished = true;
        }
    }
    let heard = Arc::new(Mutex::new(Heard::default()));
    let mut t = fusec::train::Trainer::new(&student, &teacher, &data, Some(&held), &opts).unwrap().with_observer(Box::new(Recorder(heard.clone())));
    assert_eq!(t.progress(), (0, 8));
    let mut epochs = 0;
    while !t.done() {
        if let fusec::train::Stepped::Step { epoch_end: true } = t.step().unwrap() {
            t.end_epoch().unwrap();
            epochs += 1;
        }
    }
    let (stepped, s1) = t.finish().unwrap();
    assert_eq!(straight.graph.as_ref().unwrap().initializer, stepped.graph.as_ref().unwrap().initializer);
    assert_eq!((s1.steps, epochs), (8, 2));
    assert_eq!(s1.curve.iter().map(|p| p.eval).collect::<Vec<_>>(), s0.curve.iter().map(|p| p.eval).collect::<Vec<_>>());
    let h = heard.lock().unwrap();
    assert_eq!(h.start, Some((8, 0)));
    assert_eq!(h.steps, (1..=8).collect::<Vec<_>>());
    assert_eq!(h.lines.iter().filter(|l| l.starts_with("epoch ")).count(), 2, "{:?}", h.lines);
    assert!(h.finished);
    // cancelled during step 3: the run stops after it, checkpointed, and resumes to the same weights
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.npz");
    let with_ck = fusec::train::Options { checkpoint: Some(ck.clone()), ..opts.clone() };
    let cancel = fusec::train::Cancel::default();
    struct CancelAt(usize, fusec::train::Cancel);
    impl fusec::train::Observer for CancelAt {
        fn step(&mut self, step: usize, _loss: f32, _sps: f64) {
            if step == self.0 {
                self.1.store(true, Ordering::SeqCst);
            }
        }
    }
    let mut t = fusec::train::Trainer::new(&student, &teacher, &data, Some(&held), &with_ck).unwrap().with_observer(Box::new(CancelAt(3, cancel.clone()))).with_cancel(cancel);
    t.run().unwrap();
    let (_, s2) = t.finish().unwrap();
    assert!(s2.interrupted && !s2.paused && s2.steps == 3, "{} steps", s2.steps);
    let (resumed, s3) = fusec::train::finetune(&student, &teacher, &data, Some(&held), &fusec::train::Options { resume: Some(ck), ..opts.clone() }).unwrap();
    assert_eq!(s3.steps, 8);
    assert_eq!(straight.graph.as_ref().unwrap().initializer, resumed.graph.as_ref().unwrap().initializer);
}

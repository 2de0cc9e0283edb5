//! Fine-tuning models with other outputs than class scores: probability
//! maps and regression heads (BCE/NSE and their exact gradients), CTC
//! recognizers, batch-one exports, micro-batches, EMA, calibrated maps.

use super::*;

use super::training::{check_loss_gradient, trainable_initializers};
use fusec::models::builder::Act;
use fusec::tasks::data::{Dataset, Sample};
use fusec::passes::fuse_depthwise::{Init, Variant};
use fusec::train::graph::{self as tgraph, BnMode, Distill, LossSpec};

/// A small detector-like model with two heads: a probability map (a Sigmoid
/// after nearest upsampling and a transposed conv) and a regression head
/// reshaped to [N, anchors, 4]. `fixed`: the batch the input and the Reshape
/// carry (as exported with a fixed batch), else a symbolic batch.
fn two_heads(seed: u64, fixed: Option<i64>) -> ModelProto {
    let mut b = ModelBuilder::new(13, seed);
    let n = fixed.map_or(Dim::Sym("N".into()), Dim::Known);
    let x = b.input("x", &[n, Dim::Known(3), Dim::Known(8), Dim::Known(8)]);
    let mut h = b.conv(&x, 3, 8, (3, 3), (2, 2), (1, 1), 1, true);
    h = b.act(&h, Act::Relu);
    h = b.conv(&h, 8, 8, (3, 3), (1, 1), (1, 1), 8, true);
    h = b.act(&h, Act::HardSwish);
    h = b.conv(&h, 8, 6, (1, 1), (1, 1), (0, 0), 1, true);
    let roi = b.constant("roi", &ArrayD::zeros(ndarray::IxDyn(&[0])));
    let sc = b.constant("scales", &ndarray::arr1(&[1.0f32, 1.0, 2.0, 2.0]).into_dyn());
    let up = b.op("Resize", &[&h, &roi, &sc], vec![a_string("mode", "nearest"), a_string("coordinate_transformation_mode", "asymmetric"), a_string("nearest_mode", "floor")]);
    let wt = weight(&mut b, "ct.w", &[6, 1, 2, 2], -0.5, 0.5);
    let ct = b.op("ConvTranspose", &[&up, &wt], vec![a_ints("strides", &[2, 2])]);
    let map = b.op("Sigmoid", &[&ct], vec![]);
    b.output(&map);
    let reg = b.conv(&h, 6, 4, (1, 1), (1, 1), (0, 0), 1, true);
    let shape = b.constant_i64("shape", &[3], &[fixed.unwrap_or(0), 4, -1]);
    let r = b.op("Reshape", &[&reg, &shape], vec![]);
    let t = b.op("Transpose", &[&r], vec![a_ints("perm", &[0, 2, 1])]);
    b.output(&t);
    b.build()
}

fn images_8(n: usize, seed: u64) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let samples = (0..n).map(|i| Sample::new(format!("s{i}"), ndarray::Array3::from_shape_vec((3, 8, 8), rand_vec(192, -1.0, 1.0, &mut rng)).unwrap(), None)).collect();
    Dataset { samples, classes: vec![] }
}

#[test]
fn dense_outputs_get_bce_and_nse_and_their_gradients_are_exact() {
    runtime::init().unwrap();
    let teacher = two_heads(4, None);
    let (student, _) = common::convert(&teacher, Variant::Half, Init::Center);
    let (sg, tg_) = (student.graph.as_ref().unwrap(), teacher.graph.as_ref().unwrap());
    let outputs = fusec::train::loss::resolve(sg, tg_, &[4, 3], fusec::train::LossKind::Kl, &[]).unwrap();
    let kinds: Vec<_> = outputs.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, [fusec::train::LossKind::Bce, fusec::train::LossKind::Nse]);
    // BCE is seeded at the Sigmoid's input and compared with the teacher's probabilities
    let sig = sg.node.iter().find(|n| n.op_type() == "Sigmoid").unwrap();
    assert_eq!(outputs[0].tensor, sig.input[0]);
    assert_eq!(outputs[0].teacher_tensor, sig.output[0]);
    // an override: MSE on the map, with a weight
    let ov: fusec::train::OutputLossArg = format!("{}=mse@0.5", sig.output[0]).parse().unwrap();
    let o2 = fusec::train::loss::resolve(sg, tg_, &[4, 3], fusec::train::LossKind::Kl, &[ov]).unwrap();
    assert_eq!((o2[0].kind, o2[0].weight, o2[0].tensor.as_str()), (fusec::train::LossKind::Mse, 0.5, sig.output[0].as_str()));
    // by kind, as recipes name it: [map] is every Sigmoid probability map; a later entry wins
    let by_kind: fusec::train::OutputLossArg = "[map]=bce:20".parse().unwrap();
    let o3 = fusec::train::loss::resolve(sg, tg_, &[4, 3], fusec::train::LossKind::Kl, &[by_kind.clone()]).unwrap();
    assert_eq!((o3[0].kind, o3[0].weight, o3[1].kind, o3[1].weight), (fusec::train::LossKind::Bce, 20.0, fusec::train::LossKind::Nse, 1.0));
    let named: fusec::train::OutputLossArg = format!("{}=bce:3", sig.output[0]).parse().unwrap();
    let o4 = fusec::train::loss::resolve(sg, tg_, &[4, 3], fusec::train::LossKind::Kl, &[by_kind, named]).unwrap();
    assert_eq!(o4[0].weight, 3.0, "the output's own entry wins over its kind's");
    let odd: fusec::train::OutputLossArg = "[maps]=bce".parse().unwrap();
    let err = fusec::train::loss::resolve(sg, tg_, &[4, 3], fusec::train::LossKind::Kl, &[odd]).unwrap_err().to_string();
    assert!(err.contains("[scores], [map], [other]"), "{err}");
    let bad: fusec::train::OutputLossArg = "nope=mse".parse().unwrap();
    let err = fusec::train::loss::resolve(sg, tg_, &[4, 3], fusec::train::LossKind::Kl, &[bad]).unwrap_err().to_string();
    assert!(err.contains("--output-loss") && err.contains("nope"), "{err}");
    // loss + backward against finite differences (teacher values: probabilities in (0, 1))
    let params = trainable_initializers(&student);
    // edge weight 3: the map's pixels weighed by 1 + 3·4t(1 − t); hard 0.5: the target
    // halfway to the teacher's map thresholded at 0.3; the next two: a fully hardened
    // target is the teacher's map given as 0/1 (`binary`); region: per-pixel weights fed
    // as an input of the map's shape (here random, the host computes them in training)
    let mut losses = vec![];
    for (edge_weight, hard, binary, region) in [(0.0, 0.0, false, 0.0), (3.0, 0.0, false, 0.0), (0.0, 0.5, false, 0.0), (0.0, 1.0, false, 0.0), (0.0, 0.0, true, 0.0), (0.0, 0.0, false, 1.0)] {
        let loss = LossSpec { distill: Distill::Kl, temperature: 1.0, emphasis: fusec::train::Emphasis { edge: edge_weight, hard, hard_thresh: 0.3, region, ..Default::default() }, distill_weight: 1.0, overrides: vec![], outputs: outputs.clone(), label_weight: 0.0, feature_weight: 0.0, features: vec![], ctc_weight: 0.0 };
        let spec = tgraph::Spec { batch: 2, input_shape: vec![2, 3, 8, 8], trainable: &params, bn: BnMode::Frozen, loss: &loss, labels: false, teacher_shapes: Default::default() };
        let tg = tgraph::build(&student, &spec).unwrap();
        assert!(tg.unreachable.is_empty(), "{:?}", tg.unreachable);
        let mut sess = runtime::session(&tg.model, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(8);
        let mut fixed: Vec<(String, Vec<usize>, Vec<f32>)> = vec![(tg.input.clone(), tg.input_shape.clone(), rand_vec(2 * 3 * 64, -1.0, 1.0, &mut rng))];
        for (i, (_, name, shape)) in tg.teacher_inputs.iter().enumerate() {
            let mut t = rand_vec(shape.iter().product(), 0.05, 0.95, &mut rng);
            if binary && i == 0 {
                t.iter_mut().for_each(|v| *v = if *v > 0.3 { 1.0 } else { 0.0 });
            }
            fixed.push((name.clone(), shape.clone(), t));
        }
        assert_eq!(tg.region_inputs.len(), usize::from(region > 0.0), "one weight input for the map when region > 0");
        let mut pixel_w = vec![];
        for (ti, name) in &tg.region_inputs {
            let shape = tg.teacher_inputs[*ti].2.clone();
            pixel_w = rand_vec(shape.iter().product(), 0.0, 3.0, &mut rng);
            fixed.push((name.clone(), shape, pixel_w.clone()));
        }
        losses.push(check_loss_gradient(&tg, &student, &mut sess, &fixed, &mut rng, &format!("BCE (edge weight {edge_weight}, hard {hard}, binary {binary}, region {region}) + NSE")));
        if region > 0.0 {
            // weights of one: the unweighted loss (same inputs and teacher values as the first case)
            let ones = fixed.iter().position(|f| f.0 == tg.region_inputs[0].1).unwrap();
            fixed[ones].2 = vec![1.0; pixel_w.len()];
            let l1 = check_loss_gradient(&tg, &student, &mut sess, &fixed, &mut rng, "BCE (region weights of one) + NSE");
            assert!((l1 - losses[0]).abs() <= 1e-5 * losses[0].abs(), "weights of one {l1} vs unweighted {}", losses[0]);
            assert!((losses[5] - losses[0]).abs() > 1e-3 * losses[0].abs(), "random weights {} vs unweighted {}", losses[5], losses[0]);
        }
    }
    assert!((losses[3] - losses[4]).abs() <= 1e-5 * losses[4].abs(), "hardened {} vs 0/1 teacher {}", losses[3], losses[4]);
    assert!((losses[2] - losses[0]).abs() > 1e-3 * losses[0].abs(), "hard 0.5 {} vs soft {}", losses[2], losses[0]);
}

#[test]
fn micro_batches_accumulate_to_the_same_update_as_one_batch() {
    let teacher = two_heads(6, None);
    let (student, _) = common::convert(&teacher, Variant::Half, Init::Center);
    let data = images_8(32, 2);
    let base = fusec::train::Options { steps: Some(2), lr: 1e-2, warmup: 0, bn: BnMode::Frozen, ..Default::default() };
    // normalised squared errors are ratios of batch sums, not means: for an exact comparison
    // the regression head gets MSE and the block-output loss is left out
    let mut base = base;
    base.loss.feature_weight = 0.0;
    let reg = student.graph.as_ref().unwrap().output[1].name().to_string();
    base.loss.overrides = vec![format!("{reg}=mse").parse().unwrap()];
    let one = fusec::train::Options { batch: 16, accumulate: 1, ..base.clone() };
    let four = fusec::train::Options { batch: 4, accumulate: 4, ..base.clone() };
    let (a, sa) = fusec::train::finetune(&student, &teacher, &data, None, &one).unwrap();
    let (b, sb) = fusec::train::finetune(&student, &teacher, &data, None, &four).unwrap();
    assert_eq!((sa.micro_batch, sa.accumulate, sb.micro_batch, sb.accumulate), (16, 1, 4, 4));
    assert!((sa.first_loss - sb.first_loss).abs() <= 1e-5 * sa.first_loss.abs(), "{} vs {}", sa.first_loss, sb.first_loss);
    let vals = |m: &ModelProto| -> Vec<f32> {
        m.graph.as_ref().unwrap().initializer.iter().filter(|t| t.data_type() == fusec::onnx::dtype::FLOAT).flat_map(|t| Tensor::from_proto(t.clone()).unwrap().to_f32().unwrap().iter().copied().collect::<Vec<_>>()).collect()
    };
    let (va, vb, v0) = (vals(&a), vals(&b), vals(&student));
    let moved = va.iter().zip(&v0).filter(|(x, y)| (*x - *y).abs() > 1e-4).count();
    assert!(moved > va.len() / 4, "the update is too small to compare ({moved} of {} moved)", va.len());
    let worst = va.iter().zip(&vb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "16 = 4 x 4: weights differ by {worst}");
}

#[test]
fn ema_writes_the_moving_average_of_the_weights() {
    let teacher = two_heads(8, None);
    let (student, _) = common::convert(&teacher, Variant::Half, Init::Center);
    let data = images_8(16, 4);
    let vals = |m: &ModelProto| -> Vec<f32> {
        m.graph.as_ref().unwrap().initializer.iter().filter(|t| t.data_type() == fusec::onnx::dtype::FLOAT).flat_map(|t| Tensor::from_proto(t.clone()).unwrap().to_f32().unwrap().iter().copied().collect::<Vec<_>>()).collect()
    };
    let v0 = vals(&student);
    // the same steps with and without the average: the parameters follow the same path
    let mut last = vec![v0.clone()];
    for steps in 1..=2 {
        let plain = fusec::train::Options { steps: Some(steps), batch: 8, lr: 1e-2, warmup: 0, bn: BnMode::Frozen, ..Default::default() };
        last.push(vals(&fusec::train::finetune(&student, &teacher, &data, None, &plain).unwrap().0));
    }
    let (p1, p2) = (&last[1], &last[2]);
    let moved = p2.iter().zip(&v0).filter(|(x, y)| (*x - *y).abs() > 1e-4).count();
    assert!(moved > v0.len() / 4, "the update is too small to compare ({moved} of {} moved)", v0.len());
    let with = fusec::train::Options { steps: Some(2), batch: 8, lr: 1e-2, warmup: 0, bn: BnMode::Frozen, ema: Some(0.99), ..Default::default() };
    let avg = vals(&fusec::train::finetune(&student, &teacher, &data, None, &with).unwrap().0);
    // decays min(0.99, (1 + t) / (10 + t)): 0.1 after the first update, 2/11 after the second
    let (d1, d2) = (fusec::train::optimizer::ema_decay(0.99, 0), fusec::train::optimizer::ema_decay(0.99, 1));
    assert!((d1 - 0.1).abs() < 1e-7 && (d2 - 2.0 / 11.0).abs() < 1e-7, "{d1} {d2}");
    let worst = (0..v0.len())
        .map(|i| {
            let a1 = d1 * v0[i] + (1.0 - d1) * p1[i];
            let a2 = d2 * a1 + (1.0 - d2) * p2[i];
            (avg[i] - a2).abs()
        })
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "the written weights differ from the average by {worst}");
    let off = avg.iter().zip(p2).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(off > 1e-4, "the average equals the last weights ({off})");
    let bad = fusec::train::Options { ema: Some(1.0), ..with };
    let e = fusec::train::finetune(&student, &teacher, &data, None, &bad).unwrap_err().to_string();
    assert!(e.contains("--ema"), "{e}");
}

/// A tiny recognizer: [N, 3, 4, 16] → 8 steps of 4 classes (blank, a, b, c), Softmax on the last axis.
fn tiny_recognizer(seed: u64) -> ModelProto {
    let mut b = ModelBuilder::new(13, seed);
    let x = b.input("x", &[Dim::Sym("N".into()), Dim::Known(3), Dim::Known(4), Dim::Known(16)]);
    let mut h = b.conv(&x, 3, 8, (4, 2), (4, 2), (0, 0), 1, true);
    h = b.act(&h, Act::Relu);
    h = b.conv(&h, 8, 4, (1, 1), (1, 1), (0, 0), 1, true);
    let shape = b.constant_i64("shape", &[3], &[0, 4, 8]);
    let r = b.op("Reshape", &[&h, &shape], vec![]);
    let t = b.op("Transpose", &[&r], vec![a_ints("perm", &[0, 2, 1])]);
    let p = b.op("Softmax", &[&t], vec![a_int("axis", 2)]);
    b.output(&p);
    b.build()
}

#[test]
fn ctc_alone_teaches_a_recognizer_to_read_its_text() {
    // each line's image spells a CTC path of its text: step s lights channel k − 1 for class k
    let texts = ["ab", "aab", "c", "bca", "cc", "abc", "ba", "bb"];
    let paths: [[usize; 8]; 8] = [[1, 1, 0, 2, 0, 0, 0, 0], [1, 0, 1, 2, 2, 0, 0, 0], [0, 0, 3, 3, 0, 0, 0, 0], [2, 3, 0, 1, 0, 0, 0, 0], [3, 0, 3, 0, 0, 0, 0, 0], [1, 2, 2, 3, 0, 0, 0, 0], [0, 2, 1, 1, 0, 0, 0, 0], [2, 2, 0, 2, 0, 0, 0, 0]];
    let mut rng = StdRng::seed_from_u64(11);
    let samples: Vec<Sample> = texts
        .iter()
        .zip(&paths)
        .enumerate()
        .map(|(i, (t, path))| {
            let noise = rand_vec(3 * 4 * 16, -0.2, 0.2, &mut rng);
            let x = ndarray::Array3::from_shape_fn((3, 4, 16), |(c, y, col)| noise[(c * 4 + y) * 16 + col] + if path[col / 2] == c + 1 { 1.0 } else { 0.0 });
            let mut s = Sample::new(format!("l{i}"), x, None);
            s.text = Some(t.to_string());
            s
        })
        .collect();
    let data = Dataset { samples, classes: vec![] };
    let (student, teacher) = (tiny_recognizer(3), tiny_recognizer(4));
    let dict: Vec<String> = ["", "a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let decode = fusec::tasks::Params { dict: dict.clone(), ..Default::default() };
    let read = |m: &ModelProto| fusec::tasks::evaluate("m", m, None, &data, fusec::tasks::Kind::Ctc, &decode, 8).unwrap().score.unwrap().headline().1;
    assert!(read(&student) < 50.0, "the untrained student already reads {}% of the lines", read(&student));
    let mut o = fusec::train::Options { steps: Some(300), batch: 8, lr: 3e-2, warmup: 0, train: fusec::train::TrainSet::All, bn: BnMode::Frozen, augment: fusec::train::Augment { on: false, ..fusec::train::Augment::ON }, decode: decode.clone(), ..Default::default() };
    // the teacher reads nothing useful: only the CTC on the text can teach the student
    o.loss.distill_weight = 0.0;
    o.loss.feature_weight = 0.0;
    o.loss.ctc_weight = 1.0;
    let (trained, s) = fusec::train::finetune(&student, &teacher, &data, None, &o).unwrap();
    let c = s.ctc.as_ref().unwrap();
    assert_eq!((c.target, c.skipped, c.sequences), ("text", 0, 300 * 8));
    let i = s.loss_names.iter().position(|n| n == "loss/ctc").unwrap() - 1;
    let (first, last) = (s.curve[0].components[i], s.curve.last().unwrap().components[i]);
    assert!(last < 0.1 * first, "the CTC loss went from {first} to {last}");
    // every line read exactly, the double letters included
    assert_eq!(read(&trained), 100.0);
    // the teacher's readings as targets, and a model without [N, T, C] scores
    let t = fusec::train::Options { ctc_target: fusec::train::CtcTarget::Teacher, steps: Some(2), ..o.clone() };
    assert_eq!(fusec::train::finetune(&student, &teacher, &data, None, &t).unwrap().1.ctc.unwrap().target, "teacher");
    let two = two_heads(9, None);
    let e = fusec::train::finetune(&two, &two, &images_8(8, 1), None, &fusec::train::Options { steps: Some(1), batch: 4, ..o }).unwrap_err().to_string();
    assert!(e.contains("--ctc-weight"), "{e}");
}

#[test]
fn a_model_exported_for_batch_one_is_rebatched_or_accumulated() {
    let teacher = two_heads(7, Some(1));
    let (student, _) = common::convert(&teacher, Variant::Half, Init::Center);
    let data = images_8(16, 3);
    let opts = fusec::train::Options { steps: Some(2), batch: 4, lr: 5e-3, warmup: 0, bn: BnMode::Frozen, ..Default::default() };
    let (tuned, s) = fusec::train::finetune(&student, &teacher, &data, None, &opts).unwrap();
    assert!(s.rebatched && s.micro_batch == 4 && s.accumulate == 1, "{} {} {}", s.rebatched, s.micro_batch, s.accumulate);
    // the written model keeps its batch of 1
    let x = common::random_input(&[1, 3, 8, 8], 1);
    let y = fusec::exec::run(&tuned, &[x]).unwrap();
    assert_eq!(y[1].shape(), [1, 16, 4]);
    // a graph that folds the batch into the features cannot be rebatched: batches of 1, accumulated
    let mut flat = student.clone();
    let g = flat.graph.as_mut().unwrap();
    let shape_name = g.node.iter().find(|n| n.op_type() == "Reshape").unwrap().input[1].clone();
    let t = g.initializer.iter_mut().find(|t| t.name() == shape_name).unwrap();
    *t = Tensor::from_i64(&shape_name, &[2], &[4, -1]).into_proto();
    let tr = g.node.iter_mut().find(|n| n.op_type() == "Transpose").unwrap();
    tr.attribute = vec![a_ints("perm", &[1, 0])];
    let mut flat_t = teacher.clone();
    let gt = flat_t.graph.as_mut().unwrap();
    *gt.initializer.iter_mut().find(|t| t.name() == shape_name).unwrap() = Tensor::from_i64(&shape_name, &[2], &[4, -1]).into_proto();
    gt.node.iter_mut().find(|n| n.op_type() == "Transpose").unwrap().attribute = vec![a_ints("perm", &[1, 0])];
    for g in [flat.graph.as_mut().unwrap(), flat_t.graph.as_mut().unwrap()] {
        g.output.truncate(1);
        let last = g.node.iter().find(|n| n.op_type() == "Transpose").unwrap().output[0].clone();
        g.output.push(fusec::onnx::ValueInfoProto { name: Some(last), ..Default::default() });
    }
    let (_, s) = fusec::train::finetune(&flat, &flat_t, &data, None, &opts).unwrap();
    assert!(!s.rebatched && s.micro_batch == 1 && s.accumulate == 4, "{} {} {}", s.rebatched, s.micro_batch, s.accumulate);
}

#[test]
fn calibrated_maps_have_the_teachers_count_above_the_threshold() {
    let teacher = two_heads(11, None);
    let (student, _) = common::convert(&teacher, Variant::Half, Init::Center);
    let (sg, tg_) = (student.graph.as_ref().unwrap(), teacher.graph.as_ref().unwrap());
    let losses = fusec::train::loss::resolve(sg, tg_, &[4, 3], fusec::train::LossKind::Kl, &[]).unwrap();
    let data = images_8(12, 5);
    let above = |m: &ModelProto, limit: usize| -> usize {
        data.samples[..limit]
            .iter()
            .map(|s| {
                let x = s.x.clone().insert_axis(ndarray::Axis(0)).into_dyn();
                fusec::exec::run(m, &[x]).unwrap()[0].iter().filter(|&&v| v > 0.5).count()
            })
            .sum()
    };
    // threshold 0.5; boxes smaller than min_size are dropped, so with min_size beyond the
    // map there are no boxes to compare widths on and only the shift is calibrated
    let p = fusec::tasks::Params { thresh: 0.5, min_size: 1e9, ..Default::default() };
    let mut calibrated = student.clone();
    let shifts = fusec::train::threshold::calibrate(&mut calibrated, &teacher, &losses, &data, &p, 8, 1).unwrap();
    assert_eq!((shifts[0].blend, shifts[0].pairs), (0.0, 0));
    assert_eq!(shifts.len(), 1, "one probability map");
    let (t, s0, s1) = (above(&teacher, 8), above(&student, 8), above(&calibrated, 8));
    assert!(s0 != t && (shifts[0].ratio_before - s0 as f64 / t as f64).abs() < 1e-9, "{s0} vs {t}: {shifts:?}");
    assert_eq!(s1, t, "{shifts:?}");
    // one Add before the Sigmoid; the regression head is untouched
    assert_eq!(calibrated.graph.as_ref().unwrap().node.len(), sg.node.len() + 1);
    let x = common::random_input(&[2, 3, 8, 8], 4);
    let (a, b) = (fusec::exec::run(&student, &[x.clone()]).unwrap(), fusec::exec::run(&calibrated, &[x]).unwrap());
    assert_eq!(a[1], b[1]);
    assert_ne!(a[0], b[0]);
    // calibrating again on more samples adjusts the same shift
    let again = fusec::train::threshold::calibrate(&mut calibrated, &teacher, &losses, &data, &p, 12, 1).unwrap();
    assert_eq!(calibrated.graph.as_ref().unwrap().node.len(), sg.node.len() + 1);
    assert_eq!(above(&calibrated, 12), above(&teacher, 12), "{again:?}");
    // stroke variants: each sample, then its strokes a pixel wider and thinner
    let v = fusec::train::threshold::with_stroke_variants(&data, 4);
    assert_eq!(v.samples.len(), 12);
    for (k, s) in v.samples.iter().enumerate() {
        let orig = &data.samples[k / 3];
        let mut want = orig.x.as_standard_layout().into_owned();
        if k % 3 > 0 {
            fusec::train::batch::stroke(want.as_slice_mut().unwrap(), &[3, 8, 8], k % 3 == 1);
        }
        assert_eq!(s.x, want, "variant {k}");
    }
    assert!(v.samples[1].x.sum() < v.samples[0].x.sum() && v.samples[2].x.sum() > v.samples[0].x.sum());
    let mut on_variants = student.clone();
    fusec::train::threshold::calibrate(&mut on_variants, &teacher, &losses, &v, &p, 12, 1).unwrap();
    let count = |m: &ModelProto| -> usize { v.samples.iter().map(|s| fusec::exec::run(m, &[s.x.clone().insert_axis(ndarray::Axis(0)).into_dyn()]).unwrap()[0].iter().filter(|&&p| p > 0.5).count()).sum() };
    assert_eq!(count(&on_variants), count(&teacher));
}

#[test]
fn the_inserted_blend_computes_the_host_blend_in_onnx_runtime() {
    runtime::init().unwrap();
    let (h, w) = (5, 9);
    let mut b = builder();
    let x = b.input("x", &dims(&[1, 1, h, w]));
    let y = b.op("Sigmoid", &[&x], vec![]);
    b.output(&y);
    let base = b.build();
    let mut rng = StdRng::seed_from_u64(5);
    let z = rand_vec(h * w, -4.0, 4.0, &mut rng);
    for lam in [0.6f32, -0.4] {
        let mut m = base.clone();
        fusec::train::threshold::blend_logits(&mut m, &y, lam).unwrap();
        let mut sess = runtime::session(&m, 1).unwrap();
        let got = runtime::run(&mut sess, &[Feed { name: &x, shape: vec![1, 1, h, w], data: &z }], &[y.clone()]).unwrap();
        let mut want = vec![0.0f32; h * w];
        fusec::train::threshold::blend_plane(&z, h, w, lam, &mut want);
        let worst = got[0].iter().zip(&want).map(|(g, v)| (g - 1.0 / (1.0 + (-v).exp())).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "λ {lam}: ONNX Runtime and the host blend differ by {worst}");
        let moved = want.iter().zip(&z).filter(|(a, b)| (*a - *b).abs() > 1e-3).count();
        assert!(moved > h * w / 4, "λ {lam}: the blend changed only {moved} values");
    }
}

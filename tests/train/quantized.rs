//! Fine-tuning quantized (QDQ) students: integer weights lifted to floats
//! behind fake quantization and lowered back exactly, and a QDQ PP-OCR
//! classifier fine-tuned end to end.

use super::*;

use std::collections::HashMap;

use fusec::tasks::data::Dataset;
use fusec::onnx::{dtype, TensorProto};
use fusec::passes::fuse_depthwise::{Init, Variant};
use fusec::train::quantized;

fn qdq_classifier() -> ModelProto {
    fusec::onnx::load(&common::testdata("quant/ppocr_cls.qdq.onnx")).unwrap().proto
}

fn ort_outputs(m: &ModelProto, x: &ArrayD<f32>) -> Vec<ArrayD<f32>> {
    let mut s = runtime::session(m, 1).unwrap();
    runtime::run(&mut s, &[Feed { name: "x", shape: x.shape().to_vec(), data: x.as_slice().unwrap() }], &[]).unwrap()
}

fn initializers(m: &ModelProto) -> HashMap<String, TensorProto> {
    m.graph.as_ref().unwrap().initializer.iter().map(|t| (t.name().to_string(), t.clone())).collect()
}

/// Nodes as a sorted list of their encodings (lowering may move a bias's
/// DequantizeLinear next to its consumer).
fn node_set(m: &ModelProto) -> Vec<Vec<u8>> {
    use prost::Message;
    let mut v: Vec<Vec<u8>> = m.graph.as_ref().unwrap().node.iter().map(|n| n.encode_to_vec()).collect();
    v.sort();
    v
}

#[test]
fn integer_weights_lift_to_fake_quantized_floats_and_lower_back_exactly() {
    runtime::init().unwrap();
    let m = qdq_classifier();
    let g = m.graph.as_ref().unwrap();
    let int8: std::collections::HashSet<&str> = g.initializer.iter().filter(|t| t.data_type() == dtype::INT8).map(|t| t.name()).collect();
    let weights = g.node.iter().filter(|n| n.op_type() == "DequantizeLinear" && int8.contains(n.input[0].as_str())).count();
    assert_eq!(weights, 54, "53 Conv weights and the Gemm's");
    let (lifted, rec) = quantized::lift(&m);
    assert_eq!(rec.len(), weights);
    let lg = lifted.graph.as_ref().unwrap();
    assert!(lg.initializer.iter().all(|t| !matches!(t.data_type(), dtype::INT8 | dtype::INT32) || t.dims.len() <= 1 && t.name().contains("zero_point")), "integer weights and biases are floats now");
    // every trainable weight and bias is found behind its quantizer
    let params = fusec::train::trainable(&lifted, fusec::train::TrainSet::All);
    assert_eq!(params.iter().filter(|p| p.ends_with(".float")).count(), weights);
    // the lifted model computes what the quantized model computes
    let x = common::random_input(&[2, 3, 48, 192], 5);
    let (a, b) = (ort_outputs(&m, &x), ort_outputs(&lifted, &x));
    assert_eq!(a, b, "fake quantization with the model's scales is the model");
    // lowered unchanged: the original tensors and nodes
    let back = quantized::lower(&lifted, &rec).unwrap();
    assert_eq!(initializers(&back), initializers(&m));
    assert_eq!(node_set(&back), node_set(&m));
    // trained weights: the lowered model computes what the lifted one computed
    let mut moved = lifted.clone();
    let mut rng = StdRng::seed_from_u64(3);
    for t in moved.graph.as_mut().unwrap().initializer.iter_mut().filter(|t| t.name().ends_with(".float") || t.name().ends_with("_dequantized") || t.name().contains("bias")) {
        if t.data_type() != dtype::FLOAT {
            continue;
        }
        let a = Tensor::from_proto(t.clone()).unwrap().to_f32().unwrap();
        let b = a.mapv(|v| v * (1.0 + rng.random_range(-0.2f32..0.2)) + rng.random_range(-0.01f32..0.01));
        *t = Tensor::from_f32(t.name(), &b).into_proto();
    }
    let lowered = quantized::lower(&moved, &rec).unwrap();
    let changed = initializers(&lowered).iter().filter(|(k, v)| initializers(&m).get(*k) != Some(v)).count();
    assert!(changed >= weights, "{changed} integer tensors changed");
    assert!(initializers(&lowered).values().all(|t| t.data_type() != dtype::FLOAT || !t.name().ends_with(".float")));
    let (c, d) = (ort_outputs(&moved, &x), ort_outputs(&lowered, &x));
    assert_ne!(a, c, "the perturbation changes the outputs");
    for (u, v) in c.iter().zip(&d) {
        common::assert_close(u, v, 1e-5, 1e-6, "lifted with trained floats vs lowered to integers");
    }
}

fn agreement(student: &ModelProto, teacher: &ModelProto, data: &Dataset) -> f64 {
    let (s, _, _) = fusec::tasks::classify::predict(student, data).unwrap();
    let (t, _, _) = fusec::tasks::classify::predict(teacher, data).unwrap();
    s.iter().zip(&t).filter(|(a, b)| a == b).count() as f64 / s.len() as f64
}

/// The QDQ classifier's depthwise layers rewritten to Half in their quantized
/// form (integer 1-D kernels), then fine-tuned against the quantized original
/// on real text lines: held-out agreement rises, the result is the same QDQ
/// graph with new integers, and the in-loop evaluation (fake-quantized floats)
/// equals the written model's.
#[test]
fn a_qdq_classifier_fine_tunes_end_to_end() {
    runtime::init().unwrap();
    let lines = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/textlines/labels.tsv");
    assert!(lines.exists(), "{} (the shared data) is needed", lines.display());
    let teacher = qdq_classifier();
    let (student, report) = common::convert(&teacher, Variant::Half, Init::Center);
    assert_eq!(report.rewrites.len(), 11, "every depthwise layer rewritten in QDQ form");
    let mut all = fusec::tasks::data::load(&lines, &fusec::tasks::data::Preprocess::ppocr_cls(), Some(fusec::tasks::Task::Rot180), Some(176)).unwrap();
    let held = Dataset { samples: all.samples.split_off(256), classes: all.classes.clone() };
    assert_eq!(held.samples.len(), 96);
    let before = agreement(&student, &teacher, &held);
    let opts = fusec::train::Options { epochs: 2, batch: 16, ..Default::default() };
    let (tuned, summary) = fusec::train::finetune(&student, &teacher, &all, Some(&held), &opts).unwrap();
    let after = agreement(&tuned, &teacher, &held);
    eprintln!("held-out agreement with the quantized original {before:.3} -> {after:.3}");
    assert!(after >= before + 0.2, "held-out agreement with the quantized original {before:.3} -> {after:.3}");
    // same QDQ graph: nodes, initializer names, types and shapes; new integers
    assert_eq!(node_set(&student), node_set(&tuned));
    let (si, ti) = (initializers(&student), initializers(&tuned));
    let kinds = |m: &HashMap<String, TensorProto>| {
        let mut v: Vec<(String, i32, Vec<i64>)> = m.iter().map(|(k, t)| (k.clone(), t.data_type(), t.dims.clone())).collect();
        v.sort();
        v
    };
    assert_eq!(kinds(&si), kinds(&ti));
    let int8_changed = si.iter().filter(|(k, t)| t.data_type() == dtype::INT8 && ti[*k] != **t).count();
    assert!(int8_changed >= 20, "{int8_changed} int8 weights changed");
    let eval_after = summary.eval_after.expect("held-out data was given");
    assert!((eval_after - 100.0 * fusec::tasks::classify::evaluate("t", &tuned, None, &held).unwrap().top1.unwrap()).abs() < 1e-9, "the written model is the model trained: {eval_after}");
}

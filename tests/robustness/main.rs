//! Unusual but valid models (converted correctly, or left unchanged with a
//! reason), hostile ones (refused with the node or option named), a bounded
//! fuzz run over mutated models, and interrupted writes.

#[path = "../common/mod.rs"]
mod common;

mod fuzz;
mod hostile;
mod interrupts;

use common::*;
use fuzz::load_and_convert;
use fusec::models::builder::{Act, ModelBuilder};
use fusec::onnx::{Dim, ModelProto, NodeProto};
use fusec::passes::fuse_depthwise::{Init, Variant};
use prost::Message;

fn run(m: &ModelProto, xs: &[ndarray::ArrayD<f32>]) -> Vec<ndarray::ArrayD<f32>> {
    fusec::exec::run(m, xs).unwrap()
}

fn d(v: i64) -> Dim {
    Dim::Known(v)
}

#[test]
fn every_supported_opset_converts_exactly() {
    for opset in [7, 9, 10, 11, 12, 13, 14, 17, 18] {
        for (variant, kernel) in [(Variant::Half, Kernel::HalfExact), (Variant::Full, Kernel::CenterOnly)] {
            let b = Block { opset, kernel, act: Act::Relu6, bias: true, ..Default::default() };
            let m = b.model(2);
            let (conv, r) = convert(&m, variant, Init::Center);
            assert_eq!(r.rewrites.len(), 1, "opset {opset} {variant:?}: {:?}", r.skipped);
            assert_eq!(conv.opset_import, m.opset_import, "opset changed");
            let x = b.input(1);
            assert_close(&run(&conv, &[x.clone()])[0], &run(&m, &[x])[0], 1e-4, 1e-5, &format!("opset {opset} {variant:?}"));
        }
    }
}

#[test]
fn several_inputs_outputs_and_a_shared_depthwise_output() {
    // two inputs added together, a depthwise conv whose output feeds two pointwise
    // convs (two branches) that are both graph outputs
    let mut b = ModelBuilder::new(13, 5);
    let x1 = b.input("a", &[d(1), d(6), d(8), d(8)]);
    let x2 = b.input("b", &[d(1), d(6), d(8), d(8)]);
    let s = b.op("Add", &[&x1, &x2], vec![]);
    let y = b.conv(&s, 6, 6, (3, 3), (1, 1), (1, 1), 6, false);
    b.set_weight(&y, |i| if i[2] == 1 && i[3] == 1 { 0.3 + i[0] as f32 * 0.1 } else { 0.0 });
    let r = b.act(&y, Act::Relu);
    let o1 = b.conv(&r, 6, 3, (1, 1), (1, 1), (0, 0), 1, true);
    let o2 = b.conv(&r, 6, 2, (1, 1), (1, 1), (0, 0), 1, false);
    b.output(&o1);
    b.output(&o2);
    let m = b.build();
    let xs = [random_input(&[1, 6, 8, 8], 1), random_input(&[1, 6, 8, 8], 2)];
    let want = run(&m, &xs);
    for variant in [Variant::Half, Variant::Full] {
        let (conv, rep) = convert(&m, variant, Init::Center);
        assert_eq!(rep.rewrites.len(), 1, "{variant:?}: {:?}", rep.skipped);
        let got = run(&conv, &xs);
        assert_eq!(got.len(), 2);
        for (g, w) in got.iter().zip(&want) {
            assert_close(g, w, 1e-4, 1e-5, &format!("{variant:?}"));
        }
    }
}

#[test]
fn names_empty_duplicated_or_colliding_with_generated_ones() {
    let b = Block { kernel: Kernel::HalfExact, ..Default::default() };
    let mut m = b.model(3);
    let g = m.graph.as_mut().unwrap();
    let dw = g.node.iter().position(|n| n.attribute.iter().any(|a| a.name() == "group" && a.i() > 1)).unwrap();
    let dw_name = g.node[dw].name().to_string();
    let dw_out = g.node[dw].output[0].clone();
    // empty names everywhere else, two nodes sharing a name
    for (i, n) in g.node.iter_mut().enumerate() {
        if i != dw {
            n.name = Some(if i % 2 == 0 { String::new() } else { "dup".into() });
        }
    }
    // a value already called what the pass would generate
    let relu_pos = g.node.iter().position(|n| n.op_type() == "Relu").unwrap();
    let taken = format!("{dw_out}.fuse.row");
    let old = g.node[relu_pos].output[0].clone();
    g.node[relu_pos].output[0] = taken.clone();
    for n in g.node.iter_mut() {
        for i in n.input.iter_mut() {
            if *i == old {
                *i = taken.clone();
            }
        }
    }
    g.node.insert(0, NodeProto { name: Some(format!("{dw_name}.fuse.split")), op_type: Some("Identity".into()), input: vec!["x".into()], output: vec!["unused_alias".into()], ..Default::default() });
    let (conv, r) = convert(&m, Variant::Half, Init::Center);
    assert_eq!(r.rewrites.len(), 1);
    let outs: Vec<&String> = conv.graph.as_ref().unwrap().node.iter().flat_map(|n| n.output.iter()).collect();
    let mut uniq = outs.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), outs.len(), "a value is defined twice");
    let x = b.input(0);
    assert_close(&run(&conv, &[x.clone()])[0], &run(&m, &[x])[0], 1e-4, 1e-5, "names");
}

/// A TensorFlow-style export: NHWC input, Transpose to NCHW around the convs.
#[test]
fn nhwc_exports_with_transposes() {
    let mut b = ModelBuilder::new(13, 8);
    let x = b.input("x", &[d(1), d(10), d(10), d(4)]);
    let t = b.op("Transpose", &[&x], vec![fusec::onnx::a_ints("perm", &[0, 3, 1, 2])]);
    let y = b.conv(&t, 4, 4, (3, 3), (1, 1), (1, 1), 4, true);
    b.set_weight(&y, |i| if (i[0] < 2 && i[2] == 1) || (i[0] >= 2 && i[3] == 1) { 0.5 - 0.1 * i[3] as f32 } else { 0.0 });
    let back = b.op("Transpose", &[&y], vec![fusec::onnx::a_ints("perm", &[0, 2, 3, 1])]);
    b.output(&back);
    let m = b.build();
    let x = random_input(&[1, 10, 10, 4], 4);
    let (half, r) = convert(&m, Variant::Half, Init::Center);
    assert_eq!(r.rewrites.len(), 1);
    assert_close(&run(&half, &[x.clone()])[0], &run(&m, &[x])[0], 1e-4, 1e-5, "nhwc half");
    // Full follows the channels through the Transpose back to NHWC, but that is the
    // graph output: left alone, with the reason
    let (full, r) = convert(&m, Variant::Full, Init::Center);
    assert_eq!(r.rewrites.len(), 0);
    assert!(r.skipped[0].1.contains("graph output"), "{:?}", r.skipped);
    assert_eq!(full.graph.as_ref().unwrap().node, m.graph.as_ref().unwrap().node);
}

#[test]
fn depthwise_convs_inside_subgraphs_are_reported_and_left_alone() {
    // If(cond) { dw conv } else { identity }, plus a top-level depthwise conv
    let mut inner = ModelBuilder::new(13, 1);
    let y = inner.conv_full("x", 4, 4, (3, 3), (1, 1), Some(&[1, 1, 1, 1]), None, 4, false, (1, 1));
    inner.output(&y);
    let mut then_g = inner.build().graph.unwrap();
    then_g.input.clear(); // subgraphs take x from the outer scope
    then_g.name = Some("then".into());
    let else_g = fusec::onnx::GraphProto {
        name: Some("else".into()),
        node: vec![NodeProto { op_type: Some("Identity".into()), input: vec!["x".into()], output: vec!["e".into()], name: Some("id".into()), ..Default::default() }],
        output: vec![fusec::onnx::make_value_info("e", 1, Some(&[d(1), d(4), d(6), d(6)]))],
        ..Default::default()
    };
    let mut b = ModelBuilder::new(13, 2);
    let x = b.input("x", &[d(1), d(4), d(6), d(6)]);
    let c = b.input("cond", &[]);
    let if_out = "if_out".to_string();
    let mut if_node = NodeProto { name: Some("branch".into()), op_type: Some("If".into()), input: vec![c.clone()], output: vec![if_out.clone()], ..Default::default() };
    if_node.attribute.push(fusec::onnx::AttributeProto { name: Some("then_branch".into()), r#type: Some(5), g: Some(then_g), ..Default::default() });
    if_node.attribute.push(fusec::onnx::AttributeProto { name: Some("else_branch".into()), r#type: Some(5), g: Some(else_g), ..Default::default() });
    let top = b.conv(&x, 4, 4, (3, 3), (1, 1), (1, 1), 4, false);
    let sum = b.op("Add", &[&top, &x], vec![]);
    b.output(&sum);
    let mut m = b.build();
    m.graph.as_mut().unwrap().input[1] = fusec::onnx::make_value_info("cond", 9, Some(&[]));
    let g = m.graph.as_mut().unwrap();
    g.node.push(if_node.clone());
    g.output.push(fusec::onnx::make_value_info(&if_out, 1, None));
    let (conv, r) = convert(&m, Variant::Half, Init::Center);
    assert_eq!(r.rewrites.len(), 1, "the top-level conv is converted");
    assert!(r.skipped.iter().any(|(_, why)| why.contains("inside a subgraph of 'branch'")), "{:?}", r.skipped);
    let kept = conv.graph.as_ref().unwrap().node.iter().find(|n| n.op_type() == "If").unwrap();
    assert_eq!(kept.encode_to_vec(), if_node.encode_to_vec(), "the If node must be byte-identical");
}

#[test]
fn long_chains_do_not_exhaust_the_stack() {
    // a 20,000-node chain of Reshapes over a constant, added to the depthwise output,
    // and a 20,000-node chain of Identity after it
    let mut b = ModelBuilder::new(13, 3);
    let x = b.input("x", &[d(1), d(4), d(6), d(6)]);
    let y = b.conv(&x, 4, 4, (3, 3), (1, 1), (1, 1), 4, false);
    let mut c = b.constant("bias", &ndarray::ArrayD::from_elem(ndarray::IxDyn(&[1, 4, 1, 1]), 0.5f32));
    let shape = b.constant_i64("shape", &[4], &[1, 4, 1, 1]);
    for _ in 0..20_000 {
        c = b.op("Reshape", &[&c, &shape], vec![]);
    }
    let mut z = b.op("Add", &[&y, &c], vec![]);
    for _ in 0..20_000 {
        z = b.op("Identity", &[&z], vec![]);
    }
    let out = b.conv(&z, 4, 2, (1, 1), (1, 1), (0, 0), 1, false);
    b.output(&out);
    let m = b.build();
    let bytes = m.encode_to_vec();
    load_and_convert(&bytes);
    // the work, counted in node rules run (not seconds): a few passes of inference over
    // the graph (load, the rewrite, validation), not one per node
    let nodes = m.graph.as_ref().unwrap().node.len() as u64;
    let before = fusec::ir::shape::nodes_inferred();
    let (conv, r) = convert(&m, Variant::Half, Init::Center);
    let work = fusec::ir::shape::nodes_inferred() - before;
    assert_eq!(r.rewrites.len(), 1);
    assert_eq!(conv.graph.as_ref().unwrap().node.len(), m.graph.as_ref().unwrap().node.len() + 3);
    assert!(work <= 8 * nodes, "{work} node inferences for {nodes} nodes: inference runs more than a few times");
}

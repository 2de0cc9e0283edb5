//! Unusual but valid models (converted correctly, or left unchanged with a
//! reason), a bounded fuzz run over mutated models, and interrupted writes.

mod common;

use common::*;
use fusec::builder::{Act, ModelBuilder};
use fusec::onnx::{Dim, ModelProto, NodeProto};
use fusec::passes::fuse_depthwise::{Init, Variant};
use prost::Message;

fn run(m: &ModelProto, xs: &[ndarray::ArrayD<f32>]) -> Vec<ndarray::ArrayD<f32>> {
    fusec::eval::run(m, xs).unwrap()
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

// ------------------------------------------------------------ fuzzing

/// Seed models for the fuzzer: committed in testdata/fuzz (small, generated).
fn corpus() -> Vec<Vec<u8>> {
    let dir = testdata("fuzz");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect();
    files.sort();
    assert!(!files.is_empty(), "empty fuzz corpus");
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn load_and_convert(bytes: &[u8]) {
    // any outcome but a panic is fine
    let Ok(model) = fusec::onnx::decode(bytes::Bytes::copy_from_slice(bytes), std::path::Path::new("fuzz.onnx")) else { return };
    let Some(gp) = model.proto.graph.as_ref() else { return };
    let Ok(g) = fusec::ir::Graph::from_proto(gp, model.opset()) else { return };
    for variant in [Variant::Half, Variant::Full] {
        let mut g = g.clone();
        if fusec::passes::run_pipeline(&mut g, &[fuse_pass(variant, Init::Center)], &Default::default()).is_ok() {
            let _ = g.to_proto();
        }
        let hw = fusec::hw::ArrayConfig::new(8, 8, fusec::hw::HwKind::Fuse, 1.0).unwrap();
        let _ = fusec::hw::schedule::schedule(&g, &hw, 1);
    }
}

#[test]
fn fuzz_corpus_seeds_do_what_they_are_for() {
    // every committed seed has an expectation: a valid model converts (one
    // depthwise layer, both variants) and runs; a broken one fails with the
    // named problem. A new seed needs a line here.
    let expect: &[(&str, Result<usize, &str>)] = &[
        ("seed0.onnx", Ok(1)),
        ("seed1.onnx", Ok(1)),
        ("seed2.onnx", Ok(1)),
        ("seed3-dangling.onnx", Err("input 'nowhere' is never produced")),
    ];
    let mut files: Vec<String> = std::fs::read_dir(testdata("fuzz")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    files.sort();
    assert_eq!(files, expect.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>(), "every seed needs an expectation");
    for (file, want) in expect {
        let path = testdata("fuzz").join(file);
        let loaded = fusec::ir::load_graph(&path);
        match want {
            Ok(n) => {
                let (model, g) = loaded.unwrap_or_else(|e| panic!("{file}: {e}"));
                for variant in [Variant::Half, Variant::Full] {
                    let mut g = g.clone();
                    let reports = fusec::passes::run_pipeline(&mut g, &[fuse_pass(variant, Init::Center)], &Default::default()).unwrap();
                    assert_eq!(reports[0].1.rewrites.len(), *n, "{file} {variant:?}: {:?}", reports[0].1.skipped);
                    let mut m = model.proto.clone();
                    m.graph = Some(g.to_proto().unwrap());
                    let x = g.inputs[0].clone();
                    let (_, shape) = fusec::onnx::value_info_type(&x);
                    let dims: Vec<usize> = shape.unwrap().iter().map(|d| d.known().unwrap() as usize).collect();
                    let y = run(&m, &[random_input(&dims, 1)]);
                    let want_shape = run(&model.proto, &[random_input(&dims, 1)])[0].shape().to_vec();
                    assert_eq!(y[0].shape(), &want_shape[..], "{file} {variant:?}");
                }
            }
            Err(needle) => {
                let e = loaded.err().unwrap_or_else(|| panic!("{file} should not load")).to_string();
                assert!(e.contains(needle) && e.contains(file), "{file}: {e}");
            }
        }
    }
    // and the whole corpus goes through the fuzz harness's path without a panic
    for seed in corpus() {
        load_and_convert(&seed);
    }
}

/// Cases per fuzz property: 400 in the suite, more with FUSEC_FUZZ_CASES=N.
fn fuzz_cases() -> u32 {
    std::env::var("FUSEC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]
        /// Byte-level mutations of valid models: flips, truncations, splices.
        #[test]
        fn mutated_models_never_panic(which in 0usize..64, edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8)) {
            let seeds = corpus();
            let mut bytes = seeds[which % seeds.len()].clone();
            for (at, val, kind) in edits {
                if bytes.is_empty() { break; }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = val,
                    1 => bytes[i] ^= 1 << (val % 8),
                    2 => bytes.truncate(i),
                    _ => { let v = bytes[i..].to_vec(); bytes.extend_from_slice(&v[..v.len().min(64)]); }
                }
            }
            load_and_convert(&bytes);
        }

        /// Structurally valid protobufs with random field values (dims, attributes, wiring).
        #[test]
        fn random_graph_edits_never_panic(which in 0usize..64, node in any::<prop::sample::Index>(), dim in -3i64..70000, attr in -5i64..9, input in any::<prop::sample::Index>()) {
            let seeds = corpus();
            let Ok(mut m) = ModelProto::decode(seeds[which % seeds.len()].as_slice()) else { return Ok(()) };
            let g = m.graph.as_mut().unwrap();
            if !g.node.is_empty() {
                let n = node.index(g.node.len());
                let names: Vec<String> = g.node.iter().flat_map(|n| n.output.clone()).collect();
                if let Some(a) = g.node[n].attribute.first_mut() {
                    a.i = Some(attr);
                    for v in a.ints.iter_mut() { *v = attr; }
                }
                if !g.node[n].input.is_empty() {
                    g.node[n].input[0] = names[input.index(names.len())].clone();
                }
            }
            if let Some(t) = g.initializer.first_mut() { if !t.dims.is_empty() { t.dims[0] = dim; } }
            if let Some(i) = g.input.first_mut() {
                *i = fusec::onnx::make_value_info(i.name(), 1, Some(&[d(1), d(dim), d(dim.abs() % 40), d(7)]));
            }
            load_and_convert(&m.encode_to_vec());
        }
    }
}

/// Regenerate the committed corpus (run with `--ignored` after changing the builder).
#[test]
#[ignore]
fn write_fuzz_corpus() {
    let dir = testdata("fuzz");
    let blocks = [
        Block { se: Some(false), act: Act::HardSwish, c: 6, h: 6, w: 7, ..Default::default() },
        Block { se: Some(true), se_after_act: true, opset: 11, weights_as_constants: true, c: 4, h: 5, w: 5, ..Default::default() },
        Block { k: (5, 3), stride: (2, 1), auto_pad: Some("SAME_UPPER"), weights_through_identity: true, c: 5, h: 7, w: 6, ..Default::default() },
    ];
    for (i, b) in blocks.iter().enumerate() {
        std::fs::write(dir.join(format!("seed{i}.onnx")), b.model(i as u64).encode_to_vec()).unwrap();
    }
    // a broken one: a node reads a value nothing produces
    let mut m = blocks[0].model(3);
    m.graph.as_mut().unwrap().node[1].input[0] = "nowhere".into();
    std::fs::write(dir.join("seed3-dangling.onnx"), m.encode_to_vec()).unwrap();
}

// ------------------------------------------------------------ interrupted writes

#[cfg(unix)]
#[test]
fn sigint_during_a_write_leaves_the_old_file_or_the_new_one() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("big.onnx");
    std::fs::write(&model, fusec::zoo::build("mobilenet-v3-large", 0).unwrap().encode_to_vec()).unwrap();
    let out = dir.path().join("out.onnx");
    std::fs::write(&out, b"old contents").unwrap();
    let bin = assert_cmd::cargo::cargo_bin("fusec");
    for delay_ms in [0u64, 5, 10, 20, 40, 80] {
        let mut child = Command::new(&bin)
            .args(["convert", model.to_str().unwrap(), "--variant", "full", "-o", out.to_str().unwrap(), "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let _ = child.wait().unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let complete = ModelProto::decode(bytes.as_slice()).is_ok_and(|m| m.graph.is_some());
        assert!(bytes == b"old contents" || complete, "after SIGINT at {delay_ms} ms the output is neither old nor complete");
        let stray: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with(".tmp")).collect();
        assert!(stray.is_empty(), "temporary files left: {stray:?}");
    }
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
    let t = std::time::Instant::now();
    load_and_convert(&bytes);
    let (conv, r) = convert(&m, Variant::Half, Init::Center);
    assert_eq!(r.rewrites.len(), 1);
    assert_eq!(conv.graph.as_ref().unwrap().node.len(), m.graph.as_ref().unwrap().node.len() + 3);
    assert!(t.elapsed().as_secs() < 60, "40k-node graph took {:?}", t.elapsed());
}

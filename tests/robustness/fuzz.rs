//! The fuzz corpus (testdata/fuzz, written by scripts/fuzz_corpus.py): what each seed is
//! for, and bounded property runs over mutated and rewired models.

use super::*;

/// Seed models for the fuzzer: committed in testdata/fuzz (small, written by
/// scripts/fuzz_corpus.py).
fn corpus() -> Vec<Vec<u8>> {
    let dir = testdata("fuzz");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect();
    files.sort();
    assert!(!files.is_empty(), "empty fuzz corpus");
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

pub(crate) fn load_and_convert(bytes: &[u8]) {
    // any outcome but a panic is fine
    let Ok(model) = fusec::onnx::decode(bytes::Bytes::copy_from_slice(bytes), std::path::Path::new("fuzz.onnx")) else { return };
    let Some(gp) = model.proto.graph.as_ref() else { return };
    let Ok(g) = fusec::ir::Graph::from_proto(gp, model.opset()) else { return };
    for variant in [Variant::Half, Variant::Full] {
        let mut g = g.clone();
        if fusec::passes::run_pipeline(&mut g, &[fuse_pass(variant, Init::Center)], &Default::default()).is_ok() {
            let _ = g.to_proto();
        }
        let hw = fusec::cost::hw::HwConfig::array(8, 8, fusec::cost::hw::HwKind::Fuse, 1.0).unwrap();
        let _ = fusec::cost::hw::schedule::schedule(&g, &hw, 1);
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
        ("seed4-subgraph.onnx", Ok(1)),
        ("seed5-sparse.onnx", Ok(1)),
        ("seed6-subgraph-dangling.onnx", Err("a subgraph reads 'ghost', which nothing defines")),
        ("seed7-duplicate-input.onnx", Err("graph input 'x' is listed more than once")),
        ("seed8-channels.onnx", Err("input has 8 channels but the weight [8, 2, 3, 3] with group = 8 expects 16")),
    ];
    let mut files: Vec<String> = std::fs::read_dir(testdata("fuzz")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    files.sort();
    assert_eq!(files, expect.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>(), "every seed needs an expectation");
    for (file, want) in expect {
        let path = testdata("fuzz").join(file);
        let loaded = fusec::ir::load_graph(&path);
        match want {
            Ok(n) => {
                let (model, g0) = loaded.unwrap_or_else(|e| panic!("{file}: {e}"));
                for variant in [Variant::Half, Variant::Full] {
                    let mut g = g0.clone();
                    let reports = fusec::passes::run_pipeline(&mut g, &[fuse_pass(variant, Init::Center)], &Default::default()).unwrap();
                    assert_eq!(reports[0].1.rewrites.len(), *n, "{file} {variant:?}: {:?}", reports[0].1.skipped);
                    let mut m = model.proto.clone();
                    m.graph = Some(g.to_proto().unwrap());
                    if g.inputs.len() > 1 {
                        // (an If on a bool input: tract and our f32 feeds do not run it) the
                        // output loads again with the same interface
                        let again = fusec::ir::Graph::from_proto(m.graph.as_ref().unwrap(), model.opset()).unwrap_or_else(|e| panic!("{file} {variant:?}: {e}"));
                        assert_eq!(again.inputs, g.inputs);
                        continue;
                    }
                    let x = g.inputs[0].clone();
                    let (_, shape) = fusec::onnx::value_info_type(&x);
                    let dims: Vec<usize> = shape.unwrap().iter().map(|d| d.known().unwrap() as usize).collect();
                    let y = run(&m, &[random_input(&dims, 1)]);
                    // the original as fusec reads it (tract does not read sparse initializers)
                    let mut original = model.proto.clone();
                    original.graph = Some(g0.to_proto().unwrap());
                    let want_shape = run(&original, &[random_input(&dims, 1)])[0].shape().to_vec();
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

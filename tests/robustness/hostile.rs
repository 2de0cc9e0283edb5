//! Inputs that are wrong in ways a runtime notices only when it runs them: each
//! is refused at load with the node, file or option named, or (where the model
//! is valid after all) read as runtimes read it. A test per case of the second
//! held-out corpus.

use super::*;
use fusec::onnx::GraphProto;
use predicates::prelude::*;

fn fuzz_seed(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::copy(testdata("fuzz").join(name), &p).unwrap();
    p
}

/// The depthwise block of the tests with its depthwise weight replaced by `w`.
fn block_with_dw_weight(c: usize, w: Vec<usize>) -> ModelProto {
    let mut m = Block { c, ..Default::default() }.model(5);
    let g = m.graph.as_mut().unwrap();
    let dw = g.node.iter().find(|n| n.op_type() == "Conv" && fusec::onnx::attr_int(n, "group").unwrap_or(1) > 1).unwrap();
    let wname = dw.input[1].clone();
    let t = g.initializer.iter_mut().find(|t| t.name() == wname).unwrap();
    *t = fusec::onnx::tensor::Tensor::from_f32(&wname, &ndarray::ArrayD::from_elem(ndarray::IxDyn(&w), 0.1f32)).into_proto();
    m
}

#[test]
fn conv_channels_that_do_not_fit_the_group_are_refused_at_load_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    // [8, 2, 3, 3] with group 8 on 8 channels: once "0 converted, 1 left alone", exit 0
    let bad = fuzz_seed(dir.path(), "seed8-channels.onnx");
    let b = bad.to_str().unwrap();
    for args in [vec!["convert", b, "--variant", "half", "-o"], vec!["inspect", b], vec!["report", b]] {
        let mut args = args.clone();
        let out = dir.path().join("out.onnx");
        if args.last() == Some(&"-o") {
            args.push(out.to_str().unwrap());
        }
        fusec()
            .args(&args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("seed8-channels.onnx").and(predicate::str::contains("input has 8 channels")).and(predicate::str::contains("conv")));
        assert!(!out.exists());
    }
    // group 4 on 6 channels (weight [4, 1, 3, 3]): the same message
    let m = block_with_dw_weight(6, vec![4, 1, 3, 3]);
    let g = m.graph.as_ref().unwrap();
    let dw = g.node.iter().find(|n| n.op_type() == "Conv" && fusec::onnx::attr_int(n, "group") == Some(6)).unwrap().clone();
    let mut m2 = m.clone();
    let n = m2.graph.as_mut().unwrap().node.iter_mut().find(|n| n.name == dw.name).unwrap();
    n.attribute.iter_mut().find(|a| a.name() == "group").unwrap().i = Some(4);
    let e = fusec::ir::Graph::from_proto(m2.graph.as_ref().unwrap(), 13).unwrap_err().to_string();
    assert!(e.contains(dw.name()) && e.contains("input has 6 channels but the weight [4, 1, 3, 3] with group = 4 expects 4"), "{e}");
    // output channels not a multiple of the group
    let m = block_with_dw_weight(8, vec![6, 1, 3, 3]);
    let e = fusec::ir::Graph::from_proto(m.graph.as_ref().unwrap(), 13).unwrap_err().to_string();
    assert!(e.contains("6 output channels, not a multiple of group = 8"), "{e}");
}

#[test]
fn subgraphs_are_validated_as_the_main_graph_is() {
    let dir = tempfile::tempdir().unwrap();
    let bad = fuzz_seed(dir.path(), "seed6-subgraph-dangling.onnx");
    let out = dir.path().join("out.onnx");
    fusec()
        .args(["convert", bad.to_str().unwrap(), "--variant", "half", "-o", out.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("branch").and(predicate::str::contains("'ghost'")));
    assert!(!out.exists(), "no output for a model that cannot run");
    // the valid one converts, and keeps its If after the values its branches read
    let ok = fuzz_seed(dir.path(), "seed4-subgraph.onnx");
    let mut m = fusec::onnx::load(&ok).unwrap().proto;
    let g = m.graph.as_mut().unwrap();
    // list the If first: its branch reads x only, so move it before a node it depends on
    // by making the branch read the block's first conv output instead
    let first_out = g.node.iter().find(|n| n.op_type() == "Conv").unwrap().output[0].clone();
    let if_ix = g.node.iter().position(|n| n.op_type() == "If").unwrap();
    let mut if_node = g.node.remove(if_ix);
    let then_g: &mut GraphProto = if_node.attribute.iter_mut().find(|a| a.name() == "then_branch").unwrap().g.as_mut().unwrap();
    then_g.node[0].input = vec![first_out.clone(), first_out.clone()];
    then_g.output[0] = fusec::onnx::make_value_info("t", 1, None);
    g.output[1] = fusec::onnx::make_value_info("branch_out", 1, None);
    g.node.insert(0, if_node);
    let (conv, r) = convert(&m, Variant::Half, Init::Center);
    assert_eq!(r.rewrites.len(), 1);
    let nodes = &conv.graph.as_ref().unwrap().node;
    let producer = nodes.iter().position(|n| n.output.contains(&first_out)).unwrap();
    let branch = nodes.iter().position(|n| n.op_type() == "If").unwrap();
    assert!(producer < branch, "the If must come after '{first_out}', which its branch reads");
    // a node inside a branch that reads a value the branch defines later
    let g = m.graph.as_mut().unwrap();
    let then_g = g.node[0].attribute.iter_mut().find(|a| a.name() == "then_branch").unwrap().g.as_mut().unwrap();
    then_g.node.insert(0, NodeProto { op_type: Some("Identity".into()), input: vec!["t".into()], output: vec!["early".into()], name: Some("early".into()), ..Default::default() });
    let e = fusec::ir::Graph::from_proto(m.graph.as_ref().unwrap(), 13).unwrap_err().to_string();
    assert!(e.contains("reads 't' before the subgraph defines it") && e.contains("then_branch"), "{e}");
}

#[test]
fn a_graph_input_listed_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = fuzz_seed(dir.path(), "seed7-duplicate-input.onnx");
    let out = dir.path().join("out.onnx");
    fusec()
        .args(["convert", bad.to_str().unwrap(), "--variant", "half", "-o", out.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("graph input 'x' is listed more than once"));
    assert!(!out.exists());
}

#[test]
fn sparse_initializers_are_read_as_the_dense_tensors_they_stand_for() {
    let path = testdata("fuzz").join("seed5-sparse.onnx");
    let model = fusec::onnx::load(&path).unwrap();
    assert_eq!(model.proto.graph.as_ref().unwrap().sparse_initializer.len(), 1);
    // loaded and saved without a pass: the weight is dense, the outputs those of the
    // sparse original in ONNX Runtime
    let g = fusec::ir::Graph::from_proto(model.proto.graph.as_ref().unwrap(), model.opset()).unwrap();
    let mut dense = model.proto.clone();
    dense.graph = Some(g.to_proto().unwrap());
    assert!(dense.graph.as_ref().unwrap().sparse_initializer.is_empty());
    let x = random_input(&[1, 3, 6, 7], 3);
    let run_ort = |m: &ModelProto| {
        let mut s = fusec::exec::runtime::session(m, 1).unwrap();
        let feed = fusec::exec::runtime::Feed { name: "x", shape: x.shape().to_vec(), data: x.as_slice().unwrap() };
        fusec::exec::runtime::run(&mut s, &[feed], &[]).unwrap().remove(0)
    };
    let want = run_ort(&model.proto);
    assert_close(&run_ort(&dense), &want, 1e-6, 1e-6, "densified model");
    assert_close(&run(&dense, std::slice::from_ref(&x))[0], &want, 1e-5, 1e-5, "densified model in tract");
    // and it converts like any other
    let (conv, r) = convert(&model.proto, Variant::Half, Init::Center);
    assert_eq!(r.rewrites.len(), 1, "{:?}", r.skipped);
    assert_eq!(run_ort(&conv).shape(), want.shape());
    // a sparse initializer whose index lies outside its dims is refused, named
    let mut bad = model.proto.clone();
    let sp = &mut bad.graph.as_mut().unwrap().sparse_initializer[0];
    let name = sp.values.as_ref().unwrap().name().to_string();
    let idx = sp.indices.as_mut().unwrap();
    let mut v = fusec::onnx::tensor::Tensor::from_proto(idx.clone()).unwrap().to_i64().unwrap();
    v[0] = 10_000;
    *idx = fusec::onnx::tensor::Tensor::from_i64(idx.name(), &[v.len() as i64], &v).into_proto();
    let e = fusec::ir::Graph::from_proto(bad.graph.as_ref().unwrap(), 13).unwrap_err().to_string();
    assert!(e.contains(&name) && e.contains("outside dims"), "{e}");
}

#[test]
fn an_overridable_weight_keeps_the_models_interface() {
    // the depthwise weight is an initializer and a graph input: a default a caller may replace
    let m = Block::default().model(2);
    let mut m = m.clone();
    let g = m.graph.as_mut().unwrap();
    let dw = g.node.iter().find(|n| n.op_type() == "Conv" && fusec::onnx::attr_int(n, "group").unwrap_or(1) > 1).unwrap().clone();
    let w = g.initializer.iter().find(|t| t.name() == dw.input[1]).unwrap().clone();
    g.input.push(fusec::onnx::make_value_info(w.name(), 1, Some(&w.dims.iter().map(|&v| d(v)).collect::<Vec<_>>())));
    let (conv, r) = convert(&m, Variant::Half, Init::Center);
    assert_eq!(r.rewrites.len(), 0);
    assert!(r.skipped[0].1.contains("also a graph input"), "{:?}", r.skipped);
    let names = |m: &ModelProto| m.graph.as_ref().unwrap().input.iter().map(|i| i.name().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&conv), names(&m), "the interface is kept");
    // BN parameters as graph inputs: whatever the pass does, the inputs stay
    let mut m2 = Block::default().model(2);
    let g = m2.graph.as_mut().unwrap();
    let bn = g.node.iter().find(|n| n.op_type() == "BatchNormalization").unwrap().clone();
    let scale = g.initializer.iter().find(|t| t.name() == bn.input[1]).unwrap().clone();
    g.input.push(fusec::onnx::make_value_info(scale.name(), 1, Some(&[d(scale.dims[0])])));
    let (conv2, _) = convert(&m2, Variant::Full, Init::Center);
    assert_eq!(names(&conv2), names(&m2));
    assert!(conv2.graph.as_ref().unwrap().initializer.iter().any(|t| t.name() == scale.name()), "its default value stays too");
}

#[test]
fn teacher_outputs_pair_by_name_and_by_position_only_when_names_differ() {
    use fusec::onnx::make_value_info;
    let graph = |outs: &[&str]| GraphProto { output: outs.iter().map(|o| make_value_info(o, 1, None)).collect(), ..Default::default() };
    let names = |p: Vec<(&fusec::onnx::ValueInfoProto, &fusec::onnx::ValueInfoProto)>| p.iter().map(|(s, t)| (s.name().to_string(), t.name().to_string())).collect::<Vec<_>>();
    let (s, t) = (graph(&["maps", "scores"]), graph(&["scores", "maps"]));
    assert_eq!(names(fusec::train::loss::pair_outputs(&s, &t)), [("maps".into(), "maps".into()), ("scores".into(), "scores".into())]);
    let (s, t) = (graph(&["a", "b"]), graph(&["y0", "b"]));
    assert_eq!(names(fusec::train::loss::pair_outputs(&s, &t)), [("a".into(), "y0".into()), ("b".into(), "b".into())]);
}

#[test]
fn a_preprocessing_file_is_checked_as_the_flags_are() {
    let dir = tempfile::tempdir().unwrap();
    let m = ppocr_copy(dir.path());
    let lines = lines_folder(dir.path(), 2);
    let pp = dir.path().join("pp.toml");
    let good = "height = 48\nwidth = 192\nresize = \"pad-right\"\nscale = 0.00392156862745098\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\nbgr = false\n";
    std::fs::write(&pp, good).unwrap();
    let eval = |extra: &[&str]| {
        let mut c = fusec();
        c.args(["eval", m.to_str().unwrap(), "--data", lines.to_str().unwrap(), "--task", "rot180", "--preprocess", pp.to_str().unwrap()]).args(extra);
        c
    };
    eval(&[]).assert().success();
    for (bad, needle) in [
        (good.replace("height = 48", "height = 0"), "height = 0"),
        (good.replace("width = 192", "width = 100000"), "width = 100000"),
        (good.replace("std = [0.5, 0.5, 0.5]", "std = [0.5, 0.0, 0.5]"), "std"),
        (good.replace("scale = 0.00392156862745098", "scale = nan"), "scale"),
    ] {
        std::fs::write(&pp, bad).unwrap();
        eval(&[]).assert().code(1).stderr(predicate::str::contains("pp.toml").and(predicate::str::contains(needle)).and(predicate::str::contains("--preprocess")));
    }
    std::fs::write(&pp, good).unwrap();
    eval(&["--scale", "0"]).assert().code(1).stderr(predicate::str::contains("scale = 0"));
}

#[test]
fn finetune_checks_every_output_path_before_the_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let t = ppocr_copy(dir.path());
    let lines = lines_folder(dir.path(), 2);
    let base = ["--task", "rot180", "--preprocess", "ppocr-cls", "--batch", "2", "--steps", "1", "--quiet"];
    let (ts, ls) = (t.to_str().unwrap(), lines.to_str().unwrap());
    let out = dir.path().join("tuned.onnx");
    let nodir = dir.path().join("nodir");
    for (opt, path, needle) in [
        ("--curve", nodir.join("c.csv"), "--curve"),
        ("--checkpoint", nodir.join("c.npz"), "--checkpoint"),
        ("-o", nodir.join("m.onnx"), "-o"),
        ("--curve", lines.clone(), "--curve"),
    ] {
        let out = if opt == "-o" { path.clone() } else { out.clone() };
        let mut args = vec!["finetune", ts, "--teacher", ts, "--data", ls, "-o", out.to_str().unwrap()];
        if opt != "-o" {
            args.extend([opt, path.to_str().unwrap()]);
        }
        let r = fusec().args(&args).args(base).output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{opt}: {err}");
        assert!(err.contains(needle) && err.contains(path.file_name().unwrap().to_str().unwrap()), "{opt}: {err}");
        assert!(!err.contains("fine-tuning"), "{opt}: refused before training started: {err}");
        no_files_but(dir.path(), &["cls.onnx", "lines"]);
    }
}

#[test]
fn a_student_equal_to_its_teacher_trains_without_rollbacks() {
    // the loss starts at its floor (0 up to rounding): not a runaway
    let dir = tempfile::tempdir().unwrap();
    let t = ppocr_copy(dir.path());
    let lines = lines_folder(dir.path(), 4);
    let out = dir.path().join("same.onnx");
    let r = fusec()
        .args(["finetune", t.to_str().unwrap(), "--teacher", t.to_str().unwrap(), "--data", lines.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .args(["--task", "rot180", "--preprocess", "ppocr-cls", "--batch", "4", "--steps", "6", "--json", "--no-labels", "--bn", "frozen"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["rollbacks"].as_array().map(Vec::len), Some(0), "{}", v["rollbacks"]);
    assert!(err.contains("the loss is at its floor"), "{err}");
    // no update was made: the student is still its teacher (Adam would have scaled the
    // rounding noise of the gradients up to full steps)
    for k in ["first_loss", "final_loss"] {
        assert!(v[k].as_f64().unwrap().abs() < 1e-5, "{k} {}", v[k]);
    }
}

#[cfg(unix)]
#[test]
fn a_reader_that_stops_early_ends_fusec_quietly() {
    // `fusec report m.onnx --format json | head -c 1`: no panic on the closed pipe
    use std::io::Read;
    use std::process::{Command, Stdio};
    let m = fusec::models::zoo::build("mobilenet-v3-large", 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("fusec"))
        .args(["report", p.to_str().unwrap(), "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut one = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut one).unwrap();
    // the read end is closed here (dropped)
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

//! The command line: success paths and every error path (exit codes, messages,
//! no partial files, inputs never overwritten).

mod common;

use common::*;
use predicates::prelude::*;

#[test]
fn convert_writes_beside_the_input_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let m = ppocr_copy(dir.path());
    fusec()
        .args(["convert", m.to_str().unwrap(), "--variant", "half"])
        .assert()
        .success()
        .stdout(predicate::str::contains("11 converted").and(predicate::str::contains("params")));
    let out = dir.path().join("cls.fuse-half.onnx");
    let (model, _) = fusec::ir::load_graph(&out).unwrap();
    let meta: std::collections::HashMap<&str, &str> = model.proto.metadata_props.iter().map(|p| (p.key(), p.value())).collect();
    assert_eq!(meta["fusec.variant"], "half");
    assert_eq!(meta["fusec.init"], "center");
    assert_eq!(meta["fusec.converted"].split(',').count(), 11);
    // a second convert refuses to replace the output without --force
    fusec().args(["convert", m.to_str().unwrap(), "--variant", "half"]).assert().code(1).stderr(predicate::str::contains("exists"));
    fusec().args(["convert", m.to_str().unwrap(), "--variant", "half", "--force"]).assert().success();
}

#[test]
fn convert_records_the_pipeline_and_dumps_after_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let m = ppocr_copy(dir.path());
    let out = dir.path().join("out.onnx");
    fusec()
        .args(["convert", m.to_str().unwrap(), "--variant", "full", "--layers", "0-2", "-o", out.to_str().unwrap(), "--dump-after", "fuse_depthwise"])
        .assert()
        .success();
    let (model, _) = fusec::ir::load_graph(&out).unwrap();
    let meta: std::collections::HashMap<&str, &str> = model.proto.metadata_props.iter().map(|p| (p.key(), p.value())).collect();
    assert_eq!(meta["fusec.pipeline"], r#"full: fuse_depthwise{init="center", layers="0-2", variant="full"}"#);
    // the dump is the model right after the pass (here the last one: the output less its metadata)
    let dump = dir.path().join("out.after-fuse_depthwise.onnx");
    let (dumped, g) = fusec::ir::load_graph(&dump).unwrap();
    assert_eq!(dumped.proto.graph.as_ref().unwrap().node.len(), model.proto.graph.as_ref().unwrap().node.len());
    let grouped = fusec::passes::fuse_depthwise::depthwise_convs(&g).unwrap();
    let one_d = grouped.iter().filter(|c| c.name().contains(".fuse.")).count();
    assert_eq!((grouped.len() - one_d, one_d), (11 - 3, 3 * 2), "three layers rewritten into two 1-D convs each");
    // a pass that is not in the pipeline
    fusec()
        .args(["convert", m.to_str().unwrap(), "--variant", "half", "-o", dir.path().join("o2.onnx").to_str().unwrap(), "--dump-after", "fold_shapes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("'fold_shapes' is not in the pipeline"));
    assert!(!dir.path().join("o2.onnx").exists());
    // a pipeline file with two passes: options given on the command line override it
    let pipe = dir.path().join("p.toml");
    std::fs::write(&pipe, "[[pass]]\nname = \"fold_shapes\"\n[[pass]]\nname = \"fuse_depthwise\"\nvariant = \"half\"\nlayers = \"0\"\n").unwrap();
    let o3 = dir.path().join("o3.onnx");
    fusec().args(["convert", m.to_str().unwrap(), "--pipeline", pipe.to_str().unwrap(), "--init", "sum", "-o", o3.to_str().unwrap()]).assert().success().stdout(predicate::str::contains("1 converted"));
    let (model, _) = fusec::ir::load_graph(&o3).unwrap();
    let meta: std::collections::HashMap<&str, &str> = model.proto.metadata_props.iter().map(|p| (p.key(), p.value())).collect();
    assert!(meta["fusec.pipeline"].ends_with(r#"p.toml: fold_shapes; fuse_depthwise{init="sum", layers="0", variant="half"}"#), "{}", meta["fusec.pipeline"]);
    assert_eq!(meta["fusec.init"], "sum");
}

#[test]
fn convert_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let m = ppocr_copy(dir.path());
    let out = fusec().args(["convert", m.to_str().unwrap(), "--variant", "full", "--json", "--layers", "0-3", "--skip", "1"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rewrites = v["passes"][0][1]["rewrites"].as_array().unwrap();
    let idx: Vec<u64> = rewrites.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![0, 2, 3]);
    assert!(v["after"]["params"].as_u64().unwrap() > v["before"]["params"].as_u64().unwrap());
    // Half with channels assigned by kernel energy: recorded, and said per layer
    let out = fusec().args(["convert", m.to_str().unwrap(), "--variant", "half", "--assign", "fit", "--json", "--force", "-o", dir.path().join("fit.onnx").to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["assign"], "fit");
    let details: Vec<&str> = v["passes"][0][1]["rewrites"].as_array().unwrap().iter().map(|r| r["detail"].as_str().unwrap()).collect();
    assert!(details.iter().any(|d| d.contains("channels in the other branch")), "{details:?}");
}

#[test]
fn inspect_lists_depthwise_layers() {
    fusec()
        .args(["inspect", testdata("ppocr_mobile_v2_cls.onnx").to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("depthwise convs: 11 (11 convertible)").and(predicate::str::contains("Conv@48")));
    let out = fusec().args(["inspect", "--json", testdata("ppocr_mobile_v2_cls.onnx").to_str().unwrap()]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["opset"], 11);
    assert_eq!(v["depthwise"].as_array().unwrap().len(), 11);
    assert_eq!(v["depthwise"][3]["kernel"], "5x5");
}

#[test]
fn never_overwrites_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let m = ppocr_copy(dir.path());
    let before = std::fs::read(&m).unwrap();
    fusec()
        .args(["convert", m.to_str().unwrap(), "--variant", "half", "-o", m.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("exists").or(predicate::str::contains("input")));
    assert_eq!(std::fs::read(&m).unwrap(), before);
    // with --force it goes through a temporary file and a rename
    fusec().args(["convert", m.to_str().unwrap(), "--variant", "half", "-o", m.to_str().unwrap(), "--force"]).assert().success();
    assert_ne!(std::fs::read(&m).unwrap(), before);
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.onnx", vec![], "empty"),
        ("text.onnx", b"hello world\n".to_vec(), "text.onnx"),
        ("trunc.onnx", std::fs::read(testdata("ppocr_mobile_v2_cls.onnx")).unwrap()[..5000].to_vec(), "trunc.onnx"),
    ];
    for (name, bytes, needle) in &cases {
        std::fs::write(d.join(name), bytes).unwrap();
        fusec()
            .args(["convert", d.join(name).to_str().unwrap(), "--variant", "half"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(*needle).and(predicate::str::contains("panicked").not()));
    }
    // a graph input that declares a negative dimension (-1 is Paddle's "dynamic"; -5 is nothing)
    let mut m = Block::default().model(1);
    fn dim(m: &mut fusec::onnx::ModelProto) -> &mut fusec::onnx::proto::tensor_shape_proto::Dimension {
        let ty = m.graph.as_mut().unwrap().input[0].r#type.as_mut().unwrap();
        let Some(fusec::onnx::proto::type_proto::Value::TensorType(t)) = ty.value.as_mut() else { unreachable!() };
        &mut t.shape.as_mut().unwrap().dim[2]
    }
    dim(&mut m).value = Some(fusec::onnx::proto::tensor_shape_proto::dimension::Value::DimValue(-5));
    std::fs::write(d.join("negdim.onnx"), prost::Message::encode_to_vec(&m)).unwrap();
    let out = fusec().args(["convert", d.join("negdim.onnx").to_str().unwrap(), "--variant", "half"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("negdim.onnx") && err.contains("graph input 'x'") && err.contains("dimension 2 as -5"), "{err}");
    dim(&mut m).value = Some(fusec::onnx::proto::tensor_shape_proto::dimension::Value::DimValue(-1));
    std::fs::write(d.join("dyndim.onnx"), prost::Message::encode_to_vec(&m)).unwrap();
    fusec().args(["convert", d.join("dyndim.onnx").to_str().unwrap(), "--variant", "half"]).assert().success();
    no_files_but(d, &["empty.onnx", "text.onnx", "trunc.onnx", "negdim.onnx", "dyndim.onnx", "dyndim.fuse-half.onnx"]);
    fusec().args(["convert", d.join("missing.onnx").to_str().unwrap(), "--variant", "half"]).assert().code(1).stderr(predicate::str::contains("missing.onnx"));
    fusec().args(["inspect", d.to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("directory"));
}

#[test]
fn bad_options_and_outputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let m = ppocr_copy(dir.path());
    let ms = m.to_str().unwrap();
    fusec().args(["convert", ms, "--variant", "half", "--layers", "42"]).assert().code(1).stderr(predicate::str::contains("out of range"));
    fusec().args(["convert", ms, "--variant", "half", "--layers", "paper-50-nonet"]).assert().code(1).stderr(predicate::str::contains("preset"));
    fusec().args(["convert", ms, "--variant", "half", "-o", dir.path().join("no/such/dir/out.onnx").to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("does not exist"));
    let bad_pipe = dir.path().join("p.toml");
    std::fs::write(&bad_pipe, "[[pass]]\nname = \"fuse_everything\"\n").unwrap();
    fusec().args(["convert", ms, "--variant", "half", "--pipeline", bad_pipe.to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("valid passes: fold_shapes, fuse_depthwise"));
    std::fs::write(&bad_pipe, "[[pass]]\nname = \"fuse_depthwise\"\nvariant = \"half\"\ncolour = 3\n").unwrap();
    fusec().args(["convert", ms, "--variant", "half", "--pipeline", bad_pipe.to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("colour"));
    fusec().args(["convert", ms, "--variant", "full", "--assign", "fit"]).assert().code(1).stderr(predicate::str::contains("--assign"));
    no_files_but(dir.path(), &["cls.onnx", "p.toml"]);
    // a place nobody can create files in, root included
    #[cfg(target_os = "linux")]
    fusec().args(["convert", ms, "--variant", "half", "-o", "/proc/fusec-out.onnx"]).assert().code(1).stderr(predicate::str::contains("/proc"));
    // a read-only output folder: fusec runs as `nobody` when the tests run as root (as CI
    // does), so the permissions hold; nothing may be left in the folder
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let out = ro.join("o.onnx");
        fusec_unprivileged().args(["convert", ms, "--variant", "half", "-o", out.to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains(ro.to_str().unwrap()));
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0, "files left in the read-only folder");
        // the same command where the folder takes files: it writes (the refusal above was the folder's)
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o777)).unwrap();
        fusec_unprivileged().args(["convert", ms, "--variant", "half", "-o", out.to_str().unwrap()]).assert().success();
        std::fs::remove_file(&out).unwrap();
    }
    // an output "folder" that is a file
    fusec().args(["convert", ms, "--variant", "half", "-o", dir.path().join("p.toml/o.onnx").to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("p.toml"));
}

#[test]
fn usage_help_and_version() {
    fusec().args(["convert"]).assert().code(2);
    fusec().args(["convert", "m.onnx", "--variant", "quarter"]).assert().code(2);
    fusec().args(["frobnicate"]).assert().code(2);
    fusec().args(["--version"]).assert().success().stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    for cmd in ["convert", "inspect"] {
        fusec().args([cmd, "--help"]).assert().success().stdout(predicate::str::contains("Examples:"));
    }
    // finetune's help lists the front-door options (the issue's ~18, plus --print-recipe,
    // --preprocess, -v and -h); preprocessing and decoding details are hidden there, not gone
    let help = String::from_utf8(fusec().args(["finetune", "-h"]).output().unwrap().stdout).unwrap();
    let options = help.split("Options:").nth(1).and_then(|o| o.split("\n\n").next()).unwrap();
    let listed: Vec<&str> = options.lines().map(str::trim_start).filter(|l| l.starts_with('-')).collect();
    assert!((18..=22).contains(&listed.len()), "{} options listed: {listed:?}", listed.len());
    for hidden in ["--size", "--resize", "--mean", "--dict", "--thresh", "--iou"] {
        assert!(!listed.iter().any(|l| l.starts_with(hidden)), "{hidden} listed");
        fusec().args(["eval", "--help"]).assert().success().stdout(predicate::str::contains(hidden));
    }
    fusec().args(["finetune", "--print-recipe", "--task", "ctc", "--size", "48x320", "--thresh", "0.4"]).assert().success();
}

#[test]
fn pipeline_files_and_presets_all_load() {
    for name in fusec::passes::pipeline_names() {
        let (_, text) = fusec::passes::embedded_files().iter().find(|(n, _)| *n == name).unwrap();
        let passes = fusec::passes::parse_pipeline(text, name).unwrap();
        assert!(!passes.is_empty(), "{name}");
    }
    for name in fusec::passes::preset_names() {
        let p = fusec::passes::load_preset(name).unwrap().unwrap();
        assert!(!p.layers.is_empty(), "{name}");
    }
    assert!(fusec::passes::pipeline_names().contains(&"half"));
}

fn zoo(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.onnx"));
    fusec().args(["zoo", name, "-o", p.to_str().unwrap()]).assert().success();
    p
}

/// MobileNetV3-Small from the zoo and its Half rewrite.
fn v3_small_and_half(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let base = zoo(dir, "mobilenet-v3-small");
    let half = dir.join("half.onnx");
    fusec().args(["convert", base.to_str().unwrap(), "--variant", "half", "-o", half.to_str().unwrap()]).assert().success();
    (base, half)
}

#[test]
fn report_formats_gates_and_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (base, half) = v3_small_and_half(dir.path());
    let (b, h) = (base.to_str().unwrap(), half.to_str().unwrap());
    // JSON: total, speedup, layers with name/op/cycles; numbers equal the paper-table computation
    let out = fusec().args(["report", h, "--baseline", b, "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total_cycles"], 167739);
    assert_eq!(v["baseline"]["total_cycles"], 693549);
    assert!((v["speedup"].as_f64().unwrap() - 693549.0 / 167739.0).abs() < 1e-9);
    let layers = v["layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| l["name"].is_string() && l["op"].is_string() && l["cycles"].is_u64()));
    assert_eq!(layers.iter().map(|l| l["cycles"].as_u64().unwrap()).sum::<u64>(), 167739);
    assert_eq!(v["blocks"].as_array().unwrap().len(), 12, "stem + 11 depthwise blocks");
    // table, markdown, csv, svg
    fusec().args(["report", h, "--baseline", b]).assert().success().stdout(predicate::str::contains("speedup 4.13x").and(predicate::str::contains("per block")));
    fusec().args(["report", h, "--format", "md"]).assert().success().stdout(predicate::str::contains("| node | kind |"));
    let csv = fusec().args(["report", h, "--format", "csv"]).output().unwrap();
    let text = String::from_utf8(csv.stdout).unwrap();
    assert!(text.starts_with("node,op,kind,input,kernel,stride,macs,params,cycles,start,end,utilization"));
    let svg = dir.path().join("r.svg");
    fusec().args(["report", h, "--baseline", b, "--format", "svg", "-o", svg.to_str().unwrap()]).assert().success();
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("baseline (systolic)") && s.contains("4.13x speedup"));
    // gates
    fusec().args(["report", h, "--baseline", b, "--min-speedup", "4"]).assert().success();
    fusec().args(["report", h, "--baseline", b, "--min-speedup", "4.5"]).assert().code(1).stderr(predicate::str::contains("below --min-speedup 4.5"));
    fusec().args(["report", h, "--max-cycles", "100000"]).assert().code(1).stderr(predicate::str::contains("exceed --max-cycles"));
    fusec().args(["report", h, "--min-speedup", "2"]).assert().code(1).stderr(predicate::str::contains("needs --baseline"));
    // GitHub step summary
    let summary = dir.path().join("summary.md");
    fusec().env("GITHUB_STEP_SUMMARY", &summary).args(["report", h, "--baseline", b, "--format", "json"]).assert().success();
    assert!(std::fs::read_to_string(&summary).unwrap().contains("speedup 4.13x"));
    // hardware from flags, presets and files
    let j = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["report", h, "--format", "json"];
        all.extend_from_slice(args);
        serde_json::from_slice(&fusec().args(&all).output().unwrap().stdout).unwrap()
    };
    assert_eq!(j(&["--hw-config", "paper-32x32"])["array"]["rows"], 32);
    let cfg = testdata("hw/edge-32x16.toml");
    let e = j(&["--hw-config", cfg.to_str().unwrap()]);
    assert_eq!((e["array"]["rows"].as_u64(), e["array"]["cols"].as_u64(), e["array"]["freq_mhz"].as_f64()), (Some(32), Some(16), Some(800.0)));
    assert_eq!(j(&["--hw-config", cfg.to_str().unwrap(), "--array", "8x8"])["array"]["cols"], 8);
    assert!(j(&["--hw", "systolic"])["total_cycles"].as_u64().unwrap() > 167739, "1-D convs are slow without the FuSe extension");
    fusec().args(["report", h, "--array", "0x64"]).assert().code(1).stderr(predicate::str::contains("--array"));
    fusec().args(["report", h, "--hw-config", "paper-7x7"]).assert().code(1).stderr(predicate::str::contains("preset"));
}

#[test]
fn simulate_sweep_and_the_sim_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (base, half) = v3_small_and_half(dir.path());
    let (b, h) = (base.to_str().unwrap(), half.to_str().unwrap());
    let mem = ["--sram-kb", "64", "--dram-bw", "8"];
    // JSON: totals add up, layers carry traffic, the timeline is ordered
    let out = fusec().args(["simulate", h, "--baseline", b, "--format", "json"]).args(mem).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = v["total_cycles"].as_u64().unwrap();
    let layers = v["layers"].as_array().unwrap();
    // the network ends when the last node has ended and its outputs have drained to DRAM
    let last_end = layers.iter().map(|l| l["end"].as_u64().unwrap()).max().unwrap();
    assert!(total >= last_end && total - last_end < 1000, "{total} vs {last_end}");
    assert!(layers.iter().all(|l| l["start"].as_u64().unwrap() <= l["end"].as_u64().unwrap()));
    let stalls: u64 = layers.iter().map(|l| l["stall_cycles"].as_u64().unwrap()).sum();
    assert!(stalls > 0, "64 KB at 8 B/cycle stalls somewhere");
    let speedup = v["speedup"].as_f64().unwrap();
    assert!(speedup > 1.5, "{speedup}");
    // report --engine sim: the same total, and it names the engine
    let r = fusec().args(["report", h, "--engine", "sim", "--format", "json"]).args(mem).output().unwrap();
    let rv: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(rv["total_cycles"].as_u64(), Some(total));
    assert_eq!(rv["engine"], "sim");
    assert!(rv["convention"].as_str().unwrap().contains("ONNX padding"), "{}", rv["convention"]);
    // one report: simulate and report --engine sim write the same one, byte for byte
    let r = fusec().args(["report", h, "--baseline", b, "--engine", "sim", "--format", "json"]).args(mem).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&out.stdout));
    // every row the simulator ran carries its details, the others are idle
    let detail = |l: &serde_json::Value| (l["unit"].as_str().unwrap().to_string(), l["total_cycles"].as_u64().unwrap(), l["cycles"].as_u64().unwrap());
    assert!(layers.iter().map(detail).all(|(unit, t, c)| t == c && (unit != "none" || c == 0)));
    assert!(v["blocks"].as_array().unwrap().iter().filter(|b| b["speedup"].is_number()).count() > 3, "per-block speedups against the baseline");
    // a simulator preset through report's --hw-config: read as the simulator's (it has
    // memory and a vector unit), the same total as simulate --config
    let sim_edge = fusec().args(["simulate", h, "--config", "edge-32x32", "--format", "json"]).output().unwrap();
    assert!(sim_edge.status.success(), "{}", String::from_utf8_lossy(&sim_edge.stderr));
    let r = fusec().args(["report", h, "--engine", "sim", "--hw-config", "edge-32x32", "--format", "json"]).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (se, re): (serde_json::Value, serde_json::Value) = (serde_json::from_slice(&sim_edge.stdout).unwrap(), serde_json::from_slice(&r.stdout).unwrap());
    assert_eq!(re["total_cycles"], se["total_cycles"]);
    assert_ne!(re["total_cycles"].as_u64(), Some(total), "32x32 with 64 KB is not the default 64x64");
    // one preset table for both engines: the analytical model reads the same preset's array
    // and clock, and the simulator takes the paper's other sizes
    let an = fusec().args(["report", h, "--hw-config", "edge-32x32", "--format", "json"]).output().unwrap();
    assert!(an.status.success(), "{}", String::from_utf8_lossy(&an.stderr));
    let av: serde_json::Value = serde_json::from_slice(&an.stdout).unwrap();
    assert_eq!((av["engine"].as_str(), av["array"]["rows"].as_u64(), av["array"]["cols"].as_u64()), (Some("analytical"), Some(32), Some(32)));
    let an32 = fusec().args(["report", h, "--array", "32x32", "--format", "json"]).output().unwrap();
    assert_eq!(av["total_cycles"], serde_json::from_slice::<serde_json::Value>(&an32.stdout).unwrap()["total_cycles"]);
    let s128 = fusec().args(["simulate", h, "--config", "paper-128x128", "--format", "json"]).output().unwrap();
    assert!(s128.status.success(), "{}", String::from_utf8_lossy(&s128.stderr));
    // formats and gates
    fusec().args(["simulate", h, "--format", "md"]).args(mem).assert().success().stdout(predicate::str::contains("| node |"));
    let csv = fusec().args(["simulate", h, "--format", "csv"]).args(mem).output().unwrap();
    assert!(String::from_utf8(csv.stdout).unwrap().lines().count() > 50);
    let svg = dir.path().join("t.svg");
    fusec().args(["simulate", h, "--format", "svg", "-o", svg.to_str().unwrap()]).args(mem).assert().success();
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    fusec().args(["simulate", h, "--baseline", b, "--min-speedup", "100"]).args(mem).assert().code(1).stderr(predicate::str::contains("--min-speedup"));
    fusec().args(["simulate", h, "--max-cycles", "10"]).assert().code(1).stderr(predicate::str::contains("--max-cycles"));
    // SCALE-Sim's inputs, and a topology export that reads back
    let topo = dir.path().join("t.csv");
    fusec().args(["simulate", b, "--scalesim-compat", "--export-topology", topo.to_str().unwrap()]).assert().success();
    let cfg = dir.path().join("s.cfg");
    std::fs::write(&cfg, "[architecture_presets]\nArrayHeight: 32\nArrayWidth: 32\nIfmapSramSzkB: 64\nFilterSramSzkB: 64\nOfmapSramSzkB: 64\nBandwidth: 10\nDataflow: ws\n[run_presets]\nInterfaceBandwidth: USER\n").unwrap();
    fusec().args(["simulate", "--topology", topo.to_str().unwrap(), "--config", cfg.to_str().unwrap()]).assert().success().stdout(predicate::str::contains("WS dataflow"));
    // a sweep: CSV rows = configurations, an SVG beside it
    let out_csv = dir.path().join("sweep.csv");
    fusec()
        .args(["sweep", b, "--arrays", "16x16,32x32", "--hw", "systolic,fuse", "--dataflow", "os,ws", "--variants", "baseline,half", "--quiet", "-o", out_csv.to_str().unwrap()])
        .assert()
        .success();
    let text = std::fs::read_to_string(&out_csv).unwrap();
    assert_eq!(text.lines().count(), 1 + 2 * 2 * 2 * 2, "{text}");
    assert!(dir.path().join("sweep.svg").is_file());
    // bad input: one line naming the option
    fusec().args(["simulate", h, "--array", "0x4"]).assert().code(1).stderr(predicate::str::contains("--array"));
    fusec().args(["simulate", h, "--dataflow", "xs"]).assert().code(2);
    fusec().args(["sweep", b, "--arrays", "16x"]).assert().code(1).stderr(predicate::str::contains("--arrays"));
}

#[test]
fn convert_with_report_prints_the_speedup() {
    let dir = tempfile::tempdir().unwrap();
    let base = zoo(dir.path(), "mobilenet-v2");
    fusec()
        .args(["convert", base.to_str().unwrap(), "--variant", "half", "--layers", "paper-50-mobilenet-v2", "--report"])
        .assert()
        .success()
        .stdout(predicate::str::contains("9 converted").and(predicate::str::contains("2961936 → 1370794 cycles, speedup 2.16x")));
    // the paper preset refuses a network with a different number of depthwise layers
    let v1 = zoo(dir.path(), "mobilenet-v1");
    fusec()
        .args(["convert", v1.to_str().unwrap(), "--variant", "half", "--layers", "paper-50-mobilenet-v2"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("17 depthwise convs; this model has 13"));
}

#[test]
fn finetune_runs_writes_a_model_curve_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = ppocr_copy(dir.path());
    let student = dir.path().join("half.onnx");
    fusec().args(["convert", teacher.to_str().unwrap(), "--variant", "half", "-o", student.to_str().unwrap()]).assert().success();
    let lines = lines_folder(dir.path(), 6);
    let out = dir.path().join("tuned.onnx");
    let run = fusec()
        .args(["finetune", student.to_str().unwrap(), "--teacher", teacher.to_str().unwrap(), "--data", lines.to_str().unwrap(), "--eval-data", lines.to_str().unwrap()])
        .args(["--task", "rot180", "--preprocess", "ppocr-cls", "--steps", "3", "--batch", "4", "--json", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["steps"], 3);
    assert_eq!(v["features"].as_array().unwrap().len(), 11, "one matched output per rewritten block");
    assert!(v["eval_after"].as_f64().is_some());
    for f in ["tuned.onnx", "tuned.curve.csv", "tuned.curve.svg", "tuned.ckpt.npz"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(dir.path().join("tuned.curve.csv")).unwrap();
    assert!(csv.starts_with("step,epoch,lr,loss,loss/kl,loss/feature,grad_norm,eval_accuracy"), "{csv}");
    assert_eq!(v["outputs"][0]["kind"], "kl", "the classifier's output gets the KL loss");
    assert_eq!(csv.lines().count(), 4);
    // the result is a model fusec (tract) evaluates, also with preprocessing given as flags
    fusec().args(["eval", out.to_str().unwrap(), "--data", lines.to_str().unwrap(), "--task", "rot180", "--preprocess", "ppocr-cls"]).assert().success();
    fusec()
        .args(["eval", out.to_str().unwrap(), "--data", lines.to_str().unwrap(), "--task", "rot180", "--size", "48x192", "--resize", "pad-right"])
        .args(["--scale", "0.00392157", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"samples\": 12"));
    // --labels adds cross-entropy on the labels (here from --task rot180)
    let v: serde_json::Value = serde_json::from_slice(
        &fusec()
            .args(["finetune", student.to_str().unwrap(), "--teacher", teacher.to_str().unwrap(), "--data", lines.to_str().unwrap(), "--labels"])
            .args(["--task", "rot180", "--preprocess", "ppocr-cls", "--steps", "1", "--batch", "4", "--json", "-o", dir.path().join("l.onnx").to_str().unwrap()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(v["loss_names"], serde_json::json!(["loss", "loss/kl", "loss/ce", "loss/feature"]));
    // --stop-after pauses with a checkpoint and exit code 0, without a model
    let paused = dir.path().join("paused.onnx");
    fusec()
        .args(["finetune", student.to_str().unwrap(), "--teacher", teacher.to_str().unwrap(), "--data", lines.to_str().unwrap()])
        .args(["--task", "rot180", "--preprocess", "ppocr-cls", "--steps", "3", "--stop-after", "1", "--batch", "4", "--quiet", "-o", paused.to_str().unwrap()])
        .assert()
        .success()
        .stderr(predicate::str::contains("stopped at step 1"));
    assert!(!paused.exists() && dir.path().join("paused.ckpt.npz").is_file());
    // an existing output is not replaced without --force
    fusec()
        .args(["finetune", student.to_str().unwrap(), "--teacher", teacher.to_str().unwrap(), "--data", lines.to_str().unwrap()])
        .args(["--task", "rot180", "--preprocess", "ppocr-cls", "--steps", "1", "--batch", "4", "-o", out.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("exists"));
}

#[test]
fn finetune_bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = ppocr_copy(dir.path());
    let lines = lines_folder(dir.path(), 2);
    let t = teacher.to_str().unwrap();
    let l = lines.to_str().unwrap();
    let base = ["--task", "rot180", "--preprocess", "ppocr-cls", "--steps", "1"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["finetune", t, "--teacher", "missing.onnx", "--data", l], "missing.onnx"),
        (vec!["finetune", t, "--teacher", t, "--data", "nowhere.tsv"], "nowhere.tsv"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "--batch", "64"], "--batch"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "--lr", "0"], "--lr"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "--batch", "2", "--resume", t], "--resume"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "-o", t, "--force"], "is an input"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "--size", "48"], "--size"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "--mean", "0.5,0.5"], "--mean"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "--recipe", "nope"], "--recipe"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "--set", "bogus=1"], "'bogus'"),
        (vec!["finetune", t, "--teacher", t, "--data", l, "--set", "epochs"], "KEY=VALUE"),
    ];
    for (args, needle) in cases {
        fusec().args(&args).args(base).assert().code(1).stderr(predicate::str::contains(needle));
    }
    // a value clap rejects: its usage error (exit 2) names the option
    fusec().args(["finetune", t, "--teacher", t, "--data", l, "--divergence-ratio", "0.5"]).args(base).assert().code(2).stderr(predicate::str::contains("--divergence-ratio"));
    no_files_but(dir.path(), &["cls.onnx", "lines"]);
}

/// Task recipes: --task picks one, --print-recipe shows it resolved with --set,
/// a recipe file works as the built-in ones do, and the run names its recipe.
#[test]
fn finetune_recipes_print_resolve_and_run() {
    let out = fusec().args(["finetune", "--print-recipe", "--task", "textdet", "--set", "epochs=2"]).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("recipe ppocr-det") && text.contains("epochs = 2") && text.contains("\"[map]=bce:20\"") && text.contains("measured ="), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let teacher = ppocr_copy(dir.path());
    let lines = lines_folder(dir.path(), 4);
    let recipe = dir.path().join("mine.toml");
    std::fs::write(&recipe, "description = \"one short epoch\"\n[finetune]\nepochs = 1\nbatch = 4\nno-augment = true\n").unwrap();
    let t = teacher.to_str().unwrap();
    let student = dir.path().join("s.onnx");
    fusec().args(["convert", t, "--variant", "half", "-o", student.to_str().unwrap()]).assert().success();
    let tuned = dir.path().join("s.tuned.onnx");
    let out = fusec()
        .args(["finetune", student.to_str().unwrap(), "--teacher", t, "--data", lines.to_str().unwrap(), "--task", "rot180", "--preprocess", "ppocr-cls"])
        .args(["--recipe", recipe.to_str().unwrap(), "--json", "-o", tuned.to_str().unwrap()])
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    // 8 samples (4 lines, upright and rotated), batch 4, 1 epoch: the recipe's, not the task's 20 epochs
    assert_eq!(summary["steps"], 2, "{summary}");
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("recipe"));
}

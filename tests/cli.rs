//! The command line: success paths and every error path (exit codes, messages,
//! no partial files, inputs never overwritten).

mod common;

use assert_cmd::Command;
use common::*;
use predicates::prelude::*;

fn fusec() -> Command {
    Command::cargo_bin("fusec").unwrap()
}

fn ppocr_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("cls.onnx");
    std::fs::copy(testdata("ppocr_mobile_v2_cls.onnx"), &p).unwrap();
    p
}

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

fn no_files_but(dir: &std::path::Path, keep: &[&str]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(keep.contains(&name.as_str()), "left behind: {name}");
    }
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
    no_files_but(d, &["empty.onnx", "text.onnx", "trunc.onnx"]);
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
    fusec().args(["convert", ms, "--variant", "half", "--pipeline", bad_pipe.to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("valid passes: fuse_depthwise"));
    std::fs::write(&bad_pipe, "[[pass]]\nname = \"fuse_depthwise\"\nvariant = \"half\"\ncolour = 3\n").unwrap();
    fusec().args(["convert", ms, "--variant", "half", "--pipeline", bad_pipe.to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("colour"));
    no_files_but(dir.path(), &["cls.onnx", "p.toml"]);
    // read-only output folder (skipped when running as a user that ignores permissions)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = ro.join("probe");
        if std::fs::write(&probe, b"x").is_err() {
            fusec().args(["convert", ms, "--variant", "half", "-o", ro.join("o.onnx").to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("ro"));
        } else {
            std::fs::remove_file(&probe).unwrap();
        }
    }
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

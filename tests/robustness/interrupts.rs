//! Ctrl-C at known points: the `FUSEC_INTERRUPT_AT` hook makes fusec send itself
//! SIGINT there (instead of a test guessing when a write is under way). The
//! output is the old file or the new one, never a partial one; no temporary file
//! stays; fine-tuning stops after the step it was in and resumes from there.

use super::*;
use fusec::cancel::INTERRUPT_AT_VAR;

fn stray_temporaries(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with(".tmp")).collect()
}

#[cfg(unix)]
#[test]
fn sigint_during_a_write_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::write(&model, fusec::models::zoo::build("mobilenet-v3-small", 0).unwrap().encode_to_vec()).unwrap();
    let out = dir.path().join("out.onnx");
    std::fs::write(&out, b"old contents").unwrap();
    let args = ["convert", model.to_str().unwrap(), "--variant", "full", "-o", out.to_str().unwrap(), "--force"];
    // the signal lands when the new model is written to its temporary file, before the rename
    let r = fusec().args(args).env(INTERRUPT_AT_VAR, "save").output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted; nothing was written"), "the write was under way when the signal landed: {err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"old contents");
    assert!(stray_temporaries(dir.path()).is_empty(), "temporary files left: {:?}", stray_temporaries(dir.path()));
    // a point the run never reaches: the hook stays silent and the new model is written whole
    fusec().args(args).env(INTERRUPT_AT_VAR, "step:1").assert().success();
    let bytes = std::fs::read(&out).unwrap();
    assert!(ModelProto::decode(bytes.as_slice()).is_ok_and(|m| m.graph.is_some()), "the output is a complete model");
    assert!(stray_temporaries(dir.path()).is_empty());
}

#[test]
fn finetune_ctrl_c_saves_a_checkpoint_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = ppocr_copy(dir.path());
    let student = dir.path().join("half.onnx");
    fusec().args(["convert", teacher.to_str().unwrap(), "--variant", "half", "-o", student.to_str().unwrap()]).assert().success();
    let lines = lines_folder(dir.path(), 4);
    let out = dir.path().join("tuned.onnx");
    let ck = dir.path().join("ck.npz");
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = ["finetune", student.to_str().unwrap(), "--teacher", teacher.to_str().unwrap(), "--data", lines.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["--task", "rot180", "--preprocess", "ppocr-cls", "--batch", "4", "--quiet", "--checkpoint", ck.to_str().unwrap(), "-o", out.to_str().unwrap()].iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Ctrl-C during step 3 of 100,000: the step finishes, a checkpoint is saved, the run exits 130
    let res = fusec().args(args(&["--steps", "100000"])).env(INTERRUPT_AT_VAR, "step:3").output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr).to_string();
    assert_eq!(res.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped at step 3;"), "{err}");
    assert!(ck.is_file(), "no checkpoint after Ctrl-C: {err}");
    assert!(!out.exists(), "an interrupted run must not write the output model");
    let done = fusec().args(args(&["--steps", "4", "--resume", ck.to_str().unwrap(), "--json"])).output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let v: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(v["steps"].as_u64(), Some(4));
    assert!(out.is_file());
}

//! ONNX Runtime through the `ort` crate, loaded dynamically.
//!
//! The library is the plain C-API `libonnxruntime.so` of the `onnxruntime`
//! wheel that `scripts/setup.sh` installs. fusec finds it without any
//! environment variable: `FUSEC_ORT_LIB` or `ORT_DYLIB_PATH` if set, else a
//! copy beside the executable (setup puts one there), else the project's
//! `.venv` found by walking up from the executable and the working directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::ArrayD;
use ort::session::Session;

use crate::error::{Error, Result};
use crate::onnx::ModelProto;

static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
static INIT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

fn lib_in(dir: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib" || n == "onnxruntime.dll"))
        .collect();
    found.sort();
    found.pop()
}

fn venv_lib(root: &Path) -> Option<PathBuf> {
    let lib = root.join(".venv").join("lib");
    let rd = std::fs::read_dir(&lib).ok()?;
    for e in rd.flatten() {
        let capi = e.path().join("site-packages").join("onnxruntime").join("capi");
        if let Some(p) = lib_in(&capi) {
            return Some(p);
        }
    }
    None
}

/// Where the ONNX Runtime library is, in search order; `Err` lists where we looked.
pub fn find_library() -> std::result::Result<PathBuf, String> {
    for var in ["FUSEC_ORT_LIB", "ORT_DYLIB_PATH"] {
        if let Some(v) = std::env::var_os(var) {
            let p = PathBuf::from(&v);
            return if p.is_file() { Ok(p) } else { Err(format!("{var}={} is not a file", p.display())) };
        }
    }
    let mut looked = vec![];
    let mut starts = vec![];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            if let Some(p) = lib_in(dir) {
                return Ok(p);
            }
            looked.push(dir.display().to_string());
            starts.push(dir.to_path_buf());
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    for s in starts {
        for dir in s.ancestors() {
            if let Some(p) = venv_lib(dir) {
                return Ok(p);
            }
        }
        looked.push(format!("{}/**/.venv", s.display()));
    }
    Err(format!("looked beside the executable and in .venv folders above {}", looked.join(", ")))
}

/// Load ONNX Runtime once per process.
pub fn init() -> Result<&'static Path> {
    let r = INIT.get_or_init(|| {
        let path = find_library().map_err(|e| format!("ONNX Runtime library not found ({e}); run `bash scripts/setup.sh` (it installs the onnxruntime wheel and copies its library beside fusec), or set FUSEC_ORT_LIB to a libonnxruntime.so"))?;
        let builder = ort::init_from(&path).map_err(|e| format!("{}: cannot load ONNX Runtime: {e}", path.display()))?;
        let env = builder.with_name("fusec").build().map_err(|e| format!("{}: cannot start ONNX Runtime: {e}", path.display()))?;
        let _ = ENV.set(env);
        Ok(path)
    });
    match r {
        Ok(p) => Ok(p.as_path()),
        Err(e) => Err(Error::Eval(e.clone())),
    }
}

fn ort_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Eval(format!("{what}: {e}"))
}

/// An ONNX Runtime session for `model`, with `threads` intra-op threads (0: ORT's default).
pub fn session(model: &ModelProto, threads: usize) -> Result<Session> {
    use prost::Message;
    init()?;
    let env = ENV.get().ok_or_else(|| Error::Eval("ONNX Runtime environment missing".into()))?;
    let bytes = model.encode_to_vec();
    let mut b = Session::builder(env).map_err(|e| ort_err("session", e))?;
    if threads > 0 {
        b = b.with_intra_threads(threads).map_err(|e| ort_err("session", e))?;
    }
    b = b.with_inter_threads(1).map_err(|e| ort_err("session", e))?;
    // Fine-tuning alternates two sessions (teacher, training graph): threads that spin
    // after one session's run would take the cores from the other (measured: teacher
    // 48 → 35 ms per batch of 32 without spinning).
    b = b.with_intra_op_spinning(false).map_err(|e| ort_err("session", e))?;
    // a debugging aid: FUSEC_ORT_PROFILE=PREFIX writes ONNX Runtime's per-node timings
    // (PREFIX_<date>.json) when the session ends
    if let Some(prefix) = std::env::var_os("FUSEC_ORT_PROFILE") {
        b = b.with_profiling(prefix).map_err(|e| ort_err("session", e))?;
    }
    b.commit_from_memory(&bytes).map_err(|e| ort_err("ONNX Runtime rejected the model", e))
}

/// A named f32 input.
pub struct Feed<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// Run a session on f32 inputs and return the named f32 outputs (all outputs if `outputs` is empty).
fn session_inputs<'a>(feeds: &'a [Feed]) -> Result<Vec<(String, ort::session::SessionInputValue<'a>)>> {
    feeds
        .iter()
        .map(|f| {
            let t = ort::value::TensorRef::from_array_view((f.shape.clone(), f.data)).map_err(|e| ort_err(f.name, e))?;
            Ok((f.name.to_string(), t.into()))
        })
        .collect()
}

pub fn run(sess: &mut Session, feeds: &[Feed], outputs: &[String]) -> Result<Vec<ArrayD<f32>>> {
    let inputs = session_inputs(feeds)?;
    let names: Vec<String> = if outputs.is_empty() { sess.outputs().iter().map(|o| o.name().to_string()).collect() } else { outputs.to_vec() };
    let out = sess.run(inputs).map_err(|e| ort_err("ONNX Runtime run", e))?;
    names
        .iter()
        .map(|n| {
            let v = out.get(n.as_str()).ok_or_else(|| Error::Eval(format!("no output '{n}'")))?;
            let a = v.try_extract_array::<f32>().map_err(|e| ort_err(n, e))?;
            Ok(a.to_owned())
        })
        .collect()
}

/// Run a session and return the name and shape of every tensor output (any element type).
pub fn run_any(sess: &mut Session, feeds: &[Feed]) -> Result<Vec<(String, Vec<i64>)>> {
    let inputs = session_inputs(feeds)?;
    let out = sess.run(inputs).map_err(|e| ort_err("ONNX Runtime run", e))?;
    let mut res = vec![];
    for (name, v) in out.iter() {
        // every tensor, whatever its element type (quantized models carry int8/uint8 values)
        let Some(shape) = v.dtype().tensor_shape() else { continue };
        res.push((name.to_string(), shape.to_vec()));
    }
    Ok(res)
}

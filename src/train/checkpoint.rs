//! Checkpoints: parameters, optimizer moments, BN running statistics and the
//! step, in one `.npz` written atomically, tied to the model by a fingerprint
//! of its parameter names and shapes.

use std::path::Path;

use super::graph::TrainGraph;
use crate::error::{Error, Result};

/// A fingerprint of the trained parameters (names and shapes): a checkpoint of
/// another model or set-up is refused.
pub fn fingerprint(tg: &TrainGraph) -> i64 {
    let mut h: i64 = 1469598103934665603u64 as i64;
    for (p, s) in tg.params.iter().zip(&tg.param_shapes) {
        for b in p.bytes().chain(s.iter().flat_map(|d| (*d as u32).to_le_bytes())) {
            h = (h ^ b as i64).wrapping_mul(1099511628211);
        }
    }
    h
}

/// State that a checkpoint saves.
#[derive(Clone)]
pub struct State {
    pub params: Vec<Vec<f32>>,
    /// Optimizer moments (AdamW m and v; SGD uses m as its momentum buffer).
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub bn_mean: Vec<Vec<f32>>,
    pub bn_var: Vec<Vec<f32>>,
    /// The exponential moving average of the parameters (`--ema`), which the
    /// held-out evaluation and the written model use.
    pub avg: Option<Vec<Vec<f32>>>,
    pub step: usize,
    /// The divergence guard's factor on the scheduled learning rate (1 until a rollback).
    pub lr_scale: f32,
}

impl State {
    /// The parameters the model is evaluated and written with: the average when there is one.
    pub fn weights(&self) -> &[Vec<f32>] {
        self.avg.as_deref().unwrap_or(&self.params)
    }
}

pub fn save(path: &Path, st: &State, tg: &TrainGraph, fingerprint: i64) -> Result<()> {
    use ndarray_npy::NpzWriter;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    {
        let mut w = NpzWriter::new(tmp.as_file());
        let err = |e: ndarray_npy::WriteNpzError| Error::io(path, std::io::Error::other(e.to_string()));
        w.add_array("meta", &ndarray::arr1(&[st.step as i64, fingerprint])).map_err(err)?;
        w.add_array("lr_scale", &ndarray::arr1(&[st.lr_scale])).map_err(err)?;
        for (i, p) in tg.params.iter().enumerate() {
            w.add_array(format!("param/{p}"), &ndarray::arr1(&st.params[i])).map_err(err)?;
            w.add_array(format!("m/{p}"), &ndarray::arr1(&st.m[i])).map_err(err)?;
            w.add_array(format!("v/{p}"), &ndarray::arr1(&st.v[i])).map_err(err)?;
            if let Some(a) = &st.avg {
                w.add_array(format!("avg/{p}"), &ndarray::arr1(&a[i])).map_err(err)?;
            }
        }
        for (i, b) in tg.bn.iter().enumerate() {
            w.add_array(format!("bn_mean/{}", b.mean), &ndarray::arr1(&st.bn_mean[i])).map_err(err)?;
            w.add_array(format!("bn_var/{}", b.var), &ndarray::arr1(&st.bn_var[i])).map_err(err)?;
        }
        w.finish().map_err(err)?;
    }
    crate::onnx::set_permissions_like(tmp.as_file(), path);
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

pub fn load(path: &Path, st: &mut State, tg: &TrainGraph, fingerprint: i64) -> Result<()> {
    use ndarray_npy::NpzReader;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: String| Error::option("--resume", format!("{}: {what}", path.display()));
    let mut r = NpzReader::new(f).map_err(|e| bad(format!("not a fusec checkpoint ({e})")))?;
    let meta: ndarray::Array1<i64> = r.by_name("meta").map_err(|e| bad(format!("not a fusec checkpoint (no meta: {e})")))?;
    if meta.len() != 2 || meta[1] != fingerprint {
        return Err(bad("written for another model or training set-up (parameters differ)".into()));
    }
    let mut get = |name: String, len: usize| -> Result<Vec<f32>> {
        let a: ndarray::Array1<f32> = r.by_name(&name).map_err(|e| bad(format!("missing {name} ({e})")))?;
        if a.len() != len {
            return Err(bad(format!("{name} has {} values, the model {len}", a.len())));
        }
        Ok(a.to_vec())
    };
    for (i, p) in tg.params.iter().enumerate() {
        let n = st.params[i].len();
        st.params[i] = get(format!("param/{p}"), n)?;
        st.m[i] = get(format!("m/{p}"), n)?;
        st.v[i] = get(format!("v/{p}"), n)?;
    }
    if st.avg.is_some() {
        // a checkpoint written without --ema starts the average at its parameters
        let avg: Vec<Vec<f32>> = tg.params.iter().enumerate().map(|(i, p)| get(format!("avg/{p}"), st.params[i].len()).unwrap_or_else(|_| st.params[i].clone())).collect();
        st.avg = Some(avg);
    }
    for (i, b) in tg.bn.iter().enumerate() {
        let n = st.bn_mean[i].len();
        st.bn_mean[i] = get(format!("bn_mean/{}", b.mean), n)?;
        st.bn_var[i] = get(format!("bn_var/{}", b.var), n)?;
    }
    st.step = meta[0].max(0) as usize;
    // checkpoints written before the guard saved its scale: the asked learning rate
    let scale: Option<ndarray::Array1<f32>> = r.by_name("lr_scale").ok();
    st.lr_scale = scale.and_then(|a| a.first().copied()).filter(|s| s.is_finite() && *s > 0.0).unwrap_or(1.0);
    Ok(())
}


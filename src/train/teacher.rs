//! The teacher: a session of the original model with the tensors the losses
//! compare (output-loss tensors and matched block outputs) as its outputs,
//! and a per-sample cache of its values when inputs repeat exactly (no
//! augmentation or cropping) and they fit in memory.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::onnx::{self, ModelProto};
use crate::exec::runtime::{self, Feed};

/// Values cached per sample at most (bytes).
const CACHE_BUDGET: usize = 512 << 20;

pub struct Teacher {
    sess: ort::session::Session,
    input: String,
    pub tensors: Vec<String>,
    /// Floats per sample of each tensor.
    per_sample: Vec<usize>,
    cache: Option<HashMap<usize, Vec<Vec<f32>>>>,
}

/// The teacher with `tensors` as its outputs.
pub(crate) fn with_outputs(teacher: &ModelProto, tensors: &[String]) -> Result<ModelProto> {
    let mut m = teacher.clone();
    let g = m.graph.as_mut().ok_or_else(|| Error::InvalidGraph("teacher has no graph".into()))?;
    g.output = tensors.iter().map(|t| onnx::ValueInfoProto { name: Some(t.clone()), ..Default::default() }).collect();
    Ok(m)
}

impl Teacher {
    /// A teacher session fetching `tensors`; `input_shape` (with the batch) is
    /// run once to learn their shapes (returned with the batch). `cacheable`:
    /// the same sample always gives the same input.
    pub fn new(teacher: &ModelProto, tensors: Vec<String>, input_shape: &[usize], threads: usize, cacheable: bool, samples: usize) -> Result<(Teacher, HashMap<String, Vec<usize>>)> {
        let input = crate::onnx::data_input(teacher).map_err(|e| Error::option("--teacher", e.to_string()))?;
        let mut sess = runtime::session(&with_outputs(teacher, &tensors)?, threads)?;
        let x = vec![0.0f32; input_shape.iter().product()];
        let out = runtime::run(&mut sess, &[Feed { name: &input, shape: input_shape.to_vec(), data: &x }], &tensors)?;
        let b = input_shape[0].max(1);
        let shapes: HashMap<String, Vec<usize>> = tensors.iter().zip(&out).map(|(t, o)| (t.clone(), o.shape().to_vec())).collect();
        let per_sample: Vec<usize> = out.iter().map(|o| o.len() / b).collect();
        let bytes = per_sample.iter().sum::<usize>() * 4 * samples;
        let cache = (cacheable && bytes <= CACHE_BUDGET).then(HashMap::new);
        Ok((Teacher { sess, input, tensors, per_sample, cache }, shapes))
    }

    /// The teacher's tensors for a batch of samples `idx` with input `x`.
    pub fn values(&mut self, idx: &[usize], x: &[f32], shape: &[usize]) -> Result<Vec<Vec<f32>>> {
        if let Some(c) = &self.cache
            && idx.iter().all(|i| c.contains_key(i))
        {
            return Ok((0..self.tensors.len()).map(|t| idx.iter().flat_map(|i| c[i][t].iter().copied()).collect()).collect());
        }
        let out = runtime::run(&mut self.sess, &[Feed { name: &self.input, shape: shape.to_vec(), data: x }], &self.tensors)?;
        let vals: Vec<Vec<f32>> = out.into_iter().map(|o| o.iter().copied().collect()).collect();
        if let Some(c) = self.cache.as_mut() {
            for (k, &i) in idx.iter().enumerate() {
                c.insert(i, vals.iter().zip(&self.per_sample).map(|(v, &n)| v[k * n..(k + 1) * n].to_vec()).collect());
            }
        }
        Ok(vals)
    }
}

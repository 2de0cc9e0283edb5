//! Reference execution through tract: run a model on inputs, compare outputs.

use ndarray::ArrayD;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::onnx::ModelProto;

/// Run `model` in tract on f32 inputs (one per graph input, shapes concrete).
pub fn run(model: &ModelProto, inputs: &[ArrayD<f32>]) -> Result<Vec<ArrayD<f32>>> {
    use prost::Message;
    let bytes = model.encode_to_vec();
    let e = |e: anyhow::Error| Error::Eval(format!("{e:#}"));
    let mut m = tract_onnx::onnx().model_for_read(&mut bytes.as_slice()).map_err(e)?;
    for (i, x) in inputs.iter().enumerate() {
        m = m.with_input_fact(i, f32::fact(x.shape()).into()).map_err(e)?;
    }
    let plan = m.into_optimized().map_err(e)?.into_runnable().map_err(e)?;
    let tv: TVec<TValue> = inputs.iter().map(|x| Tensor::from(x.clone()).into_tvalue()).collect();
    let out = plan.run(tv).map_err(e)?;
    out.iter()
        .map(|t| t.to_plain_array_view::<f32>().map(|v| v.to_owned()).map_err(e))
        .collect()
}

/// Largest absolute difference and largest |a-b| / (atol + rtol |b|).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diff {
    pub max_abs: f32,
    pub worst_ratio: f32,
}

impl Diff {
    pub fn ok(&self) -> bool {
        self.worst_ratio <= 1.0
    }
}

pub fn compare(a: &ArrayD<f32>, b: &ArrayD<f32>, rtol: f32, atol: f32) -> Result<Diff> {
    if a.shape() != b.shape() {
        return Err(Error::Eval(format!("shapes differ: {:?} vs {:?}", a.shape(), b.shape())));
    }
    let mut d = Diff { max_abs: 0.0, worst_ratio: 0.0 };
    for (x, y) in a.iter().zip(b.iter()) {
        let abs = (x - y).abs();
        if abs.is_nan() {
            d.max_abs = f32::NAN;
            d.worst_ratio = f32::INFINITY;
            continue;
        }
        d.max_abs = d.max_abs.max(abs);
        d.worst_ratio = d.worst_ratio.max(abs / (atol + rtol * y.abs()));
    }
    Ok(d)
}

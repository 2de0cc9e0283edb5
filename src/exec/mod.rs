//! Running models: reference execution through tract (here: compare outputs;
//! quantized models in ONNX Runtime) and ONNX Runtime
//! sessions ([`runtime`], loaded dynamically; training and task metrics run
//! there).

pub mod runtime;


use ndarray::ArrayD;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::onnx::ModelProto;

fn tract_err(e: anyhow::Error) -> Error {
    Error::Eval(format!("{e:#}"))
}

/// Optimize `model` for concrete f32 input shapes (one per graph input).
fn prepare(model: &ModelProto, shapes: &[&[usize]]) -> Result<std::sync::Arc<TypedSimplePlan>> {
    use prost::Message;
    // shapes recorded in the graph with symbolic dims ("DynamicDimension.0") would
    // contradict the concrete input shapes: tract infers them again
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        g.value_info.clear();
        for o in g.output.iter_mut() {
            let (ty, _) = crate::onnx::value_info_type(o);
            *o = crate::onnx::make_value_info(o.name(), ty.unwrap_or(crate::onnx::dtype::FLOAT), None);
        }
    }
    let bytes = m.encode_to_vec();
    let mut m = tract_onnx::onnx().model_for_read(&mut bytes.as_slice()).map_err(tract_err)?;
    for (i, shape) in shapes.iter().enumerate() {
        m = m.with_input_fact(i, f32::fact(*shape).into()).map_err(tract_err)?;
    }
    m.into_optimized().map_err(tract_err)?.into_runnable().map_err(tract_err)
}

fn execute(plan: &std::sync::Arc<TypedSimplePlan>, inputs: TVec<TValue>) -> Result<Vec<ArrayD<f32>>> {
    let out = plan.run(inputs).map_err(tract_err)?;
    out.iter().map(|t| t.to_plain_array_view::<f32>().map(|v| v.to_owned()).map_err(tract_err)).collect()
}

/// Run `model` in tract (a quantized model with one input: ONNX Runtime) on f32
/// inputs (one per graph input, shapes concrete).
pub fn run(model: &ModelProto, inputs: &[ArrayD<f32>]) -> Result<Vec<ArrayD<f32>>> {
    if let [x] = inputs
        && is_quantized(model)
    {
        return Runner::new(model, x.shape())?.run_all(x.clone());
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(|x| x.shape()).collect();
    let plan = prepare(model, &shapes)?;
    execute(&plan, inputs.iter().map(|x| Tensor::from(x.clone()).into_tvalue()).collect())
}

/// Ops tract does not run as ONNX defines them: quantized models go to ONNX
/// Runtime (tract returns [1, 1] for the QDQ PP-OCR classifier's softmax, which
/// ONNX Runtime and onnx's reference evaluator give as [0.47, 0.52], and has no
/// QLinearAdd).
const QUANTIZED_OPS: &[&str] = &[
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger",
    "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool",
];

/// Whether the model has quantized ops (then it runs in ONNX Runtime, see [`Runner`]).
pub fn is_quantized(model: &ModelProto) -> bool {
    model.graph.iter().flat_map(|g| g.node.iter()).any(|n| QUANTIZED_OPS.contains(&n.op_type()))
}

enum Engine {
    Tract(std::sync::Arc<TypedSimplePlan>),
    Ort { session: std::sync::Mutex<ort::session::Session>, input: String, shape: Vec<usize> },
}

/// A model prepared once for a fixed input shape, run many times: in tract,
/// or in ONNX Runtime for quantized models.
pub struct Runner {
    engine: Engine,
}

impl Runner {
    pub fn new(model: &ModelProto, input_shape: &[usize]) -> Result<Runner> {
        if is_quantized(model) {
            let input = match crate::onnx::data_inputs(model).as_slice() {
                [one] => one.clone(),
                other => return Err(Error::Eval(format!("a quantized model runs in ONNX Runtime with one input; this one has {}", other.len()))),
            };
            let session = std::sync::Mutex::new(crate::exec::runtime::session(model, 1)?);
            return Ok(Runner { engine: Engine::Ort { session, input, shape: input_shape.to_vec() } });
        }
        Ok(Runner { engine: Engine::Tract(prepare(model, &[input_shape])?) })
    }

    /// Prepared for single samples of `sample_shape` (run as a batch of 1).
    pub fn for_samples(model: &ModelProto, sample_shape: &[usize]) -> Result<Runner> {
        let mut shape = vec![1];
        shape.extend_from_slice(sample_shape);
        Runner::new(model, &shape)
    }

    /// Every output for one input.
    pub fn run_all(&self, x: ArrayD<f32>) -> Result<Vec<ArrayD<f32>>> {
        match &self.engine {
            Engine::Tract(plan) => execute(plan, tvec!(Tensor::from(x).into_tvalue())),
            Engine::Ort { session, input, shape } => {
                if x.shape() != shape.as_slice() {
                    return Err(Error::Eval(format!("input {:?}, prepared for {:?}", x.shape(), shape)));
                }
                let x = x.as_standard_layout();
                let data = x.as_slice().ok_or_else(|| Error::Eval("input not contiguous".into()))?;
                let mut s = session.lock().map_err(|_| Error::Eval("ONNX Runtime session poisoned".into()))?;
                crate::exec::runtime::run(&mut s, &[crate::exec::runtime::Feed { name: input, shape: shape.clone(), data }], &[])
            }
        }
    }

    /// Every output for one sample, as a batch of 1.
    pub fn run_one<D: ndarray::Dimension>(&self, x: &ndarray::Array<f32, D>) -> Result<Vec<ArrayD<f32>>> {
        self.run_all(x.clone().into_dyn().insert_axis(ndarray::Axis(0)))
    }
}

/// Index of the largest value of each row (last axis) of a [N, K] or [N, K, 1, 1] output.
pub fn argmax_rows(y: &ArrayD<f32>) -> Vec<usize> {
    let n = y.shape().first().copied().unwrap_or(0);
    let k = if n == 0 { 0 } else { y.len() / n };
    let flat: Vec<f32> = y.iter().copied().collect();
    (0..n)
        .map(|i| {
            let row = &flat[i * k..(i + 1) * k];
            row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (j, &v)| if v > bv { (j, v) } else { (bi, bv) }).0
        })
        .collect()
}

/// Indices of the `k` largest values of a row.
pub fn topk(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or(std::cmp::Ordering::Equal));
    idx.truncate(k);
    idx
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

//! Fine-tuning: every backward rule against central finite differences (run
//! in ONNX Runtime), the whole training graph (loss + backward, BN frozen and
//! in training mode) likewise, and a short end-to-end fine-tune.

#[path = "../common/mod.rs"]
mod common;

mod augment;
mod quantized;
mod rules;
mod tasks;
mod training;

use fusec::models::builder::ModelBuilder;
use fusec::onnx::{a_float, a_int, a_ints, a_string, Dim, ModelProto};
use fusec::exec::runtime::{self, Feed};
use fusec::onnx::tensor::Tensor;
use ndarray::ArrayD;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn rand_vec(n: usize, lo: f32, hi: f32, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn dims(s: &[usize]) -> Vec<Dim> {
    s.iter().map(|&d| Dim::Known(d as i64)).collect()
}

fn builder() -> ModelBuilder {
    ModelBuilder::new(14, 7)
}

fn weight(b: &mut ModelBuilder, name: &str, shape: &[usize], lo: f32, hi: f32) -> String {
    let mut rng = StdRng::seed_from_u64(name.len() as u64 * 31 + shape.len() as u64);
    let v = rand_vec(shape.iter().product(), lo, hi, &mut rng);
    b.constant(name, &ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap())
}

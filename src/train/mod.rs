//! Fine-tuning: distillation (and optionally labels) through ONNX Runtime.
pub mod grad;
pub mod graph;

//! What `finetune` reports: the curve's points and the run's summary.

use std::path::PathBuf;

use super::loss::OutputLoss;
use super::{ctc, guard, monitor, threshold};

#[derive(Debug, Clone, serde::Serialize)]
pub struct CurvePoint {
    pub step: usize,
    pub epoch: f64,
    pub lr: f32,
    pub loss: f32,
    pub components: Vec<f32>,
    /// The gradients' global L2 norm (before clipping).
    pub grad_norm: f32,
    /// The held-out metric (`Summary::eval_metric`, %), at epoch ends.
    pub eval: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub steps: usize,
    pub epochs: f64,
    pub seconds: f64,
    /// Training throughput after the first step (ONNX Runtime's first run allocates its buffers).
    pub samples_per_sec: f64,
    pub params_trained: usize,
    pub tensors_trained: usize,
    /// Samples per training-graph run, and runs per optimizer step.
    pub micro_batch: usize,
    pub accumulate: usize,
    /// The model was exported for a fixed batch and rewritten for `micro_batch`.
    pub rebatched: bool,
    /// The loss on each output and why.
    pub outputs: Vec<OutputLoss>,
    pub loss_names: Vec<String>,
    pub features: Vec<String>,
    pub first_loss: f32,
    pub final_loss: f32,
    /// What `eval_before`/`eval_after` and the curve measure.
    pub eval_metric: Option<String>,
    pub eval_before: Option<f64>,
    pub eval_after: Option<f64>,
    /// The held-out evaluations before and after, in full.
    pub eval_first: Option<monitor::Eval>,
    pub eval_last: Option<monitor::Eval>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Stopped by `stop_after` before the last step.
    pub paused: bool,
    pub checkpoint: Option<PathBuf>,
    pub curve: Vec<CurvePoint>,
    /// Probability maps shifted after training (`threshold::calibrate`).
    pub calibration: Vec<threshold::Shift>,
    /// The held-out evaluation of the model as written, after the calibration.
    pub eval_calibrated: Option<monitor::Eval>,
    /// The CTC loss, when on.
    pub ctc: Option<ctc::CtcSummary>,
    /// Where the divergence guard rolled training back.
    pub rollbacks: Vec<guard::Rollback>,
}

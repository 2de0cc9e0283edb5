//! Fine-tuning through ONNX Runtime: the student's training graph (built by
//! [`graph`] from standard ops, with the losses of [`loss`] and the backward
//! rules of [`grad`]) runs in a plain `ort` session; the teacher's values come
//! from a second session ([`teacher`]). The loop, a [`Trainer`] ([`trainer`]),
//! assembles batches ([`batch`]), accumulates micro-batches, steps the
//! optimizer ([`optimizer`]), evaluates held-out data with the task metrics
//! ([`monitor`]), saves checkpoints ([`checkpoint`]) and records the curve
//! ([`curve`]); [`finetune`] runs one to the end.

pub mod batch;
pub(crate) mod checkpoint;
pub(crate) mod ctc;
pub(crate) mod curve;
pub(crate) mod forward;
pub mod grad;
pub mod graph;
pub(crate) mod guard;
pub mod loss;
pub mod model;
pub mod monitor;
pub mod optimizer;
pub(crate) mod options;
pub mod quantized;
pub(crate) mod regions;
pub(crate) mod summary;
pub(crate) mod teacher;
pub mod threshold;
pub(crate) mod trainer;

pub use batch::Augment;
pub use ctc::{CtcSummary, CtcTarget};

use crate::error::{Error, Result};
use crate::exec::runtime;
use crate::onnx::ModelProto;
use crate::tasks::data::Dataset;
use crate::tasks::{Kind, Params};
pub use curve::write_curve;
pub use graph::{BnMode, Distill, LossSpec};
pub use loss::{Emphasis, LossKind, OutputLoss, OutputLossArg};
pub use model::trainable;
pub use optimizer::{Optimizer, Schedule};
pub use options::{LabelUse, Options, TrainSet, LABEL_AGREEMENT};
pub use summary::{CurvePoint, Summary};
pub use trainer::{Cancel, Lines, Observer, Stepped, Trainer};

/// The micro-batch the models run: `batch` if they accept it (rebatched when
/// exported for a fixed batch), otherwise their fixed batch with gradients
/// accumulated to the same number of samples per step.
fn plan_batches(student: &ModelProto, teacher: &ModelProto, sample: &[usize], opts: &Options) -> Result<(ModelProto, ModelProto, usize, usize, bool)> {
    let s_in = crate::onnx::data_input(student)?;
    let t_in = crate::onnx::data_input(teacher).map_err(|e| Error::option("--teacher", e.to_string()))?;
    let fixed = model::declared_batch(student, &s_in).filter(|&b| b as usize != opts.batch);
    if fixed.is_none() {
        return Ok((student.clone(), teacher.clone(), opts.batch, opts.accumulate, false));
    }
    if let (Some(s), Some(t)) = (model::rebatch(student, &s_in, sample, opts.batch)?, model::rebatch(teacher, &t_in, sample, opts.batch)?) {
        return Ok((s, t, opts.batch, opts.accumulate, true));
    }
    let b0 = fixed.unwrap_or(1).max(1) as usize;
    if opts.batch % b0 != 0 {
        return Err(Error::option("--batch", format!("the model only runs batches of {b0} (its shapes carry the batch); choose a multiple of {b0}")));
    }
    let acc = opts.accumulate * opts.batch / b0;
    log::warn!("the model only runs batches of {b0}: accumulating {acc} micro-batches per step");
    Ok((student.clone(), teacher.clone(), b0, acc, false))
}

/// Whether the teacher's top-1 agrees with the labels of `data` on at least [`LABEL_AGREEMENT`]
/// of the samples (false for outputs that are not `[N, C]` scores).
fn teacher_agrees_with_labels(teacher: &ModelProto, data: &Dataset, batch: usize, threads: usize) -> Result<bool> {
    let input = crate::onnx::data_input(teacher)?;
    let mut sess = runtime::session(teacher, threads)?;
    let preds = crate::tasks::predict(&mut sess, &input, &[], &data.samples, batch, Kind::Classify, &Params::default())?;
    let same = preds.iter().zip(&data.samples).filter(|(p, s)| matches!(p, crate::tasks::Pred::Class(c) if Some(*c) == s.label)).count();
    let share = same as f64 / data.samples.len().max(1) as f64;
    log::info!("the teacher agrees with {:.1}% of the labels: {}", 100.0 * share, if share >= LABEL_AGREEMENT { "training on them too" } else { "distillation only" });
    Ok(share >= LABEL_AGREEMENT)
}

/// Fine-tune `student` towards `teacher` on `data` (a [`Trainer`] run to the end,
/// messages on stderr); returns the trained model and a summary.
pub fn finetune(original: &ModelProto, teacher: &ModelProto, data: &Dataset, eval_data: Option<&Dataset>, opts: &Options) -> Result<(ModelProto, Summary)> {
    let mut t = Trainer::new(original, teacher, data, eval_data, opts)?;
    t.run()?;
    t.finish()
}

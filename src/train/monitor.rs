//! Held-out evaluation during fine-tuning, with the task metrics of `fusec
//! eval`: the student runs with the current weights fed as inputs (no model
//! is written), its predictions are scored against the ground truth and
//! against the teacher's predictions (computed once).

use crate::tasks::data::Dataset;
use crate::error::Result;
use crate::tasks::{self, Kind, Metric, Params, Pred};
use crate::onnx::ModelProto;
use crate::exec::runtime::{self, Feed};

pub struct Monitor<'a> {
    sess: ort::session::Session,
    input: String,
    data: &'a Dataset,
    kind: Kind,
    params: Params,
    batch: usize,
    truth: Option<Vec<Pred>>,
    teacher: Option<Vec<Pred>>,
    /// Inputs fed each evaluation: parameters and BN statistics.
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
}

/// One evaluation: against the ground truth and against the teacher.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Eval {
    pub score: Option<Metric>,
    pub agreement: Option<Metric>,
}

impl Eval {
    /// The number the curve shows: the score when there is ground truth, else the agreement.
    pub fn headline(&self) -> Option<(&'static str, f64)> {
        match (&self.score, &self.agreement) {
            (Some(s), _) => Some(s.headline()),
            (None, Some(a)) => Some(("teacher agreement", a.headline().1)),
            _ => None,
        }
    }
}

impl<'a> Monitor<'a> {
    /// `student` with `names` (shapes `shapes`) turned into inputs; `batch`: samples per run
    /// (the model's fixed batch if it has one).
    #[allow(clippy::too_many_arguments)]
    pub fn new(student: &ModelProto, teacher: &ModelProto, data: &'a Dataset, kind: Kind, params: Params, names: Vec<String>, shapes: Vec<Vec<usize>>, batch: usize, threads: usize) -> Result<Monitor<'a>> {
        let input = crate::onnx::data_input(student)?;
        let sess = runtime::session(&super::model::with_inputs(student, &names), threads)?;
        let truth = tasks::truth(kind, &data.samples);
        let tin = crate::onnx::data_input(teacher)?;
        let mut ts = runtime::session(teacher, threads)?;
        let teacher = Some(tasks::predict(&mut ts, &tin, &[], &data.samples, batch, kind, &params)?);
        Ok(Monitor { sess, input, data, kind, params, batch, truth, teacher, names, shapes })
    }

    pub fn evaluate(&mut self, values: &[&[f32]]) -> Result<Eval> {
        let feeds: Vec<Feed> = self.names.iter().zip(values).zip(&self.shapes).map(|((n, v), s)| Feed { name: n, shape: s.clone(), data: v }).collect();
        let preds = tasks::predict(&mut self.sess, &self.input, &feeds, &self.data.samples, self.batch, self.kind, &self.params)?;
        Ok(Eval {
            score: self.truth.as_ref().map(|t| tasks::compare(&preds, t, &self.params)),
            agreement: self.teacher.as_ref().map(|t| tasks::compare(&preds, t, &self.params)),
        })
    }
}

//! Classifiers over a dataset: top-1 (and top-5) accuracy, per class, and
//! agreement with a teacher (`fusec eval` without a text task).

use crate::error::{Error, Result};
use crate::exec::{argmax_rows, topk, Runner};
use crate::onnx::ModelProto;
use crate::tasks::data::Dataset;

/// Accuracy of a classifier on a dataset (and agreement with a teacher).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub model: String,
    pub samples: usize,
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    /// (class, samples, accuracy)
    pub per_class: Vec<(String, usize, f64)>,
    pub teacher: Option<String>,
    /// Share of samples where the model's top-1 equals the teacher's.
    pub teacher_agreement: Option<f64>,
    pub samples_per_second: f64,
}

/// Top-1 predictions and score rows of a model over a dataset.
pub fn predict(model: &ModelProto, data: &Dataset) -> Result<(Vec<usize>, Vec<Vec<f32>>, f64)> {
    if data.samples.is_empty() {
        return Ok((vec![], vec![], 0.0));
    }
    let runner = Runner::for_samples(model, data.samples[0].x.shape())?;
    let t = std::time::Instant::now();
    let mut preds = Vec::with_capacity(data.samples.len());
    let mut rows = Vec::with_capacity(data.samples.len());
    for s in &data.samples {
        let y = runner.run_one(&s.x)?.into_iter().next().ok_or_else(|| Error::Eval("model has no outputs".into()))?;
        rows.push(y.iter().copied().collect::<Vec<f32>>());
        preds.push(argmax_rows(&y).first().copied().unwrap_or(0));
    }
    let rate = data.samples.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);
    Ok((preds, rows, rate))
}

pub fn evaluate(name: &str, model: &ModelProto, teacher: Option<(&str, &ModelProto)>, data: &Dataset) -> Result<EvalReport> {
    let (preds, rows, rate) = predict(model, data)?;
    let n = data.samples.len();
    let labels: Option<Vec<usize>> = data.samples.iter().map(|s| s.label).collect();
    let (mut top1, mut top5, mut per_class) = (None, None, vec![]);
    if let Some(labels) = &labels {
        let hits = preds.iter().zip(labels).filter(|(p, l)| p == l).count();
        top1 = Some(hits as f64 / n.max(1) as f64);
        if rows.first().is_some_and(|r| r.len() > 5) {
            let h5 = rows.iter().zip(labels).filter(|(r, l)| topk(r, 5).contains(l)).count();
            top5 = Some(h5 as f64 / n.max(1) as f64);
        }
        for (ci, cname) in data.classes.iter().enumerate() {
            let idx: Vec<usize> = (0..n).filter(|&i| labels[i] == ci).collect();
            if !idx.is_empty() {
                let ok = idx.iter().filter(|&&i| preds[i] == ci).count();
                per_class.push((cname.clone(), idx.len(), ok as f64 / idx.len() as f64));
            }
        }
    }
    let (teacher_name, agreement) = match teacher {
        Some((tn, tm)) => {
            let (tp, _, _) = predict(tm, data)?;
            let same = tp.iter().zip(&preds).filter(|(a, b)| a == b).count();
            (Some(tn.to_string()), Some(same as f64 / n.max(1) as f64))
        }
        None => (None, None),
    };
    Ok(EvalReport { model: name.to_string(), samples: n, top1, top5, per_class, teacher: teacher_name, teacher_agreement: agreement, samples_per_second: rate })
}

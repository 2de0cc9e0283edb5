//! Task evaluation in ONNX Runtime: run a model over a dataset, decode each
//! sample's output for the task (class, CTC text, DB boxes, layout regions) and score the
//! predictions against the data's ground truth and against a teacher's
//! predictions. `fusec eval --task ctc|textdet` and the per-epoch evaluation of
//! `fusec finetune` both use it.

use ndarray::{ArrayD, Axis, Ix2};
use serde::Serialize;

use super::data::{Dataset, Sample};
use super::ocr::{ctc_decode, ctc_score, db_boxes, det_score, match_boxes, CtcScore, DetScore};
use super::Kind;
use crate::error::{Error, Result};
use crate::exec::runtime::{self, Feed};

/// Decoding parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    /// CTC dictionary (index 0 = blank).
    #[serde(skip)]
    pub dict: Vec<String>,
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// DB unclip ratio.
    pub unclip: f32,
    /// Regions whose shorter side is below this many pixels are dropped.
    pub min_size: f32,
    /// IoU at which a box matches.
    pub iou: f32,
    /// Class score above which a layout region is kept (`--task layout`).
    pub min_score: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params { dict: vec![], thresh: 0.3, unclip: 1.5, min_size: 3.0, iou: 0.5, min_score: 0.5 }
    }
}

/// One sample's decoded output.
#[derive(Debug, Clone, PartialEq)]
pub enum Pred {
    Class(usize),
    Text(String),
    Boxes(Vec<[f32; 4]>),
    /// The highest-scoring anchors (indices over all levels), sorted.
    Top(Vec<usize>),
    /// Layout regions.
    Regions(Vec<super::layout::Region>),
}

/// How many anchors `Kind::Anchors` compares.
pub const TOP_ANCHORS: usize = 20;

/// Decode one sample's output (without the batch axis).
pub fn decode(kind: Kind, y: ndarray::ArrayViewD<f32>, p: &Params) -> Result<Pred> {
    let shape = y.shape().to_vec();
    match kind {
        Kind::Classify => Ok(Pred::Class(y.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)),
        Kind::Ctc => {
            let s = y.into_dimensionality::<Ix2>().map_err(|_| Error::Eval(format!("--task ctc expects [N, T, classes] outputs, got a sample of shape {shape:?}")))?;
            if s.shape()[1] > p.dict.len() {
                return Err(Error::option("--dict", format!("the model has {} classes, the dictionary {} (blank + characters + space)", s.shape()[1], p.dict.len())));
            }
            Ok(Pred::Text(ctc_decode(s, &p.dict)))
        }
        Kind::Textdet => {
            let m = if shape.len() == 3 && shape[0] == 1 { y.index_axis_move(Axis(0), 0) } else { y };
            let m = m.into_dimensionality::<Ix2>().map_err(|_| Error::Eval(format!("--task textdet expects [N, 1, H, W] probability maps, got a sample of shape {shape:?}")))?;
            Ok(Pred::Boxes(db_boxes(m, p.thresh, p.unclip, p.min_size)))
        }
        Kind::Anchors => top_anchors(&[y]),
        Kind::Layout => Err(Error::Eval("--task layout decodes all of a detector's outputs together, not one".into())),
    }
}

/// The top-scoring anchors of one sample over the detector's score outputs: every
/// `[anchors, classes]` output whose class count is the first one's, each anchor
/// scored by its best class.
pub fn top_anchors(outputs: &[ndarray::ArrayViewD<f32>]) -> Result<Pred> {
    let k = outputs.first().and_then(|y| y.shape().last().copied()).ok_or_else(|| Error::Eval("no outputs".into()))?;
    let mut scores: Vec<(f32, usize)> = vec![];
    for y in outputs.iter().filter(|y| y.ndim() == 2 && y.shape()[1] == k) {
        for row in y.rows() {
            let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            scores.push((best, scores.len()));
        }
    }
    scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut top: Vec<usize> = scores.iter().take(TOP_ANCHORS).map(|s| s.1).collect();
    top.sort_unstable();
    Ok(Pred::Top(top))
}

/// A task's score.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Metric {
    Accuracy { samples: usize, accuracy: f64 },
    Ctc(CtcScore),
    Det(DetScore),
    /// Mean share of the top anchors found in both.
    Overlap { samples: usize, overlap: f64 },
}

impl Metric {
    /// The number a summary shows (a percentage) and its name.
    pub fn headline(&self) -> (&'static str, f64) {
        match self {
            Metric::Accuracy { accuracy, .. } => ("accuracy", 100.0 * accuracy),
            Metric::Ctc(s) => ("lines read exactly", 100.0 * s.line_accuracy),
            Metric::Det(s) => ("hmean", 100.0 * s.hmean),
            Metric::Overlap { overlap, .. } => ("top-anchor agreement", 100.0 * overlap),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Metric::Accuracy { samples, accuracy } => format!("top-1 {:.2}% ({samples} samples)", 100.0 * accuracy),
            Metric::Ctc(s) => format!("lines {:.2}%, characters {:.2}% ({} lines)", 100.0 * s.line_accuracy, 100.0 * s.char_accuracy, s.lines),
            Metric::Det(s) => format!("hmean {:.4} (precision {:.4}, recall {:.4}, {} images)", s.hmean, s.precision, s.recall, s.images),
            Metric::Overlap { samples, overlap } => format!("{:.2}% of the top {TOP_ANCHORS} anchors shared ({samples} samples)", 100.0 * overlap),
        }
    }
}

/// Score predictions against reference predictions (the ground truth, or a teacher's).
pub fn compare(preds: &[Pred], refs: &[Pred], p: &Params) -> Metric {
    match preds.first() {
        Some(Pred::Text(_)) => {
            let pairs: Vec<(String, String)> = preds.iter().zip(refs).filter_map(|(a, b)| match (a, b) { (Pred::Text(a), Pred::Text(b)) => Some((a.clone(), b.clone())), _ => None }).collect();
            Metric::Ctc(ctc_score(&pairs))
        }
        Some(Pred::Boxes(_)) => {
            let counts: Vec<(usize, usize, usize)> = preds.iter().zip(refs).filter_map(|(a, b)| match (a, b) { (Pred::Boxes(a), Pred::Boxes(b)) => Some(match_boxes(a, b, p.iou)), _ => None }).collect();
            Metric::Det(det_score(&counts))
        }
        Some(Pred::Regions(_)) => {
            let counts: Vec<(usize, usize, usize)> = preds.iter().zip(refs).filter_map(|(a, b)| match (a, b) { (Pred::Regions(a), Pred::Regions(b)) => Some(super::layout::match_regions(a, b, p.iou)), _ => None }).collect();
            Metric::Det(det_score(&counts))
        }
        Some(Pred::Top(_)) => {
            let shares: Vec<f64> = preds
                .iter()
                .zip(refs)
                .filter_map(|(a, b)| match (a, b) {
                    (Pred::Top(a), Pred::Top(b)) => Some(a.iter().filter(|i| b.binary_search(i).is_ok()).count() as f64 / a.len().max(1) as f64),
                    _ => None,
                })
                .collect();
            Metric::Overlap { samples: shares.len(), overlap: shares.iter().sum::<f64>() / shares.len().max(1) as f64 }
        }
        _ => {
            let n = preds.len().min(refs.len());
            let same = preds.iter().zip(refs).filter(|(a, b)| a == b).count();
            Metric::Accuracy { samples: n, accuracy: if n == 0 { f64::NAN } else { same as f64 / n as f64 } }
        }
    }
}

/// The ground truth of the samples for a task, when every sample has it.
pub fn truth(kind: Kind, samples: &[Sample]) -> Option<Vec<Pred>> {
    samples
        .iter()
        .map(|s| match kind {
            Kind::Classify => s.label.map(Pred::Class),
            Kind::Ctc => s.text.clone().map(Pred::Text),
            // a page without boxes in the list has no text: an empty truth is still a truth,
            // but a set without any box has none
            Kind::Textdet => Some(Pred::Boxes(s.boxes.clone())),
            Kind::Anchors | Kind::Layout => None,
        })
        .collect::<Option<Vec<_>>>()
        .filter(|t| kind != Kind::Textdet || t.iter().any(|p| matches!(p, Pred::Boxes(b) if !b.is_empty())))
}

/// Run `sess` over the samples (consecutive samples of one shape batched, at
/// most `batch` at a time) and decode the first output of each. `extra` are
/// further feeds (trained parameters given as inputs).
pub fn predict(sess: &mut ort::session::Session, input: &str, extra: &[Feed], samples: &[Sample], batch: usize, kind: Kind, p: &Params) -> Result<Vec<Pred>> {
    let mut out = Vec::with_capacity(samples.len());
    let mut i = 0;
    while i < samples.len() {
        let shape = samples[i].x.shape();
        let mut j = i + 1;
        while j < samples.len() && j - i < batch.max(1) && samples[j].x.shape() == shape {
            j += 1;
        }
        let mut x = Vec::with_capacity((j - i) * samples[i].x.len());
        for s in &samples[i..j] {
            x.extend(s.x.iter());
        }
        let mut full = vec![j - i];
        full.extend(shape);
        let mut feeds = vec![Feed { name: input, shape: full, data: &x }];
        feeds.extend(extra.iter().map(|f| Feed { name: f.name, shape: f.shape.clone(), data: f.data }));
        let names: Vec<String> = sess.outputs().iter().map(|o| o.name().to_string()).collect();
        let all = matches!(kind, Kind::Anchors | Kind::Layout);
        let wanted = if all { &names[..] } else { &names[..names.len().min(1)] };
        let ys: Vec<ArrayD<f32>> = runtime::run(sess, &feeds, wanted)?;
        if ys.is_empty() {
            return Err(Error::Eval("model has no outputs".into()));
        }
        for y in &ys {
            if y.shape().first() != Some(&(j - i)) {
                return Err(Error::Eval(format!("output has shape {:?} for a batch of {}", y.shape(), j - i)));
            }
        }
        for k in 0..j - i {
            let sample: Vec<ndarray::ArrayViewD<f32>> = if all { ys.iter().map(|y| y.index_axis(Axis(0), k)).collect() } else { vec![] };
            out.push(if kind == Kind::Anchors {
                top_anchors(&sample)?
            } else if kind == Kind::Layout {
                let hw = match shape {
                    [.., h, w] => (*h, *w),
                    _ => return Err(Error::Eval(format!("--task layout expects [C, H, W] images, got samples of shape {shape:?}"))),
                };
                Pred::Regions(super::layout::regions(&sample, hw, p.min_score, p.iou)?)
            } else {
                decode(kind, ys[0].index_axis(Axis(0), k), p)?
            });
        }
        i = j;
    }
    Ok(out)
}

/// `fusec eval` for a task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub model: String,
    pub task: Kind,
    pub samples: usize,
    /// Against the data's ground truth.
    pub score: Option<Metric>,
    pub teacher: Option<String>,
    /// The teacher's own score on the ground truth.
    pub teacher_score: Option<Metric>,
    /// The model's predictions scored against the teacher's.
    pub agreement: Option<Metric>,
    pub params: Params,
    pub samples_per_second: f64,
    /// A few lines read wrongly (ctc): (truth, read).
    pub misread: Vec<(String, String)>,
}

/// The batch a model runs: `batch`, or fewer when its input declares a fixed batch
/// (a detector exported for batches of 1).
fn batch_for(model: &crate::onnx::ModelProto, input: &str, batch: usize) -> usize {
    crate::onnx::declared_batch(model, input).filter(|&b| b >= 1).map_or(batch, |b| batch.min(b as usize))
}

pub fn evaluate(name: &str, model: &crate::onnx::ModelProto, teacher: Option<(&str, &crate::onnx::ModelProto)>, data: &Dataset, kind: Kind, p: &Params, batch: usize) -> Result<TaskReport> {
    let input = crate::onnx::data_input(model)?;
    let mut sess = runtime::session(model, 0)?;
    let t = std::time::Instant::now();
    let preds = predict(&mut sess, &input, &[], &data.samples, batch_for(model, &input, batch), kind, p)?;
    let rate = data.samples.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);
    let gt = truth(kind, &data.samples);
    let score = gt.as_ref().map(|g| compare(&preds, g, p));
    let misread = match &gt {
        Some(g) => preds
            .iter()
            .zip(g)
            .filter_map(|(a, b)| match (a, b) { (Pred::Text(a), Pred::Text(b)) if a != b => Some((b.clone(), a.clone())), _ => None })
            .take(5)
            .collect(),
        None => vec![],
    };
    let (mut teacher_name, mut teacher_score, mut agreement) = (None, None, None);
    if let Some((tn, tm)) = teacher {
        let tin = crate::onnx::data_input(tm)?;
        let mut ts = runtime::session(tm, 0)?;
        let tp = predict(&mut ts, &tin, &[], &data.samples, batch_for(tm, &tin, batch), kind, p)?;
        teacher_name = Some(tn.to_string());
        teacher_score = gt.as_ref().map(|g| compare(&tp, g, p));
        agreement = Some(compare(&preds, &tp, p));
    }
    Ok(TaskReport { model: name.to_string(), task: kind, samples: data.samples.len(), score, teacher: teacher_name, teacher_score, agreement, params: p.clone(), samples_per_second: rate, misread })
}

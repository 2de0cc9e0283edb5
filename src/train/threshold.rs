//! Threshold calibration of probability maps after fine-tuning: a student
//! map that is slightly wider or narrower than the teacher's at the threshold
//! its post-processing uses (DB: 0.3) gives boxes of another size. The shift
//! δ added before the map's Sigmoid makes the student's pixels above the
//! threshold as many as the teacher's on the training samples:
//! σ(z − δ) > T ⟺ σ(z) > T′, T′ the student's quantile that leaves the
//! teacher's count above it, δ = logit(T′) − logit(T).

use ndarray::ArrayD;

use super::loss::{look_through, LossKind, OutputLoss};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::onnx::{make_node, GraphProto, ModelProto};
use crate::runtime::{self, Feed};
use crate::tensor::Tensor;

/// One calibrated output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shift {
    pub output: String,
    /// The student's threshold that matches the teacher's count at `thresh`.
    pub matched: f32,
    /// Added before the Sigmoid (−δ).
    pub shift: f32,
    /// Student pixels above the threshold per teacher pixel, before the shift.
    pub ratio_before: f64,
}

fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn graph(m: &ModelProto) -> Result<&GraphProto> {
    m.graph.as_ref().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))
}

/// Shift every BCE output's logits of `student` so that, on the first `limit`
/// samples, as many of its pixels as the teacher's exceed `thresh`.
pub fn calibrate(student: &mut ModelProto, teacher: &ModelProto, losses: &[OutputLoss], data: &Dataset, thresh: f32, limit: usize, threads: usize) -> Result<Vec<Shift>> {
    let maps: Vec<&OutputLoss> = losses.iter().filter(|l| l.kind == LossKind::Bce).collect();
    if maps.is_empty() {
        return Ok(vec![]);
    }
    let (sg, tg) = (graph(student)?, graph(teacher)?);
    // outputs are matched by position, as the losses are
    let s_names: Vec<String> = maps.iter().map(|l| l.output.clone()).collect();
    let t_names: Vec<String> = maps
        .iter()
        .map(|l| sg.output.iter().position(|o| o.name() == l.output).and_then(|i| tg.output.get(i)).map(|o| o.name().to_string()))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::option("--teacher", "its outputs do not match the model's"))?;
    let (s_in, t_in) = (super::graph::data_input(student)?, super::graph::data_input(teacher)?);
    let mut ss = runtime::session(student, threads)?;
    let mut ts = runtime::session(teacher, threads)?;
    let mut student_p: Vec<Vec<f32>> = vec![vec![]; maps.len()];
    let mut teacher_above = vec![0usize; maps.len()];
    for s in data.samples.iter().take(limit.max(1)) {
        let x = s.x.as_standard_layout();
        let xs = x.as_slice().ok_or_else(|| Error::tensor(&s.name, "not contiguous"))?;
        let mut shape = vec![1];
        shape.extend(s.x.shape());
        let so: Vec<ArrayD<f32>> = runtime::run(&mut ss, &[Feed { name: &s_in, shape: shape.clone(), data: xs }], &s_names)?;
        let to: Vec<ArrayD<f32>> = runtime::run(&mut ts, &[Feed { name: &t_in, shape, data: xs }], &t_names)?;
        for (k, (a, b)) in so.iter().zip(&to).enumerate() {
            student_p[k].extend(a.iter());
            teacher_above[k] += b.iter().filter(|&&v| v > thresh).count();
        }
    }
    let mut shifts = vec![];
    for (k, l) in maps.iter().enumerate() {
        let p = &mut student_p[k];
        let before = p.iter().filter(|&&v| v > thresh).count();
        let n = teacher_above[k];
        if n == 0 || n >= p.len() {
            continue;
        }
        // the student's threshold with n values above it: between its n-th and (n+1)-th largest
        let i = p.len() - n;
        let (below, hi, _) = p.select_nth_unstable_by(i, |a, b| a.total_cmp(b));
        let hi = *hi;
        let lo = below.iter().copied().fold(f32::MIN, f32::max);
        let matched = 0.5 * (lo + hi);
        let shift = logit(thresh) - logit(matched);
        shift_logits(student, &l.output, shift)?;
        shifts.push(Shift { output: l.output.clone(), matched, shift, ratio_before: before as f64 / n as f64 });
    }
    Ok(shifts)
}

/// The first `limit` samples, each also with its dark strokes a pixel wider and a
/// pixel thinner (`batch::stroke`): calibrating on them matches the teacher on
/// inputs as varied as `--augment-stroke` trains on, not only on the clean pages.
pub fn with_stroke_variants(data: &Dataset, limit: usize) -> Dataset {
    let mut samples = vec![];
    for s in data.samples.iter().take(limit) {
        samples.push(s.clone());
        for thicken in [true, false] {
            let mut v = s.clone();
            let shape = v.x.shape().to_vec();
            let mut x = v.x.as_standard_layout().into_owned();
            if let Some(xs) = x.as_slice_mut() {
                super::batch::stroke(xs, &shape, thicken);
            }
            v.x = x;
            v.name = format!("{}#{}", s.name, if thicken { "wider" } else { "thinner" });
            samples.push(v);
        }
    }
    Dataset { samples, classes: data.classes.clone() }
}

/// Insert `z + shift` before the Sigmoid that computes `output` (or add to the
/// shift of an earlier calibration).
fn shift_logits(model: &mut ModelProto, output: &str, shift: f32) -> Result<()> {
    let g = model.graph.as_mut().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))?;
    let sig_out = match look_through(g, output) {
        (Some(n), _) if n.op_type() == "Sigmoid" => n.output[0].clone(),
        _ => return Err(Error::InvalidGraph(format!("output '{output}' is not computed by a Sigmoid"))),
    };
    let pos = g.node.iter().position(|n| n.output.first() == Some(&sig_out)).ok_or_else(|| Error::InvalidGraph(format!("no node computes '{sig_out}'")))?;
    let z = g.node[pos].input[0].clone();
    if let Some(base) = z.strip_suffix(".calibrated") {
        let c = format!("{base}.calibration_shift");
        if let Some(t) = g.initializer.iter_mut().find(|t| t.name() == c) {
            let old = Tensor::from_proto(t.clone())?.to_f32()?;
            *t = Tensor::from_f32(&c, &old.mapv(|v| v + shift)).into_proto();
            return Ok(());
        }
    }
    let (c, zc) = (format!("{z}.calibration_shift"), format!("{z}.calibrated"));
    g.node[pos].input[0] = zc.clone();
    g.node.insert(pos, make_node(&format!("{z}.calibration"), "Add", &[&z, &c], &[&zc], vec![]));
    g.initializer.push(Tensor::from_f32(&c, &ArrayD::from_elem(ndarray::IxDyn(&[]), shift)).into_proto());
    Ok(())
}

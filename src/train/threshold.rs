//! Calibration of probability maps after fine-tuning, so that the student's
//! boxes come out the teacher's size on the training samples.
//!
//! - Threshold: a student map that is slightly wider or narrower than the
//!   teacher's at the threshold its post-processing uses (DB: 0.3) gives boxes
//!   of another size. The shift δ added before the map's Sigmoid makes the
//!   student's pixels above the threshold as many as the teacher's:
//!   σ(z − δ) > T ⟺ z > z′, z′ the student's quantile that leaves the
//!   teacher's count above it, δ = z′ − logit(T).
//! - Width: a map whose regions are wider and no taller than the teacher's (or
//!   narrower) cannot be fixed by a shift. After it, the logits are blended
//!   with their horizontal 3-pixel minimum (λ > 0) or maximum (λ < 0),
//!   z + |λ|·(pool(z) − z), λ found by bisection so that the boxes matched to
//!   the teacher's (IoU ≥ `--iou`) are as wide as the teacher's on average.

use ndarray::ArrayD;

use super::loss::{look_through, LossKind, OutputLoss};
use crate::tasks::data::Dataset;
use crate::error::{Error, Result};
use crate::tasks::Params;
use crate::onnx::{GraphProto, ModelProto};
use crate::passes::calibrate_map::CalibrateMap;
use crate::exec::runtime::{self, Feed};

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
    /// The horizontal blend λ (> 0: towards the 3-pixel minimum, narrower regions;
    /// < 0: towards the maximum; 0: none).
    pub blend: f32,
    /// Mean width of the student's boxes less the teacher's (matched pairs, pixels),
    /// after the shift, before and after the blend; and the pairs matched.
    pub width_before: f64,
    pub width_after: f64,
    pub pairs: usize,
}

fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn graph(m: &ModelProto) -> Result<&GraphProto> {
    m.graph.as_ref().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))
}

/// The Sigmoid that computes `output` (looked through): its position and its input.
fn sigmoid_of(g: &GraphProto, output: &str) -> Result<(usize, String)> {
    let sig_out = match look_through(g, output) {
        (Some(n), _) if n.op_type() == "Sigmoid" => n.output[0].clone(),
        _ => return Err(Error::InvalidGraph(format!("output '{output}' is not computed by a Sigmoid"))),
    };
    let pos = g.node.iter().position(|n| n.output.first() == Some(&sig_out)).ok_or_else(|| Error::InvalidGraph(format!("no node computes '{sig_out}'")))?;
    Ok((pos, g.node[pos].input[0].clone()))
}

/// One map's samples: the student's logit planes (height, width, values) and the teacher's boxes.
struct Samples {
    logits: Vec<(usize, usize, Vec<f32>)>,
    teacher: Vec<Vec<[f32; 4]>>,
    teacher_above: usize,
}

/// Calibrate every BCE output of `student` against `teacher` on the first
/// `limit` samples: the threshold shift, then the horizontal blend (module docs).
pub fn calibrate(student: &mut ModelProto, teacher: &ModelProto, losses: &[OutputLoss], data: &Dataset, decode: &Params, limit: usize, threads: usize) -> Result<Vec<Shift>> {
    let maps: Vec<&OutputLoss> = losses.iter().filter(|l| l.kind == LossKind::Bce).collect();
    if maps.is_empty() {
        return Ok(vec![]);
    }
    let (sg, tg) = (graph(student)?, graph(teacher)?);
    // outputs are matched by position, as the losses are; the student's logits are fetched
    let s_names: Vec<String> = maps.iter().map(|l| sigmoid_of(sg, &l.output).map(|(_, z)| z)).collect::<Result<_>>()?;
    let t_names: Vec<String> = maps
        .iter()
        .map(|l| sg.output.iter().position(|o| o.name() == l.output).and_then(|i| tg.output.get(i)).map(|o| o.name().to_string()))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::option("--teacher", "its outputs do not match the model's"))?;
    let (s_in, t_in) = (crate::onnx::data_input(student)?, crate::onnx::data_input(teacher)?);
    let mut ss = runtime::session(&super::teacher::with_outputs(student, &s_names)?, threads)?;
    let mut ts = runtime::session(teacher, threads)?;
    let mut per_map: Vec<Samples> = maps.iter().map(|_| Samples { logits: vec![], teacher: vec![], teacher_above: 0 }).collect();
    for s in data.samples.iter().take(limit.max(1)) {
        let x = s.x.as_standard_layout();
        let xs = x.as_slice().ok_or_else(|| Error::tensor(&s.name, "not contiguous"))?;
        let mut shape = vec![1];
        shape.extend(s.x.shape());
        let so: Vec<ArrayD<f32>> = runtime::run(&mut ss, &[Feed { name: &s_in, shape: shape.clone(), data: xs }], &s_names)?;
        let to: Vec<ArrayD<f32>> = runtime::run(&mut ts, &[Feed { name: &t_in, shape, data: xs }], &t_names)?;
        for (k, (a, b)) in so.iter().zip(&to).enumerate() {
            let m = &mut per_map[k];
            m.teacher_above += b.iter().filter(|&&v| v > decode.thresh).count();
            let r = a.ndim();
            if r < 2 || a.len() != b.len() {
                continue;
            }
            let (h, w) = (a.shape()[r - 2], a.shape()[r - 1]);
            let plane = h * w;
            let (za, tb): (Vec<f32>, Vec<f32>) = (a.iter().copied().collect(), b.iter().copied().collect());
            for (zp, tp) in za.chunks_exact(plane).zip(tb.chunks_exact(plane)) {
                let tv = ndarray::ArrayView2::from_shape((h, w), tp).map_err(|e| Error::Eval(e.to_string()))?;
                m.teacher.push(crate::tasks::db_boxes(tv, decode.thresh, decode.unclip, decode.min_size));
                m.logits.push((h, w, zp.to_vec()));
            }
        }
    }
    let mut shifts = vec![];
    for (k, l) in maps.iter().enumerate() {
        let m = &per_map[k];
        let mut z: Vec<f32> = m.logits.iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
        let cut = logit(decode.thresh);
        let before = z.iter().filter(|&&v| v > cut).count();
        let n = m.teacher_above;
        if n == 0 || n >= z.len() {
            continue;
        }
        // the student's threshold with n values above it: between its n-th and (n+1)-th largest
        let i = z.len() - n;
        let (below, hi, _) = z.select_nth_unstable_by(i, |a, b| a.total_cmp(b));
        let hi = *hi;
        let lo = below.iter().copied().fold(f32::MIN, f32::max);
        let matched_z = 0.5 * (lo + hi);
        let shift = cut - matched_z;
        let (blend, width_before, width_after, pairs) = fit_width(m, shift, decode);
        calibrate_map(student, CalibrateMap { output: l.output.clone(), shift: Some(shift), blend })?;
        shifts.push(Shift { output: l.output.clone(), matched: 1.0 / (1.0 + (-matched_z).exp()), shift, ratio_before: before as f64 / n as f64, blend, width_before, width_after, pairs });
    }
    Ok(shifts)
}

/// `z + |λ|·(pool(z) − z)` of one `h` × `w` plane, pool the horizontal 3-pixel
/// minimum (λ > 0) or maximum (λ < 0) over the pixels that exist (as MaxPool
/// with padding computes it).
pub fn blend_plane(z: &[f32], h: usize, w: usize, lam: f32, out: &mut [f32]) {
    let a = lam.abs();
    for y in 0..h {
        let row = &z[y * w..(y + 1) * w];
        for x in 0..w {
            let (l, r) = (row[x.saturating_sub(1)], row[(x + 1).min(w - 1)]);
            let p = if lam > 0.0 { row[x].min(l).min(r) } else { row[x].max(l).max(r) };
            out[y * w + x] = row[x] + a * (p - row[x]);
        }
    }
}

/// Mean width of the student's boxes (logits + `shift`, blended by `lam`) less the
/// matched teacher boxes', and the number of pairs.
fn width_diff(m: &Samples, shift: f32, lam: f32, p: &Params) -> (f64, usize) {
    let cut = logit(p.thresh);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for ((h, w, z), tb) in m.logits.iter().zip(&m.teacher) {
        let mut buf: Vec<f32> = z.iter().map(|v| v + shift).collect();
        if lam != 0.0 {
            let shifted = buf.clone();
            blend_plane(&shifted, *h, *w, lam, &mut buf);
        }
        let Ok(view) = ndarray::ArrayView2::from_shape((*h, *w), &buf[..]) else { continue };
        let sb = crate::tasks::db_boxes(view, cut, p.unclip, p.min_size);
        for (i, j) in crate::tasks::match_pairs(&sb, tb, p.iou) {
            sum += ((sb[i][2] - sb[i][0]) - (tb[j][2] - tb[j][0])) as f64;
            n += 1;
        }
    }
    (if n == 0 { 0.0 } else { sum / n as f64 }, n)
}

/// The blend λ in [−1, 1] that makes the matched boxes as wide as the teacher's
/// (bisection: the width falls as λ rises); (λ, width difference before, after, pairs).
/// Differences under a tenth of a pixel are left alone.
fn fit_width(m: &Samples, shift: f32, p: &Params) -> (f32, f64, f64, usize) {
    let (d0, pairs) = width_diff(m, shift, 0.0, p);
    if pairs == 0 || d0.abs() < 0.1 {
        return (0.0, d0, d0, pairs);
    }
    let (mut lo, mut hi) = if d0 > 0.0 { (0.0f32, 1.0f32) } else { (-1.0f32, 0.0f32) };
    for _ in 0..10 {
        let mid = 0.5 * (lo + hi);
        if width_diff(m, shift, mid, p).0 > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // the width moves in whole pixels: the end of the bracket nearer the teacher's
    let (dl, dh) = (width_diff(m, shift, lo, p).0, width_diff(m, shift, hi, p).0);
    if dl.abs() <= dh.abs() { (lo, d0, dl, pairs) } else { (hi, d0, dh, pairs) }
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

fn calibrate_map(model: &mut ModelProto, pass: CalibrateMap) -> Result<()> {
    *model = crate::passes::run_on_model(model, &[Box::new(pass)])?.0;
    Ok(())
}

/// Insert the horizontal blend `z + |λ|·(pool(z) − z)` before the Sigmoid that
/// computes `output` (the `calibrate_map` pass without a shift).
pub fn blend_logits(model: &mut ModelProto, output: &str, lam: f32) -> Result<()> {
    calibrate_map(model, CalibrateMap { output: output.to_string(), shift: None, blend: lam })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blend_moves_edges_towards_the_horizontal_minimum_or_maximum() {
        // one row: a plateau of 2 between -2s
        let z = [-2.0f32, -2.0, 2.0, 2.0, 2.0, -2.0];
        let mut out = [0.0f32; 6];
        blend_plane(&z, 1, 6, 1.0, &mut out);
        assert_eq!(out, [-2.0, -2.0, -2.0, 2.0, -2.0, -2.0]);
        blend_plane(&z, 1, 6, -1.0, &mut out);
        assert_eq!(out, [-2.0, 2.0, 2.0, 2.0, 2.0, 2.0]);
        blend_plane(&z, 1, 6, 0.5, &mut out);
        assert_eq!(out, [-2.0, -2.0, 0.0, 2.0, 0.0, -2.0]);
    }

    #[test]
    fn the_fitted_blend_gives_the_teacher_s_widths() {
        // teacher: regions 20 px wide; students: the same rows a pixel wider on each side
        // (soft edges just above the threshold) or narrower (soft edges just below)
        let (h, w) = (24, 64);
        let mut t = vec![0.0f32; h * w];
        let (mut wide, mut narrow) = (vec![-6.0f32; h * w], vec![-6.0f32; h * w]);
        for y in 6..14 {
            for x in 10..30 {
                t[y * w + x] = 0.9;
                wide[y * w + x] = 4.0;
            }
            (wide[y * w + 9], wide[y * w + 30]) = (0.5, 0.5);
            for x in 11..29 {
                narrow[y * w + x] = 4.0;
            }
            (narrow[y * w + 10], narrow[y * w + 29]) = (-2.0, -2.0);
        }
        let p = Params { min_size: 1.0, ..Params::default() };
        let tb = crate::tasks::db_boxes(ndarray::ArrayView2::from_shape((h, w), &t[..]).unwrap(), p.thresh, p.unclip, p.min_size);
        for (z, sign) in [(wide, 1.0f32), (narrow, -1.0)] {
            let m = Samples { logits: vec![(h, w, z)], teacher: vec![tb.clone()], teacher_above: 0 };
            let (lam, before, after, pairs) = fit_width(&m, 0.0, &p);
            assert_eq!(pairs, 1);
            assert!(before * sign as f64 > 2.0, "{before}");
            assert!(lam * sign > 0.0 && lam.abs() <= 1.0 && after.abs() < 0.01, "λ {lam}: {before} -> {after} px");
        }
        // already the teacher's width: no blend
        let m = Samples { logits: vec![(h, w, t.iter().map(|&v| if v > 0.5 { 4.0 } else { -6.0 }).collect())], teacher: vec![tb], teacher_above: 0 };
        assert_eq!(fit_width(&m, 0.0, &p).0, 0.0);
    }
}

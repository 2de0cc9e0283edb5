//! Per-pixel weights of a probability-map loss from the teacher's regions
//! (`--region-weight`): the map's BCE is a mean over pixels, so a long text
//! line outweighs a short word by its area, while a pixel of box size moves a
//! short word's IoU most. Each teacher box (the map thresholded and grown as
//! the decoder does) gets a weight that falls with its area.

use ndarray::ArrayView2;

use crate::error::{Error, Result};
use crate::tasks::Params;

/// Weights for a batch of teacher maps `t` (`[N, 1, H, W]` or `[N, H, W]`,
/// probabilities) into `w` (same length): every pixel inside a teacher box of
/// area A (after `p`'s threshold and unclip) weighs 1 + β·√(Ā / A), Ā the mean
/// box area of the batch (the largest weight where boxes overlap), every other
/// pixel 1; then all are scaled to mean 1, so the loss keeps its scale against
/// the other terms. No boxes: all 1.
pub fn weights(t: &[f32], shape: &[usize], p: &Params, beta: f32, w: &mut [f32]) -> Result<()> {
    let (h, wd) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let plane = h * wd;
    w.fill(1.0);
    if plane == 0 || beta <= 0.0 {
        return Ok(());
    }
    if t.len() != w.len() || !t.len().is_multiple_of(plane) {
        return Err(Error::Eval(format!("region weights: {} map values for shape {shape:?} and {} weights", t.len(), w.len())));
    }
    let boxes: Vec<Vec<[f32; 4]>> = t.chunks_exact(plane).map(|m| ArrayView2::from_shape((h, wd), m).map(|m| crate::tasks::db_boxes(m, p.thresh, p.unclip, p.min_size))).collect::<std::result::Result<_, _>>().map_err(|e| Error::Eval(format!("region weights: {e}")))?;
    let area = |b: &[f32; 4]| (b[2] - b[0]).max(1.0) * (b[3] - b[1]).max(1.0);
    let count: usize = boxes.iter().map(Vec::len).sum();
    if count == 0 {
        return Ok(());
    }
    let mean = boxes.iter().flatten().map(area).sum::<f32>() / count as f32;
    for (k, bs) in boxes.iter().enumerate() {
        let wk = &mut w[k * plane..(k + 1) * plane];
        for b in bs {
            let v = 1.0 + beta * (mean / area(b)).sqrt();
            let (x0, y0) = (b[0].floor().max(0.0) as usize, b[1].floor().max(0.0) as usize);
            let (x1, y1) = ((b[2].ceil().max(0.0) as usize).min(wd), (b[3].ceil().max(0.0) as usize).min(h));
            for y in y0..y1 {
                for x in wk[y * wd + x0.min(x1)..y * wd + x1].iter_mut() {
                    *x = x.max(v);
                }
            }
        }
    }
    let m = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
    let s = (1.0 / m) as f32;
    w.iter_mut().for_each(|v| *v *= s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_words_weigh_more_than_long_lines_and_the_mean_is_one() {
        // one 64 x 32 map: a long line (40 x 6) and a short word (6 x 6)
        let (h, wd) = (32, 64);
        let mut t = vec![0.0f32; h * wd];
        let mut fill = |x0: usize, y0: usize, x1: usize, y1: usize| (y0..y1).for_each(|y| (x0..x1).for_each(|x| t[y * wd + x] = 0.9));
        fill(4, 4, 44, 10);
        fill(50, 20, 56, 26);
        let p = Params { unclip: 0.0, min_size: 1.0, ..Params::default() };
        let mut w = vec![0.0f32; h * wd];
        weights(&t, &[1, 1, h, wd], &p, 1.0, &mut w).unwrap();
        let (line, word, bg) = (w[6 * wd + 20], w[22 * wd + 52], w[0]);
        assert!(word > line && line > bg, "word {word}, line {line}, background {bg}");
        // 1 + √(Ā/A): Ā = (240 + 36) / 2 = 138
        let (a_line, a_word) = (1.0 + (138.0f32 / 240.0).sqrt(), 1.0 + (138.0f32 / 36.0).sqrt());
        assert!((line / bg - a_line).abs() < 1e-4 && (word / bg - a_word).abs() < 1e-4, "{} {}", line / bg, word / bg);
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        assert!((mean - 1.0).abs() < 1e-5, "{mean}");
        // no boxes, or β = 0: all ones
        weights(&vec![0.1; h * wd], &[1, 1, h, wd], &p, 1.0, &mut w).unwrap();
        assert!(w.iter().all(|&v| v == 1.0));
        weights(&t, &[1, 1, h, wd], &p, 0.0, &mut w).unwrap();
        assert!(w.iter().all(|&v| v == 1.0));
    }
}

//! Layout detectors with PP-PicoDet / GFL heads (PaddleDetection's layout
//! models): per level of stride 8, 16, 32, 64, one output of class scores
//! `[anchors, classes]` (after a Sigmoid) and one of box distributions
//! `[anchors, 4 × (R + 1)]`. An anchor sits at the centre of its cell; each
//! side's distance is the expectation of a softmax over R + 1 bins, times the
//! stride. Boxes whose best class scores above a threshold are kept per class
//! after non-maximum suppression, as PaddleDetection's post-processing does.

use ndarray::ArrayViewD;

use super::ocr::iou;
use crate::error::{Error, Result};

/// Strides a level may have.
const STRIDES: [usize; 5] = [8, 16, 32, 64, 128];
/// Candidates kept per level, per class entering suppression, and per class after it
/// (PaddleDetection's `nms_top_k`, `candidate_size`, `keep_top_k`).
const TOP_K: usize = 1000;
const CANDIDATES_PER_CLASS: usize = 200;
const KEEP_PER_CLASS: usize = 100;

/// A detected region: class, box (x0, y0, x1, y1 in input pixels), score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub class: usize,
    pub bbox: [f32; 4],
    pub score: f32,
}

/// The stride whose grid over an `h` × `w` input has `anchors` cells.
fn stride_of(anchors: usize, h: usize, w: usize) -> Option<usize> {
    STRIDES.into_iter().find(|&s| h.div_ceil(s) * w.div_ceil(s) == anchors)
}

/// Decode one sample's outputs (without the batch axis) of an `h` × `w` input:
/// the score outputs are the `[anchors, classes]` ones whose class count is the
/// first output's; each pairs with the box output of the same anchor count.
pub fn regions(outputs: &[ArrayViewD<f32>], (h, w): (usize, usize), min_score: f32, nms_iou: f32) -> Result<Vec<Region>> {
    let bad = |m: String| Error::Eval(format!("--task layout: {m}"));
    let classes = outputs.first().filter(|y| y.ndim() == 2).map(|y| y.shape()[1]).ok_or_else(|| bad("expects [N, anchors, classes] score outputs first".into()))?;
    let (scores, boxes): (Vec<&ArrayViewD<f32>>, Vec<&ArrayViewD<f32>>) = outputs.iter().filter(|y| y.ndim() == 2).partition(|y| y.shape()[1] == classes);
    if scores.is_empty() || scores.len() != boxes.len() {
        return Err(bad(format!("{} score outputs and {} box outputs; expected one of each per level", scores.len(), boxes.len())));
    }
    let mut cands: Vec<Region> = vec![];
    for s in &scores {
        let anchors = s.shape()[0];
        let b = boxes.iter().find(|b| b.shape()[0] == anchors).ok_or_else(|| bad(format!("no box output has {anchors} anchors")))?;
        let stride = stride_of(anchors, h, w).ok_or_else(|| bad(format!("{anchors} anchors fit no stride of {STRIDES:?} over a {h}x{w} input")))?;
        let bins = b.shape()[1] / 4;
        if bins < 2 || b.shape()[1] % 4 != 0 {
            return Err(bad(format!("box output of width {}: expected 4 × (R + 1)", b.shape()[1])));
        }
        let cols = w.div_ceil(stride);
        // the level's best candidates by their best class
        let mut order: Vec<(f32, usize)> = (0..anchors).map(|a| (s.slice(ndarray::s![a, ..]).iter().copied().fold(f32::NEG_INFINITY, f32::max), a)).filter(|(v, _)| *v > min_score).collect();
        order.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        order.truncate(TOP_K);
        for (_, a) in order {
            let (cx, cy) = (((a % cols) as f32 + 0.5) * stride as f32, ((a / cols) as f32 + 0.5) * stride as f32);
            let row = b.slice(ndarray::s![a, ..]);
            let mut d = [0f32; 4];
            for (k, dk) in d.iter_mut().enumerate() {
                let logits: Vec<f32> = (0..bins).map(|i| row[k * bins + i]).collect();
                let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = logits.iter().map(|v| (v - m).exp()).collect();
                let z: f32 = e.iter().sum();
                *dk = e.iter().enumerate().map(|(i, v)| i as f32 * v).sum::<f32>() / z * stride as f32;
            }
            let bbox = [(cx - d[0]).clamp(0.0, w as f32), (cy - d[1]).clamp(0.0, h as f32), (cx + d[2]).clamp(0.0, w as f32), (cy + d[3]).clamp(0.0, h as f32)];
            for c in 0..classes {
                let score = s[[a, c]];
                if score > min_score {
                    cands.push(Region { class: c, bbox, score });
                }
            }
        }
    }
    // per class, best first: drop a box that overlaps a kept one above nms_iou
    cands.sort_by(|x, y| x.class.cmp(&y.class).then(y.score.total_cmp(&x.score)));
    let mut kept: Vec<Region> = vec![];
    let mut start = 0;
    while start < cands.len() {
        let c = cands[start].class;
        let end = start + cands[start..].iter().take_while(|r| r.class == c).count();
        let mut mine: Vec<Region> = vec![];
        for r in cands[start..end].iter().take(CANDIDATES_PER_CLASS) {
            if mine.len() < KEEP_PER_CLASS && mine.iter().all(|k| iou(&k.bbox, &r.bbox) <= nms_iou) {
                mine.push(*r);
            }
        }
        kept.extend(mine);
        start = end;
    }
    Ok(kept)
}

/// Regions matched one to one within each class at `min_iou`: (matched, predicted, reference).
pub fn match_regions(pred: &[Region], refs: &[Region], min_iou: f32) -> (usize, usize, usize) {
    let mut matched = 0;
    let classes: std::collections::BTreeSet<usize> = pred.iter().chain(refs).map(|r| r.class).collect();
    for c in classes {
        let of = |v: &[Region]| v.iter().filter(|r| r.class == c).map(|r| r.bbox).collect::<Vec<_>>();
        matched += super::ocr::match_pairs(&of(pred), &of(refs), min_iou).len();
    }
    (matched, pred.len(), refs.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, IxDyn};

    #[test]
    fn anchors_decode_to_boxes_and_overlaps_are_suppressed_per_class() {
        // a 32×16 input: level 8 has 4×2 = 8 anchors, level 16 has 2×1; 2 classes, R + 1 = 4 bins
        let (h, w) = (32, 16);
        let mut s8 = Array2::<f32>::zeros((8, 2));
        let mut b8 = Array2::<f32>::from_elem((8, 16), -30.0);
        let s16 = Array2::<f32>::zeros((2, 2));
        let b16 = Array2::<f32>::zeros((2, 16));
        // anchor 3 = row 1, col 1: centre (12, 12); every side's distribution on bin 1 → 8 px
        s8[[3, 1]] = 0.9;
        for k in 0..4 {
            b8[[3, k * 4 + 1]] = 30.0;
        }
        // anchor 5 = row 2, col 1: centre (12, 20), sides 8 px: overlaps anchor 3's box (IoU 1/3)
        s8[[5, 1]] = 0.8;
        s8[[5, 0]] = 0.7;
        for k in 0..4 {
            b8[[5, k * 4 + 1]] = 30.0;
        }
        let views: Vec<ArrayViewD<f32>> = [&s8, &s16, &b8, &b16].iter().map(|a| a.view().into_dyn()).collect();
        let r = regions(&views, (h, w), 0.5, 0.3).unwrap();
        // class 1: anchor 3's box kept, anchor 5's (IoU 1/3 > 0.3) suppressed; class 0: anchor 5's box
        assert_eq!(r.len(), 2, "{r:?}");
        let c1 = r.iter().find(|x| x.class == 1).unwrap();
        assert!(c1.bbox.iter().zip([4.0, 4.0, 16.0, 20.0]).all(|(a, b)| (a - b).abs() < 1e-3), "{:?}", c1.bbox);
        assert_eq!(c1.score, 0.9);
        let c0 = r.iter().find(|x| x.class == 0).unwrap();
        assert!(c0.bbox.iter().zip([4.0, 12.0, 16.0, 28.0]).all(|(a, b)| (a - b).abs() < 1e-3), "{:?}", c0.bbox);
        // a looser suppression keeps both boxes of class 1
        assert_eq!(regions(&views, (h, w), 0.5, 0.5).unwrap().len(), 3);
        // matching is per class: the same box under another class does not match
        let moved = Region { class: 0, ..*c1 };
        assert_eq!(match_regions(&[*c1], &[*c1], 0.5), (1, 1, 1));
        assert_eq!(match_regions(&[moved], &[*c1], 0.5), (0, 1, 1));
        // outputs that do not pair up
        let only: Vec<ArrayViewD<f32>> = vec![s8.view().into_dyn()];
        assert!(regions(&only, (h, w), 0.5, 0.5).unwrap_err().to_string().contains("one of each per level"));
        let (wrong, wrong_boxes) = (Array2::<f32>::zeros((7, 2)), ndarray::ArrayD::<f32>::zeros(IxDyn(&[7, 16])));
        let bad: Vec<ArrayViewD<f32>> = vec![wrong.view().into_dyn(), wrong_boxes.view()];
        assert!(regions(&bad, (h, w), 0.5, 0.5).unwrap_err().to_string().contains("fit no stride"));
    }
}

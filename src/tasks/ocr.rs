//! What a model's outputs mean for the tasks fusec evaluates: greedy CTC
//! decoding of a recognizer's `[T, C]` class scores with its dictionary, and
//! character/line accuracy; the DB post-processing of a detector's
//! probability map into boxes, and matching boxes at an IoU threshold.

use ndarray::ArrayView2;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::onnx::ModelProto;

/// The characters of a CTC recognizer, from its metadata (`character`, one per
/// line, as PaddleOCR exports carry it) or a dictionary file. Index 0 is the
/// CTC blank, then the listed characters, then a space.
pub fn dictionary(model: &ModelProto, file: Option<&std::path::Path>) -> Result<Vec<String>> {
    let text = match file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?,
        None => model
            .metadata_props
            .iter()
            .find(|p| p.key() == "character")
            .map(|p| p.value().to_string())
            .ok_or_else(|| Error::option("--dict", "the model has no `character` metadata; give the dictionary with --dict FILE"))?,
    };
    let mut out = vec![String::new()];
    out.extend(text.lines().map(|l| l.trim_end_matches('\r').to_string()));
    out.push(" ".into());
    Ok(out)
}

/// Greedy CTC decoding: the best class at each step, repeats collapsed, blanks removed.
pub fn ctc_decode(scores: ArrayView2<f32>, dict: &[String]) -> String {
    let mut out = String::new();
    let mut prev = usize::MAX;
    for row in scores.rows() {
        let best = row.iter().enumerate().fold((0usize, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
        if best != prev && best != 0
            && let Some(c) = dict.get(best)
        {
            out.push_str(c);
        }
        prev = best;
    }
    out
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Recognition metrics over a set of lines.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CtcScore {
    pub lines: usize,
    /// Lines read exactly.
    pub line_accuracy: f64,
    /// 1 − (edit distance summed) / (characters summed).
    pub char_accuracy: f64,
}

pub fn ctc_score(pairs: &[(String, String)]) -> CtcScore {
    let n = pairs.len();
    let exact = pairs.iter().filter(|(p, t)| p == t).count();
    let chars: usize = pairs.iter().map(|(_, t)| t.chars().count()).sum();
    let dist: usize = pairs.iter().map(|(p, t)| edit_distance(p, t)).sum();
    CtcScore {
        lines: n,
        line_accuracy: if n == 0 { f64::NAN } else { exact as f64 / n as f64 },
        char_accuracy: if chars == 0 { f64::NAN } else { (1.0 - dist as f64 / chars as f64).max(0.0) },
    }
}

/// Boxes [x0, y0, x1, y1] from a text-probability map, as PP-OCR's DB
/// post-processing does for horizontal text: pixels above `thresh`, connected
/// regions (8-neighbourhood) whose box is at least `min_size` pixels on its
/// shorter side, each region's box grown by the unclip distance
/// `area · ratio / perimeter` on every side.
pub fn db_boxes(prob: ArrayView2<f32>, thresh: f32, unclip_ratio: f32, min_size: f32) -> Vec<[f32; 4]> {
    let (h, w) = prob.dim();
    let mut label = vec![0u32; h * w];
    let mut boxes = vec![];
    let mut stack = vec![];
    let mut next = 0u32;
    for y0 in 0..h {
        for x0 in 0..w {
            if prob[[y0, x0]] <= thresh || label[y0 * w + x0] != 0 {
                continue;
            }
            next += 1;
            let (mut minx, mut miny, mut maxx, mut maxy) = (x0, y0, x0, y0);
            label[y0 * w + x0] = next;
            stack.push((y0, x0));
            while let Some((y, x)) = stack.pop() {
                (minx, miny, maxx, maxy) = (minx.min(x), miny.min(y), maxx.max(x), maxy.max(y));
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (ny, nx) = (y as i64 + dy, x as i64 + dx);
                        if ny < 0 || nx < 0 || ny >= h as i64 || nx >= w as i64 {
                            continue;
                        }
                        let (ny, nx) = (ny as usize, nx as usize);
                        if label[ny * w + nx] == 0 && prob[[ny, nx]] > thresh {
                            label[ny * w + nx] = next;
                            stack.push((ny, nx));
                        }
                    }
                }
            }
            // the region's box (pixel edges), grown by the unclip distance
            let (bw, bh) = ((maxx - minx + 1) as f32, (maxy - miny + 1) as f32);
            if bw.min(bh) < min_size {
                continue;
            }
            let d = bw * bh * unclip_ratio / (2.0 * (bw + bh));
            boxes.push([minx as f32 - d, miny as f32 - d, maxx as f32 + 1.0 + d, maxy as f32 + 1.0 + d]);
        }
    }
    boxes
}

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy one-to-one matching at `min_iou` (best pairs first): (matched, predicted, ground truth).
pub fn match_boxes(pred: &[[f32; 4]], gt: &[[f32; 4]], min_iou: f32) -> (usize, usize, usize) {
    (match_pairs(pred, gt, min_iou).len(), pred.len(), gt.len())
}

/// The pairs (predicted, ground truth) of the greedy one-to-one matching at `min_iou`
/// (best pairs first).
pub fn match_pairs(pred: &[[f32; 4]], gt: &[[f32; 4]], min_iou: f32) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(f32, usize, usize)> = vec![];
    for (i, p) in pred.iter().enumerate() {
        for (j, g) in gt.iter().enumerate() {
            let v = iou(p, g);
            if v >= min_iou {
                pairs.push((v, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut up, mut ug) = (vec![false; pred.len()], vec![false; gt.len()]);
    let mut matched = vec![];
    for (_, i, j) in pairs {
        if !up[i] && !ug[j] {
            up[i] = true;
            ug[j] = true;
            matched.push((i, j));
        }
    }
    matched
}

/// Detection metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DetScore {
    pub images: usize,
    pub precision: f64,
    pub recall: f64,
    pub hmean: f64,
    /// Boxes matched, predicted, and in the reference, over all images.
    pub matched: usize,
    pub predicted: usize,
    pub reference: usize,
}

pub fn det_score(counts: &[(usize, usize, usize)]) -> DetScore {
    let (m, p, g) = counts.iter().fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    let precision = if p == 0 { 0.0 } else { m as f64 / p as f64 };
    let recall = if g == 0 { 0.0 } else { m as f64 / g as f64 };
    let hmean = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    DetScore { images: counts.len(), precision, recall, hmean, matched: m, predicted: p, reference: g }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_collapses_repeats_and_drops_blanks() {
        let dict: Vec<String> = ["", "a", "b"].iter().map(|s| s.to_string()).collect();
        // a a _ a b b _ -> "aab"
        let idx = [1usize, 1, 0, 1, 2, 2, 0];
        let mut s = ndarray::Array2::<f32>::zeros((idx.len(), 3));
        for (t, &i) in idx.iter().enumerate() {
            s[[t, i]] = 1.0;
        }
        assert_eq!(ctc_decode(s.view(), &dict), "aab");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let sc = ctc_score(&[("aab".into(), "aab".into()), ("ab".into(), "abc".into())]);
        assert_eq!(sc.line_accuracy, 0.5);
        assert!((sc.char_accuracy - (1.0 - 1.0 / 6.0)).abs() < 1e-12);
    }

    #[test]
    fn db_boxes_find_regions_and_match() {
        let mut p = ndarray::Array2::<f32>::zeros((20, 40));
        for y in 4..8 {
            for x in 5..25 {
                p[[y, x]] = 0.9;
            }
        }
        p[[15, 35]] = 0.9; // a speck, below min_size
        let b = db_boxes(p.view(), 0.3, 1.5, 3.0);
        assert_eq!(b.len(), 1);
        // 20 x 4 region, unclip 80 * 1.5 / 48 = 2.5
        assert_eq!(b[0], [2.5, 1.5, 27.5, 10.5]);
        assert_eq!(match_boxes(&b, &[[3.0, 2.0, 27.0, 10.0], [30.0, 12.0, 38.0, 18.0]], 0.5), (1, 1, 2));
        let s = det_score(&[(1, 1, 2)]);
        assert!((s.hmean - 2.0 / 3.0).abs() < 1e-12);
    }
}

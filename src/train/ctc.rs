//! CTC on the host: the connectionist temporal classification loss of a
//! sequence of class scores against a target and its gradient with respect to
//! the scores (Graves et al., 2006), for `finetune --ctc-weight`. ONNX has no
//! CTC operator, so the training graph takes this gradient as the seed of the
//! recognizer's logits: the student's scores come from a forward run before
//! the training run, on the same inputs and parameters.

use std::collections::HashMap;

use super::checkpoint::State;
use super::graph;
use super::Options;
use crate::tasks::data::Dataset;
use crate::error::{Error, Result};
use crate::onnx::{self, ModelProto};
use crate::exec::runtime::{self, Feed};

crate::choice_enum! {
    /// Where the CTC targets come from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum CtcTarget {
        /// The `text` column when every sample has one, else the teacher's reading.
        Auto = "auto",
        /// The `text` column of the data.
        Text = "text",
        /// The teacher's greedy reading of each input (no labels needed).
        Teacher = "teacher",
    }
}

impl Default for CtcTarget {
    fn default() -> Self {
        CtcTarget::Auto
    }
}

const NEG: f64 = f64::NEG_INFINITY;

fn lse(a: f64, b: f64) -> f64 {
    if a == NEG {
        return b;
    }
    if b == NEG {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// −log p(target | scores) of one sequence of `t` steps of `c` class scores
/// (logits; class 0 the blank), and its gradient with respect to the scores
/// written to `grad` (the softmax less each class's posterior at each step).
/// None, and `grad` untouched, when no alignment exists: the target needs more
/// steps than there are, or names a class the scores do not have.
pub fn loss_and_grad(scores: &[f32], t: usize, c: usize, target: &[usize], grad: &mut [f32]) -> Option<f64> {
    let repeats = target.windows(2).filter(|w| w[0] == w[1]).count();
    if t == 0 || target.len() + repeats > t || target.iter().any(|&k| k == 0 || k >= c) || scores.len() != t * c || grad.len() != t * c {
        return None;
    }
    let mut lp = vec![0f64; t * c];
    for i in 0..t {
        let row = &scores[i * c..(i + 1) * c];
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let z = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        for (o, &v) in lp[i * c..(i + 1) * c].iter_mut().zip(row) {
            *o = v as f64 - z;
        }
    }
    // the target with blanks around and between its classes
    let n = 2 * target.len() + 1;
    let lab = |s: usize| if s % 2 == 0 { 0 } else { target[s / 2] };
    // a skip over a blank is allowed between two different classes
    let skip = |s: usize| s >= 2 && lab(s) != 0 && lab(s) != lab(s - 2);
    // alpha: the emissions up to and including step i; beta: after step i
    let mut alpha = vec![NEG; t * n];
    alpha[0] = lp[lab(0)];
    if n > 1 {
        alpha[1] = lp[lab(1)];
    }
    for i in 1..t {
        for s in 0..n {
            let prev = &alpha[(i - 1) * n..i * n];
            let mut a = prev[s];
            if s >= 1 {
                a = lse(a, prev[s - 1]);
            }
            if skip(s) {
                a = lse(a, prev[s - 2]);
            }
            alpha[i * n + s] = if a == NEG { NEG } else { a + lp[i * c + lab(s)] };
        }
    }
    let mut beta = vec![NEG; t * n];
    beta[(t - 1) * n + n - 1] = 0.0;
    if n > 1 {
        beta[(t - 1) * n + n - 2] = 0.0;
    }
    for i in (0..t - 1).rev() {
        for s in 0..n {
            let next = |s2: usize| beta[(i + 1) * n + s2] + lp[(i + 1) * c + lab(s2)];
            let mut b = next(s);
            if s + 1 < n {
                b = lse(b, next(s + 1));
            }
            if s + 2 < n && skip(s + 2) {
                b = lse(b, next(s + 2));
            }
            beta[i * n + s] = b;
        }
    }
    let logp = lse(alpha[(t - 1) * n + n - 1], if n > 1 { alpha[(t - 1) * n + n - 2] } else { NEG });
    if !logp.is_finite() {
        return None;
    }
    for i in 0..t {
        for k in 0..c {
            grad[i * c + k] = lp[i * c + k].exp() as f32;
        }
        for s in 0..n {
            let post = (alpha[i * n + s] + beta[i * n + s] - logp).exp();
            grad[i * c + lab(s)] -= post as f32;
        }
    }
    Some(-logp)
}

/// The greedy reading of `t` steps of `c` scores: the best class per step,
/// repeats merged, blanks dropped.
pub fn greedy(scores: &[f32], t: usize, c: usize) -> Vec<usize> {
    let mut out = vec![];
    let mut prev = usize::MAX;
    for row in scores.chunks(c).take(t) {
        let best = row.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
        if best != prev && best != 0 {
            out.push(best);
        }
        prev = best;
    }
    out
}

/// Text to class indices through a CTC dictionary (index 0 the blank).
pub struct Encoder(HashMap<String, usize>);

impl Encoder {
    pub fn new(dict: &[String]) -> Encoder {
        let mut m = HashMap::new();
        for (i, d) in dict.iter().enumerate().skip(1) {
            m.entry(d.clone()).or_insert(i);
        }
        Encoder(m)
    }

    /// None when a character is not in the dictionary.
    pub fn encode(&self, text: &str) -> Option<Vec<usize>> {
        text.chars().map(|ch| self.0.get(ch.encode_utf8(&mut [0; 4]) as &str).copied()).collect()
    }
}

/// The student's forward run that gives the CTC its scores: the model with its
/// trained parameters (and BN statistics) as inputs and the scores as output.
pub struct Forward {
    sess: ort::session::Session,
    input: String,
    tensor: String,
}

impl Forward {
    pub fn new(student: &ModelProto, names: &[String], tensor: &str, threads: usize) -> Result<Forward> {
        let input = crate::onnx::data_input(student)?;
        let mut m = super::model::with_inputs(student, names);
        let g = m.graph.as_mut().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))?;
        g.output = vec![onnx::ValueInfoProto { name: Some(tensor.to_string()), ..Default::default() }];
        Ok(Forward { sess: runtime::session(&m, threads)?, input, tensor: tensor.to_string() })
    }

    /// The scores for input `x` of `shape`, with `extra` feeds (parameters).
    pub fn run(&mut self, x: &[f32], shape: &[usize], extra: &[Feed]) -> Result<Vec<f32>> {
        let mut feeds = vec![Feed { name: &self.input, shape: shape.to_vec(), data: x }];
        feeds.extend(extra.iter().map(|f| Feed { name: f.name, shape: f.shape.clone(), data: f.data }));
        let out = runtime::run(&mut self.sess, &feeds, std::slice::from_ref(&self.tensor))?;
        Ok(out.into_iter().next().map(|o| o.iter().copied().collect()).unwrap_or_default())
    }
}

/// What the CTC loss trained on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CtcSummary {
    /// The student tensor (logits) it reads.
    pub tensor: String,
    /// "text" (the data's text column) or "teacher" (the teacher's greedy reading).
    pub target: &'static str,
    pub weight: f32,
    /// Sequences left out of the loss: a character outside the dictionary, or a target
    /// longer than the steps allow.
    pub skipped: usize,
    pub sequences: usize,
}

/// The CTC term's host side: the student's forward run and the targets.
pub(super) struct Run {
    forward: Forward,
    /// Per sample, the encoded text (None: a character outside the dictionary); None: the teacher's readings.
    text: Option<Vec<Option<Vec<usize>>>>,
    /// The forward run's parameter inputs, then BN statistics.
    names: Vec<String>,
    /// The parameters' shapes.
    shapes: Vec<Vec<usize>>,
    pub(super) summary: CtcSummary,
}

impl Run {
    pub(super) fn new(student: &ModelProto, tg: &graph::TrainGraph, c: &graph::CtcInputs, data: &Dataset, opts: &Options) -> Result<Run> {
        let has_text = data.samples.iter().all(|s| s.text.is_some());
        let use_text = match opts.ctc_target {
            CtcTarget::Text if !has_text => return Err(Error::option("--ctc-target", "text: the data has samples without a `text` column")),
            CtcTarget::Text => true,
            CtcTarget::Teacher => false,
            CtcTarget::Auto => has_text,
        };
        let text = if use_text {
            if opts.decode.dict.is_empty() {
                return Err(Error::option("--ctc-target", "the text needs the model's dictionary (its `character` metadata, or --dict)"));
            }
            let enc = Encoder::new(&opts.decode.dict);
            Some(data.samples.iter().map(|s| s.text.as_deref().and_then(|t| enc.encode(t))).collect())
        } else {
            None
        };
        let mut names: Vec<String> = tg.params.clone();
        for b in &tg.bn {
            names.push(b.mean.clone());
            names.push(b.var.clone());
        }
        let shapes = tg.param_shapes.clone();
        let forward = Forward::new(student, &names, &c.tensor, opts.threads)?;
        let summary = CtcSummary { tensor: c.tensor.clone(), target: if use_text { "text" } else { "teacher" }, weight: opts.loss.ctc_weight, skipped: 0, sequences: 0 };
        Ok(Run { forward, text, names, shapes, summary })
    }

    /// The weighted loss and gradient seed of one micro-batch (samples `idx`, input `x`);
    /// `teacher`: the teacher's logits for the same inputs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(&mut self, c: &graph::CtcInputs, st: &State, idx: &[usize], x: &[f32], shape: &[usize], teacher: &[f32], weight: f32) -> Result<(f32, Vec<f32>)> {
        let mut vals: Vec<&[f32]> = st.params.iter().map(Vec::as_slice).collect();
        for i in 0..st.bn_mean.len() {
            vals.push(&st.bn_mean[i]);
            vals.push(&st.bn_var[i]);
        }
        // parameters with their shapes, then BN statistics (one value per channel)
        let shape_of = |i: usize, v: &[f32]| self.shapes.get(i).cloned().unwrap_or_else(|| vec![v.len()]);
        let feeds: Vec<Feed> = self.names.iter().zip(&vals).enumerate().map(|(i, (n, v))| Feed { name: n, shape: shape_of(i, v), data: v }).collect();
        let scores = self.forward.run(x, shape, &feeds)?;
        let (t, k) = (c.shape[1], c.shape[2]);
        let per = t * k;
        if scores.len() != idx.len() * per || teacher.len() != scores.len() {
            return Err(Error::Eval(format!("CTC: '{}' has {} values, expected {}", c.tensor, scores.len(), idx.len() * per)));
        }
        let mut grad = vec![0.0f32; scores.len()];
        let mut total = 0.0f64;
        for (j, &i) in idx.iter().enumerate() {
            let target = match &self.text {
                Some(text) => text[i].clone(),
                None => Some(greedy(&teacher[j * per..(j + 1) * per], t, k)),
            };
            self.summary.sequences += 1;
            match target.and_then(|tg| loss_and_grad(&scores[j * per..(j + 1) * per], t, k, &tg, &mut grad[j * per..(j + 1) * per])) {
                Some(l) => total += l,
                None => self.summary.skipped += 1,
            }
        }
        let w = weight / idx.len() as f32;
        grad.iter_mut().for_each(|g| *g *= w);
        Ok((total as f32 * w, grad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// p(target) by enumerating every path of `t` steps over `c` classes.
    fn brute(scores: &[f32], t: usize, c: usize, target: &[usize]) -> f64 {
        let lp: Vec<f64> = scores
            .chunks(c)
            .flat_map(|r| {
                let z = r.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
                r.iter().map(move |&v| v as f64 - z)
            })
            .collect();
        let mut total = 0.0;
        for code in 0..c.pow(t as u32) {
            let path: Vec<usize> = (0..t).map(|i| code / c.pow(i as u32) % c).collect();
            let mut read = vec![];
            let mut prev = usize::MAX;
            for &k in &path {
                if k != prev && k != 0 {
                    read.push(k);
                }
                prev = k;
            }
            if read == target {
                total += path.iter().enumerate().map(|(i, &k)| lp[i * c + k]).sum::<f64>().exp();
            }
        }
        total
    }

    fn scores(t: usize, c: usize, seed: u32) -> Vec<f32> {
        (0..t * c).map(|i| (((i as u32 + 1) * 2654435761u32 ^ seed.wrapping_mul(40503)) % 1000) as f32 / 250.0 - 2.0).collect()
    }

    #[test]
    fn loss_is_the_negative_log_of_the_summed_alignments() {
        let (t, c) = (5, 3);
        for (seed, target) in [(1, vec![1, 2]), (2, vec![1, 1]), (3, vec![2]), (4, vec![1, 2, 1]), (5, vec![2, 2, 1])] {
            let x = scores(t, c, seed);
            let mut g = vec![0.0; t * c];
            let l = loss_and_grad(&x, t, c, &target, &mut g).unwrap();
            let p = brute(&x, t, c, &target);
            assert!((l + p.ln()).abs() < 1e-9, "{target:?}: {l} vs {}", -p.ln());
        }
        // a double letter needs a blank between: [1, 1, 1] does not fit in 4 steps
        let mut g = vec![0.0; 4 * c];
        assert!(loss_and_grad(&scores(4, c, 9), 4, c, &[1, 1, 1], &mut g).is_none());
        assert!(loss_and_grad(&scores(5, c, 9)[..4 * c], 4, c, &[1, 3], &mut g).is_none());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (t, c) = (6, 4);
        let target = [2, 2, 3];
        let x = scores(t, c, 7);
        let mut g = vec![0.0; t * c];
        loss_and_grad(&x, t, c, &target, &mut g).unwrap();
        let h = 1e-3f32;
        let mut scratch = vec![0.0; t * c];
        for i in 0..t * c {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[i] += h;
            b[i] -= h;
            let fd = (loss_and_grad(&a, t, c, &target, &mut scratch).unwrap() - loss_and_grad(&b, t, c, &target, &mut scratch).unwrap()) / (2.0 * h as f64);
            assert!((fd - g[i] as f64).abs() < 2e-3, "element {i}: finite difference {fd}, gradient {}", g[i]);
        }
        // each step's gradient sums to zero (softmax less a distribution)
        for row in g.chunks(c) {
            assert!(row.iter().sum::<f32>().abs() < 1e-5);
        }
    }

    #[test]
    fn greedy_reading_and_encoding() {
        // steps: a a - a b b -
        let (t, c) = (7, 3);
        let best = [1, 1, 0, 1, 2, 2, 0];
        let mut x = vec![0.0f32; t * c];
        for (i, &k) in best.iter().enumerate() {
            x[i * c + k] = 1.0;
        }
        assert_eq!(greedy(&x, t, c), vec![1, 1, 2]);
        let dict: Vec<String> = ["<blank>", "a", "b", " "].iter().map(|s| s.to_string()).collect();
        let e = Encoder::new(&dict);
        assert_eq!(e.encode("ab a"), Some(vec![1, 2, 3, 1]));
        assert_eq!(e.encode("abc"), None);
    }
}

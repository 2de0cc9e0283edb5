//! Distillation losses for any output: which loss each model output gets
//! (chosen from what produces it, or given with `--output-loss`), and the loss
//! and its gradient seed as graph nodes.
//!
//! - class scores (a Softmax/LogSoftmax output, looked through, or a plain
//!   `[N, C]` output): KL divergence at temperature τ on the scores' axis,
//!   averaged over positions (`[N, T, C]` sequences: per step);
//! - probability maps (a Sigmoid output): binary cross-entropy against the
//!   teacher's probabilities, seeded at the Sigmoid's input;
//! - anything else (boxes, regression heads): normalised squared error
//!   Σ(s − t)² / Σt².
//!
//! Outputs are matched to the teacher's by name (by position, with a warning, when
//! the names differ: [`pair_outputs`]); Reshape, Transpose and
//! the like between the loss tensor and the output are looked through (the
//! losses are sums over elements, so a permutation does not change them).

use std::collections::HashMap;

use super::grad::Emitter;
use crate::error::{Error, Result};
use crate::onnx::{a_int, attr_int, GraphProto, NodeProto, ValueInfoProto};

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum LossKind {
        /// KL divergence between softened distributions (× τ²), per position.
        Kl = "kl",
        /// Mean squared error.
        Mse = "mse",
        /// Binary cross-entropy against the teacher's probabilities (reported less the
        /// teacher's entropy: 0 when the maps agree).
        Bce = "bce",
        /// Normalised squared error Σ(s − t)² / Σt².
        Nse = "nse",
        /// No loss on this output.
        None = "none",
    }
}

/// A `--output-loss NAME=KIND[:ARG][@WEIGHT]` override: ARG is the class axis
/// for `kl`, the weight for the others.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutputLossArg {
    pub output: String,
    pub kind: LossKind,
    pub axis: Option<i64>,
    pub weight: Option<f32>,
}

/// What an output is, for `--output-loss [KIND]=...`: class scores (KL by
/// default), a probability map (a Sigmoid output: BCE), or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Scores,
    Map,
    Other,
}

impl OutputKind {
    fn of(auto: LossKind) -> OutputKind {
        match auto {
            LossKind::Kl => OutputKind::Scores,
            LossKind::Bce => OutputKind::Map,
            _ => OutputKind::Other,
        }
    }
}

impl OutputLossArg {
    /// `[scores]`, `[map]` or `[other]` in place of an output name: every output of that kind.
    pub fn kind_selector(&self) -> Option<OutputKind> {
        match self.output.as_str() {
            "[scores]" => Some(OutputKind::Scores),
            "[map]" => Some(OutputKind::Map),
            "[other]" => Some(OutputKind::Other),
            _ => None,
        }
    }
}

impl std::str::FromStr for OutputLossArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, spec) = s.rsplit_once('=').ok_or_else(|| format!("'{s}' is not NAME=KIND (KIND: kl[:axis], mse, bce, nse, none; @WEIGHT optional)"))?;
        let (spec, at_weight) = match spec.split_once('@') {
            Some((k, w)) => (k, Some(w.parse::<f32>().map_err(|_| format!("'{w}' is not a weight"))?)),
            None => (spec, None),
        };
        let (kind, arg) = match spec.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (spec, None),
        };
        let kind = kind.trim().parse::<LossKind>().map_err(|_| format!("'{kind}' is not a loss (kl, mse, bce, nse, none)"))?;
        let (mut axis, mut weight) = (None, at_weight);
        if let Some(a) = arg {
            if kind == LossKind::Kl {
                axis = Some(a.parse::<i64>().map_err(|_| format!("'{a}' is not an axis"))?);
            } else {
                weight = Some(a.parse::<f32>().map_err(|_| format!("'{a}' is not a weight"))?);
            }
        }
        if weight.is_some_and(|w| !(w >= 0.0 && w.is_finite())) {
            return Err(format!("{s}: the weight must be a non-negative number"));
        }
        if name.is_empty() {
            return Err(format!("'{s}': the output name is empty"));
        }
        Ok(OutputLossArg { output: name.to_string(), kind, axis, weight })
    }
}

/// The loss on one model output, resolved.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutputLoss {
    pub output: String,
    pub kind: LossKind,
    /// Class axis (KL), on the loss tensor.
    pub axis: i64,
    pub weight: f32,
    /// The student tensor the loss is computed on (logits for KL and BCE).
    pub tensor: String,
    /// The teacher tensor it is compared with (logits for KL, probabilities for BCE).
    pub teacher_tensor: String,
    /// Why this loss (for the summary).
    pub reason: String,
}

/// Ops that only move elements (a loss summed over elements is the same before and after).
use crate::ir::op::ELEMENT_MOVES as MOVES;

/// Walk back from `value` through element-moving ops; returns the producing node (if any)
/// of the first value that is not moved, and that value.
pub fn look_through<'a>(g: &'a GraphProto, value: &str) -> (Option<&'a NodeProto>, String) {
    let producer: HashMap<&str, &NodeProto> = g.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let mut v = value.to_string();
    for _ in 0..64 {
        match producer.get(v.as_str()) {
            Some(n) if MOVES.contains(&n.op_type()) => v = n.input[0].clone(),
            Some(n) => return (Some(n), v),
            None => return (None, v),
        }
    }
    (None, v)
}

/// What a model output is: (kind, loss tensor, probability tensor for BCE, class axis, reason).
fn classify(g: &GraphProto, output: &str, rank: usize, class_loss: LossKind) -> (LossKind, String, String, i64, String) {
    let (node, v) = look_through(g, output);
    if let Some(n) = node.filter(|n| matches!(n.op_type(), "Softmax" | "LogSoftmax")) {
        let default = if rank > 2 { -1 } else { 1 };
        let ax = attr_int(n, "axis").unwrap_or(default);
        return (class_loss, n.input[0].clone(), v, ax, format!("class scores ({} over axis {ax})", n.op_type()));
    }
    if let Some(n) = node.filter(|n| n.op_type() == "Sigmoid") {
        return (LossKind::Bce, n.input[0].clone(), v, -1, "probability map (Sigmoid)".into());
    }
    if rank == 2 {
        (class_loss, output.to_string(), output.to_string(), 1, "class scores ([N, C] logits)".into())
    } else {
        (LossKind::Nse, output.to_string(), output.to_string(), -1, "regression (no Softmax or Sigmoid)".into())
    }
}

/// The teacher's output for each of the student's: by name when every student
/// output has a namesake among the teacher's, else by position, with a warning
/// for each pair whose names differ. Both lists have the same length.
pub fn pair_outputs<'a>(student: &'a GraphProto, teacher: &'a GraphProto) -> Vec<(&'a ValueInfoProto, &'a ValueInfoProto)> {
    let by_name: Option<Vec<_>> = student.output.iter().map(|so| teacher.output.iter().find(|to| to.name() == so.name()).map(|to| (so, to))).collect();
    by_name.unwrap_or_else(|| {
        student
            .output
            .iter()
            .zip(&teacher.output)
            .inspect(|(so, to)| {
                if so.name() != to.name() {
                    log::warn!("the model's output '{}' has no namesake among the teacher's outputs: paired with the teacher's output '{}' by position", so.name(), to.name());
                }
            })
            .collect()
    })
}

/// The loss of every output of `student`, matched to `teacher`'s by [`pair_outputs`].
/// `ranks` are the output ranks; `class_loss` is the loss for class scores
/// (`--distill`); `overrides` come from `--output-loss`.
pub fn resolve(student: &GraphProto, teacher: &GraphProto, ranks: &[usize], class_loss: LossKind, overrides: &[OutputLossArg]) -> Result<Vec<OutputLoss>> {
    for o in overrides {
        if o.kind_selector().is_some() {
            continue;
        }
        if let Some(bad) = o.output.strip_prefix('[') {
            return Err(Error::option("--output-loss", format!("'[{bad}' is not an output kind ([scores], [map], [other])")));
        }
        if !student.output.iter().any(|x| x.name() == o.output) {
            let names: Vec<&str> = student.output.iter().map(|x| x.name()).collect();
            return Err(Error::option("--output-loss", format!("the model has no output '{}' (outputs: {})", o.output, names.join(", "))));
        }
    }
    if teacher.output.len() != student.output.len() {
        return Err(Error::option("--teacher", format!("the teacher has {} outputs, the model {}", teacher.output.len(), student.output.len())));
    }
    let mut out = vec![];
    for (i, (so, to)) in pair_outputs(student, teacher).into_iter().enumerate() {
        let rank = ranks.get(i).copied().unwrap_or(0);
        let (auto, tensor, _, axis, reason) = classify(student, so.name(), rank, class_loss);
        let (_, t_tensor, t_prob, _, _) = classify(teacher, to.name(), rank, class_loss);
        // by name, else by kind ([scores], [map], [other]); a later --output-loss wins (a recipe's come first)
        let ov = overrides.iter().rev().find(|o| o.output == so.name()).or_else(|| overrides.iter().rev().find(|o| o.kind_selector() == Some(OutputKind::of(auto))));
        let kind = ov.map_or(auto, |o| o.kind);
        let weight = ov.and_then(|o| o.weight).unwrap_or(1.0);
        let (tensor, teacher_tensor) = match kind {
            // KL compares logits
            LossKind::Kl => (tensor, t_tensor),
            // BCE seeds the logits and compares with the teacher's probabilities
            LossKind::Bce if auto == LossKind::Bce => (tensor, t_prob),
            LossKind::Bce => return Err(Error::option("--output-loss", format!("{}: bce needs an output computed by a Sigmoid", so.name()))),
            // MSE / NSE: on the output as it is
            _ => (so.name().to_string(), to.name().to_string()),
        };
        let reason = if ov.is_some() { "--output-loss".to_string() } else { reason };
        let axis = ov.and_then(|o| o.axis).unwrap_or(axis);
        out.push(OutputLoss { output: so.name().to_string(), kind, axis, weight, tensor, teacher_tensor, reason });
    }
    out.retain(|l| l.kind != LossKind::None && l.weight > 0.0);
    Ok(out)
}

/// Emphasis within one loss term: which elements count more than others.
/// Weights come from the teacher's values, or (`miss`) are piecewise constant in
/// the student's: no gradient flows through them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Emphasis {
    /// β of BCE maps: each pixel weighs 1 + β·4t(1 − t), so the teacher's edges
    /// (t near ½) count up to 1 + β times its confident inside and outside, where a
    /// thresholded map's boxes are decided.
    pub edge: f32,
    /// β of KL class scores: each position weighs 1 + β·(1 − t₀), t₀ the teacher's
    /// probability of class 0 (the CTC blank, at the KL's temperature), so the few steps where the teacher
    /// reads a character count up to 1 + β times the blank steps around them.
    pub peak: f32,
    /// β of KL class scores: each position where the student's best class is not the
    /// teacher's weighs 1 + β (a recognizer's dropped letter, or the blank between a
    /// double letter that it merges).
    pub miss: f32,
    /// h of BCE maps: the target is (1 − h)·t + h·[t > `hard_thresh`], the teacher's
    /// map blended with its thresholded regions, so the student's map is pushed to 0
    /// or 1 on either side of the teacher's box edges instead of copying their soft
    /// slope (a soft copy that is a little blurrier thresholds to larger boxes).
    pub hard: f32,
    pub hard_thresh: f32,
    /// β of BCE maps: each pixel inside a teacher box of area A weighs 1 + β·√(Ā / A)
    /// (Ā the batch's mean box area), the rest 1, all scaled to mean 1, so short
    /// words count as much as long lines. Computed on the host ([`super::regions`])
    /// and fed as an input of the map's shape.
    pub region: f32,
}

/// Emit the loss of one term between the student tensor and the teacher input
/// `t_in` (same shape); returns the loss value and the gradient seed of the
/// student tensor. `pixel_w`: an input of per-element weights (BCE maps,
/// `Emphasis::region`).
pub fn emit(em: &mut Emitter, l: &OutputLoss, t_in: &str, temperature: f32, emphasis: Emphasis, pixel_w: Option<&str>) -> Result<(String, String)> {
    let s = l.tensor.as_str();
    let shape = em.shape(s)?;
    let n: i64 = shape.iter().product();
    let all: Vec<i64> = (0..shape.len() as i64).collect();
    let w = l.weight;
    match l.kind {
        LossKind::Kl => {
            let r = shape.len();
            let ax = if l.axis < 0 { l.axis + r as i64 } else { l.axis };
            if ax < 0 || ax >= r as i64 {
                return Err(Error::option("--output-loss", format!("{}: axis {} outside the rank-{r} tensor '{s}'", l.output, l.axis)));
            }
            // positions: every element but the class axis
            let positions = n / shape[ax as usize].max(1);
            // log-probabilities once per side; probabilities as their Exp (one pass, no second
            // softmax); τ = 1 needs no scaling (a [16, 40, 18710] recognizer output: 12M values)
            let scaled = |em: &mut Emitter, v: &str| -> Result<String> {
                if temperature == 1.0 {
                    return Ok(v.to_string());
                }
                let inv = em.c_f32(1.0 / temperature);
                em.bin("Mul", v, &inv)
            };
            let sd = scaled(em, s)?;
            let td = scaled(em, t_in)?;
            let attrs = || vec![a_int("axis", ax)];
            let lps = em.op("LogSoftmax", &[&sd], attrs(), shape.clone());
            let lpt = em.op("LogSoftmax", &[&td], attrs(), shape.clone());
            let ps = em.op("Exp", &[&lps], vec![], shape.clone());
            let pt = em.op("Exp", &[&lpt], vec![], shape.clone());
            let d = em.bin("Sub", &lpt, &lps)?;
            let mut kl = em.bin("Mul", &pt, &d)?;
            let mut diff = em.bin("Sub", &ps, &pt)?;
            if emphasis.peak > 0.0 {
                // 1 + β·(1 − t₀) = (1 + β) − β·t₀ per position, broadcast over the classes
                let t0 = em.slice(&pt, &[ax], &[0], &[1])?;
                weigh(em, (&mut kl, &mut diff), &t0, 1.0 + emphasis.peak, -emphasis.peak)?;
            }
            if emphasis.miss > 0.0 {
                // (1 + β) − β·[argmax s = argmax t] per position (piecewise constant: no gradient)
                let keep = || vec![a_int("axis", ax), a_int("keepdims", 1)];
                let mut one_shape = shape.clone();
                one_shape[ax as usize] = 1;
                let bs = em.op("ArgMax", &[&lps], keep(), one_shape.clone());
                let bt = em.op("ArgMax", &[&lpt], keep(), one_shape.clone());
                let same = em.op("Equal", &[&bs, &bt], vec![], one_shape.clone());
                let same = em.op("Cast", &[&same], vec![a_int("to", crate::onnx::dtype::FLOAT as i64)], one_shape);
                weigh(em, (&mut kl, &mut diff), &same, 1.0 + emphasis.miss, -emphasis.miss)?;
            }
            let tot = em.reduce("ReduceSum", &kl, &all, false)?;
            let k = em.c_f32(w * temperature * temperature / positions as f32);
            let loss = em.bin("Mul", &tot, &k)?;
            let gk = em.c_f32(w * temperature / positions as f32);
            Ok((loss, em.bin("Mul", &diff, &gk)?))
        }
        LossKind::Bce => {
            // BCE(σ(z), t) = softplus(z) − t·z, with softplus(z) = relu(z) + log(1 + exp(−|z|));
            // reported less the teacher's own entropy (what BCE cannot go below: soft maps
            // are not 0/1), i.e. the Bernoulli KL, 0 when the maps agree; d/dz = σ(z) − t
            let soft = t_in;
            let hardened;
            let t_in = if emphasis.hard > 0.0 {
                // (1 − h)·t + h·[t > θ]
                let th = em.c_f32(emphasis.hard_thresh);
                let gt = em.op("Greater", &[soft, &th], vec![], shape.clone());
                let on = em.op("Cast", &[&gt], vec![a_int("to", crate::onnx::dtype::FLOAT as i64)], shape.clone());
                let h = em.c_f32(emphasis.hard);
                let d = em.bin("Sub", &on, soft)?;
                let hd = em.bin("Mul", &d, &h)?;
                hardened = em.bin("Add", soft, &hd)?;
                hardened.as_str()
            } else {
                soft
            };
            let abs = em.op("Abs", &[s], vec![], shape.clone());
            let neg = em.op("Neg", &[&abs], vec![], shape.clone());
            let ex = em.op("Exp", &[&neg], vec![], shape.clone());
            let one = em.c_f32(1.0);
            let ex1 = em.bin("Add", &ex, &one)?;
            let lg = em.op("Log", &[&ex1], vec![], shape.clone());
            let rl = em.op("Relu", &[s], vec![], shape.clone());
            let sp = em.bin("Add", &rl, &lg)?;
            let tz = em.bin("Mul", t_in, s)?;
            let b = em.bin("Sub", &sp, &tz)?;
            // entropy of t: −t·log t − (1 − t)·log(1 − t), t clipped away from 0 and 1
            let (lo, hi) = (em.c_f32(1e-7), em.c_f32(1.0 - 1e-7));
            let tc = em.op("Clip", &[t_in, &lo, &hi], vec![], shape.clone());
            let lt = em.op("Log", &[&tc], vec![], shape.clone());
            let omt = em.bin("Sub", &one, &tc)?;
            let lomt = em.op("Log", &[&omt], vec![], shape.clone());
            let a1 = em.bin("Mul", &tc, &lt)?;
            let a2 = em.bin("Mul", &omt, &lomt)?;
            let negh = em.bin("Add", &a1, &a2)?;
            let mut kl = em.bin("Add", &b, &negh)?;
            let sg = em.op("Sigmoid", &[s], vec![], shape.clone());
            let mut diff = em.bin("Sub", &sg, t_in)?;
            if emphasis.edge > 0.0 {
                // 1 + β·4t(1 − t), from the teacher's (soft) map only (no gradient through it);
                // the entropy's clipped map is that map unless the target was hardened
                let (tc, omt) = if emphasis.hard > 0.0 {
                    let tc = em.op("Clip", &[soft, &lo, &hi], vec![], shape.clone());
                    let omt = em.bin("Sub", &one, &tc)?;
                    (tc, omt)
                } else {
                    (tc, omt)
                };
                let t1t = em.bin("Mul", &tc, &omt)?;
                weigh(em, (&mut kl, &mut diff), &t1t, 1.0, 4.0 * emphasis.edge)?;
            }
            if let Some(pw) = pixel_w {
                weigh(em, (&mut kl, &mut diff), pw, 0.0, 1.0)?;
            }
            let tot = em.reduce("ReduceSum", &kl, &all, false)?;
            let k = em.c_f32(w / n as f32);
            let loss = em.bin("Mul", &tot, &k)?;
            Ok((loss, em.bin("Mul", &diff, &k)?))
        }
        LossKind::Mse => {
            let diff = em.bin("Sub", s, t_in)?;
            let sq = em.bin("Mul", &diff, &diff)?;
            let tot = em.reduce("ReduceSum", &sq, &all, false)?;
            let k = em.c_f32(w / n as f32);
            let loss = em.bin("Mul", &tot, &k)?;
            let gk = em.c_f32(2.0 * w / n as f32);
            Ok((loss, em.bin("Mul", &diff, &gk)?))
        }
        LossKind::Nse => nse(em, s, t_in, w),
        LossKind::None => Err(Error::InvalidGraph("no loss".into())),
    }
}

/// Weigh a loss's elements and their gradient by a + b·x (x broadcast; computed
/// from the teacher or piecewise constant, so no gradient flows through it).
fn weigh(em: &mut Emitter, (loss, grad): (&mut String, &mut String), x: &str, a: f32, b: f32) -> Result<()> {
    let bk = em.c_f32(b);
    let bx = em.bin("Mul", x, &bk)?;
    let ak = em.c_f32(a);
    let w = em.bin("Add", &bx, &ak)?;
    *loss = em.bin("Mul", loss, &w)?;
    *grad = em.bin("Mul", grad, &w)?;
    Ok(())
}

/// Σ(s − t)² / (Σt² + ε) × w, and its gradient 2w(s − t) / (Σt² + ε).
pub fn nse(em: &mut Emitter, s: &str, t_in: &str, w: f32) -> Result<(String, String)> {
    let shape = em.shape(s)?;
    let all: Vec<i64> = (0..shape.len() as i64).collect();
    let t2 = em.bin("Mul", t_in, t_in)?;
    let den = em.reduce("ReduceSum", &t2, &all, false)?;
    let eps = em.c_f32(1e-6);
    let den = em.bin("Add", &den, &eps)?;
    let diff = em.bin("Sub", s, t_in)?;
    let sq = em.bin("Mul", &diff, &diff)?;
    let num = em.reduce("ReduceSum", &sq, &all, false)?;
    let l = em.bin("Div", &num, &den)?;
    let wk = em.c_f32(w);
    let loss = em.bin("Mul", &l, &wk)?;
    let k2 = em.c_f32(2.0 * w);
    let g = em.bin("Mul", &diff, &k2)?;
    Ok((loss, em.bin("Div", &g, &den)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_loss_arguments() {
        let p = |s: &str| s.parse::<OutputLossArg>();
        assert_eq!(p("logits=kl:2").unwrap(), OutputLossArg { output: "logits".into(), kind: LossKind::Kl, axis: Some(2), weight: None });
        assert_eq!(p("map=bce:0.5").unwrap(), OutputLossArg { output: "map".into(), kind: LossKind::Bce, axis: None, weight: Some(0.5) });
        assert_eq!(p("boxes=nse@2").unwrap().weight, Some(2.0));
        assert_eq!(p("a=b=mse").unwrap().output, "a=b");
        assert!(p("x=huber").unwrap_err().contains("not a loss"));
        assert!(p("x").is_err());
        assert!(p("x=mse:-1").is_err());
    }
}

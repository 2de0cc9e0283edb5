//! The optimizer step (AdamW, SGD with momentum), the learning-rate schedule,
//! and the running averages of batch-statistics BatchNormalization.

use super::checkpoint::State;
use super::graph::BnStat;
use super::Options;

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    pub enum Optimizer {
        Adamw = "adamw",
        Sgd = "sgd",
    }
}

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    pub enum Schedule {
        /// Linear warm-up, then cosine decay to zero.
        Cosine = "cosine",
        /// Linear warm-up, then ×0.1 at half and at three quarters of the run.
        Step = "step",
        Constant = "constant",
    }
}

/// The learning rate at `step` of `total`.
pub fn lr_at(o: &Options, step: usize, total: usize) -> f32 {
    let warm = o.warmup.min(total / 5);
    if step < warm {
        return o.lr * (step + 1) as f32 / warm as f32;
    }
    let t = (step - warm) as f32 / (total - warm).max(1) as f32;
    match o.schedule {
        Schedule::Constant => o.lr,
        Schedule::Cosine => o.lr * 0.5 * (1.0 + (std::f32::consts::PI * t).cos()),
        Schedule::Step => o.lr * if t < 0.5 { 1.0 } else if t < 0.75 { 0.1 } else { 0.01 },
    }
}

/// The global L2 norm of the gradients; when it exceeds `max_norm` they are
/// scaled down to it (as PyTorch's `clip_grad_norm_`). Returns the norm before.
pub fn clip(grads: &mut [Vec<f32>], max_norm: Option<f32>) -> f32 {
    let norm = grads.iter().flat_map(|g| g.iter()).map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt() as f32;
    if let Some(m) = max_norm
        && norm > m
        && norm.is_finite()
    {
        let k = m / norm;
        grads.iter_mut().flat_map(|g| g.iter_mut()).for_each(|v| *v *= k);
    }
    norm
}

/// One update of every parameter from its gradient; `decay[i]`: whether weight
/// decay applies (weights, not biases or BN parameters). `st.step` is the
/// number of updates before this one.
pub fn step(o: &Options, st: &mut State, grads: &[Vec<f32>], decay: &[bool], lr: f32) {
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let t = (st.step + 1) as i32;
    for (i, g) in grads.iter().enumerate() {
        let wd = if decay[i] { o.weight_decay } else { 0.0 };
        let (p, m, v) = (&mut st.params[i], &mut st.m[i], &mut st.v[i]);
        match o.optimizer {
            Optimizer::Adamw => {
                let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                for j in 0..p.len() {
                    m[j] = b1 * m[j] + (1.0 - b1) * g[j];
                    v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
                    p[j] -= lr * ((m[j] / c1) / ((v[j] / c2).sqrt() + eps) + wd * p[j]);
                }
            }
            Optimizer::Sgd => {
                for j in 0..p.len() {
                    m[j] = o.momentum * m[j] + g[j] + wd * p[j];
                    p[j] -= lr * m[j];
                }
            }
        }
    }
}

/// The decay of the parameter average after `updates` optimizer steps: `decay`, but
/// lower early on, (1 + t) / (10 + t), so that the average forgets the
/// initial weights (as TensorFlow's `ExponentialMovingAverage` with `num_updates`).
pub fn ema_decay(decay: f32, updates: usize) -> f32 {
    decay.min((1 + updates) as f32 / (10 + updates) as f32)
}

/// Fold the parameters into their moving average (`--ema`); `st.step` is the
/// number of updates before the one just made.
pub fn average(st: &mut State, decay: f32) {
    let d = ema_decay(decay, st.step);
    if let Some(avg) = st.avg.as_mut() {
        for (a, p) in avg.iter_mut().zip(&st.params) {
            for (x, &y) in a.iter_mut().zip(p) {
                *x = d * *x + (1.0 - d) * y;
            }
        }
    }
}

/// Fold one batch's statistics into the running averages (unbiased variance, as PyTorch).
pub fn update_bn(st: &mut State, bn: &[BnStat], means: &[&[f32]], vars: &[&[f32]]) {
    for (i, b) in bn.iter().enumerate() {
        let unbias = b.count as f32 / (b.count.max(2) - 1) as f32;
        for (j, (m, v)) in means[i].iter().zip(vars[i]).enumerate() {
            st.bn_mean[i][j] = b.momentum * st.bn_mean[i][j] + (1.0 - b.momentum) * m;
            st.bn_var[i][j] = b.momentum * st.bn_var[i][j] + (1.0 - b.momentum) * v * unbias;
        }
    }
}

//! What `finetune` is asked to do: which parameters train, the schedule, the
//! losses, augmentation, evaluation and checkpoints, with the defaults the
//! CLI starts from.

use std::path::PathBuf;

use super::batch;
use super::ctc::CtcTarget;
use super::graph::{BnMode, Distill, LossSpec};
use super::loss::Emphasis;
use super::optimizer::{Optimizer, Schedule};
use crate::tasks::{Kind, Params};

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    pub enum TrainSet {
        /// Every weight, bias and BN scale/bias from the first rewritten block on (the layers
        /// before it still compute what they computed for the teacher); all of them in a
        /// model without rewritten blocks.
        Downstream = "downstream",
        /// Every weight, bias and BN scale/bias.
        All = "all",
        /// Only what the rewrite created or reshaped (the FuSe kernels, widened consumers).
        Fuse = "fuse",
        /// The FuSe parameters and every BatchNormalization scale and bias.
        FuseBn = "fuse+bn",
    }
}

/// Whether the labels of the data train the model too (cross-entropy beside the distillation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LabelUse {
    /// When every sample has a label and the teacher agrees with at least
    /// [`LABEL_AGREEMENT`] of them (the labels then mean the model's classes).
    Auto,
    On,
    Off,
}

/// The teacher's top-1 agreement with the labels above which `LabelUse::Auto` uses them.
pub const LABEL_AGREEMENT: f64 = 0.8;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Options {
    pub epochs: usize,
    /// Stop after this many steps (overrides epochs); 0 trains nothing.
    pub steps: Option<usize>,
    /// Samples per micro-batch (the training graph's batch).
    pub batch: usize,
    /// Micro-batches per optimizer step (gradients averaged).
    pub accumulate: usize,
    pub lr: f32,
    pub optimizer: Optimizer,
    pub momentum: f32,
    pub weight_decay: f32,
    pub schedule: Schedule,
    pub warmup: usize,
    /// Scale the gradients down to this global L2 norm when they exceed it.
    pub clip_grad: Option<f32>,
    /// Evaluate and write an exponential moving average of the weights with this decay.
    pub ema: Option<f32>,
    /// Roll back and halve the learning rate when the running loss exceeds this many times
    /// its lowest ([`guard`]); None: a non-finite loss stops the run.
    pub divergence_ratio: Option<f32>,
    /// The targets of the CTC loss (`loss.ctc_weight`).
    pub ctc_target: CtcTarget,
    pub train: TrainSet,
    pub bn: BnMode,
    pub loss: LossSpec,
    /// Match every rewritten block's output to the teacher's (sets loss.features).
    pub auto_features: bool,
    /// Cross-entropy on the labels (with `loss.label_weight`).
    pub labels: LabelUse,
    pub augment: batch::Augment,
    /// Train on random crops (height, width) of the samples.
    pub crop: Option<(usize, usize)>,
    /// What the held-out evaluation measures (None: top-1 for `[N, C]` outputs, else top anchors).
    pub eval_kind: Option<Kind>,
    /// Decoding of the held-out predictions (dictionary, thresholds).
    #[serde(skip)]
    pub decode: Params,
    pub seed: u64,
    pub threads: usize,
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: usize,
    pub resume: Option<PathBuf>,
    /// Pause (checkpoint saved, `Summary::paused`) once this many steps are done.
    pub stop_after: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            epochs: 20,
            steps: None,
            batch: 32,
            accumulate: 1,
            lr: 2e-3,
            optimizer: Optimizer::Adamw,
            momentum: 0.9,
            weight_decay: 1e-4,
            schedule: Schedule::Cosine,
            warmup: 50,
            clip_grad: None,
            ema: None,
            divergence_ratio: Some(10.0),
            ctc_target: CtcTarget::Auto,
            train: TrainSet::Downstream,
            bn: BnMode::Train,
            loss: LossSpec {
                distill: Distill::Kl,
                temperature: 4.0,
                emphasis: Emphasis::default(),
                distill_weight: 1.0,
                overrides: vec![],
                outputs: vec![],
                label_weight: 1.0,
                feature_weight: 1.0,
                features: vec![],
                ctc_weight: 0.0,
            },
            auto_features: true,
            labels: LabelUse::Auto,
            augment: batch::Augment::ON,
            crop: None,
            eval_kind: None,
            decode: Params::default(),
            seed: 0,
            threads: 0,
            checkpoint: None,
            checkpoint_every: 500,
            resume: None,
            stop_after: None,
        }
    }
}

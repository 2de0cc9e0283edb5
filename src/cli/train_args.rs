//! The arguments of `fusec eval` and `fusec finetune`, and their value parsers.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model to evaluate.
    pub model: PathBuf,
    /// A folder of images (class subfolders give labels) or a TSV/CSV list (file[, label | text]; boxes for textdet).
    #[arg(long)]
    pub data: PathBuf,
    /// What the outputs mean: rot180 (each image as is = class 0 and rotated = class 1),
    /// ctc (text lines, a `text` column), textdet (pages, a box list file, x0, y0, x1, y1).
    #[arg(long, value_parser = super::choice::<fusec::tasks::Task>())]
    pub task: Option<fusec::tasks::Task>,
    #[command(flatten)]
    pub pre: PreprocessArgs,
    #[command(flatten)]
    pub decode: TaskArgs,
    /// Report agreement with this model (top-1, text read, or boxes found).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Samples per run (ctc, textdet).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Also write the preprocessed inputs as `x` [N, C, H, W] to this `.npz`
    /// (calibration data for `scripts/quantize.py --calib`).
    #[arg(long, value_name = "FILE.npz")]
    pub save_inputs: Option<PathBuf>,
}

/// Decoding of task outputs (ctc, textdet).
#[derive(Args, Debug)]
pub struct TaskArgs {
    /// CTC dictionary, one character per line [default: the model's `character` metadata].
    #[arg(long)]
    pub dict: Option<PathBuf>,
    /// textdet: probability above which a pixel is text.
    #[arg(long, default_value_t = 0.3)]
    pub thresh: f32,
    /// textdet: DB unclip ratio (how far a region's box grows).
    #[arg(long, default_value_t = 1.5)]
    pub unclip: f32,
    /// textdet: IoU at which a box matches a ground-truth (or teacher) box.
    #[arg(long, default_value_t = 0.5)]
    pub iou: f32,
}

impl TaskArgs {
    pub fn params(&self, kind: fusec::tasks::Kind, model: &fusec::onnx::ModelProto) -> fusec::Result<fusec::tasks::Params> {
        use fusec::Error;
        if !(self.thresh > 0.0 && self.thresh < 1.0) {
            return Err(Error::option("--thresh", format!("must be between 0 and 1, got {}", self.thresh)));
        }
        if !(self.iou > 0.0 && self.iou <= 1.0) {
            return Err(Error::option("--iou", format!("must be in (0, 1], got {}", self.iou)));
        }
        if !(self.unclip >= 0.0 && self.unclip.is_finite()) {
            return Err(Error::option("--unclip", format!("must be a non-negative number, got {}", self.unclip)));
        }
        let dict = if kind == fusec::tasks::Kind::Ctc { fusec::tasks::dictionary(model, self.dict.as_deref())? } else { vec![] };
        Ok(fusec::tasks::Params { dict, thresh: self.thresh, unclip: self.unclip, iou: self.iou, ..Default::default() })
    }
}

/// Image preprocessing: a preset or TOML file, with flags that override single fields.
#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// Preprocessing: ppocr-cls, ppocr-rec, ppocr-det, imagenet, picodet-layout, or a TOML file (height, width, resize,
    /// scale, mean, std, bgr) [default: ppocr-rec for --task ctc, ppocr-det for textdet, else imagenet].
    #[arg(long)]
    pub preprocess: Option<String>,
    /// Input size HxW (overrides the preset).
    #[arg(long, value_name = "HxW")]
    pub size: Option<String>,
    /// Resizing: pad-right (keep aspect ratio, pad), stretch, center-crop (overrides the preset).
    #[arg(long, value_parser = super::choice::<fusec::tasks::data::Resize>())]
    pub resize: Option<fusec::tasks::data::Resize>,
    /// Pixel scale applied first, e.g. 0.00392 for 1/255 (overrides the preset).
    #[arg(long)]
    pub scale: Option<f32>,
    /// Per-channel mean R,G,B after scaling (overrides the preset).
    #[arg(long, value_name = "R,G,B")]
    pub mean: Option<String>,
    /// Per-channel std R,G,B (overrides the preset).
    #[arg(long, value_name = "R,G,B")]
    pub std: Option<String>,
    /// Feed channels as BGR.
    #[arg(long)]
    pub bgr: bool,
}

impl PreprocessArgs {
    pub fn resolve(&self, task: Option<fusec::tasks::Task>) -> fusec::Result<fusec::tasks::data::Preprocess> {
        use fusec::tasks::Task;
        use fusec::Error;
        let default = match task {
            Some(Task::Ctc) => "ppocr-rec",
            Some(Task::Textdet) => "ppocr-det",
            Some(Task::Layout) => "picodet-layout",
            _ => "imagenet",
        };
        let mut p = fusec::tasks::data::Preprocess::preset(self.preprocess.as_deref().unwrap_or(default))?;
        if let Some(s) = &self.size {
            let (h, w) = s
                .split_once(['x', 'X'])
                .and_then(|(h, w)| Some((h.trim().parse::<u32>().ok()?, w.trim().parse::<u32>().ok()?)))
                .filter(|&(h, w)| (1..=fusec::tasks::data::MAX_SIDE).contains(&h) && (1..=fusec::tasks::data::MAX_SIDE).contains(&w))
                .ok_or_else(|| Error::option("--size", format!("'{s}' is not HxW (e.g. 48x192)")))?;
            p.height = h;
            p.width = w;
        }
        if let Some(r) = self.resize {
            p.resize = r;
        }
        if let Some(v) = self.scale {
            p.scale = v;
        }
        let triple = |opt: &str, v: &str| -> fusec::Result<[f32; 3]> {
            let parts: Vec<f32> = v.split(',').map(|x| x.trim().parse::<f32>()).collect::<std::result::Result<_, _>>().map_err(|_| Error::option(opt, format!("'{v}' is not three numbers")))?;
            <[f32; 3]>::try_from(parts).map_err(|_| Error::option(opt, format!("'{v}' is not three numbers R,G,B")))
        };
        if let Some(m) = &self.mean {
            p.mean = triple("--mean", m)?;
        }
        if let Some(sd) = &self.std {
            p.std = triple("--std", sd)?;
            if p.std.iter().any(|&v| v == 0.0) {
                return Err(Error::option("--std", "must not be 0"));
            }
        }
        p.bgr |= self.bgr;
        // --scale and the rest: the same bounds as a TOML's values
        p.check().map_err(|e| Error::option("--preprocess", e))?;
        Ok(p)
    }
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The converted model to train (the student).
    pub model: PathBuf,
    /// The settings to start from: a recipe of `recipes/` (classify, ppocr-rec, ppocr-det, layout) or a
    /// .toml file [default: the --task's: rot180 → classify, ctc → ppocr-rec, textdet → ppocr-det].
    /// Options given on the command line win over the recipe's.
    #[arg(long, value_name = "NAME|FILE.toml")]
    pub recipe: Option<String>,
    /// Change one of the recipe's options (repeatable): --set ema=0.95, --set no-augment=false.
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the resolved recipe (with --set applied) and exit.
    #[arg(long)]
    pub print_recipe: bool,
    /// The original model to distill from.
    #[arg(long)]
    pub teacher: PathBuf,
    /// Training inputs: image folder, TSV/CSV list, or .npy/.npz arrays (x[, y]).
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out data, evaluated after each epoch (against its ground truth and the teacher).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// What the data is: rot180 (labels derived: as is = class 0, rotated = class 1), ctc (text
    /// lines), textdet (pages with boxes), layout (pages); sets the held-out metric and the
    /// default preprocessing.
    #[arg(long, value_parser = super::choice::<fusec::tasks::Task>())]
    pub task: Option<fusec::tasks::Task>,
    #[command(flatten)]
    pub pre: PreprocessArgs,
    #[command(flatten)]
    pub decode: TaskArgs,
    /// Use only the first N training images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output model [default: <model>.tuned.onnx].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Passes over the training data.
    #[arg(long, default_value_t = fusec::train::Options::default().epochs)]
    pub epochs: usize,
    /// Train for exactly this many steps (overrides --epochs); 0 trains nothing and writes the
    /// model as given (with --calibrate-maps: calibrates a model trained before).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Samples per step (the training graph is built for this batch size; a last partial batch is skipped).
    #[arg(long, default_value_t = fusec::train::Options::default().batch)]
    pub batch: usize,
    /// Run each step as N micro-batches of --batch samples and average their gradients.
    #[arg(long, hide = true, default_value_t = fusec::train::Options::default().accumulate)]
    pub accumulate: usize,
    /// Train on random HxW crops of the samples (pages of a text detector).
    #[arg(long, hide = true, value_name = "HxW")]
    pub crop: Option<String>,
    /// Peak learning rate [default: 2e-3; 5e-4 for --task ctc].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Optimizer: adamw, or sgd (with --momentum).
    #[arg(long, hide = true, value_parser = super::choice::<fusec::train::Optimizer>(), default_value_t = fusec::train::Options::default().optimizer)]
    pub optimizer: fusec::train::Optimizer,
    /// SGD momentum.
    #[arg(long, hide = true, default_value_t = fusec::train::Options::default().momentum)]
    pub momentum: f32,
    /// Decoupled weight decay (AdamW) or L2 (SGD), not applied to biases and BN parameters.
    #[arg(long, hide = true, default_value_t = fusec::train::Options::default().weight_decay)]
    pub weight_decay: f32,
    /// Learning-rate schedule after the warm-up.
    #[arg(long, hide = true, value_parser = super::choice::<fusec::train::Schedule>(), default_value_t = fusec::train::Options::default().schedule)]
    pub schedule: fusec::train::Schedule,
    /// Linear warm-up steps.
    #[arg(long, hide = true, default_value_t = fusec::train::Options::default().warmup)]
    pub warmup: usize,
    /// Scale the gradients down to this global L2 norm when they exceed it (the curve's
    /// grad_norm column shows their norms) [default: no clipping].
    #[arg(long, hide = true, value_name = "NORM", value_parser = positive)]
    pub clip_grad: Option<f32>,
    /// Keep an exponential moving average of the weights with this decay (0.999: about the
    /// last thousand steps) and evaluate and write it instead of the last step's weights;
    /// it smooths the epoch-to-epoch swings of dense outputs [default: the last weights].
    #[arg(long, hide = true, value_name = "DECAY", value_parser = decay)]
    pub ema: Option<f32>,
    /// When the running loss climbs above R × the lowest it has been (or becomes NaN), go
    /// back to the last healthy epoch end and halve the learning rate (at most 4 times);
    /// 0 turns the guard off, and a NaN loss then stops the run.
    #[arg(long, hide = true, value_name = "R", default_value_t = 10.0, value_parser = divergence_ratio)]
    pub divergence_ratio: f32,
    /// Which parameters to train.
    #[arg(long, hide = true, value_parser = super::choice::<fusec::train::TrainSet>(), default_value_t = fusec::train::Options::default().train)]
    pub train: fusec::train::TrainSet,
    /// BatchNormalization: batch statistics with running averages (train) or stored statistics (frozen).
    #[arg(long, hide = true, value_parser = super::choice::<fusec::train::BnMode>(), default_value_t = fusec::train::Options::default().bn)]
    pub bn: fusec::train::BnMode,
    /// Distillation loss on class scores (Softmax outputs or [N, C] logits).
    #[arg(long, hide = true, value_parser = super::choice::<fusec::train::Distill>(), default_value_t = fusec::train::Options::default().loss.distill)]
    pub distill: fusec::train::Distill,
    /// The loss on one output, NAME=KIND[:ARG][@WEIGHT] with KIND kl (ARG: class axis), mse, bce, nse
    /// or none (ARG: weight); NAME may be a kind of output, [scores], [map] (a Sigmoid probability
    /// map) or [other]; repeat for several outputs; the last for an output wins [default: chosen
    /// per output, see the summary].
    #[arg(long, hide = true, value_name = "NAME=KIND")]
    pub output_loss: Vec<fusec::train::OutputLossArg>,
    /// Softmax temperature of the KL distillation [default: 4; 1 for --task ctc, whose
    /// thousands of classes would put most of the softened teacher's mass in the tail].
    #[arg(long, hide = true)]
    pub temperature: Option<f32>,
    /// Extra weight β of the teacher's edges in probability maps (BCE): each pixel counts
    /// 1 + β·4t(1 − t), so a thresholded student map keeps the teacher's box sizes [default: 0].
    #[arg(long, hide = true, default_value_t = 0.0, value_parser = non_negative)]
    pub edge_weight: f32,
    /// Extra weight β of short text in probability maps (BCE): each pixel inside a teacher
    /// box (its map thresholded at --thresh and grown as the decoder does) of area A counts
    /// 1 + β·√(Ā / A), Ā the batch's mean box area, so a short word weighs about as much as a
    /// long line [default: 0].
    #[arg(long, hide = true, default_value_t = 0.0, value_parser = non_negative)]
    pub region_weight: f32,
    /// Extra weight β of the steps where the teacher reads a character in sequence outputs
    /// (KL over [N, T, C], class 0 the CTC blank): each step counts 1 + β·(1 − blank
    /// probability), against students that drop single letters [default: 0].
    #[arg(long, hide = true, default_value_t = 0.0, value_parser = non_negative)]
    pub peak_weight: f32,
    /// Extra weight β of the positions where the student's best class is not the teacher's
    /// (KL class scores): each counts 1 + β, e.g. a recognizer's dropped letter or the blank
    /// it misses between a double letter [default: 0].
    #[arg(long, hide = true, default_value_t = 0.0, value_parser = non_negative)]
    pub miss_weight: f32,
    /// Weight of a CTC loss on a recognizer's `[N, T, C]` class scores, beside the
    /// distillation: it scores whole readings, so a merged double letter (a missing blank
    /// between two steps of the same class) costs what a wrong letter costs. Computed on the
    /// host from a forward run each step [default: 0, off].
    #[arg(long, hide = true, default_value_t = 0.0, value_parser = non_negative)]
    pub ctc_weight: f32,
    /// The CTC targets: the data's `text` column, or the teacher's greedy reading (no labels
    /// needed); auto: the text when every sample has one.
    #[arg(long, hide = true, value_parser = super::choice::<fusec::train::CtcTarget>(), default_value = "auto")]
    pub ctc_target: fusec::train::CtcTarget,
    /// How much of the probability maps' BCE target is the teacher's map thresholded at
    /// --thresh (0: its soft map; 1: its regions as 0/1): the student learns the regions'
    /// edges rather than the soft slope around them [default: 0].
    #[arg(long, hide = true, default_value_t = 0.0, value_parser = unit)]
    pub hard_maps: f32,
    /// After training, shift each probability map's logits so that on the first 32 training
    /// samples as many of its pixels as of the teacher's exceed --thresh, then blend them with
    /// their horizontal 3-pixel minimum (or maximum) so that the boxes matched to the teacher's
    /// come out as wide as the teacher's (boxes of the teacher's size from a map slightly wider
    /// or narrower; adds an Add, and for the blend a 1x3 MaxPool and four elementwise ops,
    /// before its Sigmoid). With --steps 0: calibrate a model trained before.
    #[arg(long, hide = true)]
    pub calibrate_maps: bool,
    /// Weight of the cross-entropy on labels; giving it turns labels on (0: off).
    #[arg(long, hide = true)]
    pub label_weight: Option<f32>,
    /// Train on the data's labels too (cross-entropy, weight 1) [default: when every sample has a
    /// label and the teacher agrees with at least 80% of them, i.e. they mean the model's classes].
    #[arg(long, hide = true, conflicts_with = "no_labels")]
    pub labels: bool,
    /// Distillation only, even where labels exist.
    #[arg(long, hide = true)]
    pub no_labels: bool,
    /// Weight of matching each rewritten block's output to the teacher's (0: off).
    #[arg(long, hide = true, default_value_t = 1.0)]
    pub feature_weight: f32,
    /// Random shifts, contrast/brightness jitter and noise on the training inputs (the default).
    #[arg(long, hide = true, conflicts_with = "no_augment")]
    pub augment: bool,
    /// Train on the inputs as they are.
    #[arg(long, hide = true)]
    pub no_augment: bool,
    /// Also stretch the training inputs horizontally by a random factor in LO:HI (text in
    /// narrower or wider fonts; anchored at the left edge), e.g. 0.8:1.2 [default: none].
    #[arg(long, hide = true, value_name = "LO:HI", value_parser = parse_range, conflicts_with = "no_augment")]
    pub augment_xscale: Option<(f32, f32)>,
    /// Also zoom the training inputs by a random factor in LO:HI on both axes (text of other
    /// sizes; about the top-left corner), e.g. 0.8:1.25 [default: none].
    #[arg(long, hide = true, value_name = "LO:HI", value_parser = parse_range, conflicts_with = "no_augment")]
    pub augment_scale: Option<(f32, f32)>,
    /// Also vary the stroke weight: a third of the training inputs get dark strokes one pixel
    /// wider, a third one pixel thinner (fonts of other weights).
    #[arg(long, hide = true, conflicts_with = "no_augment")]
    pub augment_stroke: bool,
    /// Also cut half the training inputs into vertical strips 8-48 pixels wide and shuffle them
    /// (letter sequences and glyph pieces that the data's words do not have: text in other words).
    #[arg(long, hide = true, conflicts_with = "no_augment")]
    pub augment_strips: bool,
    /// Also distort the training inputs elastically: a smooth random displacement field of up to
    /// PX pixels (independent values every 8 pixels) reshapes the glyphs as other fonts do, e.g. 1.5.
    #[arg(long, hide = true, value_name = "PX", conflicts_with = "no_augment", value_parser = non_negative)]
    pub augment_elastic: Option<f32>,
    /// Seed of the shuffling and the augmentation (runs are deterministic given it).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// ONNX Runtime intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Checkpoint file [default: <output>.ckpt.npz].
    #[arg(long, hide = true)]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long, hide = true, default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Continue from a checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many steps with a checkpoint, to continue later with --resume (time-boxed jobs).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// Loss curve CSV (an SVG plot is written beside it) [default: <output>.curve.csv].
    #[arg(long, hide = true)]
    pub curve: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `LO:HI`, two positive factors with LO <= HI.
fn parse_range(s: &str) -> std::result::Result<(f32, f32), String> {
    let (lo, hi) = s.split_once(':').ok_or_else(|| format!("expected LO:HI, got '{s}'"))?;
    let num = |t: &str| t.trim().parse::<f32>().map_err(|_| format!("'{t}' is not a number"));
    let (lo, hi) = (num(lo)?, num(hi)?);
    if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
        return Err(format!("expected 0 < LO <= HI, got {lo}:{hi}"));
    }
    Ok((lo, hi))
}

/// A finite number.
fn finite(s: &str) -> Option<f32> {
    s.trim().parse::<f32>().ok().filter(|v| v.is_finite())
}

/// A finite number >= 0.
fn non_negative(s: &str) -> std::result::Result<f32, String> {
    finite(s).filter(|&v| v >= 0.0).ok_or_else(|| format!("expected a number >= 0, got '{s}'"))
}

/// 0 (off) or a number above 1.
fn divergence_ratio(s: &str) -> std::result::Result<f32, String> {
    finite(s).filter(|&v| v == 0.0 || v > 1.0).ok_or_else(|| format!("expected 0 (off) or a number > 1, got '{s}'"))
}

/// A number strictly between 0 and 1.
fn decay(s: &str) -> std::result::Result<f32, String> {
    finite(s).filter(|&v| v > 0.0 && v < 1.0).ok_or_else(|| format!("expected a number between 0 and 1 (exclusive), got '{s}'"))
}

/// A number in [0, 1].
fn unit(s: &str) -> std::result::Result<f32, String> {
    finite(s).filter(|&v| (0.0..=1.0).contains(&v)).ok_or_else(|| format!("expected a number between 0 and 1, got '{s}'"))
}

/// A finite number > 0.
fn positive(s: &str) -> std::result::Result<f32, String> {
    finite(s).filter(|&v| v > 0.0).ok_or_else(|| format!("expected a number > 0, got '{s}'"))
}

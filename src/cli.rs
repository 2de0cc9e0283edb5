//! Command-line interface. The only module that uses `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::convert::{self, ConvertOptions, ConvertSummary, InputShape};
use crate::passes::fuse_depthwise::{Init, Variant};
use crate::passes::LayerSelection;
use crate::stats::human;

#[derive(Parser, Debug)]
#[command(
    name = "fusec",
    version,
    about = "Rewrite depthwise convolutions of ONNX models into FuSe (fully separable) blocks.",
    after_help = "Examples:\n  fusec inspect model.onnx\n  fusec convert model.onnx --variant half\n  fusec convert model.onnx --variant full --layers 0-5 -o model.full.onnx"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
    /// More logging (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Rewrite depthwise convs into FuSe blocks and write a new model.
    #[command(after_help = "Examples:\n  fusec convert mobilenet.onnx --variant half\n      writes mobilenet.fuse-half.onnx beside the input\n  fusec convert mobilenet.onnx --variant full --init sum -o out.onnx\n  fusec convert mnv2.onnx --variant half --layers paper-50-mobilenet-v2\n  fusec convert model.onnx --variant half --layers 0,2,'*block3*' --skip 2\n\nLayer indices count depthwise convs in topological order; `fusec inspect` lists them.")]
    Convert(ConvertArgs),
    /// Show inputs, outputs, ops and every depthwise conv (convertible or not, and why).
    #[command(after_help = "Examples:\n  fusec inspect model.onnx\n  fusec inspect model.onnx --json | jq '.depthwise[] | select(.convertible)'")]
    Inspect(InspectArgs),
    /// Cost every layer on a modeled systolic array (the paper's analytical model).
    #[command(after_help = "Examples:\n  fusec report model.fuse-half.onnx --baseline model.onnx --array 64x64 --hw fuse\n  fusec report model.onnx --format json | jq .total_cycles")]
    Report(ReportArgs),
    /// Accuracy of a classifier on a dataset, and agreement with a teacher model.
    #[command(after_help = "Examples:\n  fusec eval cls.onnx --data textlines/labels.tsv --task rot180 --preprocess ppocr-cls\n  fusec eval cls.fuse-half.onnx --data textlines/ --task rot180 --preprocess ppocr-cls --teacher cls.onnx --json\n  fusec eval net.onnx --data imagenet-val/ --preprocess imagenet   (class subfolders)")]
    Eval(EvalArgs),
    /// Fine-tune a converted model by distillation from the original (and labels if given).
    #[command(after_help = "Examples:\n  fusec finetune cls.fuse-half.onnx --teacher cls.onnx --data train.tsv --task rot180 --preprocess ppocr-cls \\\n      --eval-data test.tsv --epochs 10 -o cls.tuned.onnx\n  fusec finetune s.onnx --teacher t.onnx --data imgs/ --label-weight 0.5 --steps 2000 --optimizer sgd --lr 0.01\n  fusec finetune s.onnx --teacher t.onnx --data x.npz --resume s.tuned.onnx.ckpt.npz -o s.tuned.onnx\n\nThe training graph (forward, loss, backward from standard ONNX ops) runs in ONNX Runtime, loaded\nfrom the library scripts/setup.sh installs. Ctrl-C saves a checkpoint; --resume continues from it.")]
    Finetune(FinetuneArgs),
    /// Simulate a model cycle by cycle: dataflows, SRAM buffers, DRAM bandwidth, a vector unit.
    #[command(after_help = "Examples:\n  fusec simulate mnv2.onnx --array 64x64 --dataflow ws --sram-kb 256 --dram-bw 16\n  fusec simulate mnv2.fuse-half.onnx --baseline mnv2.onnx --hw fuse --format json\n  fusec simulate --topology layers.csv --config scalesim.cfg     (SCALE-Sim's inputs and conventions)\n  fusec simulate mnv2.onnx --export-topology mnv2.csv --scalesim-compat\n\nDepthwise convs are C single-channel GEMMs back to back; 1xK / Kx1 ones run in the FuSe\nbroadcast dataflow on --hw fuse. --scalesim-compat uses SCALE-Sim's conventions (no padding,\ncycles counted to the last cycle index per SCALE-Sim layer) for cross-checks.")]
    Simulate(SimulateArgs),
    /// Simulate every combination of array size, hardware, dataflow, SRAM and model variant.
    #[command(after_help = "Examples:\n  fusec sweep mnv2.onnx --arrays 8x8,16x16,32x32,64x64,128x128 --hw systolic,fuse --variants baseline,half,full -o sweep.csv\n  fusec sweep mnv2.onnx --arrays 32x32,64x64 --dataflow os,ws,is --sram-kb 64,256,none --format json -o sweep.json\n\nRuns on all cores; per-layer results are shared between configurations. An SVG plot\n(latency against PEs, Pareto front) is written beside -o.")]
    Sweep(SweepArgs),
    /// Write a reference architecture of the FuSeConv paper as ONNX.
    #[command(after_help = "Examples:\n  fusec zoo mobilenet-v2 -o mnv2.onnx\n  fusec zoo --paper-table")]
    Zoo(ZooArgs),
}

#[derive(Args, Debug)]
pub struct HwArgs {
    /// Array size ROWSxCOLS [default: 64x64].
    #[arg(long)]
    pub array: Option<String>,
    /// Hardware the model runs on [default: fuse]; a baseline always runs on `systolic`.
    #[arg(long, value_enum)]
    pub hw: Option<crate::hw::HwKind>,
    /// Clock for converting cycles to time [default: 1000].
    #[arg(long)]
    pub freq_mhz: Option<f64>,
    /// A preset (paper-64x64, paper-16x16, paper-32x32, paper-128x128, paper-256x256) or a
    /// TOML file with rows, cols, kind, freq_mhz; --array/--hw/--freq-mhz override it.
    #[arg(long)]
    pub hw_config: Option<String>,
}

impl HwArgs {
    pub fn config(&self) -> crate::Result<crate::hw::ArrayConfig> {
        use crate::hw::{ArrayConfig, HwKind};
        let base = match &self.hw_config {
            Some(c) => ArrayConfig::load(c)?,
            None => ArrayConfig::new(64, 64, HwKind::Fuse, 1000.0)?,
        };
        let (rows, cols) = match &self.array {
            Some(a) => ArrayConfig::parse_size(a)?,
            None => (base.rows, base.cols),
        };
        ArrayConfig::new(rows, cols, self.hw.unwrap_or(base.kind), self.freq_mhz.unwrap_or(base.freq_mhz))
    }
}

/// The simulator's hardware beyond the array (used with --engine sim, `simulate`, `sweep`).
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Dataflow of the array [default: os].
    #[arg(long, value_enum)]
    pub dataflow: Option<crate::sim::Dataflow>,
    /// SRAM of each buffer (ifmap, filter, ofmap) in KB; sets a memory limit.
    #[arg(long)]
    pub sram_kb: Option<f64>,
    /// DRAM bandwidth of each buffer in bytes per cycle [default: 16 when a memory limit is set].
    #[arg(long)]
    pub dram_bw: Option<f64>,
    /// Bytes per element [default: 1].
    #[arg(long)]
    pub word_bytes: Option<u64>,
    /// No memory limit (ignore the configuration's SRAM sizes).
    #[arg(long)]
    pub no_memory: bool,
    /// Lanes of the vector unit.
    #[arg(long)]
    pub vector_lanes: Option<u64>,
    /// SCALE-Sim's conventions: inputs unpadded, each SCALE-Sim layer counted to its last cycle index.
    #[arg(long)]
    pub scalesim_compat: bool,
}

impl SimArgs {
    pub fn convention(&self) -> crate::sim::Convention {
        if self.scalesim_compat { crate::sim::Convention::SCALESIM } else { crate::sim::Convention::FUSEC }
    }

    /// The simulated hardware: --hw-config (a preset, TOML or SCALE-Sim .cfg) or
    /// the defaults, with every option given on the command line applied.
    pub fn config(&self, hw: &HwArgs) -> crate::Result<crate::sim::SimConfig> {
        use crate::sim::config::Memory;
        let mut c = match &hw.hw_config {
            Some(p) => crate::sim::SimConfig::load(p)?,
            None => crate::sim::SimConfig::new(64, 64, crate::hw::HwKind::Fuse, crate::sim::Dataflow::Os)?,
        };
        if let Some(a) = &hw.array {
            (c.rows, c.cols) = crate::hw::ArrayConfig::parse_size(a)?;
        }
        if let Some(k) = hw.hw {
            c.kind = k;
        }
        if let Some(f) = hw.freq_mhz {
            c.freq_mhz = f;
        }
        if let Some(d) = self.dataflow {
            c.dataflow = d;
        }
        if self.sram_kb.is_some() || self.dram_bw.is_some() || self.word_bytes.is_some() {
            let base = c.memory.clone().unwrap_or(Memory { ifmap_kb: 256.0, filter_kb: 256.0, ofmap_kb: 256.0, word_bytes: 1, dram_bytes_per_cycle: 16.0 });
            let kb = self.sram_kb;
            c.memory = Some(Memory {
                ifmap_kb: kb.unwrap_or(base.ifmap_kb),
                filter_kb: kb.unwrap_or(base.filter_kb),
                ofmap_kb: kb.unwrap_or(base.ofmap_kb),
                word_bytes: self.word_bytes.unwrap_or(base.word_bytes),
                dram_bytes_per_cycle: self.dram_bw.unwrap_or(base.dram_bytes_per_cycle),
            });
        }
        if self.no_memory {
            c.memory = None;
        }
        if let Some(l) = self.vector_lanes {
            c.vector.lanes = l;
        }
        c.validated()
    }
}

/// Which latency model costs the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// The paper's closed-form model (compute only).
    Analytical,
    /// The cycle-level simulator (memory, vector unit, timeline).
    Sim,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Model to simulate (or --topology).
    #[arg(required_unless_present = "topology")]
    pub model: Option<PathBuf>,
    /// A SCALE-Sim topology CSV to simulate instead of a model (SCALE-Sim's conventions).
    #[arg(long, conflicts_with = "model")]
    pub topology: Option<PathBuf>,
    /// A SCALE-Sim .cfg file (same as --hw-config FILE.cfg).
    #[arg(long)]
    pub config: Option<String>,
    /// Original model, simulated on the same hardware as a plain systolic array, for the speedup.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    #[command(flatten)]
    pub hw: HwArgs,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Batch size for a symbolic batch dimension.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Concrete input shape (`1x3x224x224` or `NAME=1x3x224x224`).
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Also write the model's array layers as a SCALE-Sim topology CSV.
    #[arg(long)]
    pub export_topology: Option<PathBuf>,
    /// Fail (exit 1) when the speedup over --baseline is below this.
    #[arg(long)]
    pub min_speedup: Option<f64>,
    /// Fail (exit 1) when the model takes more cycles than this.
    #[arg(long)]
    pub max_cycles: Option<u64>,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Model to sweep (its variants are made in memory with --variants).
    pub model: PathBuf,
    /// Array sizes.
    #[arg(long, value_delimiter = ',', default_value = "8x8,16x16,32x32,64x64,128x128,256x256")]
    pub arrays: Vec<String>,
    /// Hardware kinds.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "systolic,fuse")]
    pub hw: Vec<crate::hw::HwKind>,
    /// Dataflows.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "os")]
    pub dataflow: Vec<crate::sim::Dataflow>,
    /// SRAM per buffer in KB, or `none` for no memory limit.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    pub sram_kb: Vec<String>,
    /// Model variants: baseline, half, full, or a layer preset run with Half (paper-50-mobilenet-v2, ...).
    #[arg(long, value_delimiter = ',', default_value = "baseline,half,full")]
    pub variants: Vec<String>,
    /// DRAM bandwidth per buffer in bytes per cycle, when SRAM is limited.
    #[arg(long, default_value_t = 16.0)]
    pub dram_bw: f64,
    /// Lanes of the vector unit.
    #[arg(long, default_value_t = 64)]
    pub vector_lanes: u64,
    /// SCALE-Sim's conventions.
    #[arg(long)]
    pub scalesim_compat: bool,
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// csv or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
    pub format: ReportFormat,
    /// Results file (the SVG plot goes beside it); standard output if absent.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Model to cost.
    pub model: PathBuf,
    /// Original model, costed on plain systolic hardware, for the speedup.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    #[command(flatten)]
    pub hw: HwArgs,
    /// Batch size for a symbolic batch dimension.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Concrete input shape (`1x3x224x224` or `NAME=1x3x224x224`), for both models.
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write the report to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Fail (exit 1) when the speedup over --baseline is below this.
    #[arg(long)]
    pub min_speedup: Option<f64>,
    /// Fail (exit 1) when the model takes more cycles than this.
    #[arg(long)]
    pub max_cycles: Option<u64>,
    /// The latency model: the paper's analytical one, or the cycle-level simulator.
    #[arg(long, value_enum, default_value_t = Engine::Analytical)]
    pub engine: Engine,
    #[command(flatten)]
    pub sim: SimArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Md,
    Json,
    Csv,
    Svg,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Classifier to evaluate.
    pub model: PathBuf,
    /// A folder of images (class subfolders give labels) or a TSV/CSV list (file[, label]).
    #[arg(long)]
    pub data: PathBuf,
    /// Derive labels from the images: rot180 gives each image as is (class 0) and rotated (class 1).
    #[arg(long, value_enum)]
    pub task: Option<crate::data::Task>,
    #[command(flatten)]
    pub pre: PreprocessArgs,
    /// Report agreement of top-1 predictions with this model.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Use only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Image preprocessing: a preset or TOML file, with flags that override single fields.
#[derive(Args, Debug)]
pub struct PreprocessArgs {
    /// Preprocessing: ppocr-cls, imagenet, or a TOML file (height, width, resize, scale, mean, std, bgr).
    #[arg(long, default_value = "imagenet")]
    pub preprocess: String,
    /// Input size HxW (overrides the preset).
    #[arg(long, value_name = "HxW")]
    pub size: Option<String>,
    /// Resizing: pad-right (keep aspect ratio, pad), stretch, center-crop (overrides the preset).
    #[arg(long, value_enum)]
    pub resize: Option<crate::data::Resize>,
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
    pub fn resolve(&self) -> crate::Result<crate::data::Preprocess> {
        use crate::Error;
        let mut p = crate::data::Preprocess::preset(&self.preprocess)?;
        if let Some(s) = &self.size {
            let (h, w) = s
                .split_once(['x', 'X'])
                .and_then(|(h, w)| Some((h.trim().parse::<u32>().ok()?, w.trim().parse::<u32>().ok()?)))
                .filter(|&(h, w)| h > 0 && w > 0 && h <= 16384 && w <= 16384)
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
        let triple = |opt: &str, v: &str| -> crate::Result<[f32; 3]> {
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
        Ok(p)
    }
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The converted model to train (the student).
    pub model: PathBuf,
    /// The original model to distill from.
    #[arg(long)]
    pub teacher: PathBuf,
    /// Training inputs: image folder, TSV/CSV list, or .npy/.npz arrays (x[, y]).
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out data for accuracy after each epoch (needs labels or --task).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Derive labels from the images (rot180: as is = class 0, rotated = class 1).
    #[arg(long, value_enum)]
    pub task: Option<crate::data::Task>,
    #[command(flatten)]
    pub pre: PreprocessArgs,
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
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Train for exactly this many steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Samples per step (the training graph is built for this batch size; a last partial batch is skipped).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f32,
    /// Optimizer: adamw, or sgd (with --momentum).
    #[arg(long, value_enum, default_value = "adamw")]
    pub optimizer: crate::train::Optimizer,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Decoupled weight decay (AdamW) or L2 (SGD), not applied to biases and BN parameters.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,
    /// Learning-rate schedule after the warm-up.
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: crate::train::Schedule,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
    /// Which parameters to train.
    #[arg(long, value_enum, default_value = "all")]
    pub train: crate::train::TrainSet,
    /// BatchNormalization: batch statistics with running averages (train) or stored statistics (frozen).
    #[arg(long, value_enum, default_value = "train")]
    pub bn: crate::train::BnMode,
    /// Distillation loss on the logits.
    #[arg(long, value_enum, default_value = "kl")]
    pub distill: crate::train::Distill,
    /// Softmax temperature of the KL distillation.
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    /// Weight of the cross-entropy on labels (0: no labels needed).
    #[arg(long, default_value_t = 0.0)]
    pub label_weight: f32,
    /// Also train on the data's labels (cross-entropy with weight 1 unless --label-weight says otherwise).
    #[arg(long)]
    pub labels: bool,
    /// Weight of matching each rewritten block's output to the teacher's (0: off).
    #[arg(long, default_value_t = 1.0)]
    pub feature_weight: f32,
    /// Random shifts, contrast/brightness jitter and noise on the training inputs.
    #[arg(long)]
    pub augment: bool,
    /// Seed of the shuffling and the augmentation (runs are deterministic given it).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// ONNX Runtime intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Checkpoint file [default: <output>.ckpt.npz].
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Continue from a checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many steps with a checkpoint, to continue later with --resume (time-boxed jobs).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Loss curve CSV (an SVG plot is written beside it) [default: <output>.curve.csv].
    #[arg(long)]
    pub curve: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ZooArgs {
    /// Network: mobilenet-v1, mobilenet-v2, mnasnet-b1, mobilenet-v3-small, mobilenet-v3-large.
    #[arg(required_unless_present = "paper_table")]
    pub name: Option<String>,
    /// Output path.
    #[arg(short, long, required_unless_present = "paper_table")]
    pub output: Option<PathBuf>,
    /// Seed of the deterministic weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Build all five networks, convert each to Full, Half, 50% Full and 50% Half,
    /// cost them, and print the speedup table next to the paper's.
    #[arg(long, conflicts_with_all = ["name", "output"])]
    pub paper_table: bool,
    /// Array size (square) for --paper-table.
    #[arg(long, default_value_t = 64)]
    pub array: u64,
    /// Print the table as JSON (every model's per-layer costs included).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input ONNX model.
    pub model: PathBuf,
    /// FuSe variant: runs the built-in pipeline passes/half.toml or passes/full.toml.
    #[arg(long, value_enum, required_unless_present = "pipeline")]
    pub variant: Option<Variant>,
    /// Output path (default: MODEL.fuse-VARIANT.onnx beside the input).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Initial 1-D kernels: center, sum (from the K×K kernel) or lsq (fitted on --calib data)
    /// [default: the pipeline's, center for the built-in ones].
    #[arg(long, value_enum)]
    pub init: Option<Init>,
    /// Layers to convert: `all`, a preset from passes/ (e.g. paper-50-mobilenet-v2),
    /// a preset .toml file, or a comma list of indices, ranges (3-7) and name patterns
    /// [default: the pipeline's, all for the built-in ones].
    #[arg(long)]
    pub layers: Option<String>,
    /// Layers to leave alone (same forms as a --layers list).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// A pipeline file ([[pass]] tables) to run instead of the built-in one; --variant,
    /// --init, --layers and --skip, when given, override its fuse_depthwise options.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Also write the model as it is right after this pass (PASS, e.g. fuse_depthwise) to
    /// <output>.after-PASS.onnx.
    #[arg(long, value_name = "PASS")]
    pub dump_after: Option<String>,
    /// Stop after N rewrites (for bisecting).
    #[arg(long)]
    pub max_rewrites: Option<usize>,
    /// Allow writing over an existing file, including the input itself.
    #[arg(long)]
    pub force: bool,
    /// Concrete input shape for shape inference and MAC counts
    /// (`1x3x224x224`, or `NAME=1x3x224x224`); the saved model keeps its own.
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Calibration images for `--init lsq` (folder or TSV/CSV list, as for `fusec eval`).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Use the first N calibration images.
    #[arg(long, default_value_t = 64)]
    pub calib_limit: usize,
    /// Fit each layer on the inputs it sees after the earlier layers were rewritten
    /// (slower; by default every layer is fitted on the original's activations).
    #[arg(long)]
    pub calib_sequential: bool,
    /// Re-estimate BatchNormalization statistics of the result on the calibration images.
    #[arg(long, requires = "calib")]
    pub bn_recalib: bool,
    /// Preprocessing of the calibration images (ppocr-cls, imagenet or a TOML file).
    #[arg(long, default_value = "imagenet")]
    pub preprocess: String,
    /// Derive more calibration samples from each image (rot180: also the image rotated).
    #[arg(long, value_enum)]
    pub task: Option<crate::data::Task>,
    /// Also cost the result against the input on a modeled array and print the speedup.
    #[arg(long)]
    pub report: bool,
    #[command(flatten)]
    pub hw: HwArgs,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// ONNX model.
    pub model: PathBuf,
    /// Concrete input shape (`1x3x224x224` or `NAME=1x3x224x224`).
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Parse arguments, run, map errors to exit codes (1: user error, 2: usage).
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Ctrl-C: let a save in progress clean up, then exit 130. Fine-tuning stops at the end of
    // the current step and saves a checkpoint itself; a second Ctrl-C exits at once.
    let graceful = matches!(cli.cmd, Command::Finetune(_));
    let _ = ctrlc::set_handler(move || {
        if graceful && !crate::onnx::was_interrupted() {
            crate::onnx::interrupt();
            eprintln!("\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit now)");
            return;
        }
        crate::onnx::interrupt();
        eprintln!("interrupted");
        std::thread::sleep(std::time::Duration::from_secs(2));
        std::process::exit(130);
    });
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).format_timestamp(None).try_init();
    match dispatch(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if crate::onnx::was_interrupted() { ExitCode::from(130) } else { ExitCode::from(1) }
        }
    }
}

fn dispatch(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Convert(a) => cmd_convert(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Zoo(a) => cmd_zoo(a),
        Command::Simulate(a) => cmd_simulate(a),
        Command::Sweep(a) => cmd_sweep(a),
        Command::Report(a) => cmd_report(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Finetune(a) => cmd_finetune(a),
    }
}

fn cmd_convert(a: ConvertArgs) -> anyhow::Result<()> {
    let mut opts = ConvertOptions {
        variant: a.variant,
        init: a.init,
        layers: a.layers.as_deref().map(LayerSelection::parse),
        skip: a.skip.clone(),
        pipeline: a.pipeline.clone(),
        max_rewrites: a.max_rewrites,
        input_shape: a.input_shape.clone(),
        calib: a.calib.as_ref().map(|d| convert::Calib { data: d.clone(), preprocess: a.preprocess.clone(), task: a.task, limit: Some(a.calib_limit), sequential: a.calib_sequential, bn_recalib: a.bn_recalib }),
        dump_after: None,
    };
    let variant = convert::fuse_options(&convert::resolve_pipeline(&opts)?)?.variant;
    let output = a.output.clone().unwrap_or_else(|| convert::default_output(&a.model, variant));
    if output.exists() && !a.force {
        anyhow::bail!("{}: output file exists; pass --force to replace it", output.display());
    }
    if let Some(pass) = &a.dump_after {
        let stem = output.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
        opts.dump_after = Some((pass.clone(), output.with_file_name(format!("{stem}.after-{pass}.onnx"))));
    }
    let hw = a.hw.config()?;
    let (_, summary) = convert::convert_file(&a.model, &output, &opts, a.force)?;
    let speed = if a.report {
        let base = load_for_report(&a.model, a.input_shape.as_ref())?;
        let conv = load_for_report(&output, a.input_shape.as_ref())?;
        let r = crate::report::build(&output.display().to_string(), &conv, Some((&a.model.display().to_string(), &base)), &hw, 1)?;
        Some(r)
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&summary).context("serialising summary")?;
        v["output"] = serde_json::Value::String(output.display().to_string());
        if let Some(r) = &speed {
            v["report"] = serde_json::json!({"total_cycles": r.total_cycles, "baseline_cycles": r.baseline.as_ref().map(|b| b.total_cycles), "speedup": r.speedup, "array": r.array});
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_summary(&summary, &output);
        if let Some(r) = &speed {
            println!(
                "  latency on a {}x{} {:?} array: {} → {} cycles, speedup {:.2}x",
                r.array.rows,
                r.array.cols,
                r.array.kind,
                r.baseline.as_ref().map_or(0, |b| b.total_cycles),
                r.total_cycles,
                r.speedup.unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

fn pct(before: u64, after: u64) -> String {
    if before == 0 {
        return String::new();
    }
    format!("({:+.1}%)", (after as f64 - before as f64) / before as f64 * 100.0)
}


pub fn print_summary(s: &ConvertSummary, output: &std::path::Path) {
    println!("fusec convert: {} → {} (FuSe-{}, init {})", s.input, output.display(), s.variant, s.init);
    if s.folded.folded > 0 {
        println!("  shape folding: {} shape computations replaced by constants ({} nodes removed)", s.folded.folded, s.folded.removed_nodes);
    }
    for (pass, r) in &s.passes {
        if pass == "fold_shapes" {
            let n = r.rewrites.len();
            println!("  fold_shapes: {}", if n == 0 { "nothing (more) to fold".to_string() } else { r.rewrites.iter().map(|w| format!("{} {}", w.node, w.detail)).collect::<Vec<_>>().join("; ") });
            continue;
        }
        println!("  {pass}: {} converted, {} left alone", r.rewrites.len(), r.skipped.len());
        for w in &r.rewrites {
            println!("    ✓ [{:>2}] {:<40} {}", w.index, w.node, w.detail);
        }
        for (node, reason) in &r.skipped {
            println!("    · {node:<45} {reason}");
        }
    }
    if !s.fits.is_empty() {
        println!("  relative output error of the 1-D kernels on the calibration data:");
        println!("    {:<40} {:>8} {:>8} {:>8}", "layer", "center", "sum", "lsq");
        for f in &s.fits {
            println!("    {:<40} {:>8.4} {:>8.4} {:>8.4}", f.node, f.center, f.sum, f.lsq);
        }
    }
    println!("  params {:>9} → {:>9} {}", human(s.before.params), human(s.after.params), pct(s.before.params, s.after.params));
    println!("  MACs   {:>9} → {:>9} {}", human(s.before.macs), human(s.after.macs), pct(s.before.macs, s.after.macs));
}

fn cmd_inspect(a: InspectArgs) -> anyhow::Result<()> {
    let (model, mut g) = crate::ir::load_graph(&a.model)?;
    if let Some(s) = &a.input_shape {
        s.apply(&mut g).map_err(|e| e.in_file(&a.model))?;
    }
    let r = crate::inspect::inspect(&model, &g)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("{}  (ir {}, opset {}, {})", r.path, r.ir_version, r.opset, if r.producer.is_empty() { "unknown producer" } else { &r.producer });
    for i in &r.inputs {
        println!("  input  {:<24} {} {}", i.name, i.dtype, i.shape);
    }
    for o in &r.outputs {
        println!("  output {:<24} {} {}", o.name, o.dtype, o.shape);
    }
    let hist: Vec<String> = r.ops.iter().map(|(k, v)| format!("{k}×{v}")).collect();
    println!("  {} nodes: {}", r.nodes, hist.join(" "));
    println!("  params {}, MACs {}", human(r.totals.params), human(r.totals.macs));
    if r.folded.folded > 0 {
        println!("  shape folding: {} shape computations replaced by constants ({} nodes removed)", r.folded.folded, r.folded.removed_nodes);
    }
    if r.unknown_shapes.is_empty() {
        println!("  shapes: every dimension known");
    } else {
        let n: usize = r.unknown_shapes.iter().map(|u| u.values).sum();
        println!("  shapes: {n} values not fully known; inference stopped at:");
        for u in &r.unknown_shapes {
            println!("    '{}' ({}): {}  [{} values, e.g. '{}' {}]", u.node, u.op, u.reason, u.values, u.example, u.example_shape);
        }
    }
    let ok = r.depthwise.iter().filter(|d| d.convertible).count();
    println!("  depthwise convs: {} ({} convertible)", r.depthwise.len(), ok);
    if !r.depthwise.is_empty() {
        println!("  {:>3}  {:<32} {:<18} {:<6} {:<7} {:<14} {:>8} {:>9}  status", "idx", "node", "input", "kernel", "stride", "pads", "params", "MACs");
        for d in &r.depthwise {
            let status = if d.convertible { "convertible".to_string() } else { format!("skip: {}", d.reason.as_deref().unwrap_or("")) };
            println!(
                "  {:>3}  {:<32} {:<18} {:<6} {:<7} {:<14} {:>8} {:>9}  {}",
                d.index,
                d.node,
                d.input_shape,
                d.kernel,
                format!("{:?}", d.stride),
                d.pads,
                human(d.params),
                d.macs.map(human).unwrap_or_else(|| "?".into()),
                status
            );
        }
    }
    Ok(())
}

fn cmd_zoo(a: ZooArgs) -> anyhow::Result<()> {
    if a.paper_table {
        let rows = crate::paper::table(a.array)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print!("{}", crate::paper::render_markdown(&rows));
        }
        return Ok(());
    }
    let (Some(name), Some(output)) = (a.name, a.output) else {
        anyhow::bail!("zoo needs a network name and -o OUTPUT (or --paper-table)");
    };
    let proto = crate::zoo::build(&name, a.seed)?;
    let model = crate::onnx::Model { proto, ..Default::default() };
    crate::onnx::save(&model, &output, &crate::onnx::SaveOptions { overwrite: a.force, ..Default::default() })?;
    println!("wrote {} ({name})", output.display());
    Ok(())
}

/// A model loaded as every command loads it: shape computations folded.
fn load_folded(path: &std::path::Path) -> anyhow::Result<crate::onnx::Model> {
    let mut m = crate::onnx::load(path)?;
    crate::ir::fold_model(&mut m.proto).map_err(|e| e.in_file(path))?;
    Ok(m)
}

fn load_for_report(path: &std::path::Path, shape: Option<&InputShape>) -> anyhow::Result<crate::ir::Graph> {
    let (_, mut g) = crate::ir::load_graph(path)?;
    if let Some(s) = shape {
        s.apply(&mut g).map_err(|e| e.in_file(path))?;
    }
    Ok(g)
}

fn cmd_report(a: ReportArgs) -> anyhow::Result<()> {
    let hw = a.hw.config()?;
    if a.batch == 0 {
        anyhow::bail!("option --batch: must be at least 1");
    }
    if a.min_speedup.is_some() && a.baseline.is_none() {
        anyhow::bail!("option --min-speedup: needs --baseline");
    }
    let g = load_for_report(&a.model, a.input_shape.as_ref())?;
    let base = match &a.baseline {
        Some(b) => Some(load_for_report(b, a.input_shape.as_ref())?),
        None => None,
    };
    let name = a.model.display().to_string();
    let bname = a.baseline.as_ref().map(|b| b.display().to_string()).unwrap_or_default();
    let report = match a.engine {
        Engine::Analytical => crate::report::build(&name, &g, base.as_ref().map(|bg| (bname.as_str(), bg)), &hw, a.batch),
        Engine::Sim => {
            let cfg = a.sim.config(&a.hw)?;
            crate::report::build_sim(&name, &g, base.as_ref().map(|bg| (bname.as_str(), bg)), &cfg, a.sim.convention(), a.batch)
        }
    }
    .map_err(|e| e.in_file(&a.model))?;
    let text = match a.format {
        ReportFormat::Table => report.to_table(),
        ReportFormat::Md => report.to_markdown(),
        ReportFormat::Json => report.to_json()?,
        ReportFormat::Csv => report.to_csv()?,
        ReportFormat::Svg => report.to_svg()?,
    };
    emit(&text, a.output.as_deref())?;
    report.append_github_summary()?;
    if let Err(reason) = crate::report::check_gates(&report, a.min_speedup, a.max_cycles) {
        anyhow::bail!("gate failed: {reason}");
    }
    Ok(())
}

/// Write text to a file (through a temporary and a rename) or standard output.
fn emit(text: &str, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    match output {
        Some(p) => {
            let mut tmp = tempfile::NamedTempFile::new_in(p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")))
                .with_context(|| format!("{}: cannot create the file", p.display()))?;
            std::io::Write::write_all(&mut tmp, text.as_bytes()).with_context(|| format!("{}: write failed", p.display()))?;
            tmp.persist(p).with_context(|| format!("{}: write failed", p.display()))?;
        }
        None => print!("{text}{}", if text.ends_with('\n') { "" } else { "\n" }),
    }
    Ok(())
}

fn cmd_simulate(a: SimulateArgs) -> anyhow::Result<()> {
    use crate::sim::{report::SimReport, Convention};
    if a.batch == 0 {
        anyhow::bail!("option --batch: must be at least 1");
    }
    let mut hw = HwArgs { array: a.hw.array.clone(), hw: a.hw.hw, freq_mhz: a.hw.freq_mhz, hw_config: a.hw.hw_config.clone() };
    if let Some(c) = &a.config {
        hw.hw_config = Some(c.clone());
    }
    if let Some(topo) = &a.topology {
        // SCALE-Sim's inputs: its layers, its conventions, its (systolic) hardware
        let mut cfg = a.sim.config(&hw)?;
        cfg.kind = crate::hw::HwKind::Systolic;
        let rows = crate::sim::workload::read_topology(topo)?;
        let conv = Convention::SCALESIM;
        let mut nodes = vec![];
        let mut clock = 0;
        for r in &rows {
            let work = crate::sim::Work::Array { gemm: r.conv.gemm(), repeat: if r.depthwise { r.conv.channels } else { 1 }, conv: Some(r.conv) };
            let work = match work {
                crate::sim::Work::Array { conv: Some(c), .. } if r.depthwise => {
                    let one = crate::sim::workload::ConvLayer { channels: 1, ..c };
                    crate::sim::Work::Array { gemm: one.gemm(), repeat: c.channels, conv: Some(one) }
                }
                w => w,
            };
            let sim = crate::sim::simulate_work(&work, &cfg, conv);
            nodes.push(crate::sim::NodeSim { name: r.name.clone(), op: if r.depthwise { "DepthwiseConv".into() } else { "Conv".into() }, unit: crate::sim::Unit::Array, work, sim, start: clock, end: clock + sim.total_cycles });
            clock += sim.total_cycles;
        }
        let gs = crate::sim::GraphSim {
            total_cycles: clock,
            array_compute_cycles: nodes.iter().map(|n| n.sim.compute_cycles).sum(),
            array_stall_cycles: nodes.iter().map(|n| n.sim.stall_cycles).sum(),
            vector_cycles: 0,
            macs: nodes.iter().map(|n| n.sim.macs).sum(),
            nodes,
        };
        let report = SimReport::new(&topo.display().to_string(), &gs, &cfg, conv, 1, None);
        return finish_sim(&report, &a);
    }
    let Some(model) = &a.model else { anyhow::bail!("give a model or --topology") };
    let cfg = a.sim.config(&hw)?;
    let conv = a.sim.convention();
    let g = load_for_report(model, a.input_shape.as_ref())?;
    if let Some(p) = &a.export_topology {
        let csv = crate::sim::workload::write_topology(&g, conv.padding, a.batch).map_err(|e| e.in_file(model))?;
        emit(&csv, Some(p))?;
    }
    let s = crate::sim::simulate_graph(&g, &cfg, conv, a.batch, None).map_err(|e| e.in_file(model))?;
    let base = match &a.baseline {
        Some(b) => {
            let bg = load_for_report(b, a.input_shape.as_ref())?;
            let bcfg = crate::sim::SimConfig { kind: crate::hw::HwKind::Systolic, ..cfg.clone() };
            Some((b.display().to_string(), crate::sim::simulate_graph(&bg, &bcfg, conv, a.batch, None).map_err(|e| e.in_file(b))?))
        }
        None => None,
    };
    let report = SimReport::new(&model.display().to_string(), &s, &cfg, conv, a.batch, base.as_ref().map(|(n, b)| (n.as_str(), b)));
    finish_sim(&report, &a)
}

fn finish_sim(report: &crate::sim::report::SimReport, a: &SimulateArgs) -> anyhow::Result<()> {
    let text = match a.format {
        ReportFormat::Table => report.to_table(),
        ReportFormat::Md => report.to_markdown(),
        ReportFormat::Json => report.to_json()?,
        ReportFormat::Csv => report.to_csv()?,
        ReportFormat::Svg => report.to_svg()?,
    };
    emit(&text, a.output.as_deref())?;
    if let Err(reason) = crate::sim::report::check_gates(report, a.min_speedup, a.max_cycles) {
        anyhow::bail!("gate failed: {reason}");
    }
    Ok(())
}

fn cmd_sweep(a: SweepArgs) -> anyhow::Result<()> {
    use crate::sim::sweep::{self, SweepSpec};
    if matches!(a.format, ReportFormat::Table | ReportFormat::Md | ReportFormat::Svg) {
        anyhow::bail!("option --format: sweep writes csv or json (and an SVG plot beside -o)");
    }
    let arrays = a.arrays.iter().map(|s| crate::hw::ArrayConfig::parse_size(s).map_err(|e| anyhow::anyhow!("{e}").context("option --arrays"))).collect::<anyhow::Result<Vec<_>>>()?;
    let sram_kb = a
        .sram_kb
        .iter()
        .map(|s| if s == "none" { Ok(None) } else { s.parse::<f64>().map(Some).map_err(|_| anyhow::anyhow!("option --sram-kb: '{s}' is neither a number nor none")) })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (model, g) = crate::ir::load_graph(&a.model)?;
    let mut models = vec![];
    for v in &a.variants {
        let mut gv = g.clone();
        let mut mv = model.clone();
        match v.as_str() {
            "baseline" => {}
            other => {
                let (variant, layers) = match other {
                    "half" => (Variant::Half, LayerSelection::All),
                    "full" => (Variant::Full, LayerSelection::All),
                    preset => (Variant::Half, LayerSelection::parse(preset)),
                };
                let opts = ConvertOptions { variant: Some(variant), layers: Some(layers), ..Default::default() };
                convert::convert_model(&mut mv, &mut gv, &opts).map_err(|e| e.in_file(&a.model)).with_context(|| format!("variant {v}"))?;
            }
        }
        if let Some(s) = &a.input_shape {
            s.apply(&mut gv).map_err(|e| e.in_file(&a.model))?;
        }
        models.push((v.clone(), gv));
    }
    let base = crate::sim::SimConfig {
        memory: Some(crate::sim::config::Memory { ifmap_kb: 256.0, filter_kb: 256.0, ofmap_kb: 256.0, word_bytes: 1, dram_bytes_per_cycle: a.dram_bw }),
        vector: crate::sim::config::VectorUnit { lanes: a.vector_lanes, ..Default::default() },
        ..crate::sim::SimConfig::new(64, 64, crate::hw::HwKind::Fuse, crate::sim::Dataflow::Os)?
    }
    .validated()?;
    let spec = SweepSpec { arrays, kinds: a.hw.clone(), dataflows: a.dataflow.clone(), sram_kb };
    let conv = if a.scalesim_compat { crate::sim::Convention::SCALESIM } else { crate::sim::Convention::FUSEC };
    let pb = (!a.quiet).then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} configurations, {per_sec}, ETA {eta}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
        pb
    });
    let t0 = std::time::Instant::now();
    let (points, (hits, misses)) = sweep::run(&models, &spec, &base, conv, a.batch, pb.as_ref())?;
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let text = match a.format {
        ReportFormat::Json => serde_json::to_string_pretty(&points)?,
        _ => sweep::to_csv(&points)?,
    };
    emit(&text, a.output.as_deref())?;
    if let Some(p) = &a.output {
        emit(&sweep::to_svg(&points)?, Some(&p.with_extension("svg")))?;
    }
    eprintln!(
        "{} configurations in {:.2} s ({} layer simulations, {} shared), {} on the Pareto front",
        points.len(),
        t0.elapsed().as_secs_f64(),
        misses,
        hits,
        points.iter().filter(|p| p.pareto).count()
    );
    Ok(())
}

fn cmd_eval(a: EvalArgs) -> anyhow::Result<()> {
    let pre = a.pre.resolve()?;
    let data = crate::data::load(&a.data, &pre, a.task, a.limit)?;
    let model = load_folded(&a.model)?;
    let teacher = match &a.teacher {
        Some(t) => Some((t.display().to_string(), load_folded(t)?)),
        None => None,
    };
    let r = crate::eval::evaluate(&a.model.display().to_string(), &model.proto, teacher.as_ref().map(|(n, m)| (n.as_str(), &m.proto)), &data)
        .map_err(|e| e.in_file(&a.model))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("{}: {} samples, {:.0} samples/s", r.model, r.samples, r.samples_per_second);
    match r.top1 {
        Some(t) => println!("  top-1 accuracy {:.2}%", t * 100.0),
        None => println!("  no labels (use class subfolders, a label column, or --task)"),
    }
    if let Some(t) = r.top5 {
        println!("  top-5 accuracy {:.2}%", t * 100.0);
    }
    for (c, n, acc) in &r.per_class {
        println!("    class {c:<12} {n:>6} samples  {:.2}%", acc * 100.0);
    }
    if let (Some(t), Some(ag)) = (&r.teacher, r.teacher_agreement) {
        println!("  agreement with {t}: {:.2}%", ag * 100.0);
    }
    Ok(())
}

fn cmd_finetune(a: FinetuneArgs) -> anyhow::Result<()> {
    use crate::train::{Distill, LossSpec, Options};
    let output = a.output.clone().unwrap_or_else(|| a.model.with_extension("tuned.onnx"));
    for p in [&a.model, &a.teacher] {
        if std::fs::canonicalize(p).ok().is_some_and(|c| std::fs::canonicalize(&output).ok().as_ref() == Some(&c)) {
            anyhow::bail!("option -o: {} is an input; choose another output file", output.display());
        }
    }
    if output.exists() && !a.force {
        anyhow::bail!("{} exists; pass --force to replace it", output.display());
    }
    if a.batch == 0 {
        anyhow::bail!("option --batch: must be at least 1");
    }
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        anyhow::bail!("option --lr: must be a positive number, got {}", a.lr);
    }
    if a.distill == Distill::Kl && a.temperature <= 0.0 {
        anyhow::bail!("option --temperature: must be positive");
    }
    let pre = a.pre.resolve()?;
    let student = load_folded(&a.model)?;
    let teacher = load_folded(&a.teacher)?;
    let data = crate::data::load(&a.data, &pre, a.task, a.limit)?;
    let eval_data = match &a.eval_data {
        Some(p) => Some(crate::data::load(p, &pre, a.task, None)?),
        None => None,
    };
    let checkpoint = a.checkpoint.clone().unwrap_or_else(|| output.with_extension("ckpt.npz"));
    let opts = Options {
        epochs: a.epochs,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        optimizer: a.optimizer,
        momentum: a.momentum,
        weight_decay: a.weight_decay,
        schedule: a.schedule,
        warmup: a.warmup,
        train: a.train,
        bn: a.bn,
        loss: LossSpec {
            distill: a.distill,
            temperature: a.temperature,
            distill_weight: if a.distill == Distill::None { 0.0 } else { 1.0 },
            label_weight: if a.labels && a.label_weight == 0.0 { 1.0 } else { a.label_weight },
            feature_weight: a.feature_weight,
            features: vec![],
        },
        auto_features: true,
        augment: a.augment,
        seed: a.seed,
        threads: a.threads,
        checkpoint: Some(checkpoint.clone()),
        checkpoint_every: a.checkpoint_every,
        resume: a.resume.clone(),
        stop_after: a.stop_after,
        progress: !a.quiet && !a.json,
    };
    eprintln!(
        "fine-tuning {} ({} training samples{}) from {} on ONNX Runtime {}",
        a.model.display(),
        data.samples.len(),
        eval_data.as_ref().map(|d| format!(", {} held out", d.samples.len())).unwrap_or_default(),
        a.teacher.display(),
        crate::runtime::init()?.display()
    );
    let (trained, summary) = crate::train::finetune(&student.proto, &teacher.proto, &data, eval_data.as_ref(), &opts).map_err(|e| e.in_file(&a.model))?;
    let curve = a.curve.clone().unwrap_or_else(|| output.with_extension("curve.csv"));
    let svg = crate::train::write_curve(&summary, &curve)?;
    if summary.interrupted || summary.paused {
        eprintln!("stopped at step {}; checkpoint {}; continue with --resume {}", summary.steps, checkpoint.display(), checkpoint.display());
        if summary.interrupted {
            return Err(crate::Error::Eval("interrupted".into()).into());
        }
        return Ok(());
    }
    let model = crate::onnx::Model { proto: trained, path: None, external_tensors: Default::default() };
    crate::onnx::save(&model, &output, &crate::onnx::SaveOptions { overwrite: a.force, ..Default::default() })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("wrote {}", output.display());
    println!(
        "  {} steps ({:.1} epochs) in {:.1} s, {:.0} samples/s; {} parameters in {} tensors",
        summary.steps, summary.epochs, summary.seconds, summary.samples_per_sec, summary.params_trained, summary.tensors_trained
    );
    println!("  loss {:.4} -> {:.4} ({})", summary.first_loss, summary.final_loss, summary.loss_names.join(" + ").replace("loss + ", ""));
    if !summary.features.is_empty() {
        println!("  matched {} block outputs to the teacher", summary.features.len());
    }
    if let (Some(b), Some(e)) = (summary.eval_before, summary.eval_after) {
        println!("  held-out accuracy {b:.2}% -> {e:.2}%");
    }
    println!("  curve {} and {}; checkpoint {}", curve.display(), svg.display(), checkpoint.display());
    Ok(())
}

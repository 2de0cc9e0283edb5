//! Command-line interface. The only module that uses `anyhow`. One file per
//! family of commands: convert/inspect/zoo, report, simulate/sweep, eval/finetune.

mod convert;
mod report;
mod select;
mod select_finetune;
mod sim;
mod train;
mod train_args;

pub use convert::{ConvertArgs, InspectArgs, ZooArgs};
pub use report::{HwArgs, ReportArgs, ReportFormat};
pub use sim::{Engine, SimArgs, SimulateArgs, SweepArgs};
pub use train_args::{EvalArgs, FinetuneArgs};
use convert::{cmd_convert, cmd_inspect, cmd_zoo};
use report::cmd_report;
mod recipe;
pub use select::SelectArgs;
use select::cmd_select;
use sim::{cmd_simulate, cmd_sweep};
use train::{cmd_eval, cmd_finetune};

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use fusec::choice::Choice;
use fusec::convert::InputShape;

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
    #[command(after_help = "Examples:\n  fusec finetune cls.fuse-half.onnx --teacher cls.onnx --data train.tsv --task rot180 --preprocess ppocr-cls \\\n      --eval-data test.tsv -o cls.tuned.onnx\n  fusec finetune det.half.onnx --teacher det.onnx --data pages/boxes.tsv --task textdet      (the detector recipe)\n  fusec finetune --print-recipe --task ctc\n  fusec finetune s.onnx --teacher t.onnx --data x.npz --set optimizer=sgd --set momentum=0.9 --lr 0.01\n  fusec finetune s.onnx --teacher t.onnx --data x.npz --resume s.tuned.onnx.ckpt.npz -o s.tuned.onnx\n\nEverything else is a recipe option: --task picks a recipe (recipes/*.toml: classify, ppocr-rec,\nppocr-det), --set KEY=VALUE changes one, and each can also be given as --KEY VALUE. Recipe options:\naccumulate, crop, optimizer, momentum, weight-decay, schedule, warmup, clip-grad, ema,\ndivergence-ratio, train, bn, distill, output-loss, temperature, ctc-weight, ctc-target, label-weight,\nlabels, no-labels, feature-weight, augment, no-augment, augment-xscale, augment-scale, augment-stroke,\naugment-strips, augment-elastic, edge-weight, region-weight, peak-weight, miss-weight, hard-maps,\ncalibrate-maps, checkpoint, checkpoint-every, stop-after, curve (docs/finetune.md says what each does).\nPreprocessing and decoding beyond --preprocess (size, resize, scale, mean, std, bgr, dict, thresh,\nunclip, iou) work as in `fusec eval --help`.\n\nThe training graph (forward, loss, backward from standard ONNX ops) runs in ONNX Runtime, loaded\nfrom the library scripts/setup.sh installs. Ctrl-C saves a checkpoint; --resume continues from it.")]
    #[command(args_override_self = true)]
    // preprocessing and decoding details: --preprocess and the task choose them; still
    // accepted here (and as recipe keys), listed in `fusec eval --help`
    #[command(mut_arg("size", |a| a.hide(true)), mut_arg("resize", |a| a.hide(true)), mut_arg("scale", |a| a.hide(true)))]
    #[command(mut_arg("mean", |a| a.hide(true)), mut_arg("std", |a| a.hide(true)), mut_arg("bgr", |a| a.hide(true)))]
    #[command(mut_arg("dict", |a| a.hide(true)), mut_arg("thresh", |a| a.hide(true)), mut_arg("unclip", |a| a.hide(true)), mut_arg("iou", |a| a.hide(true)))]
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
    /// Choose which depthwise layers to rewrite: per-layer cycles saved on the array
    /// against how far the outputs move, a Pareto front, the set for a speedup or a budget.
    #[command(after_help = "Examples:\n  fusec select mnv2.onnx --array 64x64 --target-speedup 2\n  fusec select cls.onnx --input-shape 1x3x48x192 --max-cost 0.5 --save-preset cls-auto.toml\n  fusec convert cls.onnx --variant half --layers cls-auto.toml\n\nGain: the model converted with that layer alone, costed whole on the array (the paper's\nanalytical model). Cost: the normalized output error with that layer alone rewritten, on\n--samples noise inputs (0: gain only). Exact up to 20 layers, greedy beyond.")]
    Select(SelectArgs),
}


/// Parse arguments, run, map errors to exit codes (1: user error, 2: usage).
pub fn run() -> ExitCode {
    let argv = match recipe::expand(std::env::args_os().collect()) {
        Ok(recipe::Expanded::Args(a)) => a,
        Ok(recipe::Expanded::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Ctrl-C sets the cancel token: a save in progress cleans up, then the process exits 130.
    // Fine-tuning stops at the end of the current step and saves a checkpoint itself; a
    // second Ctrl-C exits at once.
    let graceful = matches!(cli.cmd, Command::Finetune(_));
    let _ = ctrlc::set_handler(move || {
        let first = !cancelled();
        CANCEL.store(true, std::sync::atomic::Ordering::SeqCst);
        if graceful && first {
            eprintln!("\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to quit now)");
            return;
        }
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
            if cancelled() { ExitCode::from(130) } else { ExitCode::from(1) }
        }
    }
}

/// The process's cancel token: the Ctrl-C handler sets it; fine-tuning stops after
/// the step in progress and a save in progress discards its temporary files.
pub(crate) static CANCEL: std::sync::LazyLock<fusec::cancel::Cancel> = std::sync::LazyLock::new(Default::default);

fn cancelled() -> bool {
    fusec::cancel::is_set(Some(&CANCEL))
}

/// How the command line saves a model: atomically, cancelled by Ctrl-C.
pub(crate) fn save_options(overwrite: bool) -> fusec::onnx::SaveOptions {
    fusec::onnx::SaveOptions { overwrite, cancel: Some(CANCEL.clone()), ..Default::default() }
}

/// Fine-tuning's progress on the terminal: a bar of steps with the running loss
/// and throughput, messages printed above it.
pub(crate) struct ProgressBar(indicatif::ProgressBar);

impl ProgressBar {
    pub(crate) fn new(visible: bool) -> ProgressBar {
        ProgressBar(if visible { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() })
    }
}

impl fusec::train::Observer for ProgressBar {
    fn start(&mut self, total: usize, at: usize) {
        self.0.set_length(total as u64);
        self.0.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.0.set_position(at as u64);
    }
    fn step(&mut self, step: usize, loss: f32, samples_per_sec: f64) {
        self.0.set_position(step as u64);
        self.0.set_message(format!("loss {loss:.4}  {samples_per_sec:.1} samples/s"));
    }
    fn line(&mut self, line: &str) {
        if self.0.is_hidden() {
            eprintln!("{line}");
        } else {
            self.0.println(line);
        }
    }
    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

fn dispatch(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Convert(a) => cmd_convert(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Zoo(a) => cmd_zoo(a),
        Command::Select(a) => cmd_select(a),
        Command::Simulate(a) => cmd_simulate(a),
        Command::Sweep(a) => cmd_sweep(a),
        Command::Report(a) => cmd_report(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Finetune(a) => cmd_finetune(a),
    }
}

/// A model loaded as every command loads it: shape computations folded.
fn load_folded(path: &std::path::Path) -> anyhow::Result<fusec::onnx::Model> {
    let mut m = fusec::onnx::load(path)?;
    fusec::ir::fold_model(&mut m.proto).map_err(|e| e.in_file(path))?;
    Ok(m)
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

fn load_for_report(path: &std::path::Path, shape: Option<&InputShape>) -> anyhow::Result<fusec::ir::Graph> {
    let (_, mut g) = fusec::ir::load_graph(path)?;
    if let Some(s) = shape {
        s.apply(&mut g).map_err(|e| e.in_file(path))?;
    }
    Ok(g)
}


/// CI gates shared by `fusec report` and `fusec simulate`.
#[derive(Args, Debug)]
pub struct GateArgs {
    /// Fail (exit 1) when the speedup over --baseline is below this.
    #[arg(long)]
    pub min_speedup: Option<f64>,
    /// Fail (exit 1) when the model takes more cycles than this.
    #[arg(long)]
    pub max_cycles: Option<u64>,
}

impl GateArgs {
    pub fn gates(&self) -> fusec::cost::hw::Gates {
        fusec::cost::hw::Gates { min_speedup: self.min_speedup, max_cycles: self.max_cycles }
    }
}

/// clap's parser for a library enum: its names as the possible values (each with
/// its doc comment as help), parsed into the value.
pub(crate) fn choice<T: Choice + Send + Sync + Clone>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let values = T::ALL.iter().map(|&(_, name, help)| {
        let v = PossibleValue::new(name);
        // as clap shows a doc comment: trimmed, without its final period
        let help = help.trim();
        if help.is_empty() { v } else { v.help(help.strip_suffix('.').unwrap_or(help)) }
    });
    PossibleValuesParser::new(values).try_map(|s| T::from_name(&s).ok_or_else(|| format!("'{s}' is not one of {}", T::names())))
}

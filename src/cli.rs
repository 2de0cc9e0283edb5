//! Command-line interface. The only module that uses `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::convert::{self, ConvertOptions, ConvertSummary, InputShape};
use crate::passes::fuse_depthwise::{Init, Variant};
use crate::passes::LayerSelection;

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
    /// Write a reference architecture of the FuSeConv paper as ONNX.
    #[command(after_help = "Examples:\n  fusec zoo mobilenet-v2 -o mnv2.onnx\n  fusec zoo --paper-table")]
    Zoo(ZooArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Model to cost.
    pub model: PathBuf,
    /// Original model, costed on plain systolic hardware, for the speedup.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Array size ROWSxCOLS.
    #[arg(long, default_value = "64x64")]
    pub array: String,
    /// Hardware the model runs on (the baseline always runs on `systolic`).
    #[arg(long, value_enum, default_value_t = crate::hw::HwKind::Fuse)]
    pub hw: crate::hw::HwKind,
    /// Clock for converting cycles to time.
    #[arg(long, default_value_t = 1000.0)]
    pub freq_mhz: f64,
    /// Batch size for a symbolic batch dimension.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Concrete input shape (`1x3x224x224` or `NAME=1x3x224x224`).
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
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
    /// FuSe variant.
    #[arg(long, value_enum)]
    pub variant: Variant,
    /// Output path (default: MODEL.fuse-VARIANT.onnx beside the input).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Initial 1-D kernels from the K×K kernel.
    #[arg(long, value_enum, default_value_t = Init::Center)]
    pub init: Init,
    /// Layers to convert: `all`, a preset from passes/ (e.g. paper-50-mobilenet-v2),
    /// a preset .toml file, or a comma list of indices, ranges (3-7) and name patterns.
    #[arg(long, default_value = "all")]
    pub layers: String,
    /// Layers to leave alone (same forms as a --layers list).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// A pipeline file ([[pass]] tables) to run instead of the built-in one.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
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
            ExitCode::from(1)
        }
    }
}

fn dispatch(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Convert(a) => cmd_convert(a),
        Command::Inspect(a) => cmd_inspect(a),
        Command::Zoo(a) => cmd_zoo(a),
        Command::Report(a) => cmd_report(a),
    }
}

fn cmd_convert(a: ConvertArgs) -> anyhow::Result<()> {
    let output = a.output.clone().unwrap_or_else(|| convert::default_output(&a.model, a.variant));
    if output.exists() && !a.force {
        anyhow::bail!("{}: output file exists; pass --force to replace it", output.display());
    }
    let opts = ConvertOptions {
        variant: a.variant,
        init: a.init,
        layers: LayerSelection::parse(&a.layers),
        skip: a.skip.clone(),
        pipeline: a.pipeline.clone(),
        max_rewrites: a.max_rewrites,
        input_shape: a.input_shape.clone(),
    };
    let (_, summary) = convert::convert_file(&a.model, &output, &opts, a.force)?;
    if a.json {
        let mut v = serde_json::to_value(&summary).context("serialising summary")?;
        v["output"] = serde_json::Value::String(output.display().to_string());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_summary(&summary, &output);
    }
    Ok(())
}

fn pct(before: u64, after: u64) -> String {
    if before == 0 {
        return String::new();
    }
    format!("({:+.1}%)", (after as f64 - before as f64) / before as f64 * 100.0)
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub fn print_summary(s: &ConvertSummary, output: &std::path::Path) {
    println!("fusec convert: {} → {} (FuSe-{}, init {})", s.input, output.display(), s.variant, s.init);
    for (pass, r) in &s.passes {
        println!("  {pass}: {} converted, {} left alone", r.rewrites.len(), r.skipped.len());
        for w in &r.rewrites {
            println!("    ✓ [{:>2}] {:<40} {}", w.index, w.node, w.detail);
        }
        for (node, reason) in &r.skipped {
            println!("    · {node:<45} {reason}");
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
    crate::onnx::save(&model, &output, &crate::onnx::SaveOptions { overwrite: a.force })?;
    println!("wrote {} ({name})", output.display());
    Ok(())
}

fn cost(path: &std::path::Path, hw: &crate::hw::ArrayConfig, batch: u64, shape: Option<&InputShape>) -> anyhow::Result<Vec<crate::hw::schedule::LayerCost>> {
    let (_, mut g) = crate::ir::load_graph(path)?;
    if let Some(s) = shape {
        s.apply(&mut g).map_err(|e| e.in_file(path))?;
    }
    Ok(crate::hw::schedule::schedule(&g, hw, batch).map_err(|e| e.in_file(path))?)
}

fn cmd_report(a: ReportArgs) -> anyhow::Result<()> {
    use crate::hw::{ArrayConfig, HwKind};
    let (rows, cols) = ArrayConfig::parse_size(&a.array)?;
    let hw = ArrayConfig::new(rows, cols, a.hw, a.freq_mhz)?;
    if a.batch == 0 {
        anyhow::bail!("option --batch: must be at least 1");
    }
    let layers = cost(&a.model, &hw, a.batch, a.input_shape.as_ref())?;
    let total: u64 = layers.iter().map(|l| l.cycles).sum();
    let baseline = match &a.baseline {
        Some(b) => {
            let base_hw = ArrayConfig { kind: HwKind::Systolic, ..hw.clone() };
            Some(cost(b, &base_hw, a.batch, a.input_shape.as_ref())?.iter().map(|l| l.cycles).sum::<u64>())
        }
        None => None,
    };
    let speedup = baseline.map(|b| b as f64 / total.max(1) as f64);
    match a.format {
        ReportFormat::Json => {
            let v = serde_json::json!({
                "model": a.model.display().to_string(),
                "array": {"rows": rows, "cols": cols, "hw": a.hw, "freq_mhz": a.freq_mhz},
                "total_cycles": total,
                "time_us": hw.micros(total),
                "baseline_cycles": baseline,
                "speedup": speedup,
                "layers": layers,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ReportFormat::Table => {
            println!("{}: {}x{} {:?} array at {} MHz", a.model.display(), rows, cols, a.hw, a.freq_mhz);
            println!("  {:<36} {:<12} {:<10} {:>18} {:>7} {:>6} {:>10} {:>12} {:>6} {:>6}", "node", "op", "kind", "input", "kernel", "stride", "MACs", "cycles", "share", "util");
            for l in layers.iter().filter(|l| l.cycles > 0) {
                println!(
                    "  {:<36} {:<12} {:<10} {:>18} {:>7} {:>6} {:>10} {:>12} {:>5.1}% {:>5.1}%",
                    l.name,
                    l.op,
                    serde_json::to_value(l.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                    format!("{:?}", l.input_shape),
                    l.kernel.map(|k| format!("{}x{}", k[0], k[1])).unwrap_or_default(),
                    l.stride.map(|s| format!("{}x{}", s[0], s[1])).unwrap_or_default(),
                    human(l.macs),
                    l.cycles,
                    l.cycles as f64 / total.max(1) as f64 * 100.0,
                    l.utilization * 100.0
                );
            }
            let idle = layers.iter().filter(|l| l.cycles == 0).count();
            println!("  {idle} other nodes (activations, pooling, elementwise, concat, split) take no array cycles in this model");
            println!("  total: {total} cycles = {:.1} µs", hw.micros(total));
            if let (Some(b), Some(s)) = (baseline, speedup) {
                println!("  baseline (systolic): {b} cycles; speedup {s:.2}x");
            }
        }
    }
    Ok(())
}

//! `fusec convert`, `fusec inspect`, `fusec zoo`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use fusec::convert::{self, ConvertOptions, ConvertSummary, InputShape};
use fusec::passes::fuse_depthwise::{Assign, Init, Variant};
use fusec::passes::LayerSelection;
use fusec::stats::human;
use super::*;

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
    #[arg(long, value_parser = choice::<Variant>(), required_unless_present = "pipeline")]
    pub variant: Option<Variant>,
    /// Output path (default: MODEL.fuse-VARIANT.onnx beside the input).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Initial 1-D kernels: center, sum (from the K×K kernel) or lsq (fitted on --calib data)
    /// [default: the pipeline's, center for the built-in ones].
    #[arg(long, value_parser = choice::<Init>())]
    pub init: Option<Init>,
    /// Half: which channels go to 1×K and which to K×1: ordered (the paper's: the first
    /// half to 1×K) or fit (each channel to the branch that reproduces it best; the
    /// block gathers the channels and restores their order) [default: the pipeline's, ordered].
    #[arg(long, value_parser = choice::<Assign>())]
    pub assign: Option<Assign>,
    /// Layers to convert: `all`, a preset from passes/ (e.g. paper-50-mobilenet-v2),
    /// a preset .toml file, or a comma list of indices, ranges (3-7) and name patterns
    /// [default: the pipeline's, all for the built-in ones].
    #[arg(long)]
    pub layers: Option<String>,
    /// Layers to leave alone (same forms as a --layers list).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Also rewrite dense K×K convs (group 1, C_in = C_out, output reaching a pointwise
    /// conv or Gemm through BN/activations), as the paper's ResNet-50 FuSe variants do.
    /// Layer indices then count depthwise and dense convs together. The block drops
    /// cross-channel mixing: fine-tune the result.
    #[arg(long)]
    pub dense: bool,
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
    // calibration images for `--init lsq`
    #[command(flatten)]
    pub images: CalibImages,
    /// Fit each layer on the inputs it sees after the earlier layers were rewritten
    /// (slower; by default every layer is fitted on the original's activations).
    #[arg(long)]
    pub calib_sequential: bool,
    /// Re-estimate BatchNormalization statistics of the result on the calibration images.
    #[arg(long, requires = "calib")]
    pub bn_recalib: bool,
    /// Derive more calibration samples from each image (rot180: also the image rotated).
    #[arg(long, value_parser = choice::<fusec::tasks::Task>())]
    pub task: Option<fusec::tasks::Task>,
    /// Also cost the result against the input on a modeled array and print the speedup.
    #[arg(long)]
    pub report: bool,
    #[command(flatten)]
    pub hw: HwArgs,
}

/// Calibration images (`convert --init lsq`, `select` costs): `--calib`,
/// `--calib-limit`, `--preprocess`.
#[derive(Args, Debug)]
pub struct CalibImages {
    /// Calibration images (folder or TSV/CSV list, as for `fusec eval`).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Use the first N calibration images.
    #[arg(long, default_value_t = 64)]
    pub calib_limit: usize,
    /// Preprocessing of the calibration images (ppocr-cls, imagenet or a TOML file).
    #[arg(long, default_value = "imagenet")]
    pub preprocess: String,
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


pub(super) fn cmd_convert(a: ConvertArgs) -> anyhow::Result<()> {
    let mut opts = ConvertOptions {
        variant: a.variant,
        init: a.init,
        assign: a.assign,
        layers: a.layers.as_deref().map(LayerSelection::parse),
        skip: a.skip.clone(),
        dense: a.dense,
        pipeline: a.pipeline.clone(),
        max_rewrites: a.max_rewrites,
        input_shape: a.input_shape.clone(),
        calib: a.images.calib.as_ref().map(|d| convert::Calib { data: d.clone(), preprocess: a.images.preprocess.clone(), task: a.task, limit: Some(a.images.calib_limit), sequential: a.calib_sequential, bn_recalib: a.bn_recalib }),
        dump_after: None,
        cancel: Some(super::CANCEL.clone()),
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
        let r = fusec::cost::report::build(&output.display().to_string(), &conv, Some((&a.model.display().to_string(), &base)), &hw, 1)?;
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
    let assign = if s.assign == "fit" { ", channels assigned by fit" } else { "" };
    println!("fusec convert: {} → {} (FuSe-{}, init {}{assign})", s.input, output.display(), s.variant, s.init);
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
    let dense = s.passes.iter().flat_map(|(_, r)| &r.rewrites).filter(|w| w.detail.contains(" dense,")).count();
    if dense > 0 {
        println!("  note: {dense} dense conv(s) rewritten: the FuSe blocks drop their cross-channel terms, so accuracy needs fine-tuning (fusec finetune)");
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

pub(super) fn cmd_inspect(a: InspectArgs) -> anyhow::Result<()> {
    let (model, mut g) = fusec::ir::load_graph(&a.model)?;
    if let Some(s) = &a.input_shape {
        s.apply(&mut g).map_err(|e| e.in_file(&a.model))?;
    }
    let r = fusec::inspect::inspect(&model, &g)?;
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

pub(super) fn cmd_zoo(a: ZooArgs) -> anyhow::Result<()> {
    if a.paper_table {
        let rows = fusec::models::paper::table(a.array)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print!("{}", fusec::models::paper::render_markdown(&rows, a.array));
        }
        return Ok(());
    }
    let (Some(name), Some(output)) = (a.name, a.output) else {
        anyhow::bail!("zoo needs a network name and -o OUTPUT (or --paper-table)");
    };
    let proto = fusec::models::zoo::build(&name, a.seed)?;
    let model = fusec::onnx::Model { proto, ..Default::default() };
    fusec::onnx::save(&model, &output, &super::save_options(a.force))?;
    println!("wrote {} ({name})", output.display());
    Ok(())
}


//! The convert job: load → run the FuSe pipeline → record what was done.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::onnx::{self, Model};
use crate::calibrate::LsqInit;
use crate::passes::fuse_depthwise::{Assign, FuseDepthwise, Init, Options, Variant};
use crate::passes::{self, LayerSelection, Pass, PassCx, PassReport, Pipeline};
use crate::stats::{stats, Stats};

/// What `fusec convert` runs. The pipeline is `pipeline` if given, else the
/// built-in `passes/half.toml` or `passes/full.toml` for `variant`; `variant`,
/// `init`, `layers` and `skip`, when given, override the options of its
/// `fuse_depthwise` passes.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    pub variant: Option<Variant>,
    pub init: Option<Init>,
    pub assign: Option<Assign>,
    pub layers: Option<LayerSelection>,
    pub skip: Vec<String>,
    /// Also rewrite dense K×K convs (`dense = true` of the pass).
    pub dense: bool,
    /// A pipeline file replacing the built-in one for `variant`.
    pub pipeline: Option<PathBuf>,
    pub max_rewrites: Option<usize>,
    /// Concrete input shape for inference (`name=1x3x224x224` or `1x3x224x224`).
    pub input_shape: Option<InputShape>,
    /// Calibration data for `--init lsq`.
    pub calib: Option<Calib>,
    /// Write the model after this pass to this file.
    pub dump_after: Option<(String, PathBuf)>,
    /// Once set (Ctrl-C), saving the result leaves the output untouched.
    pub cancel: Option<crate::cancel::Cancel>,
}

#[derive(Debug, Clone)]
pub struct Calib {
    pub data: PathBuf,
    pub preprocess: String,
    pub task: Option<crate::tasks::Task>,
    pub limit: Option<usize>,
    /// Fit each layer on the student's own inputs (earlier layers already rewritten).
    pub sequential: bool,
    /// Re-estimate BatchNormalization statistics of the result on the calibration data.
    pub bn_recalib: bool,
}

/// A user-given input shape: optional input name and dims.
#[derive(Debug, Clone, PartialEq)]
pub struct InputShape {
    pub name: Option<String>,
    pub dims: Vec<i64>,
}

impl std::str::FromStr for InputShape {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (name, dims) = match s.rsplit_once('=') {
            Some((n, d)) => (Some(n.to_string()), d),
            None => (None, s),
        };
        let dims = dims
            .split(['x', ','])
            .map(|d| d.trim().parse::<i64>().map_err(|_| Error::option("--input-shape", format!("'{s}' is not like 1x3x224x224"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(InputShape { name, dims })
    }
}

impl InputShape {
    pub fn apply(&self, g: &mut Graph) -> Result<()> {
        g.set_input_shape(self.name.as_deref(), &self.dims)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvertSummary {
    pub input: String,
    pub variant: String,
    pub init: String,
    /// Half: how channels were assigned to the branches (ordered, fit).
    pub assign: String,
    /// The pipeline that ran, as recorded in the metadata (`fusec.pipeline`).
    pub pipeline: String,
    /// Shape computations folded when the model was loaded.
    pub folded: crate::ir::fold::FoldReport,
    pub passes: Vec<(String, PassReport)>,
    pub before: Stats,
    pub after: Stats,
    /// Per-layer relative output error of each initialization (with `--init lsq`).
    pub fits: Vec<crate::calibrate::LayerFit>,
}

impl ConvertSummary {
    pub fn converted(&self) -> usize {
        self.passes.iter().map(|(_, r)| r.rewrites.len()).sum()
    }
}

/// Default output path beside the input: `model.fuse-half.onnx`.
pub fn default_output(input: &Path, variant: Variant) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    input.with_file_name(format!("{stem}.fuse-{variant}.onnx"))
}

/// The pipeline a convert runs, with the explicit options applied.
pub fn resolve_pipeline(opts: &ConvertOptions) -> Result<Pipeline> {
    let mut p = match (&opts.pipeline, opts.variant) {
        (Some(path), _) => Pipeline::load(path)?,
        (None, Some(v)) => Pipeline::builtin(&v.to_string())?,
        (None, None) => return Err(Error::option("--variant", "give --variant half|full, or a --pipeline file")),
    };
    let s = |v: String| toml::Value::String(v);
    if let (Some(v), Some(_)) = (opts.variant, &opts.pipeline) {
        p.set_option("fuse_depthwise", "variant", s(v.to_string()));
    }
    if let Some(i) = opts.init {
        p.set_option("fuse_depthwise", "init", s(i.to_string()));
    }
    if let Some(a) = opts.assign {
        p.set_option("fuse_depthwise", "assign", s(a.to_string()));
    }
    if let Some(l) = &opts.layers {
        let v = match l {
            LayerSelection::All => s("all".into()),
            other => toml::Value::try_from(other).map_err(|e| Error::option("--layers", e.to_string()))?,
        };
        p.set_option("fuse_depthwise", "layers", v);
    }
    if opts.dense {
        p.set_option("fuse_depthwise", "dense", toml::Value::Boolean(true));
    }
    if !opts.skip.is_empty() {
        p.set_option("fuse_depthwise", "skip", toml::Value::Array(opts.skip.iter().cloned().map(s).collect()));
    }
    if !p.passes.iter().any(|x| x.name == "fuse_depthwise") {
        return Err(Error::option("--pipeline", format!("{}: has no fuse_depthwise pass", p.origin)));
    }
    Ok(p)
}

/// The options of the pipeline's (first) `fuse_depthwise` pass.
pub fn fuse_options(p: &Pipeline) -> Result<Options> {
    let spec = p.passes.iter().find(|x| x.name == "fuse_depthwise").ok_or_else(|| Error::option("--pipeline", "no fuse_depthwise pass"))?;
    toml::Value::Table(spec.options.clone()).try_into().map_err(|e: toml::de::Error| Error::option("--pipeline", format!("{}: fuse_depthwise: {e}", p.origin)))
}

/// Construct the pipeline's passes, handing `init` (fitted kernels) to every
/// `fuse_depthwise` pass.
pub fn build_passes(p: &Pipeline, init: Option<&LsqInit>) -> Result<Vec<Box<dyn Pass>>> {
    p.build_with(&|spec| {
        let init = init?;
        (spec.name == "fuse_depthwise").then(|| {
            let o: Options = toml::Value::Table(spec.options.clone()).try_into().map_err(|e: toml::de::Error| Error::option("fuse_depthwise", e.to_string()))?;
            Ok(Box::new(FuseDepthwise::new(o)?.with_init(Box::new(init.clone()))) as Box<dyn Pass>)
        })
    })
}

/// Convert a loaded model in memory.
pub fn convert_model(model: &mut Model, g: &mut Graph, opts: &ConvertOptions) -> Result<ConvertSummary> {
    let pipeline = resolve_pipeline(opts)?;
    let fuse = fuse_options(&pipeline)?;
    let data = match &opts.calib {
        Some(c) => {
            let pre = crate::tasks::data::Preprocess::preset(&c.preprocess)?;
            Some(crate::tasks::data::load(&c.data, &pre, c.task, c.limit)?)
        }
        None => None,
    };
    let (init, fits) = match (fuse.init, &opts.calib, &data) {
        (Init::Lsq, Some(c), Some(data)) => {
            let (init, fits) = crate::calibrate::calibrate_with(&model.proto, g, data, &crate::calibrate::FitOptions { variant: fuse.variant, assign: fuse.assign, sequential: c.sequential, dense: fuse.dense })?;
            (Some(init), fits)
        }
        (Init::Lsq, _, _) => return Err(Error::option("--init", "lsq needs calibration data (--calib DATA)")),
        _ => (None, vec![]),
    };
    let passes = build_passes(&pipeline, init.as_ref())?;
    let before = stats(g);
    let dump_after = opts.dump_after.as_ref().map(|(pass, path)| passes::Dump { pass: pass.clone(), path: path.clone(), model: model.proto.clone() });
    let cx = PassCx { max_rewrites: opts.max_rewrites, dump_after };
    let reports = passes::run_pipeline(g, &passes, &cx)?;
    let after = stats(g);
    let converted: Vec<String> = reports.iter().filter(|(p, _)| p == "fuse_depthwise").flat_map(|(_, r)| r.rewrites.iter().map(|w| w.node.clone())).collect();
    model.proto.graph = Some(g.to_proto()?);
    if let (Some(c), Some(data)) = (&opts.calib, &data)
        && c.bn_recalib
    {
        crate::calibrate::recalibrate_bn(&mut model.proto, g.opset, data, 2)?;
    }
    let meta = [
        ("fusec.version", env!("CARGO_PKG_VERSION").to_string()),
        ("fusec.variant", fuse.variant.to_string()),
        ("fusec.init", fuse.init.to_string()),
        ("fusec.assign", fuse.assign.to_string()),
        ("fusec.dense", fuse.dense.to_string()),
        ("fusec.converted", converted.join(",")),
        ("fusec.pipeline", pipeline.describe()),
    ];
    model.proto.metadata_props.retain(|p| !p.key().starts_with("fusec."));
    for (k, v) in meta {
        model.proto.metadata_props.push(onnx::kv(k, &v));
    }
    Ok(ConvertSummary {
        input: model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        variant: fuse.variant.to_string(),
        init: fuse.init.to_string(),
        assign: fuse.assign.to_string(),
        pipeline: pipeline.describe(),
        folded: g.folded.clone(),
        passes: reports,
        before,
        after,
        fits,
    })
}

/// Load, convert and save. Refuses to write over the input unless `force`.
pub fn convert_file(input: &Path, output: &Path, opts: &ConvertOptions, force: bool) -> Result<(Model, ConvertSummary)> {
    if same_file(input, output) && !force {
        return Err(Error::option("-o", format!("{} is the input model; refusing to overwrite it (use --force)", output.display())));
    }
    // options are checked before any file is read
    let pipeline = resolve_pipeline(opts)?;
    let fuse = fuse_options(&pipeline)?;
    if fuse.init == Init::Lsq && opts.calib.is_none() {
        return Err(Error::option("--init", "lsq needs calibration data (--calib DATA)"));
    }
    build_passes(&pipeline, None)?;
    let (mut model, mut g) = crate::ir::load_graph(input)?;
    if let Some(s) = &opts.input_shape {
        s.apply(&mut g)?;
    }
    let summary = convert_model(&mut model, &mut g, opts).map_err(|e| e.in_file(input))?;
    onnx::save(&model, output, &onnx::SaveOptions { overwrite: true, cancel: opts.cancel.clone(), ..Default::default() })?;
    Ok((model, summary))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

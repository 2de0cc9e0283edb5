//! The convert job: load → run the FuSe pipeline → record what was done.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::onnx::{self, Model};
use crate::passes::fuse_depthwise::{FuseDepthwise, Init, Options, Variant};
use crate::passes::{self, LayerSelection, Pass, PassCx, PassReport};
use crate::stats::{stats, Stats};

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub variant: Variant,
    pub init: Init,
    pub layers: LayerSelection,
    pub skip: Vec<String>,
    /// A pipeline file replacing the built-in one for `variant`.
    pub pipeline: Option<PathBuf>,
    pub max_rewrites: Option<usize>,
    /// Concrete input shape for inference (`name=1x3x224x224` or `1x3x224x224`).
    pub input_shape: Option<InputShape>,
    /// Calibration data for `--init lsq`.
    pub calib: Option<Calib>,
}

#[derive(Debug, Clone)]
pub struct Calib {
    pub data: PathBuf,
    pub preprocess: String,
    pub task: Option<crate::data::Task>,
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

pub fn build_passes(opts: &ConvertOptions, init: Option<Box<dyn crate::passes::fuse_depthwise::KernelInit>>) -> Result<Vec<Box<dyn Pass>>> {
    match &opts.pipeline {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            passes::parse_pipeline(&text, &p.display().to_string())
        }
        None => {
            let o = Options { variant: opts.variant, init: opts.init, layers: opts.layers.clone(), skip: opts.skip.clone() };
            let mut pass = FuseDepthwise::new(o)?;
            if let Some(i) = init {
                pass = pass.with_init(i);
            }
            Ok(vec![Box::new(pass)])
        }
    }
}

/// Convert a loaded model in memory.
pub fn convert_model(model: &mut Model, g: &mut Graph, opts: &ConvertOptions) -> Result<ConvertSummary> {
    let data = match &opts.calib {
        Some(c) => {
            let pre = crate::data::Preprocess::preset(&c.preprocess)?;
            Some(crate::data::load(&c.data, &pre, c.task, c.limit)?)
        }
        None => None,
    };
    let (init, fits) = match (opts.init, &opts.calib, &data) {
        (Init::Lsq, Some(c), Some(data)) => {
            let (init, fits) = crate::calibrate::calibrate_with(&model.proto, g, data, opts.variant, c.sequential)?;
            (Some(Box::new(init) as Box<dyn crate::passes::fuse_depthwise::KernelInit>), fits)
        }
        (Init::Lsq, _, _) => return Err(Error::option("--init", "lsq needs calibration data (--calib DATA)")),
        _ => (None, vec![]),
    };
    let pipeline = build_passes(opts, init)?;
    let before = stats(g);
    let cx = PassCx { max_rewrites: opts.max_rewrites };
    let reports = passes::run_pipeline(g, &pipeline, &cx)?;
    let after = stats(g);
    let converted: Vec<String> = reports.iter().flat_map(|(_, r)| r.rewrites.iter().map(|w| w.node.clone())).collect();
    model.proto.graph = Some(g.to_proto()?);
    if let (Some(c), Some(data)) = (&opts.calib, &data) {
        if c.bn_recalib {
            crate::calibrate::recalibrate_bn(&mut model.proto, g.opset, data, 2)?;
        }
    }
    let meta = [
        ("fusec.version", env!("CARGO_PKG_VERSION").to_string()),
        ("fusec.variant", opts.variant.to_string()),
        ("fusec.init", opts.init.to_string()),
        ("fusec.converted", converted.join(",")),
    ];
    model.proto.metadata_props.retain(|p| !p.key().starts_with("fusec."));
    for (k, v) in meta {
        model.proto.metadata_props.push(onnx::kv(k, &v));
    }
    Ok(ConvertSummary {
        input: model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        variant: opts.variant.to_string(),
        init: opts.init.to_string(),
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
    if opts.init == Init::Lsq && opts.calib.is_none() {
        return Err(Error::option("--init", "lsq needs calibration data (--calib DATA)"));
    }
    if opts.init != Init::Lsq {
        build_passes(opts, None)?;
    }
    let (mut model, mut g) = crate::ir::load_graph(input)?;
    if let Some(s) = &opts.input_shape {
        s.apply(&mut g)?;
    }
    let summary = convert_model(&mut model, &mut g, opts).map_err(|e| e.in_file(input))?;
    onnx::save(&model, output, &onnx::SaveOptions { overwrite: true, ..Default::default() })?;
    Ok((model, summary))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

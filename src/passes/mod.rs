//! Passes: the `Pass` trait and what a pass reports. The pass manager
//! ([`manager`]), pipelines as data and the registry ([`pipeline`]), layer
//! selection and presets ([`selection`]), and one module per pass, named
//! after it: the conversion's (`fold_shapes`, `fuse_depthwise`) and the ones
//! fine-tuning runs on the models it trains (`lift_constants`, `rebatch`,
//! `calibrate_map`) through [`run_on_model`].

pub mod calibrate_map;
pub(crate) mod fold_shapes;
pub mod fuse_depthwise;
pub mod lift_constants;
pub mod rebatch;
pub(crate) mod manager;
pub(crate) mod pipeline;
pub(crate) mod selection;

use serde::Serialize;

use crate::error::Result;
use crate::ir::Graph;

pub use manager::{run_on_model, run_pipeline, Dump};
pub use pipeline::{build_pass, embedded_files, parse_pipeline, pipeline_names, registry, PassSpec, Pipeline};
pub use selection::{glob_match, load_preset, preset_names, LayerSelection, ListItem, Preset, Selector};

/// Does a pass keep the model's outputs (up to float rounding)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    Preserving,
    Changing,
}

/// Context handed to every pass.
#[derive(Debug, Clone, Default)]
pub struct PassCx {
    /// Stop after this many rewrites (for bisecting a bad rewrite).
    pub max_rewrites: Option<usize>,
    /// Write the model after this pass.
    pub dump_after: Option<Dump>,
}

pub trait Pass {
    fn name(&self) -> &'static str;
    fn semantics(&self) -> Semantics;
    fn run(&self, g: &mut Graph, cx: &PassCx) -> Result<PassReport>;
}

#[derive(Debug, Clone, Serialize)]
pub struct Rewrite {
    pub node: String,
    pub index: usize,
    pub rule: String,
    pub detail: String,
    pub params_delta: i64,
}

impl Rewrite {
    /// A rewrite that sums up a whole pass (no node index, no parameter change).
    pub fn summary(node: impl Into<String>, rule: &str, detail: impl Into<String>) -> Rewrite {
        Rewrite { node: node.into(), index: 0, rule: rule.into(), detail: detail.into(), params_delta: 0 }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    pub rewrites: Vec<Rewrite>,
    /// (node, reason) for every candidate left alone.
    pub skipped: Vec<(String, String)>,
}


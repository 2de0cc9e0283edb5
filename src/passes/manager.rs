//! The pass manager: run a pipeline over a graph, validate the graph after
//! every pass and name the pass that broke it, stop after `--max-rewrites`,
//! and write the model after a chosen pass (`--dump-after`).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::onnx::{self, ModelProto};
use crate::passes::{Pass, PassCx, PassReport};

/// Write the model as it is right after the pass called `pass`.
#[derive(Debug, Clone)]
pub struct Dump {
    pub pass: String,
    pub path: PathBuf,
    /// The model around the graph (opsets, metadata); its graph is replaced.
    pub model: ModelProto,
}

/// Run passes in order, validating the graph after each and naming the culprit.
pub fn run_pipeline(g: &mut Graph, passes: &[Box<dyn Pass>], cx: &PassCx) -> Result<Vec<(String, PassReport)>> {
    if let Some(d) = &cx.dump_after
        && !passes.iter().any(|p| p.name() == d.pass)
    {
        let names: Vec<&str> = passes.iter().map(|p| p.name()).collect();
        return Err(Error::option("--dump-after", format!("pass '{}' is not in the pipeline ({})", d.pass, names.join(", "))));
    }
    let mut out = Vec::new();
    for p in passes {
        let report = p.run(g, cx).map_err(|e| e.after_pass(p.name()))?;
        g.validate().map_err(|e| e.after_pass(p.name()))?;
        if let Some(d) = cx.dump_after.as_ref().filter(|d| d.pass == p.name()) {
            let mut m = d.model.clone();
            m.graph = Some(g.to_proto()?);
            let model = onnx::Model { proto: m, ..Default::default() };
            onnx::save(&model, &d.path, &onnx::SaveOptions { overwrite: true, ..Default::default() })?;
        }
        out.push((p.name().to_string(), report));
    }
    Ok(out)
}

/// Run passes over a model in memory, as over a loaded one: its graph built,
/// each pass validated, the model returned with the new graph.
pub fn run_on_model(model: &ModelProto, passes: &[Box<dyn Pass>]) -> Result<(ModelProto, Vec<(String, PassReport)>)> {
    let gp = model.graph.as_ref().ok_or_else(|| Error::InvalidGraph("model has no graph".into()))?;
    let mut g = Graph::from_proto(gp, onnx::opset_of(model))?;
    let reports = run_pipeline(&mut g, passes, &PassCx::default())?;
    let mut m = model.clone();
    m.graph = Some(g.to_proto()?);
    Ok((m, reports))
}

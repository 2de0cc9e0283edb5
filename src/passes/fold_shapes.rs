//! `fold_shapes`: the shape folding of [`crate::ir::fold`] as a pipeline pass.
//! Every command already folds when it loads a model; the pass is for
//! pipelines that rebuild shape computations and for `--dump-after`.

use crate::error::Result;
use crate::ir::{fold, Graph};
use crate::passes::{Pass, PassCx, PassReport, Rewrite, Semantics};

pub struct FoldShapes;

impl Pass for FoldShapes {
    fn name(&self) -> &'static str {
        "fold_shapes"
    }
    fn semantics(&self) -> Semantics {
        Semantics::Preserving
    }
    fn run(&self, g: &mut Graph, _cx: &PassCx) -> Result<PassReport> {
        let r = fold::fold(g)?;
        let mut report = PassReport::default();
        if r.folded > 0 {
            report.rewrites.push(Rewrite::summary(format!("{} shape computations", r.folded), "fold_shapes.constant", format!("replaced by constants, {} nodes removed", r.removed_nodes)));
        }
        Ok(report)
    }
}

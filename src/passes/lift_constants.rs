//! `lift_constants`: float `Constant` nodes become initializers of the same
//! name. Paddle and some PyTorch exports keep weights in Constant nodes;
//! fine-tuning trains initializers, and `train::model::write_back` puts the
//! trained values back where they came from.

use crate::error::Result;
use crate::ir::{constant_node_value, Graph, Patch};
use crate::onnx::dtype;
use crate::passes::{Pass, PassCx, PassReport, Rewrite, Semantics};

pub struct LiftConstants;

impl Pass for LiftConstants {
    fn name(&self) -> &'static str {
        "lift_constants"
    }
    fn semantics(&self) -> Semantics {
        Semantics::Preserving
    }
    fn run(&self, g: &mut Graph, _cx: &PassCx) -> Result<PassReport> {
        let mut patch = Patch::default();
        for ix in g.g.node_indices() {
            let n = g.node(ix);
            if n.op() != "Constant" || !n.is_default_domain() || n.proto.output.len() != 1 {
                continue;
            }
            if let Some(t) = constant_node_value(&n.proto).filter(|t| t.dtype() == dtype::FLOAT) {
                patch.remove.push(ix);
                patch.initializers.push(t);
            }
        }
        let mut report = PassReport::default();
        if !patch.is_empty() {
            report.rewrites.push(Rewrite::summary(format!("{} Constant nodes", patch.remove.len()), "lift_constants.initializer", "float Constant nodes as initializers of the same name"));
            patch.apply(g)?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::builder::ModelBuilder;
    use crate::onnx::Dim;

    #[test]
    fn constant_weights_become_initializers_and_the_outputs_stay() {
        let mut b = ModelBuilder::new(13, 3);
        b.weights_as_constants = true;
        let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(6), Dim::Known(6)]);
        let y = b.conv(&x, 4, 8, (3, 3), (1, 1), (1, 1), 1, true);
        b.output(&y);
        let m = b.build();
        let constants = |m: &crate::onnx::ModelProto| m.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type() == "Constant").count();
        assert_eq!(constants(&m), 2, "weight and bias in Constant nodes");
        let (lifted, reports) = crate::passes::run_on_model(&m, &[Box::new(LiftConstants)]).unwrap();
        assert_eq!(constants(&lifted), 0);
        assert_eq!(reports[0].1.rewrites[0].node, "2 Constant nodes");
        let conv = lifted.graph.as_ref().unwrap().node.iter().find(|n| n.op_type() == "Conv").unwrap();
        let inits: Vec<&str> = lifted.graph.as_ref().unwrap().initializer.iter().map(|t| t.name()).collect();
        assert!(conv.input[1..].iter().all(|w| inits.contains(&w.as_str())), "{inits:?}");
        let input = ndarray::Array4::from_shape_fn((1, 4, 6, 6), |(_, c, h, w)| (c * 36 + h * 6 + w) as f32 / 50.0 - 1.0).into_dyn();
        let (a, b) = (crate::exec::run(&m, &[input.clone()]).unwrap(), crate::exec::run(&lifted, &[input]).unwrap());
        assert_eq!(a[0], b[0], "the same numbers, now from initializers");
    }
}

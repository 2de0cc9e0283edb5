//! `rebatch`: a model exported for a fixed batch `from`, declared for batches
//! of `to`. The input (and every output whose first dimension is `from`)
//! declares `to`, and every shape constant that carries the batch (the first
//! element of a Reshape or Expand shape, of Resize sizes, of a ConstantOfShape
//! shape) equal to `from` becomes `to`, as a new initializer. The manager's
//! validation then checks that the outputs infer to the declared batch. Whether
//! the rebatched model computes per sample what the original computes is a
//! numerical question: `train::model::rebatch` runs both.

use crate::error::{Error, Result};
use crate::ir::{Graph, Patch};
use crate::onnx::{self, dtype, Dim};
use crate::onnx::tensor::Tensor;
use crate::passes::{Pass, PassCx, PassReport, Rewrite, Semantics};

pub struct Rebatch {
    /// The graph input that carries the batch.
    pub input: String,
    pub from: i64,
    pub to: i64,
}

impl Pass for Rebatch {
    fn name(&self) -> &'static str {
        "rebatch"
    }
    fn semantics(&self) -> Semantics {
        Semantics::Preserving
    }
    fn run(&self, g: &mut Graph, _cx: &PassCx) -> Result<PassReport> {
        let (from, to) = (self.from, self.to);
        let mut patch = Patch::default();
        let vi = g.inputs.iter().find(|i| i.name() == self.input).ok_or_else(|| Error::InvalidGraph(format!("the model has no input '{}'", self.input)))?;
        let with_batch = |vi: &onnx::ValueInfoProto, only_from: bool| {
            let (ty, dims) = onnx::value_info_type(vi);
            let mut d = dims?;
            if d.is_empty() || (only_from && d[0].known() != Some(from)) {
                return None;
            }
            d[0] = Dim::Known(to);
            Some(onnx::make_value_info(vi.name(), ty.unwrap_or(dtype::FLOAT), Some(&d)))
        };
        patch.declare.extend(with_batch(vi, false));
        patch.declare.extend(g.outputs.iter().filter_map(|o| with_batch(o, true)));
        let used = g.used_names();
        for ix in g.g.node_indices() {
            let n = g.node(ix);
            let slot = match n.op() {
                "Reshape" | "Expand" => 1,
                "Resize" => 3,
                "ConstantOfShape" => 0,
                _ => continue,
            };
            let Some(name) = n.input(slot).filter(|s| !s.is_empty()) else { continue };
            let Some(t) = g.const_tensor(name).filter(|t| t.dtype() == dtype::INT64 && t.dims().len() == 1) else { continue };
            let Ok(mut v) = t.to_i64() else { continue };
            if v.len() < 2 || v[0] != from {
                continue;
            }
            v[0] = to;
            let new = format!("{name}/batch{to}/{}", ix.index());
            if used.contains(&new) {
                return Err(Error::tensor(new, "rebatch: the name of the new shape constant is taken"));
            }
            let mut proto = n.proto.clone();
            proto.input[slot] = new.clone();
            patch.initializers.push(Tensor::from_i64(&new, &[v.len() as i64], &v));
            patch.replace.push((ix, proto));
        }
        let mut report = PassReport::default();
        report.rewrites.push(Rewrite::summary(&self.input, "rebatch.declare", format!("batch {from} → {to}: {} declarations, {} shape constants", patch.declare.len(), patch.replace.len())));
        patch.apply(g)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::builder::ModelBuilder;
    use crate::onnx::{a_ints, Dim};

    #[test]
    fn the_batch_in_declarations_and_shape_constants_moves() {
        // [1, 4, 6, 6] → conv → Reshape [1, 8, 36] → Transpose: exported for a batch of 1
        let mut b = ModelBuilder::new(13, 5);
        let x = b.input("x", &[Dim::Known(1), Dim::Known(4), Dim::Known(6), Dim::Known(6)]);
        let c = b.conv(&x, 4, 8, (3, 3), (1, 1), (1, 1), 1, false);
        let shape = b.constant_i64("shape", &[3], &[1, 8, 36]);
        let r = b.op("Reshape", &[&c, &shape], vec![]);
        let y = b.op("Transpose", &[&r], vec![a_ints("perm", &[0, 2, 1])]);
        b.output(&y);
        let mut m = b.build();
        m.graph.as_mut().unwrap().output[0] = onnx::make_value_info(&y, dtype::FLOAT, Some(&[Dim::Known(1), Dim::Known(36), Dim::Known(8)]));
        let (r4, reports) = crate::passes::run_on_model(&m, &[Box::new(Rebatch { input: "x".into(), from: 1, to: 4 })]).unwrap();
        assert!(reports[0].1.rewrites[0].detail.ends_with("2 declarations, 1 shape constants"), "{:?}", reports[0].1.rewrites);
        let g = r4.graph.as_ref().unwrap();
        let first = |vi: &onnx::ValueInfoProto| onnx::value_info_type(vi).1.unwrap()[0].known();
        assert_eq!((first(&g.input[0]), first(&g.output[0])), (Some(4), Some(4)));
        let reshape = g.node.iter().find(|n| n.op_type() == "Reshape").unwrap();
        let t = g.initializer.iter().find(|t| t.name() == reshape.input[1]).unwrap();
        assert_eq!(Tensor::from_proto(t.clone()).unwrap().to_i64().unwrap(), [4, 8, 36]);
        assert!(!g.initializer.iter().any(|t| t.name() == shape), "the old shape constant, now unread, is swept");
        // each sample of a batch of 4 gives what it gives alone
        let xs = ndarray::Array4::from_shape_fn((4, 4, 6, 6), |(n, c, h, w)| ((n * 7 + c * 5 + h * 3 + w) % 11) as f32 / 5.0 - 1.0).into_dyn();
        let batched = crate::exec::run(&r4, &[xs.clone()]).unwrap();
        for k in 0..4 {
            let one = crate::exec::run(&m, &[xs.slice(ndarray::s![k..k + 1, .., .., ..]).to_owned().into_dyn()]).unwrap();
            assert_eq!(batched[0].slice(ndarray::s![k..k + 1, .., ..]).into_dyn(), one[0].view());
        }
        // an input the model does not have
        let e = crate::passes::run_on_model(&m, &[Box::new(Rebatch { input: "nope".into(), from: 1, to: 4 })]).unwrap_err().to_string();
        assert!(e.contains("no input 'nope'"), "{e}");
    }
}

//! `calibrate_map`: the edits map calibration (`train::threshold`) makes
//! before the Sigmoid that computes a probability-map output `z`:
//!
//! - a shift, `z + shift` (an `Add` and a scalar initializer
//!   `{z}.calibration_shift`); calibrating a calibrated model adds to that
//!   initializer instead of inserting another `Add`;
//! - a horizontal blend `z + |λ|·(pool(z) − z)`, pool the 1×3 minimum (λ > 0,
//!   a MaxPool of −z negated) or maximum (λ < 0).

use ndarray::ArrayD;

use crate::error::{Error, Result};
use crate::ir::{Graph, Patch};
use crate::onnx::{a_ints, make_node, NodeProto};
use crate::onnx::tensor::Tensor;
use crate::passes::{Pass, PassCx, PassReport, Rewrite, Semantics};

pub struct CalibrateMap {
    /// The graph output (a Sigmoid's, looked at through element moves).
    pub output: String,
    /// Added before the Sigmoid (None: no shift).
    pub shift: Option<f32>,
    /// The blend λ (0: none).
    pub blend: f32,
}

fn scalar(name: &str, v: f32) -> Tensor {
    Tensor::from_f32(name, &ArrayD::from_elem(ndarray::IxDyn(&[]), v))
}

impl Pass for CalibrateMap {
    fn name(&self) -> &'static str {
        "calibrate_map"
    }
    fn semantics(&self) -> Semantics {
        Semantics::Changing
    }
    fn run(&self, g: &mut Graph, _cx: &PassCx) -> Result<PassReport> {
        let sig = match g.look_through(&self.output) {
            (Some(ix), _) if g.node(ix).op() == "Sigmoid" => ix,
            _ => return Err(Error::InvalidGraph(format!("output '{}' is not computed by a Sigmoid", self.output))),
        };
        let sig_node = g.node(sig).clone();
        let z0 = sig_node.input(0).ok_or_else(|| Error::node(sig_node.label(), "Sigmoid without an input"))?.to_string();
        let after = g.producer(&z0).map_or(sig_node.pos, |(ix, _)| g.node(ix).pos);
        let mut patch = Patch::default();
        let mut nodes: Vec<NodeProto> = vec![];
        let mut z = z0.clone();
        let mut detail = vec![];
        if let Some(shift) = self.shift {
            let earlier = z.strip_suffix(".calibrated").map(|base| format!("{base}.calibration_shift"));
            match earlier.and_then(|c| g.initializers.get(&c).map(|t| (c, t.clone()))) {
                Some((c, t)) => patch.update.push(Tensor::from_f32(&c, &t.to_f32()?.mapv(|v| v + shift))),
                None => {
                    let (c, zc) = (format!("{z}.calibration_shift"), format!("{z}.calibrated"));
                    nodes.push(make_node(&format!("{z}.calibration"), "Add", &[&z, &c], &[&zc], vec![]));
                    patch.initializers.push(scalar(&c, shift));
                    z = zc;
                }
            }
            detail.push(format!("shift {shift:+.4}"));
        }
        if self.blend != 0.0 {
            let lam = self.blend;
            let b = format!("{z}.blend");
            let pool = |input: &str, out: &str| make_node(&format!("{out}.node"), "MaxPool", &[input], &[out], vec![a_ints("kernel_shape", &[1, 3]), a_ints("pads", &[0, 1, 0, 1])]);
            let pooled = if lam > 0.0 {
                nodes.push(make_node(&format!("{b}/neg"), "Neg", &[&z], &[&format!("{b}/neg")], vec![]));
                nodes.push(pool(&format!("{b}/neg"), &format!("{b}/max_neg")));
                nodes.push(make_node(&format!("{b}/min"), "Neg", &[&format!("{b}/max_neg")], &[&format!("{b}/min")], vec![]));
                format!("{b}/min")
            } else {
                nodes.push(pool(&z, &format!("{b}/max")));
                format!("{b}/max")
            };
            let (c, zb) = (format!("{b}/lambda"), format!("{z}.blended"));
            nodes.push(make_node(&format!("{b}/diff"), "Sub", &[&pooled, &z], &[&format!("{b}/diff")], vec![]));
            nodes.push(make_node(&format!("{b}/scaled"), "Mul", &[&format!("{b}/diff"), &c], &[&format!("{b}/scaled")], vec![]));
            nodes.push(make_node(&format!("{b}/add"), "Add", &[&z, &format!("{b}/scaled")], &[&zb], vec![]));
            patch.initializers.push(scalar(&c, lam.abs()));
            z = zb;
            detail.push(format!("blend {lam:+.3}"));
        }
        let mut report = PassReport::default();
        if z != z0 {
            let mut s = sig_node.proto.clone();
            s.input[0] = z;
            patch.replace.push((sig, s));
        }
        // each placed after the last (`Patch::apply` gives them rising positions)
        patch.add.extend(nodes.into_iter().map(|n| (n, after)));
        if !patch.is_empty() {
            report.rewrites.push(Rewrite::summary(sig_node.label(), "calibrate_map", detail.join(", ")));
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
    fn a_second_shift_adds_to_the_first_and_the_blend_follows_it() {
        let mut b = ModelBuilder::new(13, 1);
        let x = b.input("x", &[Dim::Known(1), Dim::Known(1), Dim::Known(3), Dim::Known(5)]);
        let y = b.op("Sigmoid", &[&x], vec![]);
        let r = b.op("Identity", &[&y], vec![]);
        b.output(&r);
        let m = b.build();
        let run = |m: &crate::onnx::ModelProto, pass: CalibrateMap| crate::passes::run_on_model(m, &[Box::new(pass)]).unwrap().0;
        let once = run(&m, CalibrateMap { output: r.clone(), shift: Some(0.5), blend: 0.0 });
        let twice = run(&once, CalibrateMap { output: r.clone(), shift: Some(-1.5), blend: 0.0 });
        let adds = |m: &crate::onnx::ModelProto| m.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type() == "Add").count();
        assert_eq!((adds(&once), adds(&twice)), (1, 1), "the second shift changes the first's constant");
        let z = ndarray::Array4::from_shape_fn((1, 1, 3, 5), |(_, _, h, w)| (h * 5 + w) as f32 / 3.0 - 2.0).into_dyn();
        let got = crate::exec::run(&twice, &[z.clone()]).unwrap();
        let want = z.mapv(|v| 1.0 / (1.0 + (-(v - 1.0)).exp()));
        assert!(crate::exec::compare(&got[0], &want, 1e-5, 1e-6).unwrap().ok());
        // shift and blend in one pass: the Sigmoid reads the blend of the shifted logits
        let both = run(&m, CalibrateMap { output: r.clone(), shift: Some(0.25), blend: 0.5 });
        let sig = both.graph.as_ref().unwrap().node.iter().find(|n| n.op_type() == "Sigmoid").unwrap();
        assert_eq!(sig.input[0], format!("{x}.calibrated.blended"));
        // an output no Sigmoid computes
        let e = crate::passes::run_on_model(&m, &[Box::new(CalibrateMap { output: "x".into(), shift: Some(1.0), blend: 0.0 })]).unwrap_err().to_string();
        assert!(e.contains("not computed by a Sigmoid"), "{e}");
    }
}

//! Normalisation: BatchNormalization (stored statistics, or the statistics of
//! the batch computed in the graph) and LayerNormalization.

use super::{Ctx, Emitter};
use crate::error::{Error, Result};
use crate::onnx::{self, a_float, attr_float, attr_int};

pub(super) fn batch_norm(em: &mut Emitter, c: &Ctx) -> Result<Vec<Option<String>>> {
    let n = c.n;
    let gy = &c.gy()?;
    if attr_int(n, "training_mode") == Some(1) {
        return Err(Error::node(onnx::node_label(n), "BatchNormalization with training_mode=1 (fusec computes batch statistics itself)"));
    }
    if c.needs(3) || c.needs(4) {
        if !em.batch_bn.contains(&onnx::node_label(n)) {
            return Err(Error::node(onnx::node_label(n), "gradient with respect to BN running statistics"));
        }
    }
    let x = c.in_shape(em, 0)?;
    let ch = x[1];
    let mut bshape = vec![1; x.len()];
    bshape[1] = ch;
    let axes: Vec<i64> = (0..x.len() as i64).filter(|&a| a != 1).collect();
    let count: i64 = x.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, &d)| d).product();
    let eps = attr_float(n, "epsilon").unwrap_or(1e-5);
    let e = em.c_f32(eps);
    let ve = em.bin("Add", &n.input[4], &e)?;
    let sd = em.op("Sqrt", &[&ve], vec![], vec![ch]);
    let one = em.c_f32(1.0);
    let inv = em.bin("Div", &one, &sd)?;
    let k = em.bin("Mul", &n.input[1], &inv)?;
    let batch = em.batch_bn.contains(&onnx::node_label(n));
    let mut out = vec![None; 5];
    // Σdy and Σdy·x̂ per channel, with Σdy·x̂ = (Σdy·x − μ·Σdy)/σ (no x̂ tensor)
    let sums = if batch || c.needs(1) || c.needs(2) {
        let sdy = em.reduce("ReduceSum", gy, &axes, false)?;
        let sdyxh = if batch || c.needs(1) {
            let p = em.bin("Mul", gy, &n.input[0])?;
            let sdyx = em.reduce("ReduceSum", &p, &axes, false)?;
            let ms = em.bin("Mul", &n.input[3], &sdy)?;
            let d = em.bin("Sub", &sdyx, &ms)?;
            Some(em.bin("Mul", &d, &inv)?)
        } else {
            None
        };
        Some((sdy, sdyxh))
    } else {
        None
    };
    if c.needs(0) {
        let k4 = em.reshape(&k, &bshape)?;
        let kdy = em.bin("Mul", gy, &k4)?;
        out[0] = Some(match (&sums, batch) {
            (Some((sdy, Some(sdyxh))), true) => {
                // statistics of this batch: dx = k·dy − k/M·Σdy − k/M·x̂·Σ(dy·x̂) = k·dy + c1·x + c0,
                // the affine part c1·x + c0 as one inference-mode BatchNormalization
                let cm = em.c_f32(-1.0 / count as f32);
                let km = em.bin("Mul", &k, &cm)?;
                let a = em.bin("Mul", &km, &sdyxh)?;
                let c1 = em.bin("Mul", &a, &inv)?;
                let t = em.bin("Mul", &c1, &n.input[3])?;
                let b = em.bin("Mul", &km, sdy)?;
                let c0 = em.bin("Sub", &b, &t)?;
                let s = em.c_f32((1.0 + eps).sqrt());
                let c1s = em.bin("Mul", &c1, &s)?;
                let (zero, ones) = (em.c_array(&ndarray::ArrayD::zeros(ndarray::IxDyn(&[ch as usize]))), em.c_array(&ndarray::ArrayD::ones(ndarray::IxDyn(&[ch as usize]))));
                let aff = em.op("BatchNormalization", &[&n.input[0], &c1s, &c0, &zero, &ones], vec![a_float("epsilon", eps)], x.clone());
                em.bin("Add", &kdy, &aff)?
            }
            _ => kdy,
        });
    }
    if let Some((sdy, sdyxh)) = sums {
        if c.needs(1) {
            out[1] = sdyxh;
        }
        if c.needs(2) {
            out[2] = Some(sdy);
        }
    }
    Ok(out)
}

/// y = (x − μ)·r·scale + bias over the trailing axes from `axis`, with
/// r = 1/√(var + ε): dx = r·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·scale,
/// dscale = Σ dy·x̂ and dbias = Σ dy over the leading axes.
pub(super) fn layer_norm(em: &mut Emitter, c: &Ctx) -> Result<Vec<Option<String>>> {
    let gy = c.gy()?;
    let x = c.in_shape(em, 0)?;
    let r = x.len();
    let ax = super::axis(attr_int(c.n, "axis").unwrap_or(-1), r);
    if attr_int(c.n, "stash_type").is_some_and(|t| t != 1) {
        return Err(c.err("LayerNormalization with stash_type other than float"));
    }
    let eps = attr_float(c.n, "epsilon").unwrap_or(1e-5);
    let norm_axes: Vec<i64> = (ax as i64..r as i64).collect();
    let lead_axes: Vec<i64> = (0..ax as i64).collect();
    let mu = em.reduce("ReduceMean", c.input(0), &norm_axes, true)?;
    let xc = em.bin("Sub", c.input(0), &mu)?;
    let sq = em.bin("Mul", &xc, &xc)?;
    let var = em.reduce("ReduceMean", &sq, &norm_axes, true)?;
    let e = em.c_f32(eps);
    let ve = em.bin("Add", &var, &e)?;
    let vs = em.shape(&ve)?;
    let sd = em.op("Sqrt", &[&ve], vec![], vs);
    let xh = em.bin("Div", &xc, &sd)?;
    let mut out = vec![None, None, None];
    if c.needs(0) {
        let g = em.bin("Mul", &gy, c.input(1))?;
        let mg = em.reduce("ReduceMean", &g, &norm_axes, true)?;
        let gx = em.bin("Mul", &g, &xh)?;
        let mgx = em.reduce("ReduceMean", &gx, &norm_axes, true)?;
        let t = em.bin("Mul", &xh, &mgx)?;
        let d = em.bin("Sub", &g, &mg)?;
        let d = em.bin("Sub", &d, &t)?;
        out[0] = Some(em.bin("Div", &d, &sd)?);
    }
    let sum_lead = |em: &mut Emitter, v: &str, target: &[i64]| -> Result<String> {
        let s = if lead_axes.is_empty() { v.to_string() } else { em.reduce("ReduceSum", v, &lead_axes, false)? };
        em.unbroadcast(&s, target)
    };
    if c.needs(1) {
        let p = em.bin("Mul", &gy, &xh)?;
        let t = c.in_shape(em, 1)?;
        out[1] = Some(sum_lead(em, &p, &t)?);
    }
    if c.needs(2) {
        let t = c.in_shape(em, 2)?;
        out[2] = Some(sum_lead(em, &gy, &t)?);
    }
    Ok(out)
}

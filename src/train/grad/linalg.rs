//! Gemm, MatMul (batched, with broadcast batch dimensions), Softmax and
//! LogSoftmax on any axis, and the reductions.

use super::{axis, broadcast, list_arg, Ctx, Emitter};
use crate::error::Result;
use crate::onnx::{a_float, a_int, attr_float, attr_int};

type Grads = Result<Vec<Option<String>>>;

fn one(g: String) -> Grads {
    Ok(vec![Some(g)])
}

pub(super) fn gemm(em: &mut Emitter, c: &Ctx) -> Grads {
    let g = c.gy()?;
    let (ta, tb) = (attr_int(c.n, "transA").unwrap_or(0) == 1, attr_int(c.n, "transB").unwrap_or(0) == 1);
    let alpha = attr_float(c.n, "alpha").unwrap_or(1.0);
    let beta = attr_float(c.n, "beta").unwrap_or(1.0);
    let (sa, sb) = (c.in_shape(em, 0)?, c.in_shape(em, 1)?);
    let mut out = vec![None, None, None];
    if c.needs(0) {
        // dA' = alpha * dY * B'^T, with B' = op(B)
        let (m, k) = if ta { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
        let da = em.op("Gemm", &[&g, c.input(1)], vec![a_int("transB", (!tb) as i64), a_float("alpha", alpha)], vec![m, k]);
        out[0] = Some(if ta { em.transpose(&da, &[1, 0])? } else { da });
    }
    if c.needs(1) {
        // dB' = alpha * A'^T * dY
        let (k, nn) = if tb { (sb[1], sb[0]) } else { (sb[0], sb[1]) };
        let db = em.op("Gemm", &[c.input(0), &g], vec![a_int("transA", (!ta) as i64), a_float("alpha", alpha)], vec![k, nn]);
        out[1] = Some(if tb { em.transpose(&db, &[1, 0])? } else { db });
    }
    if c.needs(2) {
        let sc = c.in_shape(em, 2)?;
        let b = em.c_f32(beta);
        let gb = em.bin("Mul", &g, &b)?;
        out[2] = Some(em.unbroadcast(&gb, &sc)?);
    }
    Ok(out)
}

/// Swap the last two axes.
fn swap_last(em: &mut Emitter, x: &str) -> Result<String> {
    let r = em.shape(x)?.len();
    let mut perm: Vec<i64> = (0..r as i64).collect();
    perm.swap(r - 2, r - 1);
    em.transpose(x, &perm)
}

/// A [.., M, K] · B [.., K, N] with broadcast batch dimensions: dA = dY · Bᵀ and
/// dB = Aᵀ · dY, each summed back over the batch dimensions it was broadcast along.
pub(super) fn matmul(em: &mut Emitter, c: &Ctx) -> Grads {
    let g = c.gy()?;
    let (sa, sb) = (c.in_shape(em, 0)?, c.in_shape(em, 1)?);
    if sa.len() < 2 || sb.len() < 2 {
        return Err(c.err(format!("MatMul backward for 1-D operands ({sa:?} x {sb:?})")));
    }
    let gs = em.shape(&g)?;
    let mut out = vec![None, None];
    if c.needs(0) {
        let bt = swap_last(em, c.input(1))?;
        let mut s = gs.clone();
        *s.last_mut().unwrap_or(&mut 0) = sa[sa.len() - 1];
        let da = em.op("MatMul", &[&g, &bt], vec![], s);
        out[0] = Some(em.unbroadcast(&da, &sa)?);
    }
    if c.needs(1) {
        let (k, nn) = (sa[sa.len() - 1], sb[sb.len() - 1]);
        if sb.len() == 2 {
            // a shared weight: fold every batch dimension into the rows
            let rows: i64 = sa[..sa.len() - 1].iter().product();
            let a2 = em.reshape(c.input(0), &[rows, k])?;
            let g2 = em.reshape(&g, &[rows, nn])?;
            let at = em.transpose(&a2, &[1, 0])?;
            out[1] = Some(em.op("MatMul", &[&at, &g2], vec![], sb.clone()));
        } else {
            let at = swap_last(em, c.input(0))?;
            let batch = broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
            let mut s = batch;
            s.extend([k, nn]);
            let db = em.op("MatMul", &[&at, &g], vec![], s);
            out[1] = Some(em.unbroadcast(&db, &sb)?);
        }
    }
    Ok(out)
}

pub(super) fn softmax(em: &mut Emitter, c: &Ctx) -> Grads {
    let xs = c.in_shape(em, 0)?;
    let default = if em.opset >= 13 { -1 } else { 1 };
    let ax = axis(attr_int(c.n, "axis").unwrap_or(default), xs.len()) as i64;
    if em.opset < 13 && ax != xs.len() as i64 - 1 {
        return Err(c.err("Softmax before opset 13 over a non-last axis"));
    }
    let g = c.gy()?;
    if c.n.op_type() == "Softmax" {
        let gyy = em.bin("Mul", &g, c.y())?;
        let s = em.reduce("ReduceSum", &gyy, &[ax], true)?;
        let d = em.bin("Sub", &g, &s)?;
        one(em.bin("Mul", &d, c.y())?)
    } else {
        let s = em.reduce("ReduceSum", &g, &[ax], true)?;
        let p = em.op("Exp", &[c.y()], vec![], xs);
        let t = em.bin("Mul", &p, &s)?;
        one(em.bin("Sub", &g, &t)?)
    }
}

/// The reduced axes (normalised) and the output gradient reshaped to keepdims form.
fn reduced(em: &mut Emitter, c: &Ctx) -> Result<(Vec<i64>, Vec<i64>, String)> {
    let xs = c.in_shape(em, 0)?;
    let r = xs.len() as i64;
    let noop = attr_int(c.n, "noop_with_empty_axes").unwrap_or(0) == 1;
    let axes: Vec<i64> = match list_arg(em, c.n, "axes", 1) {
        Some(a) if !a.is_empty() => a.into_iter().map(|a| axis(a, r as usize) as i64).collect(),
        _ if noop => vec![],
        _ => (0..r).collect(),
    };
    let keep: Vec<i64> = (0..r).map(|i| if axes.contains(&i) { 1 } else { xs[i as usize] }).collect();
    let g = em.reshape(&c.gy()?, &keep)?;
    Ok((xs, axes, g))
}

pub(super) fn reduce(em: &mut Emitter, c: &Ctx) -> Grads {
    let op = c.n.op_type();
    let (xs, axes, g) = reduced(em, c)?;
    let g = if op == "ReduceMean" {
        let count: i64 = axes.iter().map(|&a| xs[a as usize]).product();
        let k = em.c_f32(1.0 / count as f32);
        em.bin("Mul", &g, &k)?
    } else {
        g
    };
    if op == "ReduceSumSquare" {
        let two = em.c_f32(2.0);
        let x2 = em.bin("Mul", c.input(0), &two)?;
        one(em.bin("Mul", &x2, &g)?)
    } else {
        one(em.expand(&g, &xs)?)
    }
}

/// The gradient goes to the maximal elements (shared equally between ties).
pub(super) fn reduce_max(em: &mut Emitter, c: &Ctx) -> Grads {
    let (xs, _, g) = reduced(em, c)?;
    let keep = em.shape(&g)?;
    let y = em.reshape(c.y(), &keep)?;
    let mask = em.op("Equal", &[c.input(0), &y], vec![], xs.clone());
    let m = em.op("Cast", &[&mask], vec![a_int("to", crate::onnx::dtype::FLOAT as i64)], xs.clone());
    let axes: Vec<i64> = (0..xs.len() as i64).filter(|&i| keep[i as usize] == 1 && xs[i as usize] != 1).collect();
    let cnt = if axes.is_empty() { m.clone() } else { em.reduce("ReduceSum", &m, &axes, true)? };
    let share = em.bin("Div", &g, &cnt)?;
    one(em.bin("Mul", &m, &share)?)
}

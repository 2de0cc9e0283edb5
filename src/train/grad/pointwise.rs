//! Elementwise ops: activations, arithmetic with broadcasting, Pow, Erf, Where.

use super::{cmp, mask_f32, masked, Ctx, Emitter};
use crate::error::Result;
use crate::onnx::attr_float;

type Grads = Result<Vec<Option<String>>>;

fn one(g: String) -> Grads {
    Ok(vec![Some(g)])
}

pub(super) fn relu(em: &mut Emitter, c: &Ctx) -> Grads {
    let z = em.c_f32(0.0);
    let m = cmp(em, "Greater", c.input(0), &z)?;
    one(masked(em, &m, &c.gy()?)?)
}

pub(super) fn leaky_relu(em: &mut Emitter, c: &Ctx) -> Grads {
    let alpha = attr_float(c.n, "alpha").unwrap_or(0.01);
    let (z, a) = (em.c_f32(0.0), em.c_f32(alpha));
    // slope alpha + (1 − alpha)·[x > 0]
    let m = cmp(em, "Greater", c.input(0), &z)?;
    let m = mask_f32(em, &m)?;
    let b = em.c_f32(1.0 - alpha);
    let s = em.bin("Mul", &m, &b)?;
    let s = em.bin("Add", &s, &a)?;
    one(em.bin("Mul", &c.gy()?, &s)?)
}

/// The gradient passes where the value was not clipped, i.e. where y == x.
pub(super) fn clip(em: &mut Emitter, c: &Ctx) -> Grads {
    let m = cmp(em, "Equal", c.input(0), c.y())?;
    one(masked(em, &m, &c.gy()?)?)
}

pub(super) fn hard_sigmoid(em: &mut Emitter, c: &Ctx) -> Grads {
    let alpha = attr_float(c.n, "alpha").unwrap_or(0.2);
    let (z, o, a) = (em.c_f32(0.0), em.c_f32(1.0), em.c_f32(alpha));
    let m1 = cmp(em, "Greater", c.y(), &z)?;
    let m2 = cmp(em, "Less", c.y(), &o)?;
    let m = cmp(em, "And", &m1, &m2)?;
    let g = c.gy()?;
    let ga = em.bin("Mul", &g, &a)?;
    one(masked(em, &m, &ga)?)
}

pub(super) fn hard_swish(em: &mut Emitter, c: &Ctx) -> Grads {
    // dy/dx = x/3 + 1/2 on [−3, 3], 1 above, 0 below: with c = clip(x, −3, 3) and
    // s = sign(x − c) (1 above, −1 below, 0 inside), dy/dx = c/3 + (1 − s)/2
    let (third, half, m3, p3) = (em.c_f32(1.0 / 3.0), em.c_f32(0.5), em.c_f32(-3.0), em.c_f32(3.0));
    let shape = c.in_shape(em, 0)?;
    let cl = em.op("Clip", &[c.input(0), &m3, &p3], vec![], shape.clone());
    let out = em.bin("Sub", c.input(0), &cl)?;
    let s = em.op("Sign", &[&out], vec![], shape);
    let hs = em.bin("Mul", &s, &half)?;
    let k = em.bin("Sub", &half, &hs)?;
    let t = em.bin("Mul", &cl, &third)?;
    let dt = em.bin("Add", &t, &k)?;
    one(em.bin("Mul", &c.gy()?, &dt)?)
}

pub(super) fn sigmoid(em: &mut Emitter, c: &Ctx) -> Grads {
    let o = em.c_f32(1.0);
    let om = em.bin("Sub", &o, c.y())?;
    let d = em.bin("Mul", c.y(), &om)?;
    one(em.bin("Mul", &c.gy()?, &d)?)
}

pub(super) fn tanh(em: &mut Emitter, c: &Ctx) -> Grads {
    let o = em.c_f32(1.0);
    let y2 = em.bin("Mul", c.y(), c.y())?;
    let d = em.bin("Sub", &o, &y2)?;
    one(em.bin("Mul", &c.gy()?, &d)?)
}

pub(super) fn exp(em: &mut Emitter, c: &Ctx) -> Grads {
    one(em.bin("Mul", &c.gy()?, c.y())?)
}

pub(super) fn neg(em: &mut Emitter, c: &Ctx) -> Grads {
    let g = c.gy()?;
    let shape = em.shape(&g)?;
    one(em.op("Neg", &[&g], vec![], shape))
}

pub(super) fn sqrt(em: &mut Emitter, c: &Ctx) -> Grads {
    let h = em.c_f32(0.5);
    let g = em.bin("Mul", &c.gy()?, &h)?;
    one(em.bin("Div", &g, c.y())?)
}

/// d erf(x)/dx = 2/√π · exp(−x²) (GELU is written with it).
pub(super) fn erf(em: &mut Emitter, c: &Ctx) -> Grads {
    let x2 = em.bin("Mul", c.input(0), c.input(0))?;
    let shape = em.shape(&x2)?;
    let nx2 = em.op("Neg", &[&x2], vec![], shape.clone());
    let e = em.op("Exp", &[&nx2], vec![], shape);
    let k = em.c_f32(std::f32::consts::FRAC_2_SQRT_PI);
    let d = em.bin("Mul", &e, &k)?;
    one(em.bin("Mul", &c.gy()?, &d)?)
}

/// y = a^b: da = dy·b·a^(b−1); db = dy·y·ln a (defined for a > 0).
pub(super) fn pow(em: &mut Emitter, c: &Ctx) -> Grads {
    let g = c.gy()?;
    let (sa, sb) = (c.in_shape(em, 0)?, c.in_shape(em, 1)?);
    let mut out = vec![None, None];
    if c.needs(0) {
        // b = 2 (variances) needs no Pow
        let two = em.consts.get(c.input(1)).and_then(|t| t.to_f32().ok()).is_some_and(|v| v.iter().all(|&x| x == 2.0));
        let d = if two {
            let k = em.c_f32(2.0);
            em.bin("Mul", c.input(0), &k)?
        } else {
            let o = em.c_f32(1.0);
            let bm1 = em.bin("Sub", c.input(1), &o)?;
            let p = em.bin("Pow", c.input(0), &bm1)?;
            em.bin("Mul", &p, c.input(1))?
        };
        let ga = em.bin("Mul", &g, &d)?;
        out[0] = Some(em.unbroadcast(&ga, &sa)?);
    }
    if c.needs(1) {
        let s = em.shape(c.input(0))?;
        let ln = em.op("Log", &[c.input(0)], vec![], s);
        let t = em.bin("Mul", &g, c.y())?;
        let gb = em.bin("Mul", &t, &ln)?;
        out[1] = Some(em.unbroadcast(&gb, &sb)?);
    }
    Ok(out)
}

/// Add, Sub, Mul, Div with broadcasting: each operand's gradient summed back to its shape.
pub(super) fn arith(em: &mut Emitter, c: &Ctx) -> Grads {
    let op = c.n.op_type();
    let g = c.gy()?;
    let (sa, sb) = (c.in_shape(em, 0)?, c.in_shape(em, 1)?);
    let mut out = vec![None, None];
    if c.needs(0) {
        let ga = match op {
            "Add" | "Sub" => g.clone(),
            "Mul" => em.bin("Mul", &g, c.input(1))?,
            _ => em.bin("Div", &g, c.input(1))?,
        };
        out[0] = Some(em.unbroadcast(&ga, &sa)?);
    }
    if c.needs(1) {
        let gb = match op {
            "Add" => g.clone(),
            "Sub" => {
                let shape = em.shape(&g)?;
                em.op("Neg", &[&g], vec![], shape)
            }
            "Mul" => em.bin("Mul", &g, c.input(0))?,
            _ => {
                let t = em.bin("Mul", &g, c.y())?;
                let t = em.bin("Div", &t, c.input(1))?;
                let shape = em.shape(&t)?;
                em.op("Neg", &[&t], vec![], shape)
            }
        };
        out[1] = Some(em.unbroadcast(&gb, &sb)?);
    }
    Ok(out)
}

/// Where(cond, a, b): the gradient goes to a where cond holds, to b elsewhere.
pub(super) fn where_(em: &mut Emitter, c: &Ctx) -> Grads {
    let g = c.gy()?;
    let shape = em.shape(&g)?;
    // cond is boolean (the shape table holds numeric values only); it broadcasts to the
    // output, so the float mask times g has g's shape whatever cond's shape is
    let cond_shape = em.shape(c.input(0)).unwrap_or_else(|_| shape.clone());
    let to_f32 = || vec![crate::onnx::a_int("to", crate::onnx::dtype::FLOAT as i64)];
    let mut out = vec![None, None, None];
    if c.needs(1) {
        let m = em.op("Cast", &[c.input(0)], to_f32(), cond_shape.clone());
        let ga = em.bin("Mul", &g, &m)?;
        let sa = c.in_shape(em, 1)?;
        out[1] = Some(em.unbroadcast(&ga, &sa)?);
    }
    if c.needs(2) {
        let not = em.op("Not", &[c.input(0)], vec![], cond_shape.clone());
        let m = em.op("Cast", &[&not], to_f32(), cond_shape);
        let gb = em.bin("Mul", &g, &m)?;
        let sb = c.in_shape(em, 2)?;
        out[2] = Some(em.unbroadcast(&gb, &sb)?);
    }
    Ok(out)
}

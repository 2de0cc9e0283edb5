//! QuantizeLinear and DequantizeLinear with the straight-through estimator:
//! rounding is treated as the identity and saturation as a clip, so a
//! Q → DQ pair passes the gradient unchanged where the value was inside the
//! integer range and stops it where it was clamped. The integer tensor between
//! them carries a float gradient (in units of the scale).

use super::{axis, cmp, masked, Ctx, Emitter};
use crate::error::Result;
use crate::onnx::{self, a_int, attr_int};

type Grads = Result<Vec<Option<String>>>;

/// The scale (or zero point, as float) reshaped to broadcast against an input of
/// rank `rank`: a scalar stays a scalar, a per-axis vector is laid along `axis`.
fn along_axis(em: &mut Emitter, c: &Ctx, v: &str, rank: usize) -> Result<String> {
    let s = em.shape(v).unwrap_or_default();
    if s.iter().product::<i64>() <= 1 {
        return Ok(v.to_string());
    }
    let a = axis(attr_int(c.n, "axis").unwrap_or(1), rank);
    let mut shape = vec![1i64; rank];
    shape[a] = s.iter().product();
    em.reshape(v, &shape)
}

/// The integer range of the quantized type: from the zero point's type, else the
/// `output_dtype` attribute (opset 21), else uint8 as the operator defines.
fn int_range(em: &Emitter, c: &Ctx) -> Result<(f32, f32)> {
    let dt = match c.n.input.get(2).filter(|z| !z.is_empty()) {
        Some(z) => em.consts.get(z).map(|t| t.dtype()).ok_or_else(|| c.err(format!("the zero point '{z}' is not a constant")))?,
        None => attr_int(c.n, "output_dtype").filter(|&d| d != 0).map_or(onnx::dtype::UINT8, |d| d as i32),
    };
    Ok(match dt {
        onnx::dtype::UINT8 => (0.0, 255.0),
        onnx::dtype::INT8 => (-128.0, 127.0),
        onnx::dtype::UINT16 => (0.0, 65535.0),
        onnx::dtype::INT16 => (-32768.0, 32767.0),
        onnx::dtype::INT32 => (i32::MIN as f32, i32::MAX as f32),
        other => return Err(c.err(format!("no straight-through rule for quantized type {}", onnx::dtype::name(other)))),
    })
}

fn float_scale(em: &mut Emitter, c: &Ctx, rank: usize) -> Result<String> {
    let s = c.input(1).to_string();
    if !em.shapes.contains_key(&s) {
        if let Some(t) = em.consts.get(&s) {
            em.shapes.insert(s.clone(), t.shape().iter().map(|&d| d as i64).collect());
        }
    }
    along_axis(em, c, &s, rank)
}

/// y = (x − zp)·scale: dx = dy·scale (x taken as real-valued).
pub(super) fn dequantize(em: &mut Emitter, c: &Ctx) -> Grads {
    if !c.needs(0) {
        return Ok(vec![]);
    }
    let rank = c.in_shape(em, 0)?.len();
    let s = float_scale(em, c, rank)?;
    Ok(vec![Some(em.bin("Mul", &c.gy()?, &s)?)])
}

/// y = saturate(round(x/scale) + zp): dx = dy/scale where x/scale + zp lies within
/// the integer range (to half a step), 0 where it saturated.
pub(super) fn quantize(em: &mut Emitter, c: &Ctx) -> Grads {
    if !c.needs(0) {
        return Ok(vec![]);
    }
    let xs = c.in_shape(em, 0)?;
    let rank = xs.len();
    let (lo, hi) = int_range(em, c)?;
    let s = float_scale(em, c, rank)?;
    let mut u = em.bin("Div", c.input(0), &s)?;
    if let Some(z) = c.n.input.get(2).filter(|z| !z.is_empty()) {
        let zt = em.consts.get(z).ok_or_else(|| c.err(format!("the zero point '{z}' is not a constant")))?;
        let zshape: Vec<i64> = zt.shape().iter().map(|&d| d as i64).collect();
        let zf = em.op("Cast", &[z], vec![a_int("to", onnx::dtype::FLOAT as i64)], zshape);
        let zf = along_axis(em, c, &zf, rank)?;
        u = em.bin("Add", &u, &zf)?;
    }
    let (l, h) = (em.c_f32(lo - 0.5), em.c_f32(hi + 0.5));
    let above = cmp(em, "GreaterOrEqual", &u, &l)?;
    let below = cmp(em, "LessOrEqual", &u, &h)?;
    let inside = cmp(em, "And", &above, &below)?;
    let gs = em.bin("Div", &c.gy()?, &s)?;
    Ok(vec![Some(masked(em, &inside, &gs)?)])
}

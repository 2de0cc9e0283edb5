//! Pooling: GlobalAveragePool, AveragePool (as a transposed convolution with a
//! constant kernel), MaxPool (scattering through its Indices output).

use super::conv::crop_to_input;
use super::{Ctx, Emitter};
use crate::error::Result;
use crate::ir::op::Window;
use crate::onnx::{a_int, a_ints, attr_int, attr_ints};

type Grads = Result<Vec<Option<String>>>;

pub(super) fn global_average(em: &mut Emitter, c: &Ctx) -> Grads {
    let xs = c.in_shape(em, 0)?;
    let hw: i64 = xs[2..].iter().product();
    let k = em.c_f32(1.0 / hw as f32);
    let g = em.bin("Mul", &c.gy()?, &k)?;
    Ok(vec![Some(em.expand(&g, &xs)?)])
}

pub(super) fn pool(em: &mut Emitter, c: &Ctx) -> Grads {
    let gy = c.gy()?;
    let x = c.in_shape(em, 0)?;
    let y = em.shape(&gy)?;
    if x.len() != 4 {
        return Err(c.err("training supports 2-D pooling only"));
    }
    let k = attr_ints(c.n, "kernel_shape").ok_or_else(|| c.err("no kernel_shape"))?;
    let win = Window::parse(c.n, k.clone())?;
    let s = win.strides.clone();
    let pads = win.explicit_pads(&x[2..]);
    if c.n.op_type() == "MaxPool" {
        let idx = c.n.output.get(1).filter(|o| !o.is_empty()).ok_or_else(|| c.err("MaxPool backward needs the Indices output"))?;
        let numel: i64 = x.iter().product();
        let flat_i = em.reshape(idx, &[y.iter().product()])?;
        let flat_g = em.reshape(&gy, &[y.iter().product()])?;
        let z = em.zeros(&[numel]);
        let sc = em.op("ScatterElements", &[&z, &flat_i, &flat_g], vec![a_int("axis", 0), crate::onnx::a_string("reduction", "add")], vec![numel]);
        return Ok(vec![Some(em.reshape(&sc, &x)?)]);
    }
    if win.dilations.iter().any(|&d| d != 1) {
        return Err(c.err("AveragePool backward with dilations"));
    }
    let include = attr_int(c.n, "count_include_pad").unwrap_or(0) == 1;
    if !include && pads.iter().any(|&p| p != 0) {
        return Err(c.err("AveragePool backward with padding and count_include_pad=0 is not supported"));
    }
    if attr_int(c.n, "ceil_mode").unwrap_or(0) == 1 {
        let exact = (0..2).all(|i| (x[i + 2] + pads[i] + pads[i + 2] - k[i]) % s[i] == 0);
        if !exact {
            return Err(c.err("AveragePool backward with ceil_mode=1 and partial windows is not supported"));
        }
    }
    let ch = x[1];
    let w = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[ch as usize, 1, k[0] as usize, k[1] as usize]), 1.0 / (k[0] * k[1]) as f32);
    let wn = em.c_array(&w);
    let full = vec![x[0], ch, s[0] * (y[2] - 1) + k[0], s[1] * (y[3] - 1) + k[1]];
    let ct = em.op("ConvTranspose", &[&gy, &wn], vec![a_ints("strides", &s), a_int("group", ch)], full);
    Ok(vec![Some(crop_to_input(em, &ct, &x, &pads)?)])
}

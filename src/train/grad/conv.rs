//! Convolutions: Conv (dense, grouped, depthwise, pointwise, FuSe 1-D) and
//! ConvTranspose. Both share the weight gradient of a convolution, written as
//! a convolution of the input with the output gradient.

use super::{Ctx, Emitter};
use crate::error::{Error, Result};
use crate::ir::op::ConvAttrs;
use crate::onnx::{a_int, a_ints, attr_ints};

/// The geometry of a 2-D convolution: explicit pads (begin h, begin w, end h,
/// end w), strides, dilations, kernel, group.
struct Geom {
    pads: Vec<i64>,
    s: Vec<i64>,
    d: Vec<i64>,
    k: Vec<i64>,
    g: i64,
}

fn geom(c: &Ctx, w: &[i64], spatial: &[i64]) -> Result<Geom> {
    let a = ConvAttrs::parse(c.n, w)?;
    if a.kernel().len() != 2 {
        return Err(c.err(format!("training supports 2-D convolutions only (kernel {:?})", a.kernel())));
    }
    let pads = a.window.explicit_pads(spatial);
    Ok(Geom { pads, s: a.window.strides.clone(), d: a.window.dilations.clone(), k: a.window.kernel.clone(), g: a.group })
}

/// Gradient of a windowed op's input from a ConvTranspose result over the full
/// (unpadded) extent: crop the pads, zero-fill positions no window touched.
pub(super) fn crop_to_input(em: &mut Emitter, full: &str, x: &[i64], pads: &[i64]) -> Result<String> {
    let fs = em.shape(full)?;
    let sp = x.len() - 2;
    let axes: Vec<i64> = (2..2 + sp as i64).collect();
    let starts: Vec<i64> = (0..sp).map(|i| pads[i]).collect();
    let ends: Vec<i64> = (0..sp).map(|i| (pads[i] + x[i + 2]).min(fs[i + 2])).collect();
    let cropped = em.slice(full, &axes, &starts, &ends)?;
    let mut p = vec![0; 2 * x.len()];
    for i in 0..sp {
        p[x.len() + 2 + i] = x[i + 2] - (ends[i] - starts[i]);
    }
    em.pad(&cropped, &p)
}

/// dW of y = Conv(x, W) (W: [M, C/g, kh, kw]) from x and dY.
fn weight_grad(em: &mut Emitter, x_name: &str, gy: &str, w: &[i64], geo: &Geom) -> Result<String> {
    let x = em.shape(x_name)?;
    let y = em.shape(gy)?;
    let Geom { pads, s, d, k, g } = geo;
    let (nb, c, m, g) = (x[0], x[1], w[0], *g);
    let (cg, mg) = (c / g, m / g);
    let pointwise = g == 1 && k == &[1, 1] && s == &[1, 1] && pads.iter().all(|&p| p == 0);
    if pointwise {
        // dW = Σ_n dY[n] · X[n]ᵀ as a batched MatMul, transposing only the smaller of
        // X and dY (per sample), then a sum over the batch
        let hw = x[2] * x[3];
        let x3 = em.reshape(x_name, &[nb, c, hw])?;
        let y3 = em.reshape(gy, &[nb, m, hw])?;
        let dw = if m <= c {
            let yt = em.transpose(&y3, &[0, 2, 1])?;
            let p = em.op("MatMul", &[&x3, &yt], vec![], vec![nb, c, m]);
            let q = em.reduce("ReduceSum", &p, &[0], false)?;
            em.transpose(&q, &[1, 0])?
        } else {
            let xt = em.transpose(&x3, &[0, 2, 1])?;
            let p = em.op("MatMul", &[&y3, &xt], vec![], vec![nb, m, c]);
            em.reduce("ReduceSum", &p, &[0], false)?
        };
        return em.reshape(&dw, &[m, c, 1, 1]);
    }
    let depthwise = g == c && m == c;
    // output size of the weight-gradient convolution (≥ the kernel; cropped to it)
    let oh: Vec<i64> = (0..2).map(|i| (x[i + 2] + pads[i] + pads[i + 2] - ((y[i + 2] - 1) * s[i] + 1)) / d[i] + 1).collect();
    if depthwise && k[0] * k[1] <= 9 {
        // small (FuSe 1×K / K×1) kernels: one strided slice of the padded input per tap,
        // dW[c, i, j] = Σ dY · X[.., i·d + p·s, j·d + q·s] (no transposes; measured 1.5 ms
        // against 2.6 ms for the grouped-conv form on a [32, 100, 2, 96] 1×5 layer)
        let mut p = vec![0; 8];
        p[2] = pads[0];
        p[3] = pads[1];
        p[6] = pads[2];
        p[7] = pads[3];
        let xp = em.pad(x_name, &p)?;
        let (ax, st) = (em.c_i64(&[2, 3]), em.c_i64(s));
        let mut taps = vec![];
        for i in 0..k[0] {
            for j in 0..k[1] {
                let b = [i * d[0], j * d[1]];
                let e = [b[0] + (y[2] - 1) * s[0] + 1, b[1] + (y[3] - 1) * s[1] + 1];
                let (bs, es) = (em.c_i64(&b), em.c_i64(&e));
                let xs = em.op("Slice", &[&xp, &bs, &es, &ax, &st], vec![], y.clone());
                let prod = em.bin("Mul", &xs, gy)?;
                let r = em.reduce("ReduceSum", &prod, &[0, 2, 3], false)?;
                taps.push(em.reshape(&r, &[c, 1])?);
            }
        }
        let refs: Vec<&str> = taps.iter().map(String::as_str).collect();
        let cat = em.op("Concat", &refs, vec![a_int("axis", 1)], vec![c, k[0] * k[1]]);
        return em.reshape(&cat, &[c, 1, k[0], k[1]]);
    }
    if depthwise {
        // one group per (sample, channel): x as [1, N·C, H, W] and dY as [N·C, 1, Ho, Wo]
        // need no transposes; the per-sample kernels are summed afterwards
        let x1 = em.reshape(x_name, &[1, nb * c, x[2], x[3]])?;
        let w1 = em.reshape(gy, &[nb * c, 1, y[2], y[3]])?;
        let cv = em.op("Conv", &[&x1, &w1], vec![a_ints("strides", d), a_ints("dilations", s), a_ints("pads", pads), a_int("group", nb * c)], vec![1, nb * c, oh[0], oh[1]]);
        let cropped = em.slice(&cv, &[2, 3], &[0, 0], &[k[0], k[1]])?;
        let per = em.reshape(&cropped, &[nb, c, k[0], k[1]])?;
        let sum = em.reduce("ReduceSum", &per, &[0], false)?;
        return em.reshape(&sum, &[c, 1, k[0], k[1]]);
    }
    let xt = if g == 1 {
        em.transpose(x_name, &[1, 0, 2, 3])?
    } else {
        let r = em.reshape(x_name, &[nb, g, cg, x[2], x[3]])?;
        let t = em.transpose(&r, &[2, 1, 0, 3, 4])?;
        em.reshape(&t, &[cg, g * nb, x[2], x[3]])?
    };
    let wt = if g == 1 {
        em.transpose(gy, &[1, 0, 2, 3])?
    } else {
        let r = em.reshape(gy, &[nb, g, mg, y[2], y[3]])?;
        let t = em.transpose(&r, &[1, 2, 0, 3, 4])?;
        em.reshape(&t, &[m, nb, y[2], y[3]])?
    };
    let cv = em.op("Conv", &[&xt, &wt], vec![a_ints("strides", d), a_ints("dilations", s), a_ints("pads", pads), a_int("group", g)], vec![cg, m, oh[0], oh[1]]);
    let cropped = em.slice(&cv, &[2, 3], &[0, 0], &[k[0], k[1]])?;
    em.transpose(&cropped, &[1, 0, 2, 3])
}

pub(super) fn conv(em: &mut Emitter, c: &Ctx) -> Result<Vec<Option<String>>> {
    let gy = c.gy()?;
    let x = c.in_shape(em, 0)?;
    let w = c.in_shape(em, 1)?;
    let y = em.shape(&gy)?;
    if x.len() != 4 {
        return Err(c.err(format!("training supports 2-D convolutions only (input rank {})", x.len())));
    }
    let geo = geom(c, &w, &x[2..])?;
    let Geom { pads, s, d, k, g } = &geo;
    let mut out = vec![None, None, None];
    let pointwise = *g == 1 && k == &[1, 1] && s == &[1, 1] && pads.iter().all(|&p| p == 0);
    if c.needs(0) && pointwise {
        // dX[n] = Wᵀ · dY[n], one batched MatMul with the (small) transposed weight
        let (m, ch, hw) = (w[0], w[1], x[2] * x[3]);
        let w2 = em.reshape(c.input(1), &[m, ch])?;
        let wt = em.transpose(&w2, &[1, 0])?;
        let y3 = em.reshape(&gy, &[x[0], m, hw])?;
        let dx = em.op("MatMul", &[&wt, &y3], vec![], vec![x[0], ch, hw]);
        out[0] = Some(em.reshape(&dx, &x)?);
    } else if c.needs(0) && s.iter().all(|&v| v == 1) && (0..4).all(|i| pads[i] <= d[i % 2] * (k[i % 2] - 1)) {
        // stride 1: dX = Conv(dY, W with the kernel flipped and in/out channels swapped per
        // group), padded by d·(k−1) − p: a plain convolution, which ONNX Runtime runs 1.4-5×
        // faster than the grouped ConvTranspose (measured on the classifier's 1×3 layers)
        let wt = flipped_transposed(em, c.input(1), &w, *g)?;
        let p2: Vec<i64> = (0..4).map(|i| d[i % 2] * (k[i % 2] - 1) - pads[i]).collect();
        let cv = em.op("Conv", &[&gy, &wt], vec![a_ints("dilations", d), a_ints("pads", &p2), a_int("group", *g)], x.clone());
        out[0] = Some(cv);
    } else if c.needs(0) {
        let full: Vec<i64> = vec![x[0], x[1], s[0] * (y[2] - 1) + (k[0] - 1) * d[0] + 1, s[1] * (y[3] - 1) + (k[1] - 1) * d[1] + 1];
        let ct = em.op("ConvTranspose", &[&gy, c.input(1)], vec![a_ints("strides", s), a_ints("dilations", d), a_int("group", *g)], full);
        out[0] = Some(crop_to_input(em, &ct, &x, pads)?);
    }
    if c.needs(1) {
        out[1] = Some(weight_grad(em, c.input(0), &gy, &w, &geo)?);
    }
    if c.needs(2) {
        out[2] = Some(em.reduce("ReduceSum", &gy, &[0, 2, 3], false)?);
    }
    Ok(out)
}

/// The weight of the convolution that carries dY back to dX at stride 1: W [M, C/g, kh, kw]
/// with its two channel axes swapped within each group ([C, M/g, kh, kw]) and the kernel
/// flipped in both spatial axes.
fn flipped_transposed(em: &mut Emitter, w_name: &str, w: &[i64], g: i64) -> Result<String> {
    let (m, cg, kh, kw) = (w[0], w[1], w[2], w[3]);
    let mg = m / g;
    let swapped = if cg == 1 && mg == 1 {
        w_name.to_string()
    } else {
        let r = em.reshape(w_name, &[g, mg, cg, kh, kw])?;
        let t = em.transpose(&r, &[0, 2, 1, 3, 4])?;
        em.reshape(&t, &[g * cg, mg, kh, kw])?
    };
    if kh == 1 && kw == 1 {
        return Ok(swapped);
    }
    let (st, en, ax, step) = (em.c_i64(&[-1, -1]), em.c_i64(&[i64::MIN, i64::MIN]), em.c_i64(&[2, 3]), em.c_i64(&[-1, -1]));
    Ok(em.op("Slice", &[&swapped, &st, &en, &ax, &step], vec![], vec![g * cg, mg, kh, kw]))
}

/// y = ConvTranspose(x, W) is the input gradient of a convolution with weight W
/// (layout [C_in, C_out/g, kh, kw] = a Conv weight from C_out to C_in channels):
/// so dx = Conv(dy, W) with the same strides, dilations, pads and group, and dW
/// is that convolution's weight gradient with dy as its input and x as its
/// output gradient.
pub(super) fn conv_transpose(em: &mut Emitter, c: &Ctx) -> Result<Vec<Option<String>>> {
    let gy = c.gy()?;
    let x = c.in_shape(em, 0)?;
    let w = c.in_shape(em, 1)?;
    if x.len() != 4 {
        return Err(c.err(format!("training supports 2-D transposed convolutions only (input rank {})", x.len())));
    }
    if attr_ints(c.n, "output_shape").is_some() {
        return Err(c.err("ConvTranspose with output_shape (re-export with explicit pads to train it)"));
    }
    let a = ConvAttrs::parse(c.n, &w)?;
    if !matches!(a.window.auto_pad.as_str(), "NOTSET" | "" | "VALID") {
        return Err(c.err(format!("ConvTranspose with auto_pad {} (re-export with explicit pads to train it)", a.window.auto_pad)));
    }
    let y = em.shape(&gy)?;
    let geo = Geom { pads: a.window.explicit_pads(&y[2..]), s: a.window.strides.clone(), d: a.window.dilations.clone(), k: a.window.kernel.clone(), g: a.group };
    let mut out = vec![None, None, None];
    if c.needs(0) {
        let cv = em.op(
            "Conv",
            &[&gy, c.input(1)],
            vec![a_ints("strides", &geo.s), a_ints("dilations", &geo.d), a_ints("pads", &geo.pads), a_int("group", geo.g)],
            x.clone(),
        );
        out[0] = Some(cv);
    }
    if c.needs(1) {
        // the Conv that maps dy (C_out channels) to x (C_in): its weight [C_in, C_out/g, k]
        let cw = weight_grad(em, &gy, c.input(0), &w, &geo).map_err(|e| match e {
            Error::Node { .. } => e,
            other => c.err(other.to_string()),
        })?;
        out[1] = Some(cw);
    }
    if c.needs(2) {
        out[2] = Some(em.reduce("ReduceSum", &gy, &[0, 2, 3], false)?);
    }
    Ok(out)
}

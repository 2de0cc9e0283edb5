//! Ops that move, copy or select values: Concat, Split, Slice, Pad, the
//! reshapes, Transpose, Expand, Gather on constant indices, and Resize.

use super::{axis, list_arg, Ctx, Emitter};
use crate::error::Result;
use crate::onnx::{a_int, attr_int, attr_ints, attr_string};

type Grads = Result<Vec<Option<String>>>;

fn one(g: String) -> Grads {
    Ok(vec![Some(g)])
}

pub(super) fn concat(em: &mut Emitter, c: &Ctx) -> Grads {
    let g = c.gy()?;
    let ys = em.shape(&g)?;
    let ax = axis(attr_int(c.n, "axis").unwrap_or(0), ys.len());
    let sizes: Vec<i64> = (0..c.n.input.len()).map(|i| c.in_shape(em, i).map(|s| s[ax])).collect::<Result<_>>()?;
    let outs: Vec<String> = (0..sizes.len()).map(|_| em.fresh("split")).collect();
    let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
    let sp = em.c_i64(&sizes);
    em.node("Split", &[&g, &sp], &refs, vec![a_int("axis", ax as i64)]);
    for (o, &sz) in outs.iter().zip(&sizes) {
        let mut s = ys.clone();
        s[ax] = sz;
        em.shapes.insert(o.clone(), s);
    }
    Ok(outs.into_iter().map(Some).collect())
}

pub(super) fn split(em: &mut Emitter, c: &Ctx) -> Grads {
    let xs = c.in_shape(em, 0)?;
    let ax = axis(attr_int(c.n, "axis").unwrap_or(0), xs.len());
    let mut parts = vec![];
    for (i, o) in c.n.output.iter().enumerate() {
        parts.push(match c.gys.get(i).cloned().flatten() {
            Some(g) => g,
            None => {
                let s = em.shape(o)?;
                em.zeros(&s)
            }
        });
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    one(em.op("Concat", &refs, vec![a_int("axis", ax as i64)], xs))
}

pub(super) fn slice(em: &mut Emitter, c: &Ctx) -> Grads {
    let n = c.n;
    let xs = c.in_shape(em, 0)?;
    let starts = list_arg(em, n, "starts", 1).ok_or_else(|| c.err("Slice starts must be constant for training"))?;
    let ends = list_arg(em, n, "ends", 2).ok_or_else(|| c.err("Slice ends must be constant for training"))?;
    let axes = list_arg(em, n, "axes", 3).unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = n.input.get(4).filter(|s| !s.is_empty()).and_then(|s| em.const_ints(s)).unwrap_or_else(|| vec![1; starts.len()]);
    if steps.iter().any(|&s| s != 1) {
        return Err(c.err("Slice backward with steps other than 1 is not supported"));
    }
    let mut pads = vec![0; 2 * xs.len()];
    for (j, &a) in axes.iter().enumerate() {
        let a = axis(a, xs.len());
        let dim = xs[a];
        let norm = |v: i64| if v < 0 { (v + dim).max(0) } else { v.min(dim) };
        let (b, e) = (norm(starts[j]), norm(ends[j]).max(norm(starts[j])));
        pads[a] = b;
        pads[a + xs.len()] = dim - e;
    }
    one(em.pad(&c.gy()?, &pads)?)
}

pub(super) fn pad(em: &mut Emitter, c: &Ctx) -> Grads {
    let mode = attr_string(c.n, "mode").unwrap_or_else(|| "constant".into());
    let pads = list_arg(em, c.n, "pads", 1).ok_or_else(|| c.err("Pad pads must be constant for training"))?;
    if mode != "constant" || pads.iter().any(|&p| p < 0) || c.n.input.get(3).is_some_and(|s| !s.is_empty()) {
        return Err(c.err("Pad backward supports constant mode with non-negative pads over all axes"));
    }
    let xs = c.in_shape(em, 0)?;
    let r = xs.len();
    let axes: Vec<i64> = (0..r as i64).collect();
    let starts: Vec<i64> = pads[..r].to_vec();
    let ends: Vec<i64> = (0..r).map(|i| pads[i] + xs[i]).collect();
    one(em.slice(&c.gy()?, &axes, &starts, &ends)?)
}

/// Flatten, Reshape, (Un)squeeze, Identity, Dropout, Cast: the gradient takes the input's shape.
pub(super) fn reshape(em: &mut Emitter, c: &Ctx) -> Grads {
    let xs = c.in_shape(em, 0)?;
    one(em.reshape(&c.gy()?, &xs)?)
}

pub(super) fn transpose(em: &mut Emitter, c: &Ctx) -> Grads {
    let xs = c.in_shape(em, 0)?;
    let perm = attr_ints(c.n, "perm").unwrap_or_else(|| (0..xs.len() as i64).rev().collect());
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    one(em.transpose(&c.gy()?, &inv)?)
}

pub(super) fn expand(em: &mut Emitter, c: &Ctx) -> Grads {
    let xs = c.in_shape(em, 0)?;
    one(em.unbroadcast(&c.gy()?, &xs)?)
}

/// Gather with constant indices: the gradient of the selected slices goes back
/// to the rows they came from (summed where an index repeats), as a MatMul with
/// a one-hot [indices, rows] matrix over the gathered axis.
pub(super) fn gather(em: &mut Emitter, c: &Ctx) -> Grads {
    if c.needs(1) {
        return Err(c.err("gradient with respect to Gather indices"));
    }
    let xs = c.in_shape(em, 0)?;
    let r = xs.len();
    let ax = axis(attr_int(c.n, "axis").unwrap_or(0), r);
    let idx = em.const_ints(c.input(1)).ok_or_else(|| c.err("Gather indices must be constant for training"))?;
    let d = xs[ax];
    let m = idx.len() as i64;
    let idx: Vec<i64> = idx.iter().map(|&v| if v < 0 { v + d } else { v }).collect();
    if let Some(bad) = idx.iter().find(|v| !(0..d).contains(*v)) {
        return Err(c.err(format!("Gather index {bad} outside [0, {d})")));
    }
    // dY as [pre..., m, post...]
    let mut g_shape: Vec<i64> = xs[..ax].to_vec();
    g_shape.push(m);
    g_shape.extend(&xs[ax + 1..]);
    let g = em.reshape(&c.gy()?, &g_shape)?;
    // distinct indices (a channel subset or permutation): dX gathers dY back,
    // from a zero slice appended at position m where X was not read
    let mut from = vec![m; d as usize];
    if idx.iter().enumerate().all(|(i, &v)| std::mem::replace(&mut from[v as usize], i as i64) == m) {
        let mut z_shape = g_shape.clone();
        z_shape[ax] = 1;
        let z = em.zeros(&z_shape);
        let mut gz_shape = g_shape.clone();
        gz_shape[ax] = m + 1;
        let gz = em.op("Concat", &[&g, &z], vec![a_int("axis", ax as i64)], gz_shape);
        let from = em.c_i64(&from);
        return one(em.op("Gather", &[&gz, &from], vec![a_int("axis", ax as i64)], xs));
    }
    let mut onehot = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[m as usize, d as usize]));
    for (i, &v) in idx.iter().enumerate() {
        onehot[[i, v as usize]] = 1.0;
    }
    let oh = em.c_array(&onehot);
    // repeated indices sum: dY with the gathered axis moved last, times a one-hot matrix
    let mut perm: Vec<i64> = (0..r as i64).filter(|&i| i != ax as i64).collect();
    perm.push(ax as i64);
    let gt = em.transpose(&g, &perm)?;
    let mut ms = em.shape(&gt)?;
    *ms.last_mut().unwrap_or(&mut 0) = d;
    let mm = em.op("MatMul", &[&gt, &oh], vec![], ms);
    let mut inv = vec![0; r];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    one(em.transpose(&mm, &inv)?)
}

/// Where each output index of a resized axis reads from: (index, weight) pairs.
fn resize_taps(c: &Ctx, out_len: i64, in_len: i64, scale: f32) -> Result<Vec<Vec<(usize, f32)>>> {
    let mode = attr_string(c.n, "mode").unwrap_or_else(|| "nearest".into());
    let ctm = attr_string(c.n, "coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into());
    let nearest_mode = attr_string(c.n, "nearest_mode").unwrap_or_else(|| "round_prefer_floor".into());
    let scale = scale as f64;
    let mut rows = Vec::with_capacity(out_len as usize);
    for i in 0..out_len {
        let xr = i as f64;
        let x = match ctm.as_str() {
            "half_pixel" => (xr + 0.5) / scale - 0.5,
            "pytorch_half_pixel" => {
                if out_len > 1 {
                    (xr + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            "align_corners" => {
                if out_len > 1 {
                    xr * (in_len - 1) as f64 / (out_len - 1) as f64
                } else {
                    0.0
                }
            }
            "asymmetric" => xr / scale,
            "tf_half_pixel_for_nn" => (xr + 0.5) / scale,
            other => return Err(c.err(format!("Resize backward with coordinate_transformation_mode {other}"))),
        };
        let clamp = |v: i64| v.clamp(0, in_len - 1) as usize;
        match mode.as_str() {
            "nearest" => {
                let v = match nearest_mode.as_str() {
                    "round_prefer_floor" => {
                        if x.fract() == 0.5 {
                            x.floor()
                        } else {
                            x.round()
                        }
                    }
                    "round_prefer_ceil" => {
                        if x.fract() == 0.5 {
                            x.ceil()
                        } else {
                            x.round()
                        }
                    }
                    "floor" => x.floor(),
                    "ceil" => x.ceil(),
                    other => return Err(c.err(format!("Resize backward with nearest_mode {other}"))),
                };
                rows.push(vec![(clamp(v as i64), 1.0)]);
            }
            "linear" => {
                let x = x.clamp(0.0, (in_len - 1) as f64);
                let x0 = x.floor() as i64;
                let w = (x - x0 as f64) as f32;
                let x1 = (x0 + 1).min(in_len - 1);
                rows.push(vec![(clamp(x0), 1.0 - w), (clamp(x1), w)]);
            }
            other => return Err(c.err(format!("Resize backward with mode {other} (nearest and linear are supported)"))),
        }
    }
    Ok(rows)
}

/// Resize of the two spatial axes of a 4-D tensor is separable: y = A_h · x · A_wᵀ
/// per channel, with A the interpolation matrix of each axis, so
/// dx = A_hᵀ · dy · A_w. Whole-number nearest upsampling (each input pixel
/// copied to an s×s block) sums blocks instead.
pub(super) fn resize(em: &mut Emitter, c: &Ctx) -> Grads {
    if attr_int(c.n, "antialias").unwrap_or(0) != 0 || attr_ints(c.n, "axes").is_some() {
        return Err(c.err("Resize backward with antialias or axes"));
    }
    let xs = c.in_shape(em, 0)?;
    let g = c.gy()?;
    let ys = em.shape(&g)?;
    if xs.len() != 4 || xs[..2] != ys[..2] {
        return Err(c.err(format!("Resize backward for {xs:?} -> {ys:?} (4-D, spatial axes only)")));
    }
    let scales: Option<Vec<f32>> = c.n.input.get(2).filter(|s| !s.is_empty()).and_then(|s| em.consts.get(s.as_str())).and_then(|t| t.to_f32().ok()).map(|a| a.iter().copied().collect()).filter(|v: &Vec<f32>| v.len() == 4);
    let mut taps = vec![];
    for ax in [2, 3] {
        let scale = scales.as_ref().map_or(ys[ax] as f32 / xs[ax] as f32, |s| s[ax]);
        taps.push(resize_taps(c, ys[ax], xs[ax], scale)?);
    }
    // whole-number nearest upsampling on both axes
    let factor = |t: &[Vec<(usize, f32)>], i: usize| -> Option<i64> {
        let (o, n) = (ys[i], xs[i]);
        if o % n != 0 {
            return None;
        }
        let f = o / n;
        t.iter().enumerate().all(|(j, row)| row.len() == 1 && row[0].0 == j / f as usize).then_some(f)
    };
    if let (Some(fh), Some(fw)) = (factor(&taps[0], 2), factor(&taps[1], 3)) {
        let r = em.reshape(&g, &[xs[0], xs[1], xs[2], fh, xs[3], fw])?;
        let s = em.reduce("ReduceSum", &r, &[3, 5], false)?;
        return one(s);
    }
    let matrix = |t: &[Vec<(usize, f32)>], n: i64| {
        let mut a = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[t.len(), n as usize]));
        for (i, row) in t.iter().enumerate() {
            for &(j, w) in row {
                a[[i, j]] += w;
            }
        }
        a
    };
    // dy · A_w : [N, C, Ho, Wo] x [Wo, W]
    let aw = em.c_array(&matrix(&taps[1], xs[3]));
    let t = em.op("MatMul", &[&g, &aw], vec![], vec![ys[0], ys[1], ys[2], xs[3]]);
    // A_hᵀ · t : [H, Ho] x [N, C, Ho, W]
    let aht = em.c_array(&matrix(&taps[0], xs[2]).reversed_axes().as_standard_layout().to_owned());
    one(em.op("MatMul", &[&aht, &t], vec![], xs))
}

//! Data-driven initialization of the FuSe kernels (`--init lsq`): run the
//! original model on calibration inputs, collect the input and output of every
//! depthwise conv, and choose each channel's 1-D kernel and bias by least
//! squares so that the 1-D conv reproduces the K×K conv's output.
//!
//! Each branch is fitted to the original output on its own (Half: the channel's
//! one branch; Full: both branches of every channel), so each branch alone is
//! a good stand-in for the original before the BN and activation that follow.

use std::collections::HashMap;

use ndarray::{Array4, ArrayD, Axis, IxDyn};
use serde::Serialize;

use crate::tasks::data::Dataset;
use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::onnx::{self, ModelProto};
use crate::passes::fuse_depthwise::{candidates, split_kernels, Assign, Candidate, Channels, DepthwiseConv, FuseKernels, Init, KernelInit, Variant};

/// One layer's fitted kernels, for all C channels (Half uses each channel's
/// share), and the Half assignment chosen when fitting.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub row: ArrayD<f32>,
    pub col: ArrayD<f32>,
    pub row_bias: ArrayD<f32>,
    pub col_bias: ArrayD<f32>,
    pub channels: Channels,
}

/// Fitted kernels by depthwise node name.
#[derive(Debug, Clone)]
pub struct LsqInit {
    pub kernels: HashMap<String, Fitted>,
}

impl KernelInit for LsqInit {
    fn kernels(&self, dw: &DepthwiseConv, variant: Variant, assign: Assign) -> Result<FuseKernels> {
        let Some(f) = self.kernels.get(&dw.name) else {
            return Init::Center.kernels(dw, variant, assign);
        };
        let channels = match assign {
            Assign::Fit => f.channels.clone(),
            Assign::Ordered => Channels::ordered(dw.channels),
        };
        let mut k = split_kernels(dw, variant, f.row.clone(), f.col.clone(), channels);
        // fitted biases replace the original's share
        match variant {
            Variant::Full => {
                k.row_bias = Some(f.row_bias.clone());
                k.col_bias = Some(f.col_bias.clone());
            }
            Variant::Half => {
                k.row_bias = Some(f.row_bias.select(Axis(0), &k.channels.row));
                k.col_bias = Some(f.col_bias.select(Axis(0), &k.channels.col));
            }
        }
        Ok(k)
    }
}

/// How [`calibrate_with`] fits: the variant, Half's channel assignment,
/// whether each layer sees the student's inputs (`sequential`), and whether
/// dense convs are fitted too (`dense`, as `--dense` converts them).
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub variant: Variant,
    pub assign: Assign,
    pub sequential: bool,
    pub dense: bool,
}

impl FitOptions {
    /// Ordered channels, each layer on the original's activations, depthwise convs only.
    pub fn new(variant: Variant) -> FitOptions {
        FitOptions { variant, assign: Assign::Ordered, sequential: false, dense: false }
    }
}

/// Relative output error ‖ŷ − y‖ / ‖y‖ of each initialization, per layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerFit {
    pub node: String,
    pub center: f64,
    pub sum: f64,
    pub lsq: f64,
}

/// Solve the small symmetric system `a x = b` (Gaussian elimination, partial pivoting).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().partial_cmp(&a[j][col].abs()).unwrap_or(std::cmp::Ordering::Equal))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for r in col + 1..n {
            let f = a[r][col] / a[col][col];
            for c in col..n {
                a[r][c] -= f * a[col][c];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

/// Taps of one 1-D branch at output (i, j): (input row, input col) per tap.
struct Geometry {
    kh: usize,
    kw: usize,
    sh: i64,
    sw: i64,
    dh: i64,
    dwl: i64,
    pt: i64,
    pl: i64,
    /// the kernel row (1×K) and column (K×1) the branches keep
    centre: [usize; 2],
}

impl Geometry {
    fn tap(&self, row: bool, i: usize, j: usize, t: usize) -> (i64, i64) {
        let (ch, cw) = (self.centre[0] as i64, self.centre[1] as i64);
        if row {
            (i as i64 * self.sh - self.pt + ch * self.dh, j as i64 * self.sw - self.pl + t as i64 * self.dwl)
        } else {
            (i as i64 * self.sh - self.pt + t as i64 * self.dh, j as i64 * self.sw - self.pl + cw * self.dwl)
        }
    }
}

/// Fit one channel's branch: kernel taps and bias minimising the squared error to `y`.
fn fit(xs: &[Array4<f32>], ys: &[Array4<f32>], c: usize, g: &Geometry, row: bool) -> (Vec<f32>, f32) {
    let k = if row { g.kw } else { g.kh };
    let n = k + 1;
    let mut ata = vec![vec![0.0f64; n]; n];
    let mut aty = vec![0.0f64; n];
    let mut feat = vec![0.0f64; n];
    for (x, y) in xs.iter().zip(ys) {
        let (h, w) = (x.shape()[2] as i64, x.shape()[3] as i64);
        let (ho, wo) = (y.shape()[2], y.shape()[3]);
        for b in 0..x.shape()[0] {
            for i in 0..ho {
                for j in 0..wo {
                    for (t, f) in feat.iter_mut().enumerate().take(k) {
                        let (r, q) = g.tap(row, i, j, t);
                        *f = if (0..h).contains(&r) && (0..w).contains(&q) { x[[b, c, r as usize, q as usize]] as f64 } else { 0.0 };
                    }
                    feat[k] = 1.0;
                    let target = y[[b, c, i, j]] as f64;
                    for p in 0..n {
                        aty[p] += feat[p] * target;
                        for q in p..n {
                            ata[p][q] += feat[p] * feat[q];
                        }
                    }
                }
            }
        }
    }
    for p in 0..n {
        for q in 0..p {
            ata[p][q] = ata[q][p];
        }
    }
    // a little ridge keeps channels with constant inputs solvable
    let scale = (0..n).map(|p| ata[p][p]).fold(0.0, f64::max).max(1e-12);
    for (p, row) in ata.iter_mut().enumerate() {
        row[p] += 1e-6 * scale;
    }
    match solve(ata, aty) {
        Some(s) => (s[..k].iter().map(|&v| v as f32).collect(), s[k] as f32),
        None => (vec![0.0; k], 0.0),
    }
}

/// Relative error of a branch's kernel (taps, bias) on the calibration data.
fn rel_error(xs: &[Array4<f32>], ys: &[Array4<f32>], c: usize, g: &Geometry, row: bool, taps: &[f32], bias: f32) -> (f64, f64) {
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (x, y) in xs.iter().zip(ys) {
        let (h, w) = (x.shape()[2] as i64, x.shape()[3] as i64);
        for b in 0..x.shape()[0] {
            for i in 0..y.shape()[2] {
                for j in 0..y.shape()[3] {
                    let mut v = bias as f64;
                    for (t, &wt) in taps.iter().enumerate() {
                        let (r, q) = g.tap(row, i, j, t);
                        if (0..h).contains(&r) && (0..w).contains(&q) {
                            v += wt as f64 * x[[b, c, r as usize, q as usize]] as f64;
                        }
                    }
                    let target = y[[b, c, i, j]] as f64;
                    err += (v - target).powi(2);
                    norm += target.powi(2);
                }
            }
        }
    }
    (err, norm)
}

/// Run `model` on every sample of `data` with `values` exposed as extra graph
/// outputs; `each` receives those values, in order, for one sample at a time.
fn probe(model: &ModelProto, values: &[&str], data: &Dataset, mut each: impl FnMut(Vec<ArrayD<f32>>) -> Result<()>) -> Result<()> {
    let mut probe = model.clone();
    let gp = probe.graph.as_mut().ok_or_else(|| Error::InvalidGraph("model without graph".into()))?;
    let first = gp.output.len();
    for v in values {
        gp.output.push(onnx::make_value_info(v, onnx::dtype::FLOAT, None));
    }
    let s0 = data.samples.first().ok_or_else(|| Error::option("--data", "no samples"))?;
    let runner = crate::exec::Runner::for_samples(&probe, s0.x.shape())?;
    for s in &data.samples {
        let mut outs = runner.run_one(&s.x)?;
        if outs.len() != first + values.len() {
            return Err(Error::Eval("missing probe output".into()));
        }
        each(outs.split_off(first))?;
    }
    Ok(())
}

fn as4(a: ArrayD<f32>) -> Result<Array4<f32>> {
    a.into_dimensionality::<ndarray::Ix4>().map_err(|e| Error::Eval(e.to_string()))
}

/// Inputs of depthwise conv `d` in the student: the model with the layers
/// fitted so far already rewritten (with their fitted kernels).
fn student_inputs(model: &ModelProto, g: &Graph, o: &FitOptions, fitted: &LsqInit, done: &[usize], input: &str, data: &Dataset) -> Result<Vec<Array4<f32>>> {
    use crate::passes::fuse_depthwise::{FuseDepthwise, Options};
    use crate::passes::{LayerSelection, ListItem};
    let mut sg = g.clone();
    let opts = Options { variant: o.variant, init: Init::Center, assign: o.assign, layers: LayerSelection::List(done.iter().map(|&i| ListItem::Index(i)).collect()), skip: vec![], dense: o.dense };
    let pass = FuseDepthwise::new(opts)?.with_init(Box::new(fitted.clone()));
    crate::passes::run_pipeline(&mut sg, &[Box::new(pass)], &Default::default())?;
    let mut student = model.clone();
    student.graph = Some(sg.to_proto()?);
    let mut xs = Vec::with_capacity(data.samples.len());
    probe(&student, &[input], data, |outs| {
        for a in outs {
            xs.push(as4(a)?);
        }
        Ok(())
    })?;
    Ok(xs)
}

/// Fit every convertible depthwise conv of `g` on `data` run through `model`,
/// each layer on the original model's activations.
///
/// With [`FitOptions::sequential`] each layer is fitted on the inputs it sees in the student
/// (earlier layers already rewritten with their fitted kernels) against the
/// original's outputs, so errors do not compound from layer to layer.
///
/// With `dense`, the dense convs `--dense` rewrites are fitted too: each
/// channel's 1-D kernel to that channel of the dense conv's output.
///
/// With `assign` [`Assign::Fit`] (Half) both branches are fitted for every
/// channel and each channel goes to the one with the smaller output error.
pub fn calibrate(model: &ModelProto, g: &Graph, data: &Dataset, variant: Variant) -> Result<(LsqInit, Vec<LayerFit>)> {
    calibrate_with(model, g, data, &FitOptions::new(variant))
}

pub fn calibrate_with(model: &ModelProto, g: &Graph, data: &Dataset, o: &FitOptions) -> Result<(LsqInit, Vec<LayerFit>)> {
    let FitOptions { variant, assign, sequential, dense } = *o;
    let cands: Vec<DepthwiseConv> = candidates(g, dense)?
        .into_iter()
        .filter_map(|c| match c {
            Candidate::Convertible(d) => Some(*d),
            Candidate::Skipped { .. } => None,
        })
        .collect();
    // every depthwise input and output, from the original model
    let values: Vec<&str> = cands.iter().flat_map(|d| [d.input.as_str(), d.output.as_str()]).collect();
    let mut xs: Vec<Vec<Array4<f32>>> = vec![vec![]; cands.len()];
    let mut ys: Vec<Vec<Array4<f32>>> = vec![vec![]; cands.len()];
    probe(model, &values, data, |outs| {
        let mut it = outs.into_iter();
        for k in 0..cands.len() {
            let (Some(x), Some(y)) = (it.next(), it.next()) else { return Err(Error::Eval("missing probe output".into())) };
            xs[k].push(as4(x)?);
            ys[k].push(as4(y)?);
        }
        Ok(())
    })?;
    let mut init = LsqInit { kernels: HashMap::new() };
    let mut fits = vec![];
    let mut done: Vec<usize> = vec![];
    for (k, d) in cands.iter().enumerate() {
        if sequential && !done.is_empty() {
            xs[k] = student_inputs(model, g, o, &init, &done, &d.input, data)?;
        }
        let sp: Option<Vec<i64>> = d.input_shape.as_ref().map(|s| s[2..].iter().map(|x| x.known().unwrap_or(0)).collect());
        let pads = d.window.explicit_pads(&sp.unwrap_or_else(|| vec![xs[k][0].shape()[2] as i64, xs[k][0].shape()[3] as i64]));
        let geo = Geometry {
            kh: d.kernel[0] as usize,
            kw: d.kernel[1] as usize,
            sh: d.window.strides[0],
            sw: d.window.strides[1],
            dh: d.window.dilations[0],
            dwl: d.window.dilations[1],
            pt: pads[0],
            pl: pads[1],
            centre: d.centre,
        };
        let c = d.channels;
        let (kh, kw) = (geo.kh, geo.kw);
        let mut row = ArrayD::<f32>::zeros(IxDyn(&[c, 1, 1, kw]));
        let mut col = ArrayD::<f32>::zeros(IxDyn(&[c, 1, kh, 1]));
        let mut rb = ArrayD::<f32>::zeros(IxDyn(&[c]));
        let mut cb = ArrayD::<f32>::zeros(IxDyn(&[c]));
        let center = Init::Center.kernels(d, Variant::Full, Assign::Ordered)?;
        let sum = Init::Sum.kernels(d, Variant::Full, Assign::Ordered)?;
        // squared errors (center, sum, lsq) and target norm of each fitted branch, by [channel][ROW or COL]
        const ROW: usize = 0;
        const COL: usize = 1;
        let mut errs = vec![[None::<[f64; 4]>; 2]; c];
        let ordered = Channels::ordered(c);
        for (ch, errs) in errs.iter_mut().enumerate() {
            // Half fits only the branch a channel goes to, unless the assignment is chosen by fit
            let branches: &[bool] = match (variant, assign) {
                (Variant::Half, Assign::Ordered) if ch < ordered.row.len() => &[true],
                (Variant::Half, Assign::Ordered) => &[false],
                _ => &[true, false],
            };
            for &is_row in branches {
                let (taps, bias) = fit(&xs[k], &ys[k], ch, &geo, is_row);
                let b0 = d.bias.as_ref().map_or(0.0, |b| b[[ch]]);
                let pick = |w: &ArrayD<f32>| -> Vec<f32> {
                    if is_row { (0..kw).map(|t| w[[ch, 0, 0, t]]).collect() } else { (0..kh).map(|t| w[[ch, 0, t, 0]]).collect() }
                };
                let (cw_, cn) = (pick(if is_row { &center.row } else { &center.col }), b0);
                let sw_ = pick(if is_row { &sum.row } else { &sum.col });
                let (ec, n) = rel_error(&xs[k], &ys[k], ch, &geo, is_row, &cw_, cn);
                let (es, _) = rel_error(&xs[k], &ys[k], ch, &geo, is_row, &sw_, cn);
                let (el, _) = rel_error(&xs[k], &ys[k], ch, &geo, is_row, &taps, bias);
                errs[if is_row { ROW } else { COL }] = Some([ec, es, el, n]);
                for (t, &v) in taps.iter().enumerate() {
                    if is_row {
                        row[[ch, 0, 0, t]] = v;
                    } else {
                        col[[ch, 0, t, 0]] = v;
                    }
                }
                if is_row {
                    rb[[ch]] = bias;
                } else {
                    cb[[ch]] = bias;
                }
            }
        }
        let channels = match (variant, assign) {
            // how much lower 1×K's lsq error is than K×1's
            (Variant::Half, Assign::Fit) => Channels::balanced(&errs.iter().map(|e| e[COL].map_or(0.0, |x| x[2]) - e[ROW].map_or(0.0, |x| x[2])).collect::<Vec<_>>()),
            _ => ordered,
        };
        // the error of what the model gets: Half each channel's one branch, Full both
        let kept: Vec<[f64; 4]> = match variant {
            Variant::Half => channels.row.iter().filter_map(|&ch| errs[ch][ROW]).chain(channels.col.iter().filter_map(|&ch| errs[ch][COL])).collect(),
            Variant::Full => errs.iter().flat_map(|e| e.iter().flatten().copied()).collect(),
        };
        let [e_c, e_s, e_l, norm] = kept.iter().fold([0.0; 4], |acc, e| [acc[0] + e[0], acc[1] + e[1], acc[2] + e[2], acc[3] + e[3]]);
        let n = norm.max(1e-30);
        fits.push(LayerFit { node: d.name.clone(), center: (e_c / n).sqrt(), sum: (e_s / n).sqrt(), lsq: (e_l / n).sqrt() });
        init.kernels.insert(d.name.clone(), Fitted { row, col, row_bias: rb, col_bias: cb, channels });
        done.push(d.index);
    }
    Ok((init, fits))
}

/// Re-estimate the running mean and variance of every BatchNormalization
/// from the model's own activations on calibration data (AdaBN). The
/// rewritten layers produce differently distributed outputs than the K×K
/// convs whose statistics the BN holds. `rounds` passes let upstream
/// corrections reach downstream layers. Returns how many BNs were updated.
pub fn recalibrate_bn(model: &mut ModelProto, opset: i64, data: &Dataset, rounds: usize) -> Result<usize> {
    let mut updated = 0;
    for _ in 0..rounds {
        let gp = model.graph.as_ref().ok_or_else(|| Error::InvalidGraph("model without graph".into()))?;
        let g = Graph::from_proto(gp, opset)?;
        let bns: Vec<(String, String, String)> = g
            .g
            .node_weights()
            .filter(|n| n.op() == "BatchNormalization" && n.is_default_domain())
            .filter_map(|n| Some((n.input(0)?.to_string(), n.input(3)?.to_string(), n.input(4)?.to_string())))
            .collect();
        if bns.is_empty() {
            return Ok(0);
        }
        let inputs: Vec<&str> = bns.iter().map(|(x, _, _)| x.as_str()).collect();
        let mut sums: Vec<(Vec<f64>, Vec<f64>, f64)> = vec![(vec![], vec![], 0.0); bns.len()];
        probe(model, &inputs, data, |outs| {
            for (a, acc) in outs.iter().zip(sums.iter_mut()) {
                if a.ndim() < 2 {
                    continue;
                }
                let c = a.shape()[1];
                if acc.0.is_empty() {
                    *acc = (vec![0.0; c], vec![0.0; c], 0.0);
                }
                for (idx, &v) in a.indexed_iter() {
                    acc.0[idx[1]] += v as f64;
                    acc.1[idx[1]] += (v as f64) * (v as f64);
                }
                acc.2 += (a.len() / c.max(1)) as f64;
            }
            Ok(())
        })?;
        let gp = model.graph.as_mut().ok_or_else(|| Error::InvalidGraph("model without graph".into()))?;
        updated = 0;
        for ((_, mean_name, var_name), (s1, s2, n)) in bns.iter().zip(&sums) {
            if *n < 2.0 || s1.is_empty() {
                continue;
            }
            let mean: Vec<f32> = s1.iter().map(|s| (s / n) as f32).collect();
            let var: Vec<f32> = s1.iter().zip(s2).map(|(a, b)| ((b / n) - (a / n) * (a / n)).max(0.0) as f32).collect();
            for (name, vals) in [(mean_name, mean), (var_name, var)] {
                let new_name = if name.ends_with(".recalib") { name.clone() } else { format!("{name}.recalib") };
                let t = crate::onnx::tensor::Tensor::from_f32(&new_name, &ndarray::Array1::from(vals).into_dyn()).into_proto();
                gp.initializer.retain(|i| i.name() != new_name);
                gp.initializer.push(t);
                for n in gp.node.iter_mut().filter(|n| n.op_type() == "BatchNormalization") {
                    for i in n.input.iter_mut().skip(3).take(2) {
                        if i == name {
                            *i = new_name.clone();
                        }
                    }
                }
            }
            updated += 1;
        }
        // drop statistics nobody reads any more (initializers and Constant nodes)
        let used: std::collections::HashSet<String> = gp.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
        let outputs: std::collections::HashSet<String> = gp.output.iter().map(|o| o.name().to_string()).collect();
        gp.initializer.retain(|t| used.contains(t.name()) || outputs.contains(t.name()));
        gp.node.retain(|n| n.op_type() != "Constant" || n.output.iter().any(|o| used.contains(o) || outputs.contains(o)));
    }
    Ok(updated)
}

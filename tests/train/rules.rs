//! Every backward rule against central finite differences (run in ONNX
//! Runtime), and the list of rules in docs/finetune.md.

use super::*;

/// f(θ) = Σ_outputs ⟨output, R⟩ evaluated with the forward model in ORT.
fn objective(model: &ModelProto, x: &[f32], xshape: &[usize], params: &[(String, Vec<usize>, Vec<f32>)], seeds: &[Vec<f32>]) -> f64 {
    let mut m = model.clone();
    let g = m.graph.as_mut().unwrap();
    for (name, shape, v) in params {
        if let Some(t) = g.initializer.iter_mut().find(|t| t.name() == name) {
            let a = ArrayD::from_shape_vec(ndarray::IxDyn(shape), v.clone()).unwrap();
            *t = Tensor::from_f32(name, &a).into_proto();
        }
    }
    let mut s = runtime::session(&m, 1).unwrap();
    let outs = runtime::run(&mut s, &[Feed { name: "x", shape: xshape.to_vec(), data: x }], &[]).unwrap();
    outs.iter().zip(seeds).map(|(o, r)| o.iter().zip(r).map(|(a, b)| (*a as f64) * (*b as f64)).sum::<f64>()).sum()
}

/// Check the gradient model of `model` with respect to `x` and `params` against
/// central differences along random directions.
fn check(model: &ModelProto, xshape: &[usize], params: &[&str], x_range: (f32, f32), seed: u64) {
    runtime::init().expect("ONNX Runtime (run scripts/setup.sh)");
    let mut rng = StdRng::seed_from_u64(seed);
    let g = model.graph.as_ref().unwrap();
    let x = rand_vec(xshape.iter().product(), x_range.0, x_range.1, &mut rng);
    let mut wrt = vec!["x".to_string()];
    wrt.extend(params.iter().map(|s| s.to_string()));
    let gm = fusec::train::graph::gradient_model(model, &wrt, &[("x".into(), xshape.to_vec())]).unwrap();
    // parameter values
    let mut pvals: Vec<(String, Vec<usize>, Vec<f32>)> = vec![];
    for p in params {
        let t = g.initializer.iter().find(|t| t.name() == *p).unwrap_or_else(|| panic!("no initializer {p}"));
        let t = Tensor::from_proto(t.clone()).unwrap();
        pvals.push((p.to_string(), t.shape(), t.to_f32().unwrap().iter().copied().collect()));
    }
    // output shapes via a forward run
    let mut fs = runtime::session(model, 1).unwrap();
    let outs = runtime::run(&mut fs, &[Feed { name: "x", shape: xshape.to_vec(), data: &x }], &[]).unwrap();
    let seeds: Vec<Vec<f32>> = outs.iter().map(|o| rand_vec(o.len(), -1.0, 1.0, &mut rng)).collect();
    // analytical
    let mut gs = runtime::session(&gm, 1).unwrap();
    let mut feeds = vec![Feed { name: "x", shape: xshape.to_vec(), data: &x }];
    let dnames: Vec<String> = g.output.iter().map(|o| format!("d/{}", o.name())).collect();
    for ((d, o), s) in dnames.iter().zip(&outs).zip(&seeds) {
        feeds.push(Feed { name: d, shape: o.shape().to_vec(), data: s });
    }
    for (n, s, v) in &pvals {
        feeds.push(Feed { name: n, shape: s.clone(), data: v });
    }
    let grads = runtime::run(&mut gs, &feeds, &wrt.iter().map(|w| format!("grad/{w}")).collect::<Vec<_>>()).unwrap();
    // directional derivatives
    for trial in 0..3 {
        let eps = 1e-2f32;
        let dx = rand_vec(x.len(), -1.0, 1.0, &mut rng);
        let dp: Vec<Vec<f32>> = pvals.iter().map(|(_, _, v)| rand_vec(v.len(), -1.0, 1.0, &mut rng)).collect();
        let shifted = |sign: f32| {
            let xs: Vec<f32> = x.iter().zip(&dx).map(|(a, d)| a + sign * eps * d).collect();
            let ps: Vec<(String, Vec<usize>, Vec<f32>)> =
                pvals.iter().zip(&dp).map(|((n, s, v), d)| (n.clone(), s.clone(), v.iter().zip(d).map(|(a, b)| a + sign * eps * b).collect())).collect();
            objective(model, &xs, xshape, &ps, &seeds)
        };
        let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64);
        let mut an = grads[0].iter().zip(&dx).map(|(g, d)| (*g as f64) * (*d as f64)).sum::<f64>();
        for (gp, d) in grads[1..].iter().zip(&dp) {
            an += gp.iter().zip(d).map(|(g, d)| (*g as f64) * (*d as f64)).sum::<f64>();
        }
        let tol = 2e-2 * fd.abs().max(an.abs()) + 2e-3;
        assert!((fd - an).abs() <= tol, "trial {trial}: finite difference {fd:.6} vs gradient {an:.6}");
        assert!(an.abs() > 1e-3, "trial {trial}: gradient is (near) zero; the check would be vacuous");
    }
}

/// One op applied to x (plus weights), output squared-free: the FD objective is linear in the output.
fn single(op: &str, xshape: &[usize], weights: &[(&str, &[usize], f32, f32)], attrs: Vec<fusec::onnx::AttributeProto>) -> (ModelProto, Vec<String>) {
    let mut b = builder();
    let x = b.input("x", &dims(xshape));
    let mut names = vec![];
    for (n, s, lo, hi) in weights {
        names.push(weight(&mut b, n, s, *lo, *hi));
    }
    let mut inputs = vec![x.as_str()];
    inputs.extend(names.iter().map(String::as_str));
    let y = b.op(op, &inputs, attrs);
    b.output(&y);
    (b.build(), names)
}

fn check_single(op: &str, xshape: &[usize], weights: &[(&str, &[usize], f32, f32)], attrs: Vec<fusec::onnx::AttributeProto>, x_range: (f32, f32)) {
    let (m, names) = single(op, xshape, weights, attrs);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    check(&m, xshape, &refs, x_range, 11);
}

#[test]
fn conv_rules() {
    // dense, stride 2, asymmetric pads, bias
    check_single("Conv", &[2, 3, 7, 6], &[("w", &[4, 3, 3, 2], -0.5, 0.5), ("b", &[4], -0.5, 0.5)], vec![a_ints("strides", &[2, 2]), a_ints("pads", &[1, 0, 2, 1])], (-1.0, 1.0));
    // pointwise (the Gemm / MatMul path)
    check_single("Conv", &[2, 5, 4, 3], &[("w", &[6, 5, 1, 1], -0.5, 0.5), ("b", &[6], -0.5, 0.5)], vec![], (-1.0, 1.0));
    check_single("Conv", &[2, 6, 4, 3], &[("w", &[4, 6, 1, 1], -0.5, 0.5)], vec![], (-1.0, 1.0));
    // dilation
    check_single("Conv", &[1, 2, 8, 8], &[("w", &[3, 2, 3, 3], -0.5, 0.5)], vec![a_ints("dilations", &[2, 1]), a_ints("pads", &[2, 1, 2, 1])], (-1.0, 1.0));
    // grouped
    check_single("Conv", &[2, 4, 5, 5], &[("w", &[6, 2, 3, 3], -0.5, 0.5)], vec![a_int("group", 2), a_ints("pads", &[1, 1, 1, 1])], (-1.0, 1.0));
    // depthwise 5x5 stride 2 (odd input: the last rows no window reaches)
    check_single("Conv", &[2, 3, 9, 8], &[("w", &[3, 1, 5, 5], -0.5, 0.5)], vec![a_int("group", 3), a_ints("strides", &[2, 2]), a_ints("pads", &[2, 2, 2, 2])], (-1.0, 1.0));
    // FuSe 1-D kernels, row and column
    check_single("Conv", &[2, 4, 6, 7], &[("w", &[4, 1, 1, 5], -0.5, 0.5)], vec![a_int("group", 4), a_ints("strides", &[2, 1]), a_ints("pads", &[0, 2, 0, 2])], (-1.0, 1.0));
    check_single("Conv", &[2, 4, 6, 7], &[("w", &[4, 1, 3, 1], -0.5, 0.5)], vec![a_int("group", 4), a_ints("pads", &[1, 0, 1, 0])], (-1.0, 1.0));
    // depthwise 3×3 with dilation 2 and stride 2 (the per-tap slice path), and 7×1
    check_single("Conv", &[2, 3, 11, 10], &[("w", &[3, 1, 3, 3], -0.5, 0.5)], vec![a_int("group", 3), a_ints("strides", &[2, 2]), a_ints("dilations", &[2, 2]), a_ints("pads", &[2, 1, 2, 2])], (-1.0, 1.0));
    check_single("Conv", &[2, 3, 9, 4], &[("w", &[3, 1, 7, 1], -0.5, 0.5), ("b", &[3], -0.5, 0.5)], vec![a_int("group", 3), a_ints("pads", &[3, 0, 3, 0])], (-1.0, 1.0));
    // stride 1 with asymmetric pads and a grouped weight (dX as a convolution with the
    // flipped kernel), and pads wider than the kernel reaches (dX through ConvTranspose)
    check_single("Conv", &[2, 4, 6, 5], &[("w", &[6, 2, 2, 3], -0.5, 0.5)], vec![a_int("group", 2), a_ints("pads", &[0, 2, 1, 1])], (-1.0, 1.0));
    check_single("Conv", &[2, 3, 4, 5], &[("w", &[2, 3, 1, 2], -0.5, 0.5)], vec![a_ints("pads", &[1, 0, 0, 2])], (-1.0, 1.0));
    // SAME_UPPER auto padding
    check_single("Conv", &[1, 2, 7, 7], &[("w", &[2, 2, 3, 3], -0.5, 0.5)], vec![a_string("auto_pad", "SAME_UPPER"), a_ints("strides", &[2, 2])], (-1.0, 1.0));
}

#[test]
fn batchnorm_frozen_rule() {
    let (m, names) = single(
        "BatchNormalization",
        &[3, 4, 3, 3],
        &[("scale", &[4], 0.5, 1.5), ("bias", &[4], -0.5, 0.5), ("mean", &[4], -0.2, 0.2), ("var", &[4], 0.5, 2.0)],
        vec![a_float("epsilon", 1e-3)],
    );
    // scale and bias are parameters; the statistics are not trained
    check(&m, &[3, 4, 3, 3], &[&names[0], &names[1]], (-1.0, 1.0), 4);
}

#[test]
fn activation_rules() {
    for op in ["Relu", "Sigmoid", "Tanh", "HardSwish", "Exp", "Neg"] {
        check_single(op, &[2, 3, 4, 5], &[], vec![], (-4.0, 4.0));
    }
    check_single("LeakyRelu", &[2, 3, 4, 5], &[], vec![a_float("alpha", 0.1)], (-4.0, 4.0));
    check_single("HardSigmoid", &[2, 3, 4, 5], &[], vec![a_float("alpha", 0.2), a_float("beta", 0.5)], (-4.0, 4.0));
    check_single("Sqrt", &[2, 3, 4], &[], vec![], (0.5, 2.0));
    // Clip(0, 6) with bounds as inputs (opset 11+)
    let mut b = builder();
    let x = b.input("x", &dims(&[2, 3, 4, 5]));
    let lo = b.constant("lo", &ndarray::arr0(0.0f32).into_dyn());
    let hi = b.constant("hi", &ndarray::arr0(6.0f32).into_dyn());
    let y = b.op("Clip", &[&x, &lo, &hi], vec![]);
    b.output(&y);
    check(&b.build(), &[2, 3, 4, 5], &[], (-3.0, 9.0), 5);
}

#[test]
fn elementwise_rules_with_broadcasting() {
    for op in ["Add", "Sub", "Mul", "Div"] {
        check_single(op, &[2, 3, 4, 4], &[("w", &[1, 3, 1, 1], 0.5, 1.5)], vec![], (-1.0, 1.0));
        check_single(op, &[2, 3, 4, 4], &[("w", &[4], 0.5, 1.5)], vec![], (-1.0, 1.0));
    }
    // x used twice (gradients accumulate): y = x * x + x
    let mut b = builder();
    let x = b.input("x", &dims(&[2, 5]));
    let sq = b.op("Mul", &[&x, &x], vec![]);
    let y = b.op("Add", &[&sq, &x], vec![]);
    b.output(&y);
    check(&b.build(), &[2, 5], &[], (-1.0, 1.0), 3);
}

#[test]
fn shape_and_routing_rules() {
    let s = [2usize, 4, 3, 5];
    check_single("Flatten", &s, &[], vec![a_int("axis", 1)], (-1.0, 1.0));
    check_single("Transpose", &s, &[], vec![a_ints("perm", &[0, 2, 3, 1])], (-1.0, 1.0));
    check_single("Identity", &s, &[], vec![], (-1.0, 1.0));
    // Concat of x with a weight, Split into unequal parts, Slice, Pad, Reshape, (Un)squeeze
    let mut b = builder();
    let x = b.input("x", &dims(&s));
    let w = weight(&mut b, "w", &[2, 2, 3, 5], -1.0, 1.0);
    let c = b.op("Concat", &[&x, &w], vec![a_int("axis", 1)]);
    let sizes = b.constant_i64("sizes", &[2], &[2, 4]);
    let (p1, p2) = (b.fresh("p1"), b.fresh("p2"));
    b.node_multi("Split", &[&c, &sizes], &[&p1, &p2], vec![a_int("axis", 1)]);
    let st = b.constant_i64("st", &[2], &[1, 1]);
    let en = b.constant_i64("en", &[2], &[3, -1]);
    let ax = b.constant_i64("ax", &[2], &[2, 3]);
    let sl = b.op("Slice", &[&p2, &st, &en, &ax], vec![]);
    let pads = b.constant_i64("pads", &[8], &[0, 0, 1, 0, 0, 1, 0, 2]);
    let pd = b.op("Pad", &[&sl, &pads], vec![]);
    let shape = b.constant_i64("shape", &[3], &[2, -1, 5]);
    let r = b.op("Reshape", &[&p1, &shape], vec![]);
    let axes = b.constant_i64("axes", &[1], &[1]);
    let u = b.op("Unsqueeze", &[&r, &axes], vec![]);
    let q = b.op("Squeeze", &[&u, &axes], vec![]);
    b.output(&pd);
    b.output(&q);
    check(&b.build(), &s, &[w.as_str()], (-1.0, 1.0), 9);
}

#[test]
fn pooling_rules() {
    check_single("GlobalAveragePool", &[2, 3, 4, 5], &[], vec![], (-1.0, 1.0));
    check_single("AveragePool", &[2, 3, 6, 6], &[], vec![a_ints("kernel_shape", &[2, 2]), a_ints("strides", &[2, 2])], (-1.0, 1.0));
    check_single("AveragePool", &[2, 3, 5, 5], &[], vec![a_ints("kernel_shape", &[3, 3]), a_ints("pads", &[1, 1, 1, 1]), a_int("count_include_pad", 1)], (-1.0, 1.0));
    // distinct values keep the max away from ties, so small steps do not switch it
    check_single("MaxPool", &[2, 3, 6, 7], &[], vec![a_ints("kernel_shape", &[2, 2]), a_ints("strides", &[2, 2])], (-1.0, 1.0));
    check_single("MaxPool", &[1, 2, 7, 7], &[], vec![a_ints("kernel_shape", &[3, 3]), a_ints("strides", &[2, 2]), a_ints("pads", &[1, 1, 1, 1])], (-1.0, 1.0));
}

#[test]
fn dense_and_softmax_rules() {
    check_single("Gemm", &[3, 5], &[("w", &[4, 5], -1.0, 1.0), ("c", &[4], -1.0, 1.0)], vec![a_int("transB", 1), a_float("alpha", 0.5), a_float("beta", 2.0)], (-1.0, 1.0));
    check_single("Gemm", &[5, 3], &[("w", &[5, 4], -1.0, 1.0)], vec![a_int("transA", 1)], (-1.0, 1.0));
    check_single("MatMul", &[3, 5], &[("w", &[5, 4], -1.0, 1.0)], vec![], (-1.0, 1.0));
    check_single("MatMul", &[2, 3, 5], &[("w", &[5, 4], -1.0, 1.0)], vec![], (-1.0, 1.0));
    check_single("Softmax", &[3, 6], &[], vec![a_int("axis", 1)], (-2.0, 2.0));
    check_single("LogSoftmax", &[3, 6], &[], vec![a_int("axis", -1)], (-2.0, 2.0));
    check_single("ReduceMean", &[2, 3, 4, 4], &[], vec![a_ints("axes", &[2, 3]), a_int("keepdims", 1)], (-1.0, 1.0));
    check_single("ReduceSum", &[2, 3, 4], &[], vec![a_int("keepdims", 0)], (-1.0, 1.0));
    check_single("ReduceSumSquare", &[2, 3, 4], &[], vec![a_ints("axes", &[0, 2]), a_int("keepdims", 1)], (-1.0, 1.0));
}

#[test]
fn rules_for_detectors_and_recognizers() {
    // GELU's Erf, Pow with a constant exponent (variances) and a weight exponent
    check_single("Erf", &[2, 3, 4], &[], vec![], (-2.0, 2.0));
    let mut b = builder();
    let x = b.input("x", &dims(&[2, 3, 4]));
    let two = b.constant("two", &ndarray::arr0(2.0f32).into_dyn());
    let sq = b.op("Pow", &[&x, &two], vec![]);
    let e = weight(&mut b, "e", &[4], 0.5, 1.5);
    let p = b.op("Pow", &[&sq, &e], vec![]);
    b.output(&p);
    check(&b.build(), &[2, 3, 4], &[e.as_str()], (0.5, 1.5), 21);
    // LayerNormalization (opset 17) over the last axis and over the last two
    for (axis, wshape) in [(-1i64, vec![6usize]), (1, vec![4, 6])] {
        let mut b = ModelBuilder::new(17, 3);
        let x = b.input("x", &dims(&[2, 4, 6]));
        let sc = weight(&mut b, "scale", &wshape, 0.5, 1.5);
        let bi = weight(&mut b, "bias", &wshape, -0.5, 0.5);
        let y = b.op("LayerNormalization", &[&x, &sc, &bi], vec![a_int("axis", axis), a_float("epsilon", 1e-5)]);
        b.output(&y);
        check(&b.build(), &[2, 4, 6], &[sc.as_str(), bi.as_str()], (-2.0, 2.0), 22);
    }
    // the decomposed form exporters write: (x - mean) / sqrt(mean((x - mean)^2) + eps)
    let mut b = builder();
    let x = b.input("x", &dims(&[2, 3, 8]));
    let mu = b.op("ReduceMean", &[&x], vec![a_ints("axes", &[-1]), a_int("keepdims", 1)]);
    let d = b.op("Sub", &[&x, &mu], vec![]);
    let two = b.constant("two", &ndarray::arr0(2.0f32).into_dyn());
    let d2 = b.op("Pow", &[&d, &two], vec![]);
    let var = b.op("ReduceMean", &[&d2], vec![a_ints("axes", &[-1]), a_int("keepdims", 1)]);
    let eps = b.constant("eps", &ndarray::arr0(1e-5f32).into_dyn());
    let ve = b.op("Add", &[&var, &eps], vec![]);
    let sd = b.op("Sqrt", &[&ve], vec![]);
    let y = b.op("Div", &[&d, &sd], vec![]);
    b.output(&y);
    check(&b.build(), &[2, 3, 8], &[], (-2.0, 2.0), 23);
    // attention: MatMul with broadcast batch dimensions, Softmax over a middle axis
    check_single("MatMul", &[2, 1, 4, 5], &[("w", &[3, 5, 6], -1.0, 1.0)], vec![], (-1.0, 1.0));
    check_single("MatMul", &[3, 4, 5], &[("w", &[2, 1, 5, 6], -1.0, 1.0)], vec![], (-1.0, 1.0));
    check_single("Softmax", &[2, 5, 3], &[], vec![a_int("axis", 1)], (-2.0, 2.0));
    check_single("LogSoftmax", &[2, 5, 3], &[], vec![a_int("axis", 1)], (-2.0, 2.0));
    // Gather on constant indices (a repeated index sums), Expand, Where, ReduceMax
    let mut b = builder();
    let x = b.input("x", &dims(&[3, 5, 2]));
    let idx = b.constant_i64("idx", &[2, 2], &[4, 0, -1, 2]);
    let y = b.op("Gather", &[&x, &idx], vec![a_int("axis", 1)]);
    let i0 = b.constant_i64("i0", &[], &[1]);
    let y0 = b.op("Gather", &[&x, &i0], vec![a_int("axis", 0)]);
    let shape = b.constant_i64("shape", &[3], &[4, 5, 2]);
    let ex = b.op("Expand", &[&y0, &shape], vec![]);
    let zero = b.constant("zero", &ndarray::arr0(0.0f32).into_dyn());
    let cond = b.op("Greater", &[&ex, &zero], vec![]);
    let w = weight(&mut b, "w", &[5, 2], -1.0, 1.0);
    let wh = b.op("Where", &[&cond, &ex, &w], vec![]);
    let mx = b.op("ReduceMax", &[&x], vec![a_ints("axes", &[1]), a_int("keepdims", 0)]);
    b.output(&y);
    b.output(&wh);
    b.output(&mx);
    check(&b.build(), &[3, 5, 2], &[w.as_str()], (-1.0, 1.0), 24);
    // distinct indices, as a FuSe block with channels assigned by fit writes them:
    // two subsets of the channels, then a permutation back
    let mut b = builder();
    let x = b.input("x", &dims(&[3, 5, 2]));
    let ia = b.constant_i64("ia", &[2], &[3, 1]);
    let ib = b.constant_i64("ib", &[3], &[0, 4, 2]);
    let ga = b.op("Gather", &[&x, &ia], vec![a_int("axis", 1)]);
    let gb = b.op("Gather", &[&x, &ib], vec![a_int("axis", 1)]);
    let sq = b.op("Mul", &[&gb, &gb], vec![]);
    let cat = b.op("Concat", &[&ga, &sq], vec![a_int("axis", 1)]);
    let order = b.constant_i64("order", &[5], &[2, 1, 4, 0, 3]);
    let back = b.op("Gather", &[&cat, &order], vec![a_int("axis", 1)]);
    b.output(&back);
    check(&b.build(), &[3, 5, 2], &[], (-1.0, 1.0), 26);
}

#[test]
fn resize_and_conv_transpose_rules() {
    let resize = |xshape: &[usize], scales: &[f32], attrs: Vec<fusec::onnx::AttributeProto>| {
        let mut b = ModelBuilder::new(13, 1);
        let x = b.input("x", &dims(xshape));
        let roi = b.constant("roi", &ndarray::ArrayD::zeros(ndarray::IxDyn(&[0])));
        let sc = b.constant("scales", &ndarray::Array1::from(scales.to_vec()).into_dyn());
        let y = b.op("Resize", &[&x, &roi, &sc], attrs);
        b.output(&y);
        check(&b.build(), xshape, &[], (-1.0, 1.0), 25);
    };
    let s = |v: &str| a_string("coordinate_transformation_mode", v);
    // nearest ×2 as the PP-OCR detector writes it (the block-sum path), and ×1.5 / ×0.5 (the matrix path)
    resize(&[1, 2, 3, 4], &[1.0, 1.0, 2.0, 2.0], vec![a_string("mode", "nearest"), s("asymmetric"), a_string("nearest_mode", "floor")]);
    resize(&[1, 2, 4, 4], &[1.0, 1.0, 1.5, 0.5], vec![a_string("mode", "nearest"), s("half_pixel")]);
    resize(&[1, 2, 4, 6], &[1.0, 1.0, 2.0, 2.0], vec![a_string("mode", "nearest"), s("tf_half_pixel_for_nn"), a_string("nearest_mode", "round_prefer_ceil")]);
    // linear in the modes PyTorch and TF write
    for mode in ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"] {
        resize(&[2, 2, 3, 5], &[1.0, 1.0, 2.0, 0.6], vec![a_string("mode", "linear"), s(mode)]);
    }
    // ConvTranspose: the detector's 2×2 stride 2, and pads + output_padding + groups + bias
    check_single("ConvTranspose", &[2, 4, 3, 3], &[("w", &[4, 3, 2, 2], -0.5, 0.5), ("b", &[3], -0.5, 0.5)], vec![a_ints("strides", &[2, 2])], (-1.0, 1.0));
    check_single(
        "ConvTranspose",
        &[2, 4, 4, 3],
        &[("w", &[4, 2, 3, 3], -0.5, 0.5)],
        vec![a_ints("strides", &[2, 2]), a_ints("pads", &[1, 0, 1, 1]), a_ints("output_padding", &[1, 0]), a_int("group", 2)],
        (-1.0, 1.0),
    );
    check_single("ConvTranspose", &[1, 3, 4, 4], &[("w", &[3, 1, 3, 3], -0.5, 0.5)], vec![a_int("group", 3), a_ints("pads", &[1, 1, 1, 1]), a_ints("dilations", &[2, 1])], (-1.0, 1.0));
}

#[test]
fn an_op_without_a_rule_names_the_node_and_the_op() {
    let (m, _) = single("Sin", &[2, 3], &[], vec![]);
    let err = fusec::train::graph::gradient_model(&m, &["x".to_string()], &[("x".into(), vec![2, 3])]).unwrap_err().to_string();
    assert!(err.contains("Sin") && err.contains("no gradient rule"), "{err}");
    let first_line = err.lines().next().unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(first_line.contains("ConvTranspose") && first_line.contains("Resize"), "lists the supported ops: {err}");
}

/// docs/finetune.md's list of ops with a gradient rule is the rule table.
#[test]
fn the_docs_list_the_gradient_rules() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/finetune.md")).unwrap();
    let start = readme.find("<!-- grad-rules -->").expect("docs/finetune.md has a <!-- grad-rules --> block") + "<!-- grad-rules -->".len();
    let end = readme[start..].find("<!-- /grad-rules -->").expect("the block is closed") + start;
    let listed: Vec<&str> = readme[start..end].split(',').map(str::trim).collect();
    assert_eq!(listed, fusec::train::grad::supported(), "update docs/finetune.md's gradient-rule list from train::grad::supported()");
}

/// An integer initializer for quantization parameters.
fn int_const(b: &mut ModelBuilder, name: &str, dt: i32, dims: &[i64], v: &[i64]) -> String {
    let t = Tensor::from_ints(name, dt, dims, v).unwrap();
    b.initializer(t.into_proto());
    name.to_string()
}

/// x → QuantizeLinear → DequantizeLinear (per tensor) → Conv whose weight goes
/// through its own per-channel QuantizeLinear → DequantizeLinear pair.
fn fake_quantized_conv(opset: i64, dt: i32, x_scale: f32, w_scale: [f32; 3]) -> (ModelProto, String) {
    let mut b = ModelBuilder::new(opset, 7);
    let x = b.input("x", &dims(&[2, 2, 5, 4]));
    let w = weight(&mut b, "w", &[3, 2, 3, 3], -0.5, 0.5);
    let xs = b.constant("xs", &ndarray::arr0(x_scale).into_dyn());
    let xz = int_const(&mut b, "xz", dt, &[], &[3]);
    let ws = b.constant("ws", &ndarray::arr1(&w_scale).into_dyn());
    let wz = int_const(&mut b, "wz", dt, &[3], &[0, 0, 0]);
    let xq = b.op("QuantizeLinear", &[&x, &xs, &xz], vec![]);
    let xd = b.op("DequantizeLinear", &[&xq, &xs, &xz], vec![]);
    let wq = b.op("QuantizeLinear", &[&w, &ws, &wz], vec![a_int("axis", 0)]);
    let wd = b.op("DequantizeLinear", &[&wq, &ws, &wz], vec![a_int("axis", 0)]);
    let y = b.op("Conv", &[&xd, &wd], vec![a_ints("pads", &[1, 1, 1, 1])]);
    b.output(&y);
    (b.build(), w)
}

/// The straight-through rule against finite differences away from rounding
/// steps: with int16 (opset 21) a quantization step is a thousandth of the
/// finite-difference step, so the quantized function is, at that scale, the
/// identity inside the range and constant where it saturates (part of x lies
/// beyond the range: those elements must get no gradient for the check to pass).
#[test]
fn quantize_dequantize_pass_gradients_straight_through() {
    let (m, w) = fake_quantized_conv(21, fusec::onnx::dtype::INT16, 2e-5, [2e-5, 1.5e-5, 3e-5]);
    // int16 at scale 2e-5 with zero point 3 holds x in about [-0.655, 0.655]: a third of
    // x saturates, 1% lies within a finite-difference step of the edges
    check(&m, &[2, 2, 5, 4], &[&w], (-1.0, 1.0), 17);
}

/// The rule's values exactly, for int8 and uint8: dy where x/scale + zero point
/// rounds inside the integer range, 0 where it saturates.
#[test]
fn straight_through_gradients_stop_where_quantization_saturates() {
    runtime::init().unwrap();
    for (dt, zp, lo, hi) in [(fusec::onnx::dtype::INT8, -3i64, -128.0f32, 127.0f32), (fusec::onnx::dtype::UINT8, 100, 0.0, 255.0)] {
        let scale = 0.01f32;
        let mut b = ModelBuilder::new(13, 7);
        let x = b.input("x", &dims(&[64]));
        let s = b.constant("s", &ndarray::arr0(scale).into_dyn());
        let z = int_const(&mut b, "z", dt, &[], &[zp]);
        let q = b.op("QuantizeLinear", &[&x, &s, &z], vec![]);
        let y = b.op("DequantizeLinear", &[&q, &s, &z], vec![]);
        b.output(&y);
        let m = b.build();
        let gm = fusec::train::graph::gradient_model(&m, &["x".to_string()], &[("x".into(), vec![64])]).unwrap();
        // x from 12 steps below the range to 12 steps above it
        let (x_lo, x_hi) = ((lo - zp as f32 - 12.0) * scale, (hi - zp as f32 + 12.0) * scale);
        let xv: Vec<f32> = (0..64).map(|i| x_lo + (x_hi - x_lo) * (i as f32 + 0.25) / 64.0).collect();
        let dy: Vec<f32> = (0..64).map(|i| 1.0 + i as f32).collect();
        let mut sess = runtime::session(&gm, 1).unwrap();
        let out = runtime::run(&mut sess, &[Feed { name: "x", shape: vec![64], data: &xv }, Feed { name: &format!("d/{y}"), shape: vec![64], data: &dy }], &[]).unwrap();
        let (mut passed, mut stopped) = (0, 0);
        for i in 0..64 {
            let u = (xv[i] / scale).round() + zp as f32;
            let want = if (lo..=hi).contains(&u) { dy[i] } else { 0.0 };
            assert!((out[0][i] - want).abs() <= 1e-4 * want.abs(), "{dt}: x {} (level {u}): gradient {} want {want}", xv[i], out[0][i]);
            if want == 0.0 { stopped += 1 } else { passed += 1 }
        }
        assert!(passed > 40 && stopped >= 2, "{dt}: {passed} passed, {stopped} stopped: the check must see both");
    }
}

//! Shape computations as exporters write them: the folding rule of each op
//! (on generated graphs with a symbolic batch, so some elements fold and
//! some do not), semantic identity of folded models in ONNX Runtime at two
//! batch sizes, shape inference through computed Reshape/Slice/Expand/Resize
//! targets, where inference stops, and Full widening through the PyTorch
//! squeeze-excite and `view(b, -1)` forms.

mod common;

use common::*;
use fusec::models::builder::{Act, ModelBuilder};
use fusec::ir::Graph;
use fusec::onnx::{a_int, a_ints, a_tensor, dtype, Dim, ModelProto};
use fusec::passes::fuse_depthwise::{Init, Variant};
use fusec::exec::runtime::{self, Feed};
use ndarray::ArrayD;

fn sym(n: &str) -> Dim {
    Dim::Sym(n.into())
}

fn k(v: i64) -> Dim {
    Dim::Known(v)
}

/// Run a model in ONNX Runtime on x of `shape`; all outputs.
fn ort(m: &ModelProto, shape: &[usize], seed: u64) -> Vec<ArrayD<f32>> {
    let x = random_input(shape, seed);
    let mut s = runtime::session(m, 1).unwrap();
    runtime::run(&mut s, &[Feed { name: "x", shape: shape.to_vec(), data: x.as_slice().unwrap() }], &[]).unwrap()
}

/// Load the way commands do (fold included) and return the folded model.
fn folded(m: &ModelProto) -> (ModelProto, Graph) {
    let mut g = graph_of(m);
    fusec::ir::fold::fold(&mut g).unwrap();
    let mut out = m.clone();
    out.graph = Some(g.to_proto().unwrap());
    (out, g)
}

/// x: [batch, 6, 4, 5] → `f` builds a shape computation from it → the int
/// result is cast to float and is the graph output "v" (plus x's own use so the
/// model has a float path).
fn shape_case(opset: i64, f: impl Fn(&mut ModelBuilder, &str) -> String) -> ModelProto {
    let mut b = ModelBuilder::new(opset, 1);
    let x = b.input("x", &[sym("batch"), k(6), k(4), k(5)]);
    let v = f(&mut b, &x);
    let vf = b.node("Cast", &[&v], "v", vec![a_int("to", dtype::FLOAT as i64)]);
    b.output(&vf);
    b.build()
}

fn shape_of(b: &mut ModelBuilder, x: &str) -> String {
    b.op("Shape", &[x], vec![])
}

fn gather(b: &mut ModelBuilder, v: &str, i: i64) -> String {
    let idx = b.constant_i64("idx", &[], &[i]);
    b.op("Gather", &[v, &idx], vec![a_int("axis", 0)])
}

fn unsq(b: &mut ModelBuilder, v: &str) -> String {
    let ax = b.constant_i64("axes", &[1], &[0]);
    b.op("Unsqueeze", &[v, &ax], vec![])
}

/// The op of the node producing graph output value `name` after folding.
fn producer_op(g: &Graph, value: &str) -> String {
    // "v" is a Cast of the computed value (folded into the constant too, when known)
    let (cast, _) = g.producer(value).unwrap();
    let Some(src) = g.node(cast).input(0) else { return g.node(cast).op().to_string() };
    let (p, _) = g.producer(src).unwrap();
    g.node(p).op().to_string()
}

#[test]
fn each_shape_op_folds_what_is_known_and_keeps_what_is_not() {
    runtime::init().expect("ONNX Runtime (run scripts/setup.sh)");
    // (name, builder, does the result fold to a constant?)
    type Build = Box<dyn Fn(&mut ModelBuilder, &str) -> String>;
    let cases: Vec<(&str, i64, Build, bool)> = vec![
        ("Shape", 13, Box::new(|b, x| shape_of(b, x)), false),
        ("Shape start/end", 15, Box::new(|b, x| b.op("Shape", &[x], vec![a_int("start", 1), a_int("end", -1)])), true),
        ("Gather known", 13, Box::new(|b, x| { let s = shape_of(b, x); gather(b, &s, 1) }), true),
        ("Gather batch", 13, Box::new(|b, x| { let s = shape_of(b, x); gather(b, &s, 0) }), false),
        ("Gather negative", 13, Box::new(|b, x| { let s = shape_of(b, x); gather(b, &s, -1) }), true),
        ("Size", 13, Box::new(|b, x| { let m = b.op("ReduceMean", &[x], vec![a_ints("axes", &[0]), a_int("keepdims", 1)]); b.op("Size", &[&m], vec![]) }), true),
        ("Size batch", 13, Box::new(|b, x| b.op("Size", &[x], vec![])), false),
        ("Slice", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let (st, en, ax) = (b.constant_i64("s", &[1], &[1]), b.constant_i64("e", &[1], &[3]), b.constant_i64("a", &[1], &[0]));
            b.op("Slice", &[&s, &st, &en, &ax], vec![])
        }), true),
        ("Squeeze/Unsqueeze", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let g = gather(b, &s, 2);
            let u = unsq(b, &g);
            let ax = b.constant_i64("axes", &[1], &[0]);
            let q = b.op("Squeeze", &[&u, &ax], vec![]);
            unsq(b, &q)
        }), true),
        ("Concat partial", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let (n, c) = (gather(b, &s, 0), gather(b, &s, 1));
            let (un, uc) = (unsq(b, &n), unsq(b, &c));
            b.op("Concat", &[&un, &uc], vec![a_int("axis", 0)])
        }), false),
        ("Concat known", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let (h, w) = (gather(b, &s, 2), gather(b, &s, 3));
            let (uh, uw) = (unsq(b, &h), unsq(b, &w));
            let m1 = b.constant_i64("m1", &[1], &[-1]);
            b.op("Concat", &[&m1, &uh, &uw], vec![a_int("axis", 0)])
        }), true),
        ("Cast round trip through float", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let h = gather(b, &s, 2);
            let hf = b.op("Cast", &[&h], vec![a_int("to", dtype::FLOAT as i64)]);
            let two = b.constant("two", &ndarray::arr0(2.0f32).into_dyn());
            let m = b.op("Mul", &[&hf, &two], vec![]);
            let fl = b.op("Floor", &[&m], vec![]);
            b.op("Cast", &[&fl], vec![a_int("to", dtype::INT64 as i64)])
        }), true),
        ("Add/Sub/Mul/Div/Mod", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let c = gather(b, &s, 1);
            let two = b.constant_i64("two", &[], &[2]);
            let three = b.constant_i64("three", &[], &[3]);
            let a = b.op("Add", &[&c, &two], vec![]);
            let m = b.op("Mul", &[&a, &three], vec![]);
            let d = b.op("Div", &[&m, &two], vec![]);
            let sub = b.op("Sub", &[&d, &three], vec![]);
            b.op("Mod", &[&sub, &three], vec![])
        }), true),
        ("Div of the batch", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let n = gather(b, &s, 0);
            let two = b.constant_i64("two", &[], &[2]);
            b.op("Div", &[&n, &two], vec![])
        }), false),
        ("Range", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let h = gather(b, &s, 2);
            let (z, one) = (b.constant_i64("z", &[], &[0]), b.constant_i64("one", &[], &[1]));
            b.op("Range", &[&z, &h, &one], vec![])
        }), true),
        ("ConstantOfShape", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let (st, en, ax) = (b.constant_i64("s", &[1], &[1]), b.constant_i64("e", &[1], &[3]), b.constant_i64("a", &[1], &[0]));
            let sl = b.op("Slice", &[&s, &st, &en, &ax], vec![]);
            let v = fusec::onnx::tensor::Tensor::from_i64("fill", &[1], &[7]).into_proto();
            b.op("ConstantOfShape", &[&sl], vec![a_tensor("value", v)])
        }), true),
        ("Expand", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let c = gather(b, &s, 1);
            let uc = unsq(b, &c);
            let one = b.constant_i64("one", &[1], &[3]);
            b.op("Expand", &[&one, &uc], vec![])
        }), true),
        ("Equal/Where/Max/Min", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let (c, h) = (gather(b, &s, 1), gather(b, &s, 2));
            let six = b.constant_i64("six", &[], &[6]);
            let eq = b.op("Equal", &[&c, &six], vec![]);
            let w = b.op("Where", &[&eq, &h, &c], vec![]);
            let mx = b.op("Max", &[&w, &six], vec![]);
            b.op("Min", &[&mx, &h], vec![])
        }), true),
        ("Where on the batch", 13, Box::new(|b, x| {
            let s = shape_of(b, x);
            let (n, c) = (gather(b, &s, 0), gather(b, &s, 1));
            let one = b.constant_i64("one", &[], &[1]);
            let eq = b.op("Equal", &[&n, &one], vec![]);
            b.op("Where", &[&eq, &c, &n], vec![])
        }), false),
    ];
    for (name, opset, build, folds) in cases {
        let m = shape_case(opset, |b, x| build(b, x));
        let (f, g) = folded(&m);
        let op = producer_op(&g, "v");
        assert_eq!(op == "Constant", folds, "{name}: the result comes from {op}");
        if folds {
            // nothing of the computation is left but the constant
            assert!(!g.g.node_weights().any(|n| n.op() == "Shape"), "{name}: a Shape node survived");
        }
        for (batch, seed) in [(1, 1), (3, 2)] {
            let want = ort(&m, &[batch, 6, 4, 5], seed);
            let got = ort(&f, &[batch, 6, 4, 5], seed);
            assert_eq!(want, got, "{name}: batch {batch}");
        }
    }
}

/// Shape inference through the forms exporters write, with a symbolic batch:
/// `view(b, -1)`, `torch.chunk`, `expand_as`, `F.interpolate(size=...)`.
#[test]
fn inference_reads_computed_targets() {
    let mut b = ModelBuilder::new(13, 2);
    let x = b.input("x", &[sym("batch"), k(6), k(4), k(5)]);
    let s = shape_of(&mut b, &x);
    // view(b, -1): the -1 is the rest of the size, the batch cancels
    let n = gather(&mut b, &s, 0);
    let un = unsq(&mut b, &n);
    let m1 = b.constant_i64("m1", &[1], &[-1]);
    let t = b.op("Concat", &[&un, &m1], vec![a_int("axis", 0)]);
    let flat = b.op("Reshape", &[&x, &t], vec![]);
    // torch.chunk(x, 2, 1): Slice with end = Shape(x)[1] / 2
    let c = gather(&mut b, &s, 1);
    let two = b.constant_i64("two", &[], &[2]);
    let half = b.op("Div", &[&c, &two], vec![]);
    let uh = unsq(&mut b, &half);
    let (z, ax) = (b.constant_i64("z", &[1], &[0]), b.constant_i64("ax", &[1], &[1]));
    let chunk = b.op("Slice", &[&x, &z, &uh, &ax], vec![]);
    // expand_as
    let p = b.op("GlobalAveragePool", &[&x], vec![]);
    let e = b.op("Expand", &[&p, &s], vec![]);
    // interpolate(size=(8, 10)): sizes = Concat(Shape(x)[:2], [8, 10])
    let (s0, s2, a0) = (b.constant_i64("s0", &[1], &[0]), b.constant_i64("s2", &[1], &[2]), b.constant_i64("a0", &[1], &[0]));
    let nc = b.op("Slice", &[&s, &s0, &s2, &a0], vec![]);
    let hw = b.constant_i64("hw", &[2], &[8, 10]);
    let sizes = b.op("Concat", &[&nc, &hw], vec![a_int("axis", 0)]);
    let r = b.op("Resize", &[&x, "", "", &sizes], vec![fusec::onnx::a_string("mode", "nearest")]);
    for v in [&flat, &chunk, &e, &r] {
        b.output(v);
    }
    let g = graph_of(&b.build());
    let shape = |v: &str| fusec::onnx::fmt_shape(g.shape_of(v).unwrap());
    assert_eq!(shape(&flat), "[batch, 120]");
    assert_eq!(shape(&chunk), "[batch, 3, 4, 5]");
    assert_eq!(shape(&e), "[batch, 6, 4, 5]");
    assert_eq!(shape(&r), "[batch, 6, 8, 10]");
}

/// When a dimension cannot be known, the report names the node that stopped
/// inference and its op, not a generic --input-shape hint.
#[test]
fn unknown_shapes_name_the_node_that_stopped_inference() {
    let mut b = ModelBuilder::new(13, 3);
    let x = b.input("x", &[k(1), k(4), k(8), k(8)]);
    // a Reshape whose target depends on data (NonZero): not knowable before run time
    let nz = b.op("NonZero", &[&x], vec![]);
    let sh = b.op("Shape", &[&nz], vec![]);
    let y = b.op("Reshape", &[&x, &sh], vec![]);
    let z = b.conv(&y, 4, 4, (3, 3), (1, 1), (1, 1), 4, false);
    b.output(&z);
    let g = graph_of(&b.build());
    let hw = fusec::cost::hw::HwConfig::array(8, 8, fusec::cost::hw::HwKind::Fuse, 1.0).unwrap();
    let e = fusec::cost::hw::schedule::schedule(&g, &hw, 1).unwrap_err().to_string();
    assert!(e.contains("inference stopped at") && e.contains("(NonZero)"), "{e}");
    assert!(!e.contains("pass --input-shape"), "{e}");
    let r = fusec::inspect::inspect(&model_of(ModelProto::default()), &g).unwrap();
    assert!(r.unknown_shapes.iter().any(|u| u.op == "NonZero"), "{:?}", r.unknown_shapes);
}

/// A MobileNetV3 block written the way `torch.onnx.export` writes it with a
/// dynamic batch: squeeze-excite with `b, c, _, _ = x.size()`, `view(b, c)`,
/// `view(b, c, 1, 1)`, `expand_as(x)`, then `view(x.size(0), -1)` before the
/// classifier.
fn pytorch_style_block(centre_only: bool) -> ModelProto {
    let mut b = ModelBuilder::new(13, 5);
    let x = b.input("x", &[sym("batch"), k(3), k(8), k(8)]);
    let c = 8usize;
    let e = b.conv(&x, 3, c, (1, 1), (1, 1), (0, 0), 1, true);
    let d = b.conv(&e, c, c, (3, 3), (1, 1), (1, 1), c, false);
    if centre_only {
        b.set_weight(&d, |i| if i[2] == 1 && i[3] == 1 { 0.5 + 0.05 * i[0] as f32 } else { 0.0 });
    }
    let h = b.bn(&d, c);
    // SE: b, c = h.size()[:2]; y = pool(h).view(b, c); y = fc(y).view(b, c, 1, 1); h * y.expand_as(h)
    let s = shape_of(&mut b, &h);
    let (n, ch) = (gather(&mut b, &s, 0), gather(&mut b, &s, 1));
    let (un, uc) = (unsq(&mut b, &n), unsq(&mut b, &ch));
    let t2 = b.op("Concat", &[&un, &uc], vec![a_int("axis", 0)]);
    let p = b.op("GlobalAveragePool", &[&h], vec![]);
    let r = b.op("Reshape", &[&p, &t2], vec![]);
    let w1 = b.uniform(&[c, 4], 0.5);
    let w1 = b.constant("w1", &w1);
    let f1 = b.op("MatMul", &[&r, &w1], vec![]);
    let f1 = b.act(&f1, Act::Relu);
    let w2 = b.uniform(&[4, c], 0.5);
    let w2 = b.constant("w2", &w2);
    let f2 = b.op("MatMul", &[&f1, &w2], vec![]);
    let gate = b.act(&f2, Act::HardSigmoid);
    let one = b.constant_i64("one", &[1], &[1]);
    let t4 = b.op("Concat", &[&un, &uc, &one, &one], vec![a_int("axis", 0)]);
    let g4 = b.op("Reshape", &[&gate, &t4], vec![]);
    let s2 = shape_of(&mut b, &h);
    let ex = b.op("Expand", &[&g4, &s2], vec![]);
    let m = b.op("Mul", &[&h, &ex], vec![]);
    let a = b.act(&m, Act::HardSwish);
    let out = b.conv(&a, c, 6, (1, 1), (1, 1), (0, 0), 1, true);
    // classifier: view(x.size(0), -1) on the pooled features
    let gp = b.op("GlobalAveragePool", &[&out], vec![]);
    let s3 = shape_of(&mut b, &gp);
    let n3 = gather(&mut b, &s3, 0);
    let un3 = unsq(&mut b, &n3);
    let m1 = b.constant_i64("m1", &[1], &[-1]);
    let t = b.op("Concat", &[&un3, &m1], vec![a_int("axis", 0)]);
    let flat = b.op("Reshape", &[&gp, &t], vec![]);
    let logits = b.gemm(&flat, 6, 5, true);
    b.output(&logits);
    b.build()
}

#[test]
fn full_widens_through_pytorch_squeeze_excite_and_flatten() {
    runtime::init().expect("ONNX Runtime (run scripts/setup.sh)");
    let m = pytorch_style_block(true);
    // as a command loads it: fold first (the channel elements become constants, the batch stays)
    let (f, g) = folded(&m);
    assert!(g.folded.folded > 0);
    assert!(g.g.node_weights().any(|n| n.op() == "Shape"), "the batch is still read at run time");
    let (conv, r) = convert(&f, Variant::Full, Init::Center);
    assert_eq!(r.rewrites.len(), 1, "{:?}", r.skipped);
    for (batch, seed) in [(1, 1), (3, 2)] {
        let want = ort(&m, &[batch, 3, 8, 8], seed);
        let got = ort(&conv, &[batch, 3, 8, 8], seed);
        assert_close(&got[0], &want[0], 1e-4, 1e-5, &format!("Full, batch {batch}"));
    }
    // and without folding first, the same: the shape readers see 2C at run time
    let (conv2, r2) = convert(&m, Variant::Full, Init::Center);
    assert_eq!(r2.rewrites.len(), 1, "{:?}", r2.skipped);
    let want = ort(&m, &[2, 3, 8, 8], 7);
    assert_close(&ort(&conv2, &[2, 3, 8, 8], 7)[0], &want[0], 1e-4, 1e-5, "Full without folding");
}

/// Folding keeps what a model computes: the folded block equals the original on
/// random inputs at two batch sizes, with dense (arbitrary) kernels.
#[test]
fn folded_models_compute_the_same() {
    runtime::init().expect("ONNX Runtime (run scripts/setup.sh)");
    let m = pytorch_style_block(false);
    let (f, g) = folded(&m);
    assert!(g.folded.folded >= 1, "{:?}", g.folded);
    for (batch, seed) in [(1, 3), (4, 4)] {
        assert_eq!(ort(&f, &[batch, 3, 8, 8], seed), ort(&m, &[batch, 3, 8, 8], seed), "batch {batch}");
    }
    // the saved model keeps its symbolic batch
    let (_, shape) = fusec::onnx::value_info_type(&f.graph.as_ref().unwrap().input[0]);
    assert_eq!(shape.unwrap()[0], sym("batch"));
}

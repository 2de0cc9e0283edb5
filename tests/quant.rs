//! INT8 models as quantizers write them: shapes and element types through the
//! quantized ops (QDQ and QOperator, ONNX and `com.microsoft` domains), and
//! the PP-OCR classifier quantized by ONNX Runtime (testdata/quant, written by
//! scripts/quantize.py) costing on the array exactly what the float model costs.

mod common;

use common::*;
use fusec::cost::hw::{schedule, HwConfig, HwKind};
use fusec::ir::Graph;
use fusec::passes::fuse_depthwise::Candidate;
use fusec::onnx::{a_int, a_ints, dtype, make_node, make_value_info, Dim, GraphProto, NodeProto, TensorProto};
use fusec::onnx::tensor::Tensor;
use predicates::prelude::*;

fn k(v: i64) -> Dim {
    Dim::Known(v)
}

fn init(name: &str, dt: i32, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    Tensor::from_ints(name, dt, dims, &vec![1; n as usize]).unwrap().into_proto()
}

fn f32_init(name: &str, dims: &[i64]) -> TensorProto {
    init(name, dtype::FLOAT, dims)
}

fn ms(mut n: NodeProto) -> NodeProto {
    n.domain = Some("com.microsoft".into());
    n
}

/// The graph of `nodes` on a float input x [1, 4, 6, 6], with the scales and zero points they use.
fn graph(nodes: Vec<NodeProto>, opset: i64) -> Graph {
    let gp = GraphProto {
        node: nodes,
        input: vec![make_value_info("x", dtype::FLOAT, Some(&[k(1), k(4), k(6), k(6)]))],
        initializer: vec![
            f32_init("s", &[]),
            init("zu8", dtype::UINT8, &[]),
            init("zi16", dtype::INT16, &[]),
            init("wq", dtype::INT8, &[8, 4, 3, 3]),
            init("wdw", dtype::INT8, &[4, 1, 3, 3]),
            f32_init("ws", &[8]),
            init("wz", dtype::INT8, &[8]),
            init("bias", dtype::INT32, &[8]),
            init("mq", dtype::INT8, &[6, 5]),
            init("gq", dtype::INT8, &[5, 6]),
        ],
        ..Default::default()
    };
    Graph::from_proto(&gp, opset).unwrap_or_else(|e| panic!("{e}"))
}

fn fact(g: &Graph, v: &str) -> (Option<i32>, Vec<Dim>) {
    let f = g.fact(v).unwrap_or_else(|| panic!("no fact for {v}"));
    (f.dtype, f.shape.clone().unwrap_or_else(|| panic!("no shape for {v}")))
}

#[test]
fn quantized_ops_have_the_shapes_and_types_of_what_they_compute() {
    let g = graph(
        vec![
            make_node("q", "QuantizeLinear", &["x", "s", "zu8"], &["xq"], vec![]),
            make_node("dq", "DequantizeLinear", &["wq", "ws", "wz"], &["w"], vec![a_int("axis", 0)]),
            make_node("c", "Conv", &["x", "w"], &["y_qdq"], vec![a_ints("pads", &[1, 1, 1, 1])]),
            make_node("qc", "QLinearConv", &["xq", "s", "zu8", "wq", "ws", "wz", "s", "zu8", "bias"], &["yq"], vec![a_ints("pads", &[1, 1, 1, 1]), a_ints("strides", &[2, 2])]),
            make_node("qdw", "QLinearConv", &["xq", "s", "zu8", "wdw", "s", "wz", "s", "zu8"], &["ydw"], vec![a_int("group", 4)]),
            make_node("ci", "ConvInteger", &["xq", "wq"], &["yi"], vec![]),
            make_node("dql", "DynamicQuantizeLinear", &["x"], &["dy", "dys", "dyz"], vec![]),
            make_node("r", "Reshape", &["xq", "shape"], &["rows"], vec![]),
            make_node("shape_c", "Constant", &[], &["shape"], vec![fusec::onnx::a_tensor("value", Tensor::from_i64("shape", &[2], &[24, 6]).into_proto())]),
            make_node("qmm", "QLinearMatMul", &["rows", "s", "zu8", "mq", "s", "zu8", "s", "zu8"], &["mm"], vec![]),
            make_node("mmi", "MatMulInteger", &["rows", "mq"], &["mmi_out"], vec![]),
            ms(make_node("qg", "QGemm", &["rows", "s", "zu8", "gq", "s", "zu8", "", "s", "zu8"], &["gemm_q"], vec![a_int("transB", 1)])),
            ms(make_node("qgf", "QGemm", &["rows", "s", "zu8", "gq", "s", "zu8"], &["gemm_f"], vec![a_int("transB", 1)])),
            ms(make_node("qa", "QLinearAdd", &["yq", "s", "zu8", "yq", "s", "zu8", "s", "zu8"], &["sum"], vec![])),
            ms(make_node("qgap", "QLinearGlobalAveragePool", &["yq", "s", "zu8", "s", "zu8"], &["pooled"], vec![])),
            ms(make_node("qgap_l", "QLinearGlobalAveragePool", &["xq", "s", "zu8", "s", "zu8"], &["pooled_last"], vec![a_int("channels_last", 1)])),
            ms(make_node("qcat", "QLinearConcat", &["s", "zu8", "xq", "s", "zu8", "ydw", "s", "zu8"], &["cat"], vec![a_int("axis", 1)])),
        ],
        13,
    );
    let (u8, i32, f) = (Some(dtype::UINT8), Some(dtype::INT32), Some(dtype::FLOAT));
    let want: &[(&str, Option<i32>, &[i64])] = &[
        ("xq", u8, &[1, 4, 6, 6]),
        ("w", f, &[8, 4, 3, 3]),
        ("y_qdq", f, &[1, 8, 6, 6]),
        ("yq", u8, &[1, 8, 3, 3]),
        ("ydw", u8, &[1, 4, 4, 4]),
        ("yi", i32, &[1, 8, 4, 4]),
        ("dy", u8, &[1, 4, 6, 6]),
        ("dys", f, &[]),
        ("dyz", u8, &[]),
        ("mm", u8, &[24, 5]),
        ("mmi_out", i32, &[24, 5]),
        ("gemm_q", u8, &[24, 5]),
        ("gemm_f", f, &[24, 5]),
        ("sum", u8, &[1, 8, 3, 3]),
        ("pooled", u8, &[1, 8, 1, 1]),
        ("pooled_last", u8, &[1, 1, 1, 6]),
        ("cat", u8, &[1, 8, 4, 4]),
    ];
    // (cat: 4 + 4 channels would need equal spatial dims: xq is 6x6, ydw 4x4 — the rule
    // takes the first input's other dims, as Concat's does)
    for (v, dt, dims) in want.iter().filter(|(v, ..)| *v != "cat") {
        let (got_dt, got) = fact(&g, v);
        assert_eq!(got_dt, *dt, "{v}: element type");
        assert_eq!(got, dims.iter().map(|&d| k(d)).collect::<Vec<_>>(), "{v}: shape");
    }
    assert_eq!(fact(&g, "cat").1[1], k(8));
    // opset 21: QuantizeLinear without a zero point takes its type from output_dtype
    let g = graph(vec![make_node("q", "QuantizeLinear", &["x", "s"], &["xq"], vec![a_int("output_dtype", dtype::INT16 as i64)])], 21);
    assert_eq!(fact(&g, "xq").0, Some(dtype::INT16));
    let g = graph(vec![make_node("q", "QuantizeLinear", &["x", "s", "zi16"], &["xq"], vec![])], 21);
    assert_eq!(fact(&g, "xq").0, Some(dtype::INT16));
    // a QLinearConv whose weight does not fit its input's channels is refused, as a Conv is
    let gp = GraphProto {
        node: vec![
            make_node("q", "QuantizeLinear", &["x", "s", "zu8"], &["xq"], vec![]),
            make_node("bad", "QLinearConv", &["xq", "s", "zu8", "wdw", "s", "wz", "s", "zu8"], &["y"], vec![]),
        ],
        input: vec![make_value_info("x", dtype::FLOAT, Some(&[k(1), k(4), k(6), k(6)]))],
        initializer: vec![f32_init("s", &[]), init("zu8", dtype::UINT8, &[]), init("wdw", dtype::INT8, &[4, 1, 3, 3]), init("wz", dtype::INT8, &[4])],
        ..Default::default()
    };
    let e = Graph::from_proto(&gp, 13).unwrap_err().to_string();
    assert!(e.contains("bad") && e.contains("input has 4 channels"), "{e}");
}

fn load(name: &str) -> Graph {
    let (_, mut g) = fusec::ir::load_graph(&testdata(name)).unwrap();
    g.set_input_shape(None, &[1, 3, 48, 192]).unwrap();
    g
}

/// (op kind, cycles) of every layer that runs on the array, in order.
fn array_layers(g: &Graph, hw: &HwConfig) -> Vec<(schedule::LayerKind, u64, u64)> {
    schedule::schedule(g, hw, 1).unwrap().into_iter().filter(|l| l.cycles > 0).map(|l| (l.kind, l.cycles, l.macs)).collect()
}

#[test]
fn int8_models_cost_what_the_float_model_costs() {
    let float = load("ppocr_mobile_v2_cls.onnx");
    let qdq = load("quant/ppocr_cls.qdq.onnx");
    let qop = load("quant/ppocr_cls.qop.onnx");
    for kind in [HwKind::Fuse, HwKind::Systolic] {
        for size in [16, 64] {
            let hw = HwConfig::array(size, size, kind, 1000.0).unwrap();
            let want = array_layers(&float, &hw);
            assert_eq!(want.len(), 54, "53 convs and the classifier");
            assert_eq!(array_layers(&qdq, &hw), want, "QDQ on {size}x{size} {kind:?}");
            assert_eq!(array_layers(&qop, &hw), want, "QOperator on {size}x{size} {kind:?}");
        }
    }
    let stats = |g: &Graph| fusec::stats::stats(g);
    assert_eq!(stats(&qdq).macs, stats(&float).macs);
    assert_eq!(stats(&qop).macs, stats(&float).macs);
    // the quantizer folds BN into the convs (their biases appear): the same parameters in both forms,
    // scales and zero points not counted
    assert_eq!(stats(&qdq).params, stats(&qop).params);
    assert!(stats(&qdq).params.abs_diff(stats(&float).params) < stats(&float).params / 50, "{} vs {}", stats(&qdq).params, stats(&float).params);
    // the simulator: the same array compute
    let cfg = fusec::cost::hw::HwConfig::new(64, 64, HwKind::Fuse, fusec::cost::hw::Dataflow::Os).unwrap();
    let sim = |g: &Graph| fusec::cost::sim::simulate_graph(g, &cfg, fusec::cost::sim::Convention::FUSEC, 1, None).unwrap();
    let want = sim(&float).array_compute_cycles;
    assert_eq!(sim(&qdq).array_compute_cycles, want);
    assert_eq!(sim(&qop).array_compute_cycles, want);
    // every depthwise layer is found, in both forms, and can be rewritten
    for (g, qlinear) in [(&qdq, false), (&qop, true)] {
        let dws = fusec::passes::fuse_depthwise::depthwise_convs(g).unwrap();
        assert_eq!(dws.iter().filter(|c| matches!(c, Candidate::Convertible(d) if d.qdq.as_ref().is_some_and(|q| q.qlinear == qlinear))).count(), 11);
    }
}

/// The quantized classifier (QDQ and QOperator) with every depthwise kernel
/// set to what Half represents exactly (integers off the centre row, or
/// column, zeroed): converted to Half, it keeps its quantized form (QDQ: int8
/// 1-D weights behind DequantizeLinear, Q/DQ around each branch; QOperator:
/// two QLinearConvs and a Concat of their integers) and ONNX Runtime computes
/// exactly what it computes for the quantized original. The fixtures as they
/// are convert too.
/// `m` converted with `variant` (centre kernels, every layer), and the pass's report.
fn convert_quantized(m: &fusec::onnx::ModelProto, variant: fusec::passes::fuse_depthwise::Variant) -> (fusec::onnx::ModelProto, fusec::passes::PassReport) {
    use fusec::passes::fuse_depthwise::{FuseDepthwise, Init, Options};
    let mut g = graph_of(m);
    let pass = FuseDepthwise::new(Options { variant, init: Init::Center, assign: Default::default(), layers: Default::default(), skip: vec![], dense: false }).unwrap();
    let r = fusec::passes::run_pipeline(&mut g, &[Box::new(pass)], &Default::default()).unwrap();
    let mut out = m.clone();
    out.graph = Some(g.to_proto().unwrap());
    (out, r[0].1.clone())
}

/// The largest difference between two classifiers' outputs in ONNX Runtime over
/// four random 1×3×48×192 inputs.
fn max_ort_difference(a: &fusec::onnx::ModelProto, b: &fusec::onnx::ModelProto) -> f32 {
    let mut sa = fusec::exec::runtime::session(a, 1).unwrap();
    let mut sb = fusec::exec::runtime::session(b, 1).unwrap();
    let mut worst = 0f32;
    for seed in 0..4 {
        let x = random_input(&[1, 3, 48, 192], seed);
        let feed = [fusec::exec::runtime::Feed { name: "x", shape: vec![1, 3, 48, 192], data: x.as_slice().unwrap() }];
        let (ya, yb) = (fusec::exec::runtime::run(&mut sa, &feed, &[]).unwrap(), fusec::exec::runtime::run(&mut sb, &feed, &[]).unwrap());
        worst = worst.max(ya[0].iter().zip(yb[0].iter()).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max));
    }
    worst
}

/// Every depthwise kernel of a quantized model set to what the variant represents
/// exactly (Half: the centre row of the first channels, the centre column of the
/// others; Full: the centre tap), on its integers.
fn set_exact_kernels(m: &mut fusec::onnx::ModelProto, g: &Graph, qlinear: bool, full: bool) {
    let mut edited = 0;
    for c in fusec::passes::fuse_depthwise::depthwise_convs(&g).unwrap() {
        let Candidate::Convertible(d) = c else { panic!("{c:?}") };
        let conv = g.node(d.node);
        let wname = if qlinear {
            conv.input(3).unwrap().to_string()
        } else {
            let (dq, _) = g.producer(conv.input(1).unwrap()).unwrap();
            g.node(dq).input(0).unwrap().to_string()
        };
        let t = m.graph.as_mut().unwrap().initializer.iter_mut().find(|t| t.name() == wname).unwrap();
        let tensor = Tensor::from_proto(t.clone()).unwrap();
        let ints = tensor.to_i64().unwrap();
        let (kh, kw) = (d.kernel[0] as usize, d.kernel[1] as usize);
        let keep = |c: usize, i: usize, j: usize| if full { i == d.centre[0] && j == d.centre[1] } else if c < d.half_split() { i == d.centre[0] } else { j == d.centre[1] };
        let kept: Vec<i64> = ints.iter().enumerate().map(|(n, &v)| if keep(n / (kh * kw), n / kw % kh, n % kw) { v } else { 0 }).collect();
        assert_eq!(kept.len(), d.channels * kh * kw);
        *t = Tensor::from_ints(&wname, dtype::INT8, tensor.dims(), &kept).unwrap().into_proto();
        edited += 1;
    }
    assert_eq!(edited, 11);
}

#[test]
fn quantized_models_convert_to_half_and_match_the_quantized_original_where_half_is_exact() {
    let convert = |m: &fusec::onnx::ModelProto| {
        let (out, r) = convert_quantized(m, fusec::passes::fuse_depthwise::Variant::Half);
        assert_eq!(r.rewrites.len(), 11, "{:?}", r.skipped);
        out
    };
    for (fixture, qlinear) in [("quant/ppocr_cls.qdq.onnx", false), ("quant/ppocr_cls.qop.onnx", true)] {
        let (model, _) = fusec::ir::load_graph(&testdata(fixture)).unwrap();
        let mut m = model.proto.clone();
        let g = graph_of(&m);
        set_exact_kernels(&mut m, &g, qlinear, false);
        let half = convert(&m);
        let gp = half.graph.as_ref().unwrap();
        let count = |g: &GraphProto, op: &str| g.node.iter().filter(|n| n.op_type() == op).count();
        let orig = m.graph.as_ref().unwrap();
        let inits: std::collections::HashMap<&str, &TensorProto> = gp.initializer.iter().map(|t| (t.name(), t)).collect();
        if qlinear {
            assert_eq!(count(gp, "QLinearConv"), count(orig, "QLinearConv") + 11);
            assert_eq!(count(gp, "QuantizeLinear"), count(orig, "QuantizeLinear"));
            for n in gp.node.iter().filter(|n| n.op_type() == "QLinearConv") {
                assert_eq!(inits[n.input[3].as_str()].data_type(), dtype::INT8, "{}: int8 weights", n.name());
            }
        } else {
            // per layer: 2 Q/DQ pairs after the Split, 2 before the Concat; 2 weight and 2 bias DequantizeLinear for 1 of each
            assert_eq!(count(gp, "QuantizeLinear"), count(orig, "QuantizeLinear") + 11 * 4);
            assert_eq!(count(gp, "DequantizeLinear"), count(orig, "DequantizeLinear") + 11 * (4 + 2));
            for n in gp.node.iter().filter(|n| n.op_type() == "Conv") {
                let dq = gp.node.iter().find(|p| p.output.first() == Some(&n.input[1])).unwrap();
                assert_eq!(dq.op_type(), "DequantizeLinear", "{}", n.name());
                assert_eq!(inits[dq.input[0].as_str()].data_type(), dtype::INT8, "{}: int8 weights", n.name());
            }
        }
        // ONNX Runtime: the same outputs as the quantized original
        let worst = max_ort_difference(&m, &half);
        eprintln!("{fixture}: Half vs the quantized original, Half-exact kernels: max |diff| {worst}");
        assert!(worst <= 1e-6, "{fixture}: {worst}");
        // the fixture as ONNX Runtime quantized it converts too, and runs
        let as_is = convert(&model.proto);
        fusec::exec::runtime::session(&as_is, 1).unwrap();
    }
}

/// `--word-bytes types`: each layer's words are its operands' elements, so the
/// quantized classifier moves a quarter of the float one's DRAM bytes (exactly,
/// with buffers large enough that nothing is fetched twice; a little less than
/// a quarter with 64 KB buffers, where the float words refetch more). With a
/// fixed word size both move the same.
#[test]
fn int8_models_move_a_quarter_of_the_float_bytes_with_typed_words() {
    use fusec::cost::hw::{Dataflow, HwConfig, Memory};
    use fusec::cost::sim::{simulate_graph, Convention};
    let float = load("ppocr_mobile_v2_cls.onnx");
    let qdq = load("quant/ppocr_cls.qdq.onnx");
    let qop = load("quant/ppocr_cls.qop.onnx");
    let run = |g: &Graph, kb: f64, typed: bool| {
        let memory = Some(Memory { ifmap_kb: kb, filter_kb: kb, ofmap_kb: kb, word_bytes: 1, word_bytes_from_types: typed, dram_bytes_per_cycle: 16.0 });
        let cfg = HwConfig { memory, ..HwConfig::new(64, 64, HwKind::Fuse, Dataflow::Os).unwrap() };
        let s = simulate_graph(g, &cfg, Convention::FUSEC, 1, None).unwrap();
        let words: u64 = s.nodes.iter().map(|n| n.sim.memory.ifmap.dram + n.sim.memory.filter.dram + n.sim.memory.ofmap.dram).sum();
        let bytes: u64 = s.nodes.iter().map(|n| (n.sim.memory.ifmap.dram + n.sim.memory.filter.dram + n.sim.memory.ofmap.dram) * n.sim.word_bytes).sum();
        (words, bytes, s.total_cycles)
    };
    // fixed one-byte words (SCALE-Sim's): the same traffic in every form (the time differs
    // by the vector unit's work: the quantizer folded BN and fused the activations)
    let traffic = |r: (u64, u64, u64)| (r.0, r.1);
    let f1 = traffic(run(&float, 64.0, false));
    assert_eq!(traffic(run(&qdq, 64.0, false)), f1);
    assert_eq!(traffic(run(&qop, 64.0, false)), f1);
    assert_eq!(f1.0, f1.1);
    // typed words, generous buffers: float32 4 bytes a word, int8 1: exactly a quarter
    let (fw, fb, _) = run(&float, 1.0e5, true);
    let (qw, qb, _) = run(&qdq, 1.0e5, true);
    assert_eq!(fw, qw, "the same words");
    assert_eq!(fb, 4 * qb, "float {fb} B, int8 {qb} B");
    assert_eq!(run(&qop, 1.0e5, true).1, qb);
    // typed words, 64 KB buffers: a float word takes 4 bytes of SRAM, so it refetches more
    let (fw, fb, fc) = run(&float, 64.0, true);
    let (qw, qb, qc) = run(&qdq, 64.0, true);
    assert!(fw >= qw && fb >= 4 * qb && (fb as f64) < 4.2 * qb as f64, "float {fw} words {fb} B, int8 {qw} words {qb} B");
    assert!(fc > qc, "moving 4x the bytes at the same bandwidth takes longer: {fc} vs {qc}");
    let (_, _, fixed) = run(&float, 64.0, false);
    assert!(fc > fixed, "float words of 4 bytes stall more than 1-byte ones: {fc} vs {fixed}");
}

#[test]
fn int8_reports_gate_in_ci_form() {
    for m in ["quant/ppocr_cls.qdq.onnx", "quant/ppocr_cls.qop.onnx"] {
        let p = testdata(m);
        let p = p.to_str().unwrap();
        fusec()
            .args(["report", p, "--input-shape", "1,3,48,192", "--format", "md", "--max-cycles", "335478"])
            .assert()
            .success()
            .stdout(predicate::str::contains("335478").or(predicate::str::contains("335,478")).and(predicate::str::contains("QLinearConv").or(predicate::str::contains("Conv"))));
        fusec().args(["report", p, "--input-shape", "1,3,48,192", "--max-cycles", "335477"]).assert().code(1);
        fusec()
            .args(["inspect", p, "--input-shape", "1,3,48,192"])
            .assert()
            .success()
            .stdout(predicate::str::contains("depthwise convs: 11").and(predicate::str::contains("MACs 16.32M")));
    }
}

/// Quantized models are evaluated in ONNX Runtime: tract answers [1, 1] for the
/// QDQ classifier's quantized softmax and cannot run QLinearAdd; `fusec eval`
/// gives ONNX Runtime's predictions for both forms, and `--save-inputs` writes the
/// preprocessed inputs that calibrate `scripts/quantize.py`.
#[test]
fn quantized_models_evaluate_in_onnx_runtime() {
    fusec::exec::runtime::init().unwrap();
    let x = random_input(&[1, 3, 48, 192], 9);
    for f in ["quant/ppocr_cls.qdq.onnx", "quant/ppocr_cls.qop.onnx"] {
        let m = fusec::onnx::load(&testdata(f)).unwrap().proto;
        assert!(fusec::exec::is_quantized(&m));
        let mut s = fusec::exec::runtime::session(&m, 1).unwrap();
        let want = fusec::exec::runtime::run(&mut s, &[fusec::exec::runtime::Feed { name: "x", shape: vec![1, 3, 48, 192], data: x.as_slice().unwrap() }], &[]).unwrap();
        let got = fusec::exec::run(&m, &[x.clone()]).unwrap();
        assert_eq!(got, want, "{f}");
        let row: Vec<f32> = got[0].iter().copied().collect();
        assert!((row[0] + row[1] - 1.0).abs() < 0.02 && row.iter().all(|&p| p < 0.999), "{f}: a softmax, not saturated: {row:?}");
    }
    assert!(!fusec::exec::is_quantized(&fusec::onnx::load(&testdata("ppocr_mobile_v2_cls.onnx")).unwrap().proto));
    let dir = tempfile::tempdir().unwrap();
    let lines = lines_folder(dir.path(), 6);
    let npz = dir.path().join("calib.npz");
    let out = fusec()
        .args(["eval", testdata("quant/ppocr_cls.qop.onnx").to_str().unwrap(), "--data", lines.to_str().unwrap(), "--task", "rot180", "--preprocess", "ppocr-cls", "--json", "--save-inputs", npz.to_str().unwrap()])
        .assert()
        .success();
    let r: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(r["samples"], 12);
    let mut z = ndarray_npy::NpzReader::new(std::fs::File::open(&npz).unwrap()).unwrap();
    let a: ndarray::Array4<f32> = z.by_name("x").unwrap();
    assert_eq!(a.shape(), &[12, 3, 48, 192]);
    // the data folder is an input, not an output
    fusec()
        .args(["eval", testdata("ppocr_mobile_v2_cls.onnx").to_str().unwrap(), "--data", npz.to_str().unwrap(), "--save-inputs", npz.to_str().unwrap()])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--save-inputs").and(predicate::str::contains("is an input")));
}

/// Full on a quantized model: both 1-D convs on every channel with int8 weights,
/// and the consumers widened on their own grids (integers duplicated, scales
/// halved, bias integers doubled): QDQ consumers behind their DequantizeLinear,
/// QOperator ones (QLinearConv, QLinearMul/QLinearAdd, QLinearGlobalAveragePool)
/// in their own inputs. With centre-tap kernels (what Full represents exactly)
/// the outputs are the quantized original's in ONNX Runtime.
#[test]
fn quantized_models_convert_to_full_and_match_the_quantized_original_where_full_is_exact() {
    let convert = |m: &fusec::onnx::ModelProto| convert_quantized(m, fusec::passes::fuse_depthwise::Variant::Full);
    for (fixture, qlinear) in [("quant/ppocr_cls.qdq.onnx", false), ("quant/ppocr_cls.qop.onnx", true)] {
        let (model, _) = fusec::ir::load_graph(&testdata(fixture)).unwrap();
        let mut m = model.proto.clone();
        let g0 = graph_of(&m);
        set_exact_kernels(&mut m, &g0, qlinear, true);
        let (full, report) = convert(&m);
        assert_eq!(report.rewrites.len(), 11, "{fixture}: {:?}", report.skipped);
        let gp = full.graph.as_ref().unwrap();
        let inits: std::collections::HashMap<&str, &TensorProto> = gp.initializer.iter().map(|t| (t.name(), t)).collect();
        let count = |op: &str| gp.node.iter().filter(|n| n.op_type() == op).count();
        if qlinear {
            // every QLinearConv still reads int8 weights and an int32 bias; no float conv appears
            for n in gp.node.iter().filter(|n| n.op_type() == "QLinearConv") {
                assert_eq!(inits[n.input[3].as_str()].data_type(), dtype::INT8, "{}", n.name());
                if let Some(b) = n.input.get(8) {
                    assert_eq!(inits[b.as_str()].data_type(), dtype::INT32, "{}", n.name());
                }
            }
            assert_eq!(count("QLinearConv"), 53 + 11);
            assert_eq!(count("Conv"), 0);
        } else {
            // every Conv and the Gemm still read int8 weights (and int32 biases) through DequantizeLinear
            for n in gp.node.iter().filter(|n| matches!(n.op_type(), "Conv" | "Gemm")) {
                for (slot, want) in [(1, dtype::INT8), (2, dtype::INT32)] {
                    let Some(v) = n.input.get(slot) else { continue };
                    let dq = gp.node.iter().find(|p| p.output.first() == Some(v)).unwrap_or_else(|| panic!("{}: input {slot} is not computed", n.name()));
                    assert_eq!(dq.op_type(), "DequantizeLinear", "{}", n.name());
                    assert_eq!(inits[dq.input[0].as_str()].data_type(), want, "{} input {slot}", n.name());
                }
            }
            assert_eq!(count("Conv"), 53 + 11);
        }
        let worst = max_ort_difference(&m, &full);
        eprintln!("{fixture}: Full vs the quantized original, Full-exact kernels: max |diff| {worst}");
        // the output is a uint8 softmax: one step is 1/255
        assert!(worst <= 1.0 / 255.0 + 1e-6, "{fixture}: {worst}");
        // the fixture as ONNX Runtime quantized it converts and runs
        let (as_is, r) = convert(&model.proto);
        assert_eq!(r.rewrites.len(), 11);
        fusec::exec::runtime::session(&as_is, 1).unwrap();
    }
}

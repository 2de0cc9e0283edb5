//! The analytical latency model: exact cycle counts for hand-computed cases.

mod common;

use fusec::cost::hw::analytical::{fuse_cycles, gemm_cycles, ConvDims};

fn conv(h: u64, w: u64, k: (u64, u64), c: u64, s: (u64, u64), m: u64) -> ConvDims {
    ConvDims { ifmap_h: h, ifmap_w: w, filt_h: k.0, filt_w: k.1, channels: c, stride_h: s.0, stride_w: s.1, filters: m, batch: 1 }
}

#[test]
fn gemm_fold_and_remainder_branches() {
    // MobileNetV2 stem: 3x3/2 on 224 padded to 226, 3 -> 32 channels, 64x64 array.
    // E = F = (226-3+2)//2 = 112; inputs 12544 = 196 full row folds; 32 filters < 64:
    // only the filter-remainder term: 196 * (27 + 64 + 32 - 1) = 23912
    assert_eq!(gemm_cycles(64, 64, &conv(226, 226, (3, 3), 3, (2, 2), 32)), 23912);
    // all four terms: 10x10 output (100 = 64 + 36 inputs), 70 filters (64 + 6), 1x1, 8 channels
    // full: 1*1*(8+64+64-1)=135; input rem: 1*(8+36+64-1)=107; filter rem: 1*(8+64+6-1)=77; both: 8+36+6-1=49
    assert_eq!(gemm_cycles(64, 64, &conv(10, 10, (1, 1), 8, (1, 1), 70)), 135 + 107 + 77 + 49);
    // exact multiples: only the full-fold term: 128 inputs, 64 filters, 16 channels
    assert_eq!(gemm_cycles(64, 64, &conv(8, 16, (1, 1), 16, (1, 1), 64)), 2 * (16 + 64 + 64 - 1));
    // a 3x3 depthwise channel on 112 padded to 114, stride 1: 196 * (9 + 64 + 1 - 1) = 14308
    assert_eq!(gemm_cycles(64, 64, &conv(114, 114, (3, 3), 1, (1, 1), 1)), 14308);
    // fully connected 1280 -> 1000 as a 1x1 GEMM: input remainder 1 and filter folds 15 + remainder 40
    // 15*(1280+1+64-1) + (1280+1+40-1) = 20160 + 1320
    assert_eq!(gemm_cycles(64, 64, &conv(1, 1, (1, 1), 1280, (1, 1), 1000)), 21480);
}

#[test]
fn fuse_cycles_both_orientations_and_strides() {
    // 1x3 on 16 channels of 112 rows, width 112 padded to 114: 1792/64 = 28 folds,
    // ceil(114/64) = 2 column folds of (64 + 3) cycles: 28 * 134 = 3752
    assert_eq!(fuse_cycles(64, 64, &conv(112, 114, (1, 3), 16, (1, 1), 1)), 3752);
    // stride 2 halves the row folds: 48 channels -> 84 folds / 2 = 42; 42 * 134 = 5628
    assert_eq!(fuse_cycles(64, 64, &conv(112, 114, (1, 3), 48, (1, 2), 1)), 5628);
    // odd fold count with stride 2 rounds up at the end: ceil(280/64) = 5 -> 2.5 * 67 = 167.5 -> 168
    assert_eq!(fuse_cycles(64, 64, &conv(7, 9, (1, 3), 40, (1, 2), 1)), 168);
    // 5-tap kernel: one fold of 64 + 5 cycles per column fold, 1 row fold
    assert_eq!(fuse_cycles(64, 64, &conv(4, 20, (1, 5), 8, (1, 1), 1)), 69);
}

#[test]
fn schedule_costs_a_fuse_block_as_the_reference_does() {
    use fusec::cost::hw::schedule::{schedule, LayerKind};
    use fusec::cost::hw::{HwConfig, HwKind};
    use fusec::passes::fuse_depthwise::{Init, Variant};
    // input 1x32x112x112 -> dw 3x3 (stride 1) -> pw 32->16
    let mut b = fusec::models::builder::ModelBuilder::new(13, 0);
    let x = b.input("x", &[fusec::onnx::Dim::Known(1), fusec::onnx::Dim::Known(32), fusec::onnx::Dim::Known(112), fusec::onnx::Dim::Known(112)]);
    let d = b.conv(&x, 32, 32, (3, 3), (1, 1), (1, 1), 32, false);
    let y = b.conv(&d, 32, 16, (1, 1), (1, 1), (0, 0), 1, false);
    b.output(&y);
    let m = b.build();
    let systolic = HwConfig::array(64, 64, HwKind::Systolic, 1000.0).unwrap();
    let fuse = HwConfig::array(64, 64, HwKind::Fuse, 1000.0).unwrap();
    let base = schedule(&common::graph_of(&m), &systolic, 1).unwrap();
    let dw = base.iter().find(|l| l.kind == LayerKind::Depthwise).unwrap();
    assert_eq!(dw.cycles, 14308 * 32);
    let pw = base.iter().find(|l| l.kind == LayerKind::Pointwise).unwrap();
    // 12544 inputs = 196 folds; 16 filters: 196 * (32 + 64 + 16 - 1)
    assert_eq!(pw.cycles, 196 * 111);
    assert_eq!(dw.end, pw.start, "layers run back to back in topological order");
    let (half, _) = common::convert(&m, Variant::Half, Init::Center);
    let conv = schedule(&common::graph_of(&half), &fuse, 1).unwrap();
    let row = conv.iter().find(|l| l.kind == LayerKind::FuseRow).unwrap();
    let col = conv.iter().find(|l| l.kind == LayerKind::FuseCol).unwrap();
    assert_eq!((row.cycles, col.cycles), (3752, 3752));
    let total: u64 = conv.iter().map(|l| l.cycles).sum();
    assert_eq!(total, 3752 * 2 + 196 * 111);
    // activations, split and concat cost nothing
    assert!(conv.iter().filter(|l| matches!(l.op.as_str(), "Split" | "Concat")).all(|l| l.cycles == 0 && l.kind == LayerKind::Other));
}

/// Every layer of the 25 paper models (5 networks × baseline, Full, Half,
/// 50% Full, 50% Half), built from our ONNX exports and our FuSe pass, costs
/// exactly what the reference implementation computes.
#[test]
fn paper_models_match_the_reference_implementation_layer_by_layer() {
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::testdata("paper/reference_cycles.json")).unwrap()).unwrap();
    let rows = fusec::models::paper::table(64).unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[5].network, "resnet-50", "checked against its own golden file below");
    for row in &rows[..5] {
        for m in &row.models {
            let g = &golden["networks"][&row.network][&m.variant];
            let want: Vec<u64> = g["layers"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let got: Vec<u64> = m.layers.iter().filter(|l| l.kind != fusec::cost::hw::schedule::LayerKind::Other).map(|l| l.cycles).collect();
            assert_eq!(got, want, "{} {}: per-layer cycles differ from the reference", row.network, m.variant);
            assert_eq!(m.total_cycles, g["total_cycles"].as_u64().unwrap(), "{} {}", row.network, m.variant);
            // parameters as PyTorch counts them; the reference's MobileNetV2 Half/Full
            // blocks with expansion 1 construct an expansion conv (32x32) and BN (2x32)
            // that forward() never runs: 1088 parameters we do not have
            let unused = if row.network == "mobilenet-v2" && (m.variant == "full" || m.variant == "half") { 1088 } else { 0 };
            assert_eq!(m.params + unused, g["params"].as_u64().unwrap(), "{} {} params", row.network, m.variant);
        }
    }
    // the speedups the reference code prints (not the README's rounded table)
    let v1 = &rows[0];
    assert_eq!(format!("{:.4}", v1.speedup[2].unwrap()), "2.2049");
}

/// ResNet-50 and its FuSe variants (dense 3×3 convs of every bottleneck
/// rewritten by `--dense`): every layer's cycles equal the reference latency
/// model's on the PyTorch definitions of scripts/resnet_reference.py, on
/// 16×16, 64×64 and 256×256 arrays; params as PyTorch counts them.
#[test]
fn resnet50_variants_match_the_reference_latency_model_on_three_arrays() {
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::testdata("paper/reference_cycles_resnet50.json")).unwrap()).unwrap();
    for size in [16u64, 64, 256] {
        let row = fusec::models::paper::row("resnet-50", size).unwrap();
        assert_eq!(row.models.iter().map(|m| m.variant.as_str()).collect::<Vec<_>>(), ["baseline", "full", "half"]);
        for m in &row.models {
            let g = &golden["arrays"][size.to_string()]["resnet-50"][&m.variant];
            let want: Vec<u64> = g["layers"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let got: Vec<u64> = m.layers.iter().filter(|l| l.kind != fusec::cost::hw::schedule::LayerKind::Other).map(|l| l.cycles).collect();
            assert_eq!(got, want, "resnet-50 {} on {size}x{size}: per-layer cycles differ from the reference", m.variant);
            assert_eq!(m.total_cycles, g["total_cycles"].as_u64().unwrap());
            assert_eq!(m.params, g["params"].as_u64().unwrap(), "resnet-50 {} params", m.variant);
        }
        assert!(row.speedup[2].is_none() && row.speedup[3].is_none(), "no hybrids for ResNet-50");
    }
    // on 64x64: Half 1.50x, Full 1.17x faster than the dense baseline
    let r = fusec::models::paper::row("resnet-50", 64).unwrap();
    assert_eq!(r.models[0].total_cycles, 1_568_710);
    assert_eq!(format!("{:.3} {:.3}", r.speedup[1].unwrap(), r.speedup[0].unwrap()), "1.497 1.166");
}

#[test]
fn fuse_orientations_swap_height_and_width() {
    use fusec::cost::hw::schedule::{schedule, LayerKind};
    use fusec::cost::hw::{HwConfig, HwKind};
    use fusec::passes::fuse_depthwise::{Init, Variant};
    // 1x16x20x130 input, 3x3 depthwise stride 2: the branches see different extents
    let mut b = fusec::models::builder::ModelBuilder::new(13, 0);
    let d = |v| fusec::onnx::Dim::Known(v);
    let x = b.input("x", &[d(1), d(16), d(20), d(130)]);
    let y = b.conv(&x, 16, 16, (3, 3), (2, 2), (1, 1), 16, false);
    let y = b.conv(&y, 16, 8, (1, 1), (1, 1), (0, 0), 1, false);
    b.output(&y);
    let (half, _) = common::convert(&b.build(), Variant::Half, Init::Center);
    let fuse = HwConfig::array(64, 64, HwKind::Fuse, 1000.0).unwrap();
    let l = schedule(&common::graph_of(&half), &fuse, 1).unwrap();
    let row = l.iter().find(|l| l.kind == LayerKind::FuseRow).unwrap();
    let col = l.iter().find(|l| l.kind == LayerKind::FuseCol).unwrap();
    // 1x3 on 8 channels: rows N*H*C = 20*8 = 160 -> 3 folds, /2 = 1.5; width 132 -> 3 folds of 67: ceil(1.5*201) = 302
    assert_eq!(row.cycles, 302);
    // 3x1 on 8 channels, H and W swapped: rows 130*8 = 1040 -> 17 folds, /2 = 8.5; padded height 22 -> 1 fold of 67: ceil(569.5) = 570
    assert_eq!(col.cycles, 570);
}

/// Where the PyTorch exports of the reference networks are: `FUSEC_EXPORTS`
/// (real exports with weights, from scripts/export_reference.py), or the
/// committed graphs without weights unpacked into a temporary folder (float
/// weights are external data in `weights.zeros`, created here as a sparse file).
fn pytorch_exports() -> (std::path::PathBuf, Option<tempfile::TempDir>) {
    if let Ok(d) = std::env::var("FUSEC_EXPORTS") {
        return (d.into(), None);
    }
    let tmp = tempfile::tempdir().unwrap();
    let archive = std::fs::File::open(common::testdata("exports/reference-exports.tar.gz")).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(archive)).unpack(tmp.path()).unwrap();
    std::fs::File::create(tmp.path().join("weights.zeros")).unwrap().set_len(1 << 30).unwrap();
    (tmp.path().to_path_buf(), Some(tmp))
}

/// The 25 reference networks as users export them: `torch.onnx.export` at
/// opsets 13 and 17 with a static and a dynamic batch, and the dynamo exporter
/// at opset 18 for the five baselines (105 models). Loaded as every command
/// loads (shape computations folded), each costs exactly the reference
/// implementation's cycles layer by layer, PyTorch's MACs, and the parameters
/// of the modules PyTorch runs less the BatchNorm parameters the exporters fold
/// into the convs (one per channel). Half and Full of every baseline export convert every
/// depthwise layer and cost the reference's Half and Full cycles. ResNet-50 and its
/// FuSe Half/Full (scripts/resnet_reference.py; 13 exports) likewise, the baseline's
/// bottleneck 3×3 convs converted with `dense`.
#[test]
fn pytorch_exports_cost_exactly_what_the_reference_computes() {
    use fusec::cost::hw::schedule::{schedule, LayerKind};
    use fusec::cost::hw::{HwConfig, HwKind};
    use fusec::passes::fuse_depthwise::{candidates, Assign, Candidate, FuseDepthwise, Init, Options, Variant};
    use fusec::passes::LayerSelection;
    let (dir, _keep) = pytorch_exports();
    let mobile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::testdata("paper/reference_cycles.json")).unwrap()).unwrap();
    let resnet: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::testdata("paper/reference_cycles_resnet50.json")).unwrap()).unwrap();
    let golden = |net: &str, var: &str| -> serde_json::Value {
        if net == "resnet-50" { resnet["arrays"]["64"][net][var].clone() } else { mobile["networks"][net][var].clone() }
    };
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let models = manifest["models"].as_object().unwrap();
    assert_eq!(models.len(), 105 + 13);
    let systolic = HwConfig::array(64, 64, HwKind::Systolic, 1000.0).unwrap();
    let fuse = HwConfig::array(64, 64, HwKind::Fuse, 1000.0).unwrap();
    let array_layers = |g: &fusec::ir::Graph, hw: &HwConfig| -> Vec<u64> {
        schedule(g, hw, 1).unwrap().iter().filter(|l| l.kind != LayerKind::Other).map(|l| l.cycles).collect()
    };
    let want_layers = |net: &str, var: &str| -> Vec<u64> { golden(net, var)["layers"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect() };
    for (file, m) in models {
        let (net, var) = (m["network"].as_str().unwrap(), m["variant"].as_str().unwrap());
        let (_, g) = fusec::ir::load_graph(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let hw = if var == "baseline" { &systolic } else { &fuse };
        assert_eq!(array_layers(&g, hw), want_layers(net, var), "{file}: per-layer cycles");
        let s = fusec::stats::stats(&g);
        assert_eq!(s.macs, m["macs"].as_u64().unwrap(), "{file}: MACs");
        assert_eq!(s.params, m["params_run"].as_u64().unwrap() - m["bn_channels"].as_u64().unwrap(), "{file}: params");
        if var != "baseline" {
            continue;
        }
        let dense = net == "resnet-50";
        let convertible = candidates(&g, dense).unwrap().iter().filter(|c| matches!(c, Candidate::Convertible(_))).count();
        assert_eq!(convertible, if dense { 16 } else { candidates(&g, false).unwrap().len() }, "{file}");
        for variant in [Variant::Half, Variant::Full] {
            let mut c = g.clone();
            let pass = FuseDepthwise::new(Options { variant, init: Init::Center, assign: Assign::Ordered, layers: LayerSelection::All, skip: vec![], dense }).unwrap();
            let r = fusec::passes::run_pipeline(&mut c, &[Box::new(pass)], &Default::default()).unwrap();
            assert_eq!(r[0].1.rewrites.len(), convertible, "{file} {variant:?}: {:?}", r[0].1.skipped);
            let total: u64 = array_layers(&c, &fuse).iter().sum();
            assert_eq!(total, golden(net, &variant.to_string())["total_cycles"].as_u64().unwrap(), "{file} {variant:?}");
        }
    }
}

/// Keras MobileNetV2 and MobileNetV3-Small/-Large exported with tf2onnx (NHWC
/// input, Transposes around TensorFlow's NHWC ops; graphs committed without
/// weights, scripts/export_keras.py): every depthwise layer converts with Half
/// and Full and the models are costed. The MobileNetV2 baseline costs what the
/// paper's PyTorch MobileNetV2 costs (the same layers; TensorFlow's explicit
/// stride-2 padding does not change the baseline model's cycles).
#[test]
fn keras_exports_convert_and_report() {
    use fusec::cost::hw::schedule::schedule;
    use fusec::cost::hw::{HwConfig, HwKind};
    use fusec::passes::fuse_depthwise::{depthwise_convs, Init, Variant};
    let tmp = tempfile::tempdir().unwrap();
    let archive = std::fs::File::open(common::testdata("exports/keras-tf2onnx.tar.gz")).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(archive)).unpack(tmp.path()).unwrap();
    std::fs::File::create(tmp.path().join("weights.zeros")).unwrap().set_len(1 << 30).unwrap();
    let systolic = HwConfig::array(64, 64, HwKind::Systolic, 1000.0).unwrap();
    let fuse = HwConfig::array(64, 64, HwKind::Fuse, 1000.0).unwrap();
    let total = |g: &fusec::ir::Graph, hw: &HwConfig| -> u64 { schedule(g, hw, 1).unwrap().iter().map(|l| l.cycles).sum() };
    for (net, layers) in [("mobilenet-v2", 17), ("mobilenet-v3-small", 11), ("mobilenet-v3-large", 15)] {
        let (_, g) = fusec::ir::load_graph(&tmp.path().join(format!("keras-{net}.tf2onnx13.onnx"))).unwrap();
        assert_eq!(depthwise_convs(&g).unwrap().len(), layers, "{net}");
        let base = total(&g, &systolic);
        if net == "mobilenet-v2" {
            assert_eq!(base, 2_961_936, "Keras MobileNetV2 baseline");
        }
        for variant in [Variant::Half, Variant::Full] {
            let mut c = g.clone();
            let r = fusec::passes::run_pipeline(&mut c, &[common::fuse_pass(variant, Init::Center)], &Default::default()).unwrap();
            assert_eq!(r[0].1.rewrites.len(), layers, "{net} {variant:?}: {:?}", r[0].1.skipped);
            let speedup = base as f64 / total(&c, &fuse) as f64;
            assert!(speedup > 3.0, "{net} {variant:?}: speedup {speedup}");
        }
    }
}

//! Automatic layer selection: gains as the array model measures them, layers
//! the pass rewrites together scored as one item, the chosen set measured
//! whole, costs that rank the layers, the CLI's preset round trip, determinism.

mod common;

use common::*;
use fusec::models::builder::{Act, ModelBuilder};
use fusec::cost::hw::{HwConfig, HwKind};
use fusec::ir::Graph;
use fusec::onnx::Dim;
use fusec::passes::fuse_depthwise::{Init, Variant};
use fusec::select::solve::{self, Goal};
use predicates::prelude::*;

fn zoo_graph(name: &str) -> (fusec::onnx::ModelProto, Graph) {
    let m = fusec::models::zoo::build(name, 0).unwrap();
    let g = graph_of(&m);
    (m, g)
}

#[test]
fn gains_are_what_the_array_model_measures_and_add_up_for_half() {
    let (_, g) = zoo_graph("mobilenet-v2");
    let hw = HwConfig::array(64, 64, HwKind::Fuse, 1000.0).unwrap();
    let t = fusec::select::gains(&g, &hw, Variant::Half, 1).unwrap();
    assert_eq!(t.items.len(), 17, "{:?}", t.skipped);
    // each gain: the model as it is minus the model with that layer alone rewritten
    for it in t.items.iter().step_by(5) {
        let (one, rewritten, _) = fusec::select::rewrite(&g, Variant::Half, Init::Center, &it.layers).unwrap();
        assert_eq!(rewritten, it.layers);
        assert_eq!(t.baseline_cycles - fusec::select::cycles(&one, &hw, 1).unwrap(), it.gain);
    }
    // Half changes only the layer it rewrites: gains add up exactly over the whole model
    let all: Vec<usize> = (0..17).collect();
    let (whole, _, _) = fusec::select::rewrite(&g, Variant::Half, Init::Center, &all).unwrap();
    assert_eq!(t.baseline_cycles - fusec::select::cycles(&whole, &hw, 1).unwrap(), t.items.iter().map(|i| i.gain).sum::<u64>());
    // a 2x target on the gains alone: the fewest layers, and the set measured whole reaches it
    let gains: Vec<u64> = t.items.iter().map(|i| i.gain).collect();
    let need = t.baseline_cycles - t.baseline_cycles / 2;
    let c = solve::solve(&gains, &vec![1.0; gains.len()], Goal::Gain(need)).unwrap();
    let mut sorted = gains.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let fewest = (1..=sorted.len()).find(|&k| sorted[..k].iter().sum::<u64>() >= need).unwrap();
    assert_eq!(c.items.len(), fewest);
    let layers: Vec<usize> = c.items.iter().flat_map(|&i| t.items[i].layers.clone()).collect();
    let (chosen, _, _) = fusec::select::rewrite(&g, Variant::Half, Init::Center, &layers).unwrap();
    assert!(fusec::select::cycles(&chosen, &hw, 1).unwrap() * 2 <= t.baseline_cycles);
}

#[test]
fn layers_rewritten_together_are_one_item() {
    // two depthwise convs of one input, summed, then a pointwise conv: Full widens the
    // pointwise once for both, so the pass rewrites them together
    let d = |v: i64| Dim::Known(v);
    let mut b = ModelBuilder::new(13, 4);
    let x = b.input("x", &[d(1), d(3), d(8), d(8)]);
    let e = b.conv(&x, 3, 6, (1, 1), (1, 1), (0, 0), 1, true);
    let a = b.conv(&e, 6, 6, (3, 3), (1, 1), (1, 1), 6, false);
    let c = b.conv(&e, 6, 6, (5, 5), (1, 1), (2, 2), 6, false);
    let s = b.op("Add", &[&a, &c], vec![]);
    let r = b.act(&s, Act::Relu);
    let out = b.conv(&r, 6, 4, (1, 1), (1, 1), (0, 0), 1, true);
    b.output(&out);
    let m = b.build();
    let g = graph_of(&m);
    let hw = HwConfig::array(16, 16, HwKind::Fuse, 1000.0).unwrap();
    let full = fusec::select::gains(&g, &hw, Variant::Full, 1).unwrap();
    assert_eq!(full.items.len(), 1, "{:?} {:?}", full.items, full.skipped);
    assert_eq!(full.items[0].layers, [0, 1]);
    // costs: measured with both rewritten, on the same inputs every time
    let inputs: Vec<_> = (0..3).map(|i| fusec::select::noise(&[1, 3, 8, 8], i)).collect();
    let mut t1 = full.clone();
    fusec::select::score(&m, &g, &mut t1, Init::Center, &inputs).unwrap();
    let mut t2 = full.clone();
    fusec::select::score(&m, &g, &mut t2, Init::Center, &inputs).unwrap();
    assert!(t1.items[0].cost.unwrap() > 0.0);
    assert_eq!(t1.items[0].cost, t2.items[0].cost, "deterministic");
    // one depthwise conv after another (PP-LCNetV3's blocks): each changes its own
    // tensor, so each is its own item, though the first one's output reaches the second
    let mut b = ModelBuilder::new(13, 4);
    let x = b.input("x", &[d(1), d(3), d(8), d(8)]);
    let e = b.conv(&x, 3, 6, (1, 1), (1, 1), (0, 0), 1, true);
    let a = b.conv(&e, 6, 6, (3, 3), (1, 1), (1, 1), 6, false);
    let r = b.act(&a, Act::Relu);
    let c = b.conv(&r, 6, 6, (3, 3), (1, 1), (1, 1), 6, false);
    let out = b.conv(&c, 6, 4, (1, 1), (1, 1), (0, 0), 1, true);
    b.output(&out);
    let g = graph_of(&b.build());
    let half = fusec::select::gains(&g, &hw, Variant::Half, 1).unwrap();
    assert_eq!(half.items.iter().map(|i| i.layers.clone()).collect::<Vec<_>>(), [vec![0], vec![1]]);
}

/// The agreement each task's metric reads, on hand-made outputs: CTC lines read
/// the same (greedy: blanks dropped, repeats merged), text boxes matched at IoU 0.5.
#[test]
fn agreement_follows_the_task_metric() {
    use fusec::select::{output_distance_by, Agreement};
    use ndarray::{ArrayD, IxDyn};
    // CTC: [1, T=4, C=3]; steps read as classes
    let ctc = |steps: &[usize], sharp: f32| {
        let mut a = ArrayD::<f32>::zeros(IxDyn(&[1, 4, 3]));
        for (t, &k) in steps.iter().enumerate() {
            a[[0, t, k]] = sharp;
        }
        a
    };
    let orig = vec![vec![ctc(&[1, 1, 0, 2], 1.0)], vec![ctc(&[2, 0, 2, 0], 1.0)]];
    // "1 2" read again from other scores (a repeat in place of a blank), and "2 2" read as "2"
    let changed = vec![vec![ctc(&[1, 0, 2, 2], 0.6)], vec![ctc(&[2, 2, 0, 0], 0.9)]];
    let (err, agree) = output_distance_by(&orig, &changed, Agreement::CtcLines);
    assert!(err > 0.0);
    assert_eq!(agree, Some(0.5));
    // the same outputs read as classes have no top-1 agreement (not [N, C])
    assert_eq!(output_distance_by(&orig, &changed, Agreement::Top1).1, None);
    // text maps [1, 1, 32, 32]: a box, the same box, a box moved away, and nothing at all
    let map = |x0: usize, y0: usize| {
        let mut a = ArrayD::<f32>::zeros(IxDyn(&[1, 1, 32, 32]));
        for y in y0..y0 + 8 {
            for x in x0..x0 + 16 {
                a[[0, 0, y, x]] = 0.9;
            }
        }
        a
    };
    let same = output_distance_by(&[vec![map(2, 2)]], &[vec![map(2, 2)]], Agreement::Boxes).1;
    assert_eq!(same, Some(1.0));
    let moved = output_distance_by(&[vec![map(2, 2)]], &[vec![map(14, 20)]], Agreement::Boxes).1;
    assert_eq!(moved, Some(0.0));
    let empty = ArrayD::<f32>::zeros(IxDyn(&[1, 1, 32, 32]));
    assert_eq!(output_distance_by(&[vec![empty.clone()]], &[vec![empty]], Agreement::Boxes).1, Some(1.0));
    // one of two images agrees: hmean over both (1 match of 2 predicted, 2 expected)
    let half = output_distance_by(&[vec![map(2, 2)], vec![map(2, 2)]], &[vec![map(2, 2)], vec![map(14, 20)]], Agreement::Boxes).1.unwrap();
    assert!((half - 0.5).abs() < 1e-9, "{half}");
}

#[test]
fn a_layer_whose_kernel_is_already_separable_costs_nothing() {
    // block 0: a kernel Half represents exactly (cost 0); block 1: dense (cost > 0)
    let exact = Block { kernel: Kernel::HalfExact, ..Default::default() };
    let m = exact.model(3);
    let g = graph_of(&m);
    let hw = HwConfig::array(16, 16, HwKind::Fuse, 1000.0).unwrap();
    let mut t = fusec::select::gains(&g, &hw, Variant::Half, 1).unwrap();
    let inputs: Vec<_> = (0..2).map(|i| exact.input(i)).collect();
    fusec::select::score(&m, &g, &mut t, Init::Center, &inputs).unwrap();
    assert!(t.items[0].cost.unwrap() < 1e-5, "{:?}", t.items[0]);
    let dense = Block { kernel: Kernel::Dense, ..Default::default() };
    let m = dense.model(3);
    let g = graph_of(&m);
    let mut t = fusec::select::gains(&g, &hw, Variant::Half, 1).unwrap();
    fusec::select::score(&m, &g, &mut t, Init::Center, &inputs).unwrap();
    assert!(t.items[0].cost.unwrap() > 0.05, "{:?}", t.items[0]);
}

#[test]
fn select_writes_a_preset_that_convert_reads() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("mnv2.onnx");
    fusec().args(["zoo", "mobilenet-v2", "-o", m.to_str().unwrap()]).assert().success();
    let preset = dir.path().join("auto.toml");
    let ms = m.to_str().unwrap();
    let run = || fusec().args(["select", ms, "--samples", "0", "--target-speedup", "2", "--json", "--no-cache"]).output().unwrap();
    let (a, b) = (run(), run());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout, "the same answer every run");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let layers: Vec<u64> = v["choice"]["layers"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap()).collect();
    assert!(v["choice"]["measured_speedup"].as_f64().unwrap() >= 2.0);
    fusec().args(["select", ms, "--samples", "0", "--target-speedup", "2", "--save-preset", preset.to_str().unwrap()]).assert().success();
    let out = dir.path().join("auto.onnx");
    let conv = fusec().args(["convert", ms, "--variant", "half", "--layers", preset.to_str().unwrap(), "-o", out.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(conv.status.success(), "{}", String::from_utf8_lossy(&conv.stderr));
    let s: serde_json::Value = serde_json::from_slice(&conv.stdout).unwrap();
    let text = s.to_string();
    assert_eq!(text.matches("\"rule\"").count(), layers.len(), "{text}");
    // the paper's hybrid marked on the front: 9 layers for what the chosen set does with fewer
    let svg = dir.path().join("front.svg");
    let marked = fusec().args(["select", ms, "--samples", "0", "--target-speedup", "2", "--mark", "paper-50-mobilenet-v2", "--svg", svg.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(marked.status.success(), "{}", String::from_utf8_lossy(&marked.stderr));
    let v: serde_json::Value = serde_json::from_slice(&marked.stdout).unwrap();
    assert_eq!(v["marks"][0]["layers"].as_array().unwrap().len(), 9);
    assert!(layers.len() < 9 && v["marks"][0]["predicted_speedup"].as_f64().unwrap() < v["choice"]["predicted_speedup"].as_f64().unwrap() + 0.1);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("paper-50-mobilenet-v2") && text.contains("chosen") && text.contains("Pareto front"));
    fusec().args(["select", ms, "--samples", "0", "--mark", "no-such-preset"]).assert().code(1).stderr(predicate::str::contains("--mark"));
    // the preset is not overwritten without --force; targets out of reach and bad values are refused
    fusec().args(["select", ms, "--samples", "0", "--target-speedup", "2", "--save-preset", preset.to_str().unwrap()]).assert().code(1).stderr(predicate::str::contains("--force"));
    fusec().args(["select", ms, "--samples", "0", "--target-speedup", "100"]).assert().code(1).stderr(predicate::str::contains("no set of layers reaches"));
    fusec().args(["select", ms, "--target-speedup", "0.5"]).assert().code(1).stderr(predicate::str::contains("--target-speedup"));
    fusec().args(["select", ms, "--samples", "0", "--max-cost", "1"]).assert().code(1).stderr(predicate::str::contains("--max-cost"));
}

/// --max-drop on the PP-OCR classifier (costs on 16 noise inputs, where a
/// binary classifier agrees little, hence a large budget): the chosen
/// set honours --include and --exclude, its predicted cost is the sum of its
/// layers' agreement drops, and measured whole it loses at most D points.
#[test]
fn max_drop_with_include_and_exclude_holds_when_measured_whole() {
    let cache = tempfile::tempdir().unwrap();
    let m = testdata("ppocr_mobile_v2_cls.onnx");
    let run = |extra: &[&str]| {
        let mut args = vec!["select", m.to_str().unwrap(), "--input-shape", "1x3x48x192", "--samples", "16", "--json"];
        args.extend_from_slice(extra);
        let out = fusec().env("FUSEC_CACHE_DIR", cache.path()).args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = run(&["--max-drop", "60", "--include", "9", "--exclude", "6"]);
    let layers: Vec<u64> = v["choice"]["layers"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap()).collect();
    assert!(layers.contains(&9) && !layers.contains(&6), "{layers:?}");
    let drop = |item: &serde_json::Value| 100.0 * (1.0 - item["agreement"].as_f64().unwrap());
    let items = v["table"]["items"].as_array().unwrap();
    let predicted: f64 = items.iter().filter(|i| i["layers"].as_array().unwrap().iter().any(|l| layers.contains(&l.as_u64().unwrap()))).map(drop).sum();
    assert!((v["choice"]["predicted_cost"].as_f64().unwrap() - predicted).abs() < 1e-9);
    assert!(100.0 * (1.0 - v["choice"]["measured_agreement"].as_f64().unwrap()) <= 60.0 + 1e-9, "{}", v["choice"]);
    // every set on the front keeps 9 and leaves 6 out
    for c in v["front"].as_array().unwrap() {
        let its: Vec<u64> = c["items"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap()).collect();
        let ls: Vec<u64> = its.iter().flat_map(|&i| items[i as usize]["layers"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap())).collect();
        assert!(ls.contains(&9) && !ls.contains(&6), "{ls:?}");
    }
    // the second run reads the table from the cache: the same table, instantly
    assert!(!v["cached"].as_bool().unwrap());
    let again = run(&["--max-drop", "5"]);
    assert!(again["cached"].as_bool().unwrap());
    assert_eq!(again["table"], v["table"]);
    // other inputs (another seed) are another key; --no-cache measures again, the same numbers
    assert!(!run(&["--seed", "1"])["cached"].as_bool().unwrap());
    let fresh = run(&["--no-cache"]);
    assert!(!fresh["cached"].as_bool().unwrap());
    assert_eq!(fresh["table"], v["table"], "measuring is deterministic");
    // refusals: a budget the included layers exceed, an included layer excluded, no class scores
    let refuse = |extra: &[&str], msg: &str| {
        let mut args = vec!["select", m.to_str().unwrap(), "--input-shape", "1x3x48x192"];
        args.extend_from_slice(extra);
        fusec().env("FUSEC_CACHE_DIR", cache.path()).args(&args).assert().code(1).stderr(predicate::str::contains(msg));
    };
    refuse(&["--samples", "16", "--max-drop", "0", "--include", "8"], "--include alone cost more");
    refuse(&["--samples", "16", "--include", "3", "--exclude", "2-4"], "also in --exclude");
    refuse(&["--max-drop", "1", "--samples", "0"], "needs costs");
}

/// A parameter budget on Full (which widens pointwise convs, adding
/// parameters): MobileNetV2 from the zoo, 2x on 64x64, gain only. The fewest
/// layers reaching 2x add 19,216 parameters; one parameter less of budget and
/// the choice moves to the set that adds 17,632; less than that and no set
/// reaches 2x.
#[test]
fn a_parameter_budget_moves_the_choice_and_can_rule_every_set_out() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("mnv2.onnx");
    fusec().args(["zoo", "mobilenet-v2", "-o", m.to_str().unwrap()]).assert().success();
    let base = 3_504_872i64;
    let pick = |budget: i64| -> (Vec<u64>, i64) {
        let out = fusec().args(["select", m.to_str().unwrap(), "--variant", "full", "--samples", "0", "--target-speedup", "2", "--json", "--budget-params", &budget.to_string()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let layers: Vec<u64> = v["choice"]["layers"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap()).collect();
        let added = v["table"]["items"].as_array().unwrap().iter().filter(|i| i["layers"].as_array().unwrap().iter().all(|l| layers.contains(&l.as_u64().unwrap()))).map(|i| i["params_delta"].as_i64().unwrap()).sum();
        (layers, added)
    };
    assert_eq!(pick(base + 19_216), (vec![0, 1, 2, 4, 5], 19_216));
    let (layers, added) = pick(base + 19_215);
    assert_eq!((layers, added), (vec![0, 1, 2, 3, 4], 17_632));
    // the converted model is within the budget (per-item deltas are summed to choose; converted
    // whole it has 1,216 fewer than predicted: layers widened next to each other share an edit)
    let preset = dir.path().join("p.toml");
    fusec().args(["select", m.to_str().unwrap(), "--variant", "full", "--samples", "0", "--target-speedup", "2", "--budget-params", &(base + 19_215).to_string(), "--save-preset", preset.to_str().unwrap()]).assert().success();
    let out = dir.path().join("full.onnx");
    fusec().args(["convert", m.to_str().unwrap(), "--variant", "full", "--layers", preset.to_str().unwrap(), "-o", out.to_str().unwrap()]).assert().success();
    let stats = fusec::stats::stats(&graph_of(&fusec::onnx::load(&out).unwrap().proto));
    assert!(stats.params as i64 <= base + 19_215 && stats.params as i64 > base, "{}", stats.params);
    fusec()
        .args(["select", m.to_str().unwrap(), "--variant", "full", "--samples", "0", "--target-speedup", "2", "--budget-params", &(base + 17_631).to_string()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("within --budget-params"));
}

/// `sweep --variants auto`: on every configuration the set it reports is the
/// one the solver picks from gains simulated on that configuration (checked
/// here by simulating each item alone, without the sweep's cache), its cycles
/// are the simulation of the set converted whole, it reaches the target where
/// rewriting every layer does, and every point carries its measured cost so
/// the front spans hardware and layer choice.
#[test]
fn sweep_auto_picks_per_configuration_and_reports_what_it_simulates() {
    use fusec::cost::sim::{simulate_graph, Convention};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep.json");
    let cls = testdata("ppocr_mobile_v2_cls.onnx");
    fusec()
        .args(["sweep", cls.to_str().unwrap(), "--input-shape", "1x3x48x192", "--arrays", "16x16,64x64", "--hw", "fuse", "--dataflow", "os,ws", "--sram-kb", "64"])
        .args(["--variants", "baseline,half,auto", "--target-speedup", "2", "--samples", "2", "--format", "json", "--quiet", "-o", out.to_str().unwrap()])
        .assert()
        .success();
    let points: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let auto: Vec<&serde_json::Value> = points.iter().filter(|p| p["variant"] == "auto").collect();
    assert_eq!(auto.len(), 4);
    assert!(points.iter().all(|p| p["cost"].is_number()), "every point has a measured cost");
    let (model, mut g) = fusec::ir::load_graph(&cls).unwrap();
    "1x3x48x192".parse::<fusec::convert::InputShape>().unwrap().apply(&mut g).unwrap();
    let hw = HwConfig::array(64, 64, HwKind::Fuse, 1000.0).unwrap();
    // the costs as the sweep measures them: --samples 2 noise inputs, seeds 0 and 1
    let mut table = fusec::select::gains(&g, &hw, Variant::Half, 1).unwrap();
    let inputs: Vec<_> = (0..2).map(|i| fusec::select::noise(&[1, 3, 48, 192], i)).collect();
    fusec::select::score(&model.proto, &g, &mut table, Init::Center, &inputs).unwrap();
    let costs: Vec<f64> = table.items.iter().map(|i| i.cost.unwrap()).collect();
    let items = table.items;
    let reference = fusec::select::outputs(&model.proto, &g, &inputs).unwrap();
    let spec = fusec::cost::sim::sweep::SweepSpec { arrays: vec![(16, 16), (64, 64)], kinds: vec![HwKind::Fuse], dataflows: vec![fusec::cost::hw::Dataflow::Os, fusec::cost::hw::Dataflow::Ws], sram_kb: vec![Some(64.0)] };
    let base = fusec::cost::hw::HwConfig {
        memory: Some(fusec::cost::hw::config::Memory { ifmap_kb: 256.0, filter_kb: 256.0, ofmap_kb: 256.0, word_bytes: 1, word_bytes_from_types: false, dram_bytes_per_cycle: 16.0 }),
        vector: fusec::cost::hw::config::VectorUnit { lanes: 64, ..Default::default() },
        ..fusec::cost::hw::HwConfig::new(64, 64, HwKind::Fuse, fusec::cost::hw::Dataflow::Os).unwrap()
    };
    let sim = |g: &Graph, cfg: &fusec::cost::hw::HwConfig| simulate_graph(g, cfg, Convention::FUSEC, 1, None).unwrap().total_cycles;
    let mut sets = std::collections::BTreeSet::new();
    for (_, cfg) in fusec::cost::sim::sweep::configs(&spec, &base).unwrap() {
        let p = auto.iter().find(|p| p["rows"] == cfg.rows && p["dataflow"] == cfg.dataflow.to_string()).unwrap();
        let layers: Vec<usize> = p["layers"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let before = sim(&g, &cfg);
        let half = points.iter().find(|q| q["variant"] == "half" && q["rows"] == cfg.rows && q["dataflow"] == cfg.dataflow.to_string()).unwrap();
        // the whole set, simulated on its own
        let (converted, rewritten, _) = fusec::select::rewrite(&g, Variant::Half, Init::Center, &layers).unwrap();
        assert_eq!(rewritten, layers);
        assert_eq!(p["total_cycles"].as_u64().unwrap(), sim(&converted, &cfg), "{cfg:?}");
        // the target is reached where all layers reach it
        if before as f64 / half["total_cycles"].as_f64().unwrap() >= 2.0 {
            assert!(before as f64 / sim(&converted, &cfg) as f64 >= 2.0 - 1e-9, "{cfg:?}: {layers:?}");
        }
        // a set with fewer layers than all, and none of them left out of the item list
        assert!(!layers.is_empty() && layers.len() < items.len(), "{layers:?}");
        // per-configuration gains, each item simulated alone: the solver's pick from them
        let gains: Vec<u64> = items.iter().map(|it| before.saturating_sub(sim(&fusec::select::rewrite(&g, Variant::Half, Init::Center, &it.layers).unwrap().0, &cfg))).collect();
        let pick = fusec::select::sweep::choose(&gains, &costs, before, fusec::select::sweep::Budget::TargetSpeedup(2.0));
        let want: Vec<usize> = pick.items.iter().flat_map(|&i| items[i].layers.clone()).collect();
        assert_eq!(layers, want, "{cfg:?}");
        assert!(pick.gain >= before - before / 2, "{cfg:?}: predicted gain {} of {before}", pick.gain);
        // its cost: the set's outputs against the original's on the same inputs
        let cost = fusec::select::output_distance(&reference, &fusec::select::outputs(&model.proto, &converted, &inputs).unwrap()).0;
        assert!((p["cost"].as_f64().unwrap() - cost).abs() <= 1e-6 * cost.max(1e-6), "{cfg:?}: {} vs {cost}", p["cost"]);
        sets.insert(layers);
    }
    // the pick depends on the configuration (on 16x16 and 64x64, OS and WS, it differs)
    assert!(sets.len() > 1, "{sets:?}");
}

#[test]
fn sweep_auto_needs_a_budget() {
    let cls = testdata("ppocr_mobile_v2_cls.onnx");
    fusec().args(["sweep", cls.to_str().unwrap(), "--variants", "auto"]).assert().code(1).stderr(predicate::str::contains("--max-cost D or --target-speedup X"));
    fusec().args(["sweep", cls.to_str().unwrap(), "--max-cost", "1"]).assert().code(1).stderr(predicate::str::contains("only with --variants auto"));
}

/// `--proxy-steps`: a short distillation of the rewritten layer alone. On a
/// depthwise conv whose 5×5 kernel is far from separable, fed smooth images,
/// the distilled 1-D kernels move the outputs less than the untrained centre
/// taps, and nothing but the rewrite's own parameters changes.
#[test]
fn a_proxy_distillation_trains_only_the_rewrite_and_lowers_its_cost() {
    let d = |v: i64| Dim::Known(v);
    let mut b = ModelBuilder::new(13, 7);
    let x = b.input("x", &[d(1), d(3), d(8), d(8)]);
    let e = b.conv(&x, 3, 6, (1, 1), (1, 1), (0, 0), 1, true);
    let dw = b.conv(&e, 6, 6, (5, 5), (1, 1), (2, 2), 6, false);
    let r = b.act(&dw, Act::Relu);
    let out = b.conv(&r, 6, 4, (1, 1), (1, 1), (0, 0), 1, true);
    b.output(&out);
    let m = b.build();
    let g = graph_of(&m);
    // smooth images (a wave of random direction per channel): rows and columns of a
    // window are alike, so 1-D kernels trained on them absorb the taps the centre
    // row or column leaves out (on white noise the centre taps are already the best)
    let smooth = |seed: u64| {
        let r = fusec::select::noise(&[3, 3], seed);
        ndarray::Array3::from_shape_fn((3, 8, 8), |(c, h, w)| (r[[c, 0]] * 1.5 * h as f32 + r[[c, 1]] * 1.5 * w as f32 + 3.0 * r[[c, 2]]).sin())
    };
    let data = fusec::tasks::data::Dataset { samples: (0..32).map(|i| fusec::tasks::data::Sample::new(format!("{i}"), smooth(100 + i), None)).collect(), classes: vec![] };
    let inputs: Vec<_> = (0..4).map(|i| smooth(i).insert_axis(ndarray::Axis(0)).into_dyn()).collect();
    let reference = fusec::select::outputs(&m, &g, &inputs).unwrap();
    let (changed, _, _) = fusec::select::rewrite(&g, Variant::Half, Init::Center, &[0]).unwrap();
    let before = fusec::select::output_distance(&reference, &fusec::select::outputs(&m, &changed, &inputs).unwrap()).0;
    let tuned = fusec::select::Proxy::new(&data, 60, 8, 0).tune(&m, &changed).unwrap();
    let after = fusec::select::output_distance(&reference, &fusec::select::outputs_of(&tuned, &inputs).unwrap()).0;
    eprintln!("normalized output error: untrained {before:.4}, after 60 proxy steps {after:.4}");
    assert!(after < 0.8 * before, "{before} -> {after}");
    // only the 1-D kernels trained: every other initializer is as the rewrite left it
    let mut untrained = m.clone();
    untrained.graph = Some(changed.to_proto().unwrap());
    let inits = |m: &fusec::onnx::ModelProto| -> std::collections::HashMap<String, Vec<f32>> {
        m.graph.as_ref().unwrap().initializer.iter().map(|t| (t.name().to_string(), fusec::onnx::tensor::Tensor::from_proto(t.clone()).unwrap().to_f32().map(|a| a.iter().copied().collect()).unwrap_or_default())).collect()
    };
    let (u, t) = (inits(&untrained), inits(&tuned));
    let mut trained = 0;
    for (name, v) in &u {
        if name.contains(".fuse.") && t[name] != *v {
            trained += 1;
        } else {
            assert_eq!(&t[name], v, "{name} changed");
        }
    }
    assert!(trained >= 2, "the 1-D kernels train");
}

/// `select --finetune`: candidates fine-tuned with the task's recipe, fastest
/// first; the first within --max-drop is written and the search stops; with no
/// time to start any, nothing is written and the exit is 1.
#[test]
fn select_finetune_writes_the_fastest_candidate_within_the_drop() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("chosen.onnx");
    let cls = testdata("ppocr_mobile_v2_cls.onnx");
    let lines = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/textlines/labels.tsv");
    if !lines.exists() {
        eprintln!("skipped: no ../shared/data");
        return;
    }
    let common = |extra: &[&str]| {
        let mut c = fusec();
        c.args(["select", cls.to_str().unwrap(), "--calib", lines.to_str().unwrap(), "--preprocess", "ppocr-cls", "--calib-limit", "8", "--no-cache"])
            .args(["--finetune", "--finetune-data", lines.to_str().unwrap(), "--finetune-steps", "2", "--finetune-set", "warmup=1", "--candidates", "2", "-o", out.to_str().unwrap()])
            .args(extra);
        c
    };
    let r = common(&["--max-drop", "100", "--json"]).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let tuned = v["finetune"]["tuned"].as_array().unwrap();
    // any candidate keeps within 100 points: the first (the fastest) is written
    assert_eq!(tuned.len(), 1, "{tuned:?}");
    assert_eq!(tuned[0]["meets"], true);
    assert_eq!(v["finetune"]["written"].as_str().unwrap(), out.to_str().unwrap());
    let front = v["front"].as_array().unwrap();
    let first: Vec<u64> = tuned[0]["layers"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap()).collect();
    assert!(!first.is_empty());
    // it is on the front, and at least as fast as the chosen set
    let chosen_speedup = v["choice"]["predicted_speedup"].as_f64().unwrap();
    assert!(tuned[0]["predicted_speedup"].as_f64().unwrap() >= chosen_speedup - 1e-9);
    assert!(front.len() > 2);
    fusec::exec::runtime::session(&fusec::onnx::load(&out).unwrap().proto, 1).unwrap();
    // no time to start a candidate: an error naming the option, no file written
    std::fs::remove_file(&out).unwrap();
    common(&["--max-drop", "100", "--time-budget", "0"]).assert().code(1).stderr(predicate::str::contains("--time-budget"));
    assert!(!out.exists());
    // the scratch folder of the candidates is gone
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `select --init lsq --assign fit` rewrites layers as `convert` does with the
/// same options: the chosen set, converted by `convert` with its preset and the
/// same --calib data, moves the outputs by exactly the cost select measured.
/// Fitted kernels keep a layer closer to the original than centre taps.
#[test]
fn select_with_fitted_kernels_measures_what_convert_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cls = testdata("ppocr_mobile_v2_cls.onnx");
    let lines = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/textlines/labels.tsv");
    if !lines.exists() {
        eprintln!("skipped: no ../shared/data");
        return;
    }
    let (m, l) = (cls.to_str().unwrap(), lines.to_str().unwrap());
    let preset = dir.path().join("p.toml");
    let select = |init: &str, extra: &[&str]| {
        let out = fusec().args(["select", m, "--calib", l, "--preprocess", "ppocr-cls", "--calib-limit", "8", "--no-cache", "--init", init, "--json"]).args(extra).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let fit = select("lsq", &["--assign", "fit", "--target-speedup", "1.3", "--save-preset", preset.to_str().unwrap()]);
    let centre = select("center", &[]);
    let costs = |v: &serde_json::Value| v["table"]["items"].as_array().unwrap().iter().map(|i| i["cost"].as_f64().unwrap()).collect::<Vec<_>>();
    let (cf, cc) = (costs(&fit), costs(&centre));
    assert_eq!(cf.len(), cc.len());
    assert!(cf.iter().sum::<f64>() < cc.iter().sum::<f64>(), "fitted {cf:?} vs centre {cc:?}");
    let out = dir.path().join("c.onnx");
    let conv = fusec().args(["convert", m, "--variant", "half", "--init", "lsq", "--assign", "fit", "--calib", l, "--preprocess", "ppocr-cls", "--calib-limit", "8"])
        .args(["--layers", preset.to_str().unwrap(), "-o", out.to_str().unwrap()]).output().unwrap();
    assert!(conv.status.success(), "{}", String::from_utf8_lossy(&conv.stderr));
    let pre = fusec::tasks::data::Preprocess::preset("ppocr-cls").unwrap();
    let data = fusec::tasks::data::load(&lines, &pre, None, Some(8)).unwrap();
    let xs: Vec<ndarray::ArrayD<f32>> = data.samples.iter().map(|s| s.x.clone().insert_axis(ndarray::Axis(0)).into_dyn()).collect();
    let reference = fusec::select::outputs_of(&fusec::onnx::load(&cls).unwrap().proto, &xs).unwrap();
    let ys = fusec::select::outputs_of(&fusec::onnx::load(&out).unwrap().proto, &xs).unwrap();
    let (cost, _) = fusec::select::output_distance_by(&reference, &ys, fusec::select::Agreement::Top1);
    let measured = fit["choice"]["measured_cost"].as_f64().unwrap();
    assert!((cost - measured).abs() < 1e-6, "convert's model moves the outputs by {cost}, select measured {measured}");
    // lsq needs images; fit is Half's
    fusec().args(["select", m, "--input-shape", "1x3x48x192", "--init", "lsq", "--samples", "4"]).assert().code(1).stderr(predicate::str::contains("--init"));
    fusec().args(["select", m, "--input-shape", "1x3x48x192", "--variant", "full", "--assign", "fit", "--samples", "4"]).assert().code(1).stderr(predicate::str::contains("--assign"));
}

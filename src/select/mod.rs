//! Automatic layer selection: which depthwise layers to rewrite for a given
//! array. Each layer's gain is the cycles its rewrite saves on the modeled
//! array (the model converted with that layer alone, costed whole, so a Full
//! rewrite pays for the pointwise conv it widens); its cost is how far the
//! model's outputs move with that layer alone rewritten ([`score`]). Layers the
//! pass can only rewrite together (two depthwise convs summed) are one item.
//! [`solve`] picks the set: the least cost reaching a speedup, or the most
//! gain within a cost.

pub mod solve;
pub mod sweep;

use std::collections::BTreeSet;

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::cost::hw::HwConfig;
use crate::ir::Graph;
use crate::onnx::ModelProto;
use crate::passes::fuse_depthwise::{Assign, Candidate, FuseDepthwise, Init, Options, Variant};
use crate::passes::selection::ListItem;
use crate::passes::{run_pipeline, LayerSelection, PassCx};

/// One choice the selection can make: a layer, or layers rewritten together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Depthwise-layer indices (as `inspect` numbers them).
    pub layers: Vec<usize>,
    pub names: Vec<String>,
    /// Cycles saved with this item alone rewritten.
    pub gain: u64,
    /// Parameters added (negative: removed).
    pub params_delta: i64,
    /// Multiply-accumulates added (negative: removed).
    #[serde(default)]
    pub macs_delta: i64,
    /// Normalized output error with this item alone rewritten (None: not measured).
    pub cost: Option<f64>,
    /// Top-1 agreement with the original (outputs of shape [N, C]) with this item alone rewritten.
    pub agreement: Option<f64>,
}

/// The per-layer table of one model on one array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub variant: Variant,
    pub baseline_cycles: u64,
    pub items: Vec<Item>,
    /// Depthwise layers no item covers, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// How rewritten layers get their 1-D kernels: the initializer, (Half) which
/// channels go to which branch, and for `--init lsq` the kernels fitted on data
/// (every layer fitted on the original's activations, so a layer's kernels do
/// not depend on which other layers a set rewrites).
#[derive(Debug, Clone)]
pub struct Kernels {
    pub init: Init,
    pub assign: Assign,
    pub fitted: Option<crate::calibrate::LsqInit>,
}

impl From<Init> for Kernels {
    fn from(init: Init) -> Kernels {
        Kernels { init, assign: Assign::Ordered, fitted: None }
    }
}

impl From<&Kernels> for Kernels {
    fn from(k: &Kernels) -> Kernels {
        k.clone()
    }
}

/// The model with the depthwise layers `layers` rewritten (all others left alone);
/// the indices of the layers the pass rewrote.
pub fn rewrite(g: &Graph, variant: Variant, kernels: impl Into<Kernels>, layers: &[usize]) -> Result<(Graph, Vec<usize>, i64)> {
    let mut g = g.clone();
    if layers.is_empty() {
        return Ok((g, vec![], 0));
    }
    let Kernels { init, assign, fitted } = kernels.into();
    let sel = LayerSelection::List(layers.iter().map(|&i| ListItem::Index(i)).collect());
    let mut pass = FuseDepthwise::new(Options { variant, init, assign, layers: sel, skip: vec![], dense: false })?;
    if let Some(f) = fitted {
        pass = pass.with_init(Box::new(f));
    }
    let mut reports = run_pipeline(&mut g, &[Box::new(pass)], &PassCx::default())?;
    let report = reports.remove(0).1;
    let delta = report.rewrites.iter().map(|r| r.params_delta).sum();
    Ok((g, report.rewrites.iter().map(|r| r.index).collect(), delta))
}

/// Total cycles of `g` on `hw` (the analytical model).
pub fn cycles(g: &Graph, hw: &HwConfig, batch: u64) -> Result<u64> {
    Ok(crate::cost::hw::schedule::schedule(g, hw, batch)?.iter().map(|l| l.cycles).sum())
}

/// Groups of convertible depthwise layers whose outputs meet before the next op the
/// array runs (a Conv, Gemm or MatMul): two branches summed by a residual Add, say.
/// Such layers change one tensor together and are scored as one item. Every convertible
/// layer is in exactly one group, ascending.
pub fn coupled(g: &Graph, cands: &[Candidate]) -> Vec<Vec<usize>> {
    use std::collections::{HashMap, HashSet};
    // the reach stops at the next op the array runs: a channel-mixing one, or another
    // depthwise conv (layers one after the other are not summed; each changes its own tensor)
    let mixing = |ix: petgraph::stable_graph::NodeIndex| crate::ir::op::array_op(g.node(ix)).is_some();
    // the nodes each layer's output reaches before (and including) the first channel-mixing op
    let reach: Vec<(usize, HashSet<petgraph::stable_graph::NodeIndex>)> = cands
        .iter()
        .filter(|c| matches!(c, Candidate::Convertible(_)))
        .map(|c| {
            let mut seen = HashSet::new();
            let mut todo = vec![c.node()];
            while let Some(ix) = todo.pop() {
                for o in g.node(ix).proto.output.iter().filter(|o| !o.is_empty()) {
                    for &(next, _) in g.consumers(o) {
                        if seen.insert(next) && !mixing(next) {
                            todo.push(next);
                        }
                    }
                }
            }
            (c.index(), seen)
        })
        .collect();
    // union the layers whose reaches meet
    let mut parent: HashMap<usize, usize> = reach.iter().map(|(i, _)| (*i, *i)).collect();
    fn root(p: &mut HashMap<usize, usize>, i: usize) -> usize {
        let mut r = i;
        while p[&r] != r {
            r = p[&r];
        }
        p.insert(i, r);
        r
    }
    for (a, (i, ri)) in reach.iter().enumerate() {
        for (j, rj) in &reach[a + 1..] {
            if !ri.is_disjoint(rj) {
                let (x, y) = (root(&mut parent, *i), root(&mut parent, *j));
                parent.insert(x.max(y), x.min(y));
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, _) in &reach {
        let r = root(&mut parent, *i);
        groups.entry(r).or_default().push(*i);
    }
    groups.into_values().collect()
}

/// The gain of every layer (and group of layers rewritten together) for `variant`.
pub fn gains(g: &Graph, hw: &HwConfig, variant: Variant, batch: u64) -> Result<Table> {
    let base = cycles(g, hw, batch)?;
    let cands = crate::passes::fuse_depthwise::depthwise_convs(g)?;
    let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
    let mut skipped = vec![];
    let groups = coupled(g, &cands);
    let mut todo: Vec<(String, Vec<usize>)> = vec![];
    for c in &cands {
        if let Candidate::Skipped { name, reason, .. } = c {
            skipped.push((name.clone(), reason.clone()));
            continue;
        }
        let group = groups.iter().find(|grp| grp.contains(&c.index())).cloned().unwrap_or_else(|| vec![c.index()]);
        if seen.insert(group.clone()) {
            todo.push((c.name().to_string(), group));
        }
    }
    // each item converted and costed on its own: independent, so on all cores
    use rayon::prelude::*;
    let macs = crate::stats::stats(g).macs as i64;
    let done: Vec<Result<(String, Vec<usize>, Option<(Vec<usize>, i64, i64, u64)>)>> = todo
        .into_par_iter()
        .map(|(name, group)| {
            let (rewritten, layers, params_delta) = rewrite(g, variant, Init::Center, &group)?;
            if layers.is_empty() {
                return Ok((name, group, None));
            }
            let after = cycles(&rewritten, hw, batch)?;
            let macs_delta = crate::stats::stats(&rewritten).macs as i64 - macs;
            Ok((name, group, Some((layers, params_delta, macs_delta, after))))
        })
        .collect();
    let mut items = vec![];
    for d in done {
        match d? {
            (name, _, None) => skipped.push((name, format!("not rewritten alone as {variant:?}"))),
            (_, _, Some((layers, params_delta, macs_delta, after))) => {
                let names = layers.iter().map(|&i| cands.iter().find(|c| c.index() == i).map_or_else(String::new, |c| c.name().to_string())).collect();
                items.push(Item { layers, names, gain: base.saturating_sub(after), params_delta, macs_delta, cost: None, agreement: None });
            }
        }
    }
    Ok(Table { variant, baseline_cycles: base, items, skipped })
}

/// What agreement with the original's outputs means: the task's metric, read
/// against the original model's predictions (no labels needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// `[N, classes]` scores: the share of samples with the same top-1 class
    /// (none for other outputs).
    #[default]
    Top1,
    /// `[N, T, classes]` CTC scores: the share of samples read exactly the same
    /// (greedy decoding: best class per step, repeats merged, blanks dropped).
    CtcLines,
    /// `[N, 1, H, W]` text probability maps: the hmean of the DB boxes against
    /// the original's (IoU 0.5, default thresholds).
    Boxes,
}

impl Agreement {
    /// The agreement of a task (`None`: top-1 where the output is class scores).
    pub fn of(task: Option<crate::tasks::Task>) -> Agreement {
        match task {
            Some(crate::tasks::Task::Ctc) => Agreement::CtcLines,
            Some(crate::tasks::Task::Textdet) => Agreement::Boxes,
            // layout heads have no per-output agreement here: the output distance alone
            Some(crate::tasks::Task::Rot180) | Some(crate::tasks::Task::Layout) | None => Agreement::Top1,
        }
    }

    /// What a point of drop counts, for messages and plots.
    pub fn unit(self) -> &'static str {
        match self {
            Agreement::Top1 => "top-1 agreement",
            Agreement::CtcLines => "lines read as the original reads them",
            Agreement::Boxes => "box hmean against the original's boxes",
        }
    }
}

/// How far the outputs of `changed` are from `original`'s on `inputs`: the
/// normalized error sqrt(Σ(y' − y)² / Σy²) over every output, and the top-1
/// agreement of the first output when it is [N, C] class scores.
pub fn output_distance(original: &[Vec<ArrayD<f32>>], changed: &[Vec<ArrayD<f32>>]) -> (f64, Option<f64>) {
    output_distance_by(original, changed, Agreement::Top1)
}

/// [`output_distance`] with the agreement read by `how`'s metric on the first
/// output (None where the output does not have the metric's shape).
pub fn output_distance_by(original: &[Vec<ArrayD<f32>>], changed: &[Vec<ArrayD<f32>>], how: Agreement) -> (f64, Option<f64>) {
    let (mut num, mut den) = (0f64, 0f64);
    let (mut agree, mut rows) = (0usize, 0usize);
    let mut boxes: Vec<(usize, usize, usize)> = vec![];
    for (ys, zs) in original.iter().zip(changed) {
        for (y, z) in ys.iter().zip(zs) {
            for (a, b) in y.iter().zip(z.iter()) {
                num += ((b - a) as f64).powi(2);
                den += (*a as f64).powi(2);
            }
        }
        let (Some(y), Some(z)) = (ys.first(), zs.first()) else { continue };
        if y.shape() != z.shape() {
            continue;
        }
        match how {
            Agreement::Top1 if y.ndim() == 2 && y.shape()[1] > 1 => {
                let (a, b) = (crate::exec::argmax_rows(y), crate::exec::argmax_rows(z));
                agree += a.iter().zip(&b).filter(|(p, q)| p == q).count();
                rows += a.len();
            }
            Agreement::CtcLines if y.ndim() == 3 => {
                let (t, c) = (y.shape()[1], y.shape()[2]);
                for (a, b) in y.outer_iter().zip(z.outer_iter()) {
                    let (a, b) = (a.iter().copied().collect::<Vec<f32>>(), b.iter().copied().collect::<Vec<f32>>());
                    agree += usize::from(crate::train::ctc::greedy(&a, t, c) == crate::train::ctc::greedy(&b, t, c));
                    rows += 1;
                }
            }
            Agreement::Boxes if y.ndim() == 4 && y.shape()[1] == 1 => {
                let p = crate::tasks::Params::default();
                for (a, b) in y.outer_iter().zip(z.outer_iter()) {
                    let (a, b) = (a.index_axis(ndarray::Axis(0), 0), b.index_axis(ndarray::Axis(0), 0));
                    let (a, b) = (a.into_dimensionality::<ndarray::Ix2>(), b.into_dimensionality::<ndarray::Ix2>());
                    let (Ok(a), Ok(b)) = (a, b) else { continue };
                    let truth = crate::tasks::db_boxes(a, p.thresh, p.unclip, p.min_size);
                    let pred = crate::tasks::db_boxes(b, p.thresh, p.unclip, p.min_size);
                    boxes.push(crate::tasks::match_boxes(&pred, &truth, p.iou));
                }
            }
            _ => {}
        }
    }
    let agreement = match how {
        Agreement::Boxes if !boxes.is_empty() => {
            // no boxes in either: they agree
            let (p, g) = boxes.iter().fold((0, 0), |s, c| (s.0 + c.1, s.1 + c.2));
            Some(if p + g == 0 { 1.0 } else { crate::tasks::det_score(&boxes).hmean })
        }
        _ => (rows > 0).then(|| agree as f64 / rows as f64),
    };
    ((num / den.max(f64::MIN_POSITIVE)).sqrt(), agreement)
}

/// Run `g` (as part of `model`) in tract on every input.
pub fn outputs(model: &ModelProto, g: &Graph, inputs: &[ArrayD<f32>]) -> Result<Vec<Vec<ArrayD<f32>>>> {
    let mut m = model.clone();
    m.graph = Some(g.to_proto()?);
    outputs_of(&m, inputs)
}

/// Run model `m` on every input.
pub fn outputs_of(m: &ModelProto, inputs: &[ArrayD<f32>]) -> Result<Vec<Vec<ArrayD<f32>>>> {
    let shape = inputs.first().map(|x| x.shape().to_vec()).unwrap_or_default();
    let runner = crate::exec::Runner::new(m, &shape)?;
    inputs.iter().map(|x| runner.run_all(x.clone())).collect()
}

/// Measure the cost of every item of `table`: the model with that item alone
/// rewritten (`init` kernels), against the original, on `inputs`; agreement by
/// top-1 ([`score_by`] for the other task metrics).
pub fn score(model: &ModelProto, g: &Graph, table: &mut Table, init: Init, inputs: &[ArrayD<f32>]) -> Result<()> {
    score_by(model, g, table, init, inputs, Agreement::Top1, None)
}

/// A short distillation of a rewritten model before its cost is measured
/// (`--proxy-steps`): the untrained error can rank layers poorly where
/// training recovers some rewrites much better than others. Only what the
/// rewrite created trains (the 1-D kernels), against the original as teacher
/// with each rewritten block's output matched to the original's, BN frozen,
/// no augmentation.
pub struct Proxy<'a> {
    pub data: &'a crate::tasks::data::Dataset,
    pub opts: crate::train::Options,
}

impl<'a> Proxy<'a> {
    /// `steps` optimizer steps of `batch` samples from `data`.
    pub fn new(data: &'a crate::tasks::data::Dataset, steps: usize, batch: usize, seed: u64) -> Proxy<'a> {
        let opts = crate::train::Options {
            steps: Some(steps),
            batch,
            warmup: (steps / 4).min(50),
            // a short run of few parameters: a larger step than a fine-tune's
            lr: 1e-2,
            train: crate::train::TrainSet::Fuse,
            bn: crate::train::graph::BnMode::Frozen,
            labels: crate::train::LabelUse::Off,
            augment: crate::train::batch::Augment { on: false, ..crate::train::batch::Augment::ON },
            seed,
            ..Default::default()
        };
        Proxy { data, opts }
    }

    /// `changed` (a rewrite of `model`'s graph) after the short distillation.
    pub fn tune(&self, model: &ModelProto, changed: &Graph) -> Result<ModelProto> {
        let mut m = model.clone();
        m.graph = Some(changed.to_proto()?);
        Ok(crate::train::finetune(&m, model, self.data, None, &self.opts)?.0)
    }
}

/// [`score`] with agreement read by `how`, and with `proxy`, each item distilled
/// for a few steps before it is measured.
pub fn score_by(model: &ModelProto, g: &Graph, table: &mut Table, kernels: impl Into<Kernels>, inputs: &[ArrayD<f32>], how: Agreement, proxy: Option<&Proxy>) -> Result<()> {
    let kernels = kernels.into();
    let reference = outputs(model, g, inputs)?;
    for item in &mut table.items {
        let (changed, _, _) = rewrite(g, table.variant, &kernels, &item.layers)?;
        let ys = match proxy {
            Some(p) => outputs_of(&p.tune(model, &changed)?, inputs)?,
            None => outputs(model, &changed, inputs)?,
        };
        let (cost, agreement) = output_distance_by(&reference, &ys, how);
        item.cost = Some(cost);
        item.agreement = agreement;
    }
    Ok(())
}

impl Item {
    /// Top-1 agreement lost with this item alone rewritten, in points (0-100).
    pub fn drop_points(&self) -> Option<f64> {
        self.agreement.map(|a| 100.0 * (1.0 - a))
    }
}

/// Raised whenever what a table holds for the same inputs changes (items
/// grouped differently, a new metric), so older cached tables are not read.
const TABLE_REVISION: u32 = 2;

/// Where [`Table`]s are kept between runs: one JSON file per key (a hash of
/// the model's bytes, the array, the variant, the init and the inputs the
/// costs were measured on), so trying several targets costs nothing after the
/// first run.
pub struct Cache {
    pub dir: std::path::PathBuf,
}

impl Cache {
    /// `$FUSEC_CACHE_DIR`, else `$XDG_CACHE_HOME/fusec/select`, else `~/.cache/fusec/select`.
    pub fn default_dir() -> Option<std::path::PathBuf> {
        if let Some(d) = std::env::var_os("FUSEC_CACHE_DIR") {
            return Some(std::path::PathBuf::from(d).join("select"));
        }
        let base = std::env::var_os("XDG_CACHE_HOME").map(std::path::PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
        Some(base.join("fusec").join("select"))
    }

    /// The key of a table: every part hashed in order (fusec's version first).
    pub fn key(parts: &[&[u8]]) -> String {
        use std::hash::{Hash, Hasher};
        // two differently seeded SipHash-1-3 passes (std's DefaultHasher has fixed keys): 128 bits
        let mut out = String::new();
        for salt in [0u8, 1] {
            let mut h = std::hash::DefaultHasher::new();
            salt.hash(&mut h);
            env!("CARGO_PKG_VERSION").hash(&mut h);
            TABLE_REVISION.hash(&mut h);
            for p in parts {
                p.hash(&mut h);
            }
            out.push_str(&format!("{:016x}", h.finish()));
        }
        out
    }

    pub fn get(&self, key: &str) -> Option<Table> {
        let text = std::fs::read_to_string(self.dir.join(format!("{key}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Store a table (atomically: a temporary file renamed). Failing to cache is not an error
    /// of the selection; the reason is returned for a warning.
    pub fn put(&self, key: &str, t: &Table) -> std::result::Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        std::fs::write(tmp.path(), serde_json::to_string(t).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        tmp.persist(self.dir.join(format!("{key}.json"))).map_err(|e| e.error.to_string())?;
        Ok(())
    }
}

/// `samples` noise inputs of `g`'s (first) input shape, seeds `seed`, `seed + 1`, ...
/// (a symbolic batch taken as 1).
pub fn noise_inputs(g: &Graph, samples: usize, seed: u64) -> Result<Vec<ArrayD<f32>>> {
    if samples == 0 {
        return Ok(vec![]);
    }
    let x = g.inputs.iter().find(|i| !g.initializers.contains_key(i.name())).ok_or_else(|| crate::Error::Eval("the model has no input".into()))?;
    let shape: Option<Vec<usize>> = g.shape_of(x.name()).and_then(|s| s.iter().enumerate().map(|(i, d)| d.known().map(|v| v as usize).or((i == 0).then_some(1))).collect());
    let shape = shape.ok_or_else(|| crate::Error::option("--input-shape", format!("input '{}' has no concrete shape; pass --input-shape", x.name())))?;
    Ok((0..samples).map(|i| noise(&shape, seed.wrapping_add(i as u64))).collect())
}

/// Uniform noise in [-1, 1] of `shape`, the same for the same seed.
pub fn noise(shape: &[usize], seed: u64) -> ArrayD<f32> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    // n values for n elements: the shape always fits
    ArrayD::from_shape_vec(ndarray::IxDyn(shape), (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()).unwrap_or_else(|_| ArrayD::zeros(ndarray::IxDyn(shape)))
}

/// The front as an SVG: predicted speedup against predicted cost, the chosen set
/// and any `marks` (label, speedup, cost: presets such as the paper's) on it.
pub fn front_svg(base: u64, front: &[solve::Choice], chosen: Option<(f64, f64)>, marks: &[(String, f64, f64)], cost_label: &str) -> Result<String> {
    use plotters::prelude::*;
    let speedup = |gain: u64| base as f64 / base.saturating_sub(gain).max(1) as f64;
    let pts: Vec<(f64, f64)> = front.iter().map(|c| (c.cost, speedup(c.gain))).collect();
    let xmax = pts.iter().map(|p| p.0).chain(marks.iter().map(|m| m.2)).fold(1e-9f64, f64::max) * 1.08;
    let ymax = pts.iter().map(|p| p.1).chain(marks.iter().map(|m| m.1)).fold(1.0f64, f64::max) * 1.08;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (800, 520)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<std::io::Error>| crate::Error::Eval(format!("svg: {e}"));
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("layer choices: predicted speedup against cost", ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 1f64.min(ymax)..ymax)
            .map_err(e)?;
        chart.configure_mesh().x_desc(cost_label).y_desc("speedup").draw().map_err(e)?;
        chart
            .draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))
            .map_err(e)?
            .label("Pareto front")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, BLUE.filled()))).map_err(e)?;
        for (i, (label, s, c)) in marks.iter().enumerate() {
            let color = Palette99::pick(i + 2).to_rgba();
            chart
                .draw_series(std::iter::once(TriangleMarker::new((*c, *s), 8, color.filled())))
                .map_err(e)?
                .label(label.clone())
                .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 6, color.filled()));
        }
        if let Some((s, c)) = chosen {
            chart
                .draw_series(std::iter::once(Cross::new((c, s), 8, RED.stroke_width(3))))
                .map_err(e)?
                .label("chosen")
                .legend(|(x, y)| Cross::new((x + 8, y), 6, RED.stroke_width(2)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).border_style(BLACK).background_style(WHITE.mix(0.9)).draw().map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(buf)
}

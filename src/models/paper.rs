//! The FuSeConv paper's speedup table, rebuilt from ONNX: each reference
//! network from `fusec zoo`, converted by the FuSe pass to Full, Half and the
//! 50% hybrids (presets `paper-50-*`), costed on a 64×64 array; and
//! ResNet-50, whose Full and Half rewrite the bottlenecks' dense 3×3 convs
//! (`dense = true`; no hybrids, no README numbers).

use serde::Serialize;

use crate::error::Result;
use crate::cost::hw::schedule::{schedule, LayerCost};
use crate::cost::hw::{HwConfig, HwKind};
use crate::ir::Graph;
use crate::passes::fuse_depthwise::{FuseDepthwise, Init, Options, Variant};
use crate::passes::{run_pipeline, LayerSelection, PassCx};
use crate::stats::stats;

/// The README's numbers: (network, [Full, Half, 50% Full, 50% Half] speedups,
/// [baseline, Full, Half, 50% Full, 50% Half] FLOPs (M) and params (M)).
pub const PAPER: &[(&str, [f64; 4], [f64; 5], [f64; 5])] = &[
    ("mobilenet-v1", [4.1, 6.76, 2.3, 2.36], [589.0, 1122.0, 573.0, 764.0, 578.0], [4.23, 7.36, 4.20, 4.35, 4.22]),
    ("mobilenet-v2", [5.1, 7.23, 2.0, 2.1], [315.0, 430.0, 300.0, 361.0, 305.0], [3.50, 4.46, 3.46, 3.61, 3.49]),
    ("mnasnet-b1", [5.06, 7.15, 1.88, 1.97], [325.0, 440.0, 305.0, 361.0, 312.0], [4.38, 5.66, 4.25, 4.47, 4.35]),
    ("mobilenet-v3-small", [3.02, 4.16, 1.6, 1.68], [66.0, 84.0, 61.0, 73.0, 63.0], [2.93, 4.44, 2.89, 3.18, 2.92]),
    ("mobilenet-v3-large", [3.61, 5.45, 1.76, 1.83], [238.0, 322.0, 225.0, 264.0, 230.0], [5.47, 10.57, 5.40, 5.57, 5.46]),
];

pub const VARIANTS: [&str; 5] = ["baseline", "full", "half", "50-full", "50-half"];

/// Networks of the table whose FuSe variants rewrite dense convs (baseline, Full, Half only).
pub const DENSE: &[&str] = &["resnet-50"];

/// The networks of the table, in order.
pub fn networks() -> Vec<&'static str> {
    PAPER.iter().map(|p| p.0).chain(DENSE.iter().copied()).collect()
}

/// The variants the table has for `network`.
pub fn variants(network: &str) -> &'static [&'static str] {
    if DENSE.contains(&network) { &VARIANTS[..3] } else { &VARIANTS }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelCost {
    pub variant: String,
    pub total_cycles: u64,
    pub macs: u64,
    pub params: u64,
    pub layers: Vec<LayerCost>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkRow {
    pub network: String,
    pub models: Vec<ModelCost>,
    /// Speedups of Full, Half, 50% Full, 50% Half over the baseline (None
    /// where the network has no such variant).
    pub speedup: [Option<f64>; 4],
}

/// The baseline network from `fusec zoo` as a graph.
pub fn baseline_graph(network: &str) -> Result<Graph> {
    let proto = crate::models::zoo::build(network, 0)?;
    Graph::from_proto(proto.graph.as_ref().ok_or_else(|| crate::Error::InvalidGraph("zoo model without graph".into()))?, crate::onnx::opset_of(&proto))
}

/// Convert a baseline graph to one of the paper's variants.
pub fn variant_of(base: &Graph, network: &str, variant: &str) -> Result<Graph> {
    let mut g = base.clone();
    let (v, layers) = match variant {
        "baseline" => return Ok(g),
        "full" => (Variant::Full, LayerSelection::All),
        "half" => (Variant::Half, LayerSelection::All),
        "50-full" => (Variant::Full, LayerSelection::Named(format!("paper-50-{network}"))),
        "50-half" => (Variant::Half, LayerSelection::Named(format!("paper-50-{network}"))),
        other => return Err(crate::Error::option("variant", format!("unknown paper variant '{other}'"))),
    };
    let dense = DENSE.contains(&network);
    let pass = FuseDepthwise::new(Options { variant: v, init: Init::Center, assign: Default::default(), layers, skip: vec![], dense })?;
    run_pipeline(&mut g, &[Box::new(pass)], &PassCx::default())?;
    Ok(g)
}

fn cost_graph(g: &Graph, variant: &str, size: u64) -> Result<ModelCost> {
    let kind = if variant == "baseline" { HwKind::Systolic } else { HwKind::Fuse };
    let hw = HwConfig::array(size, size, kind, 1000.0)?;
    let layers = schedule(g, &hw, 1)?;
    let s = stats(g);
    Ok(ModelCost { variant: variant.to_string(), total_cycles: layers.iter().map(|l| l.cycles).sum(), macs: s.macs, params: s.params, layers })
}

pub fn table(size: u64) -> Result<Vec<NetworkRow>> {
    networks().into_iter().map(|net| row(net, size)).collect()
}

/// One network's row of the table.
pub fn row(net: &str, size: u64) -> Result<NetworkRow> {
    let base = baseline_graph(net)?;
    let models: Vec<ModelCost> = variants(net).iter().map(|v| cost_graph(&variant_of(&base, net, v)?, v, size)).collect::<Result<_>>()?;
    let base = models[0].total_cycles as f64;
    let sp = |i: usize| models.get(i).map(|m| base / m.total_cycles.max(1) as f64);
    Ok(NetworkRow { network: net.to_string(), speedup: [sp(1), sp(2), sp(3), sp(4)], models })
}

/// Markdown rendering of the table with the README's numbers beside ours.
pub fn render_markdown(rows: &[NetworkRow], size: u64) -> String {
    let mut s = String::from("| network | Full | Half | 50% Full | 50% Half |\n|---|---|---|---|---|\n");
    for r in rows {
        let paper = PAPER.iter().find(|p| p.0 == r.network).map(|p| p.1);
        s.push_str(&format!("| {} |", r.network));
        for i in 0..4 {
            match (r.speedup[i], paper) {
                (Some(x), Some(p)) => s.push_str(&format!(" {x:.2} ({}) |", p[i])),
                (Some(x), None) => s.push_str(&format!(" {x:.2} |")),
                (None, _) => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    s.push_str(&format!("\nfusec speedup over the baseline (README value in parentheses; ResNet-50 has none), {size}×{size} array.\n\n"));
    s.push_str("| network | variant | cycles | MACs (M) | README FLOPs (M) | params (M) | README params (M) |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        let p = PAPER.iter().find(|p| p.0 == r.network);
        for (i, m) in r.models.iter().enumerate() {
            s.push_str(&format!(
                "| {} | {} | {} | {:.0} | {} | {:.2} | {} |\n",
                r.network,
                m.variant,
                m.total_cycles,
                m.macs as f64 / 1e6,
                p.map(|p| p.2[i].to_string()).unwrap_or_default(),
                m.params as f64 / 1e6,
                p.map(|p| p.3[i].to_string()).unwrap_or_default()
            ));
        }
    }
    s
}

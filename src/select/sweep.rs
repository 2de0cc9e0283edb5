//! `fusec sweep --variants auto`: on every simulated configuration, the layer
//! set a budget allows. Each item's gain is measured on that configuration
//! (the model with the item alone rewritten, simulated whole: the simulator's
//! dataflow, SRAM and DRAM decide what a rewrite saves, not the ideal
//! array), the costs are the configuration-independent ones of the item
//! table, and the solver picks the set; the set is then converted and
//! simulated whole. Simulations of layers repeat across items and
//! configurations and share the sweep's per-layer cache.

use rayon::prelude::*;

use super::solve::{self, Goal};
use super::{rewrite, Table};
use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::passes::fuse_depthwise::Init;
use crate::cost::sim::sweep::{configs, point, Cache, SweepPoint, SweepSpec};
use crate::cost::hw::HwConfig;
use crate::cost::sim::{simulate_graph, Convention};

/// What the chosen set must satisfy on each configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// The fastest set whose predicted cost (summed) is at most this.
    MaxCost(f64),
    /// The least predicted cost reaching this speedup over the model as it is
    /// on the same configuration (the most gain there when nothing reaches it).
    TargetSpeedup(f64),
}

/// One `auto` point per configuration of `spec`: the set `budget` allows
/// there, simulated whole (its `layers` set; `cost` left to the caller, who
/// measures the set's outputs). `table` gives the items and their costs
/// (every item must have one). The variant is the table's.
#[allow(clippy::too_many_arguments)]
pub fn auto_points(g: &Graph, table: &Table, budget: Budget, spec: &SweepSpec, base: &HwConfig, conv: Convention, batch: u64, cache: &Cache, progress: Option<&dyn crate::cost::sim::sweep::Progress>) -> Result<Vec<(SweepPoint, f64)>> {
    let costs: Vec<f64> = table.items.iter().map(|i| i.cost.ok_or_else(|| Error::option("--variants auto", "the item table has no costs"))).collect::<Result<_>>()?;
    // each item rewritten alone (the kernels do not change cycles)
    let items: Vec<Graph> = table.items.iter().map(|it| rewrite(g, table.variant, Init::Center, &it.layers).map(|r| r.0)).collect::<Result<_>>()?;
    let cfgs = configs(spec, base)?;
    if let Some(p) = progress {
        p.add(cfgs.len() as u64);
    }
    let sim = |g: &Graph, cfg: &HwConfig| simulate_graph(g, cfg, conv, batch, Some(cache)).map_err(|e| Error::option("--variants auto", e.to_string()));
    cfgs.par_iter()
        .map(|(kb, cfg)| {
            let before = sim(g, cfg)?.total_cycles;
            let gains: Vec<u64> = items.iter().map(|gi| Ok(before.saturating_sub(sim(gi, cfg)?.total_cycles))).collect::<Result<_>>()?;
            let choice = choose(&gains, &costs, before, budget);
            let layers: Vec<usize> = choice.items.iter().flat_map(|&i| table.items[i].layers.iter().copied()).collect();
            let (converted, rewritten, _) = rewrite(g, table.variant, Init::Center, &layers)?;
            let mut p = point("auto", *kb, cfg, &sim(&converted, cfg)?);
            p.layers = Some(rewritten);
            if let Some(pb) = progress {
                pb.done();
            }
            Ok((p, choice.cost))
        })
        .collect()
}

/// The set `budget` picks from items with these gains and costs on a
/// configuration where the model takes `base` cycles.
pub fn choose(gains: &[u64], costs: &[f64], base: u64, budget: Budget) -> solve::Choice {
    let none = solve::Choice { items: vec![], gain: 0, cost: 0.0 };
    match budget {
        Budget::MaxCost(d) => solve::solve(gains, costs, Goal::Cost(d)).unwrap_or(none),
        Budget::TargetSpeedup(x) => {
            let need = base - (base as f64 / x).floor().min(base as f64) as u64;
            // out of reach here: the fastest set of all
            solve::solve(gains, costs, Goal::Gain(need)).or_else(|| solve::solve(gains, costs, Goal::Cost(f64::INFINITY))).unwrap_or(none)
        }
    }
}

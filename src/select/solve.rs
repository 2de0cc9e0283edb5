//! Choosing items by gain and cost: a 0/1 knapsack, exact by enumeration up to
//! [`EXACT_ITEMS`] items, greedy by gain per cost beyond. Gains and costs are
//! taken as additive (the chosen set is measured whole afterwards, since they
//! are not exactly).

use serde::Serialize;

/// Largest item count solved exactly (2^20 subsets).
pub const EXACT_ITEMS: usize = 20;

/// What to optimise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Reach at least this many cycles saved with the least cost.
    Gain(u64),
    /// Save the most cycles with a cost of at most this.
    Cost(f64),
}

/// A set of items with its predicted gain and cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// Indices into the item list, ascending.
    pub items: Vec<usize>,
    pub gain: u64,
    pub cost: f64,
}

fn choice(mask: u64, gains: &[u64], costs: &[f64]) -> Choice {
    let items: Vec<usize> = (0..gains.len()).filter(|i| mask >> i & 1 == 1).collect();
    Choice { gain: items.iter().map(|&i| gains[i]).sum(), cost: items.iter().map(|&i| costs[i]).sum::<f64>() + 0.0, items }
}

/// Every set not dominated by another (no other has at least its gain at no more
/// cost, one of them strictly better), by increasing cost. Exact up to
/// [`EXACT_ITEMS`] items; beyond, the prefixes of the items by gain per cost.
pub fn pareto(gains: &[u64], costs: &[f64]) -> Vec<Choice> {
    pareto_where(gains, costs, &|_| true)
}

/// [`pareto`] over the sets `ok` accepts (a parameter or MAC budget).
pub fn pareto_where(gains: &[u64], costs: &[f64], ok: &dyn Fn(&[usize]) -> bool) -> Vec<Choice> {
    assert_eq!(gains.len(), costs.len());
    let n = gains.len();
    let mut all: Vec<Choice> = if n <= EXACT_ITEMS {
        (0..1u64 << n).map(|m| choice(m, gains, costs)).collect()
    } else {
        let order = by_ratio(gains, costs);
        (0..=n).map(|k| choice(order[..k].iter().fold(0u64, |m, &i| m | 1 << i), gains, costs)).collect()
    };
    all.retain(|c| ok(&c.items));
    // by cost, then by gain descending, then by fewer items: the first of each cost level wins
    all.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(b.gain.cmp(&a.gain)).then(a.items.len().cmp(&b.items.len())).then(a.items.cmp(&b.items)));
    let mut front: Vec<Choice> = vec![];
    for c in all {
        if front.last().is_none_or(|l| c.gain > l.gain) {
            front.push(c);
        }
    }
    front
}

/// Item indices by gain per cost, best first (ties: larger gain, then index).
fn by_ratio(gains: &[u64], costs: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..gains.len()).collect();
    let ratio = |i: usize| gains[i] as f64 / costs[i].max(1e-12);
    order.sort_by(|&a, &b| ratio(b).total_cmp(&ratio(a)).then(gains[b].cmp(&gains[a])).then(a.cmp(&b)));
    order
}

/// The best set for `goal`, or None when no set reaches it (a gain larger than
/// all items together).
pub fn solve(gains: &[u64], costs: &[f64], goal: Goal) -> Option<Choice> {
    solve_where(gains, costs, goal, &|_| true)
}

/// [`solve`] over the sets `ok` accepts.
pub fn solve_where(gains: &[u64], costs: &[f64], goal: Goal, ok: &dyn Fn(&[usize]) -> bool) -> Option<Choice> {
    let front = pareto_where(gains, costs, ok);
    match goal {
        // the front is sorted by cost with rising gain: the first that reaches the gain is the cheapest
        Goal::Gain(g) => front.into_iter().find(|c| c.gain >= g),
        Goal::Cost(limit) => front.into_iter().filter(|c| c.cost <= limit + 1e-12).next_back(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_answers_on_small_tables() {
        // gains 10, 7, 5, 3 at costs 4, 2, 2, 1
        let (g, c) = ([10, 7, 5, 3], [4.0, 2.0, 2.0, 1.0]);
        // at most cost 3: {1, 3} saves 10 (not {0}, which costs 4)
        assert_eq!(solve(&g, &c, Goal::Cost(3.0)).unwrap().items, [1, 3]);
        // at most cost 5: {0, 3} saves 13, {1, 2, 3} saves 15: the latter
        assert_eq!(solve(&g, &c, Goal::Cost(5.0)).unwrap(), Choice { items: vec![1, 2, 3], gain: 15, cost: 5.0 });
        // at least 12 saved, least cost: {1, 2} (12 at 4) beats {0, 3} (13 at 5)
        assert_eq!(solve(&g, &c, Goal::Gain(12)).unwrap().items, [1, 2]);
        // everything and more: nothing reaches it
        assert_eq!(solve(&g, &c, Goal::Gain(26)), None);
        assert_eq!(solve(&g, &c, Goal::Gain(25)).unwrap().items, [0, 1, 2, 3]);
        // a zero budget: the empty set
        assert_eq!(solve(&g, &c, Goal::Cost(0.0)).unwrap().items, Vec::<usize>::new());
    }

    #[test]
    fn the_front_is_non_dominated_and_sorted() {
        let (g, c) = ([10, 7, 5, 3], [4.0, 2.0, 2.0, 1.0]);
        let f = pareto(&g, &c);
        assert_eq!(f.first().unwrap().items, Vec::<usize>::new());
        for w in f.windows(2) {
            assert!(w[1].cost > w[0].cost && w[1].gain > w[0].gain, "{w:?}");
        }
        // brute force: no set beats a front member on both
        for m in 0..16u64 {
            let s = choice(m, &g, &c);
            assert!(f.iter().any(|p| p.gain >= s.gain && p.cost <= s.cost), "{s:?} not covered");
        }
        assert_eq!(f.last().unwrap().gain, 25);
    }

    #[test]
    fn a_budget_leaves_out_the_sets_it_does_not_allow() {
        let (g, c) = ([10, 7, 5, 3], [4.0, 2.0, 2.0, 1.0]);
        // item 1 is not allowed with item 2 (say, together over a parameter budget)
        let ok = |s: &[usize]| !(s.contains(&1) && s.contains(&2));
        // at most cost 5: {1, 2, 3} is out; {0, 3} (13) or {1, 3} (10) or {2, 3}: {0, 3}
        assert_eq!(solve_where(&g, &c, Goal::Cost(5.0), &ok).unwrap().items, [0, 3]);
        // at least 12 saved: {1, 2} is out; {0, 2} (15 at 6), {0, 1} (17 at 6), {0, 3} (13 at 5): {0, 3}
        assert_eq!(solve_where(&g, &c, Goal::Gain(12), &ok).unwrap().items, [0, 3]);
        assert!(pareto_where(&g, &c, &ok).iter().all(|s| ok(&s.items)));
        // nothing allowed but the empty set
        assert_eq!(solve_where(&g, &c, Goal::Gain(1), &|s: &[usize]| s.is_empty()), None);
    }

    #[test]
    fn many_items_fall_back_to_the_greedy_prefixes() {
        let g: Vec<u64> = (0..30).map(|i| 100 + i).collect();
        let c: Vec<f64> = (0..30).map(|i| 1.0 + (i % 7) as f64).collect();
        let f = pareto(&g, &c);
        assert_eq!(f.len(), 31, "one prefix per length");
        assert_eq!(f[1].items.len(), 1);
        assert_eq!(g[f[1].items[0]] as f64 / c[f[1].items[0]], g.iter().zip(&c).map(|(&a, &b)| a as f64 / b).fold(0.0, f64::max));
        // the same answer twice (no randomness)
        assert_eq!(pareto(&g, &c), f);
    }
}

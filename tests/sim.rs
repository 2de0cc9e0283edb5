//! The cycle-level simulator: the fast engine against a PE-level reference
//! (registers updated cycle by cycle, real products computed, so the
//! reference is itself checked against the plain matrix product), for every
//! dataflow and the FuSe 1-D broadcast dataflow, with and without memory
//! limits; FuSe cycles against the paper's analytical model on all layers of
//! the five reference networks; SCALE-Sim's numbers (recorded from SCALE-Sim
//! v3 runs); sweeps against single runs; topology and config files.

mod common;

use fusec::cost::sim::compute::{self, Dataflow, Fuse1d, Gemm};
use fusec::cost::sim::memory::{self, Buffers};
use proptest::prelude::*;

// ------------------------------------------------------------ PE-level reference

/// One fold of C[m × n] = A[m × k] · B[k × n] on an R×C array, simulated
/// register by register. Returns (cycles until the fold is done, the outputs).
///
/// - OS: a[i][t] enters PE(i, 0) at cycle t + i and moves right, b[t][j]
///   enters PE(0, j) at cycle t + j and moves down; PE(i, j) multiplies what
///   meets there and keeps the sum. The skew registers span the whole array,
///   so the fold ends when the last (possibly bubble) operand has passed
///   PE(R−1, C−1).
/// - WS: the weights b (k rows on the array rows) load one array row per cycle
///   from the top (R cycles); then a's column t enters row i at cycle R + t + i,
///   moves right, and partial sums move down; the sum for output (t, j) leaves
///   the bottom of column j.
/// - IS: as WS with the roles of a and b swapped (the input is stationary).
fn pe_fold(df: Dataflow, r: usize, c: usize, a: &[Vec<i64>], b: &[Vec<i64>]) -> (u64, Vec<Vec<i64>>) {
    let (m, k, n) = (a.len(), b.len(), b[0].len());
    match df {
        Dataflow::Os => {
            assert!(m <= r && n <= c);
            // registers: (value, valid) flowing right and down
            let mut ar = vec![vec![None::<i64>; c]; r];
            let mut br = vec![vec![None::<i64>; c]; r];
            let mut acc = vec![vec![0i64; c]; r];
            let mut seen = vec![vec![0usize; c]; r];
            let mut cycle = 0u64;
            // a token passes every PE: the last one enters at k-1 + (r-1) and needs c-1 hops
            let last = (k - 1) + (r - 1) + (c - 1);
            for t in 0..=last {
                // shift: right for a, down for b (from the far end)
                for i in 0..r {
                    for j in (1..c).rev() {
                        ar[i][j] = ar[i][j - 1];
                    }
                    let s = t as isize - i as isize;
                    ar[i][0] = (s >= 0 && (s as usize) < k).then(|| if i < m { a[i][s as usize] } else { 0 });
                }
                for j in 0..c {
                    for i in (1..r).rev() {
                        br[i][j] = br[i - 1][j];
                    }
                    let s = t as isize - j as isize;
                    br[0][j] = (s >= 0 && (s as usize) < k).then(|| if j < n { b[s as usize][j] } else { 0 });
                }
                for i in 0..r {
                    for j in 0..c {
                        if let (Some(x), Some(y)) = (ar[i][j], br[i][j]) {
                            acc[i][j] += x * y;
                            seen[i][j] += 1;
                        }
                    }
                }
                cycle = t as u64 + 1;
            }
            assert!(seen.iter().all(|row| row.iter().all(|&s| s == k)), "every PE saw k operand pairs");
            (cycle, (0..m).map(|i| acc[i][..n].to_vec()).collect())
        }
        Dataflow::Ws | Dataflow::Is => {
            // stationary operand s[kk][j] on PE(kk, j); streamed x[t][kk] enters row kk at R + t + kk
            let (stat, stream): (Vec<Vec<i64>>, Vec<Vec<i64>>) = if df == Dataflow::Ws {
                (b.to_vec(), a.to_vec()) // WS: weights k×n stationary, ifmap rows (m = T) stream
            } else {
                // IS: inputs stationary as k×m, filters stream (T = n)
                let at: Vec<Vec<i64>> = (0..k).map(|kk| (0..m).map(|i| a[i][kk]).collect()).collect();
                let bt: Vec<Vec<i64>> = (0..n).map(|j| (0..k).map(|kk| b[kk][j]).collect()).collect();
                (at, bt)
            };
            let (kk_n, cols_n, t_n) = (stat.len(), stat[0].len(), stream.len());
            assert!(kk_n <= r && cols_n <= c);
            let mut xr = vec![vec![None::<(usize, i64)>; c]; r];
            let mut ps = vec![vec![None::<(usize, i64)>; c]; r];
            let mut out = vec![vec![0i64; cols_n]; t_n];
            let mut got = 0usize;
            // load: one array row per cycle (R cycles); then streaming
            let load = r;
            let last = load + (t_n - 1) + (r - 1) + (c - 1);
            let mut cycle = 0u64;
            for cy in load..=last {
                let step = cy - load;
                for i in 0..r {
                    for j in (1..c).rev() {
                        xr[i][j] = xr[i][j - 1];
                    }
                    let s = step as isize - i as isize;
                    xr[i][0] = (s >= 0 && (s as usize) < t_n).then(|| (s as usize, if i < kk_n { stream[s as usize][i] } else { 0 }));
                }
                // partial sums move down: row i takes row i-1's and adds its product
                let mut next = vec![vec![None::<(usize, i64)>; c]; r];
                for i in 0..r {
                    for j in 0..c {
                        if let Some((t, x)) = xr[i][j] {
                            let w = if i < kk_n && j < cols_n { stat[i][j] } else { 0 };
                            let above = if i == 0 { 0 } else { ps[i - 1][j].map(|p| p.1).unwrap_or(0) };
                            next[i][j] = Some((t, above + x * w));
                        }
                    }
                }
                ps = next;
                for j in 0..c {
                    if let Some((t, v)) = ps[r - 1][j]
                        && j < cols_n
                    {
                        out[t][j] = v;
                        got += 1;
                    }
                }
                cycle = cy as u64 + 1;
            }
            assert_eq!(got, t_n * cols_n, "every output left the array");
            if df == Dataflow::Ws {
                (cycle, out)
            } else {
                // IS produced C^T (n × m)
                (cycle, (0..m).map(|i| (0..n).map(|j| out[j][i]).collect()).collect())
            }
        }
    }
}

/// A whole GEMM, fold by fold in SCALE-Sim's order, on the PE-level reference.
fn pe_gemm(g: Gemm, df: Dataflow, r: u64, c: u64, seed: u64) -> u64 {
    let mut s = seed;
    let mut rnd = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 33) % 7) as i64 - 3
    };
    let (m, k, n) = (g.m as usize, g.k as usize, g.n as usize);
    let a: Vec<Vec<i64>> = (0..m).map(|_| (0..k).map(|_| rnd()).collect()).collect();
    let b: Vec<Vec<i64>> = (0..k).map(|_| (0..n).map(|_| rnd()).collect()).collect();
    let want: Vec<Vec<i64>> = (0..m).map(|i| (0..n).map(|j| (0..k).map(|t| a[i][t] * b[t][j]).sum()).collect()).collect();
    let mut got = vec![vec![0i64; n]; m];
    let map = g.mapping(df);
    let mut total = 0u64;
    for f in compute::folds(map, r, c) {
        let (r0, c0, fr, fc) = (f.row0 as usize, f.col0 as usize, f.rows as usize, f.cols as usize);
        // the slice of (m, k, n) this fold covers
        let (ms, ks, ns) = match df {
            Dataflow::Os => (r0..r0 + fr, 0..k, c0..c0 + fc),
            Dataflow::Ws => (0..m, r0..r0 + fr, c0..c0 + fc),
            Dataflow::Is => (c0..c0 + fc, r0..r0 + fr, 0..n),
        };
        let asub: Vec<Vec<i64>> = ms.clone().map(|i| ks.clone().map(|t| a[i][t]).collect()).collect();
        let bsub: Vec<Vec<i64>> = ks.clone().map(|t| ns.clone().map(|j| b[t][j]).collect()).collect();
        let (cy, out) = pe_fold(df, r as usize, c as usize, &asub, &bsub);
        total += cy;
        for (oi, i) in ms.clone().enumerate() {
            for (oj, j) in ns.clone().enumerate() {
                got[i][j] += out[oi][oj];
            }
        }
    }
    assert_eq!(got, want, "{df:?}: the PE-level array computed the product");
    total
}

/// A FuSe 1-D fold (stride 1): `rows` 1-D convolutions of `x` with `w`, each PE
/// row holding `cols` consecutive outputs; one input element per cycle enters
/// the row and is broadcast to its PEs with the tap it meets there.
fn pe_fuse_fold(rows_x: &[Vec<i64>], w: &[i64], cols: usize) -> (u64, Vec<Vec<i64>>) {
    let k = w.len();
    let mut out = vec![vec![0i64; cols]; rows_x.len()];
    let mut done = vec![vec![0usize; cols]; rows_x.len()];
    let mut cycle = 0;
    // inputs 0 .. cols + k - 2 stream in, one per cycle; the results are written the cycle after
    for t in 0..cols + k - 1 {
        for (r, x) in rows_x.iter().enumerate() {
            let v = x.get(t).copied().unwrap_or(0);
            for (j, o) in out[r].iter_mut().enumerate() {
                if t >= j && t - j < k {
                    *o += v * w[t - j];
                    done[r][j] += 1;
                }
            }
        }
        cycle = t as u64 + 1;
    }
    assert!(done.iter().all(|d| d.iter().all(|&n| n == k)));
    (cycle + 1, out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// The fast engine's compute cycles equal the PE-level reference's, fold
    /// for fold, for every dataflow, partial folds included.
    #[test]
    fn fast_engine_equals_the_pe_level_reference(m in 1u64..20, k in 1u64..12, n in 1u64..14, r in 1u64..7, c in 1u64..7, df in 0usize..3, seed in 0u64..1000) {
        let df = [Dataflow::Os, Dataflow::Ws, Dataflow::Is][df];
        let g = Gemm { m, k, n };
        let fast = compute::gemm(g, df, r, c).cycles;
        prop_assert_eq!(fast, pe_gemm(g, df, r, c, seed));
    }

    /// The FuSe broadcast dataflow, stride 1: each fold takes C + K cycles on the
    /// PE-level reference and computes the 1-D convolution; the engine's cycles
    /// are folds × (C + K).
    #[test]
    fn fuse_dataflow_equals_the_pe_level_reference(convs in 1u64..12, width in 2u64..30, taps in 1u64..6, r in 1u64..6, c in 1u64..9) {
        prop_assume!(taps <= width);
        let f = Fuse1d { convs, width, taps, stride: 1 };
        let x: Vec<Vec<i64>> = (0..convs).map(|i| (0..width).map(|j| ((i * 7 + j * 3) % 5) as i64 - 2).collect()).collect();
        let w: Vec<i64> = (0..taps).map(|t| t as i64 - 1).collect();
        let mut total = 0;
        for rf in (0..convs as usize).step_by(r as usize) {
            for wf in (0..width as usize).step_by(c as usize) {
                let rows: Vec<Vec<i64>> = x[rf..(rf + r as usize).min(convs as usize)].iter().map(|row| row[wf..].to_vec()).collect();
                let (cy, out) = pe_fuse_fold(&rows, &w, c as usize);
                total += cy;
                for (ri, row) in rows.iter().enumerate() {
                    for j in 0..(c as usize).min(row.len().saturating_sub(taps as usize - 1)) {
                        let want: i64 = (0..taps as usize).map(|t| row[j + t] * w[t]).sum();
                        prop_assert_eq!(out[ri][j], want);
                    }
                }
                // a fold is C + K cycles whatever it holds
                prop_assert_eq!(cy, c + taps);
            }
        }
        prop_assert_eq!(compute::fuse1d(f, r, c).cycles, total);
    }
}

// ------------------------------------------------------------ memory, cycle-stepped reference

/// The memory model of `fusec::cost::sim::memory` as a cycle-by-cycle simulation:
/// three interfaces, each a FIFO of transfers served `bw` words per cycle,
/// a transfer occupying whole cycles (`ceil(words / bw)`, as lines of `bw`
/// words); a fold's ahead-transfers are queued when the previous fold
/// starts, its remaining ones when it starts, its outputs when it ends; a
/// fold starts on the first cycle at which the previous one has ended, its
/// ahead-transfers are in and its ofmap half has drained. Returns (stalls,
/// fill cycles, ifmap DRAM words, filter DRAM words).
fn stepped(g: Gemm, df: Dataflow, r: u64, c: u64, buf: &Buffers) -> (u64, u64, u64, u64) {
    let map = g.mapping(df);
    let t = map.t;
    let folds: Vec<_> = compute::folds(map, r, c).collect();
    let fold_c = compute::fold_cycles(df, r, c, t);
    let bw = buf.dram_words_per_cycle;
    let (keys, totals): ([u8; 2], [u64; 2]) = match df {
        Dataflow::Os => ([0, 1], [map.sr * t, t * map.sc]),
        Dataflow::Ws => ([0, 2], [t * map.sr, map.sr * map.sc]),
        Dataflow::Is => ([2, 0], [map.sr * map.sc, t * map.sr]),
    };
    let caps = [buf.ifmap_words, buf.filter_words];
    let mut seen: [std::collections::HashSet<(u64, u64)>; 2] = Default::default();
    let mut prev: [Option<(u64, u64)>; 2] = [None, None];
    let mut need = vec![[0u64; 2]; folds.len()];
    let mut outs = vec![0u64; folds.len()];
    let mut dram = [0u64; 2];
    for (i, f) in folds.iter().enumerate() {
        let (fr, fc) = (f.row0 / r, f.col0 / c);
        let tiles = match df {
            Dataflow::Os => [f.rows * t, t * f.cols, f.rows * f.cols],
            Dataflow::Ws => [t * f.rows, f.rows * f.cols, t * f.cols],
            Dataflow::Is => [f.rows * f.cols, t * f.rows, t * f.cols],
        };
        for kk in 0..2 {
            let id = match keys[kk] {
                0 => (fr, 0),
                1 => (0, fc),
                _ => (fr, fc),
            };
            let fetch = if totals[kk] <= caps[kk] { seen[kk].insert(id) } else { prev[kk] != Some(id) };
            prev[kk] = Some(id);
            if fetch {
                need[i][kk] = tiles[kk];
                dram[kk] += tiles[kk];
            }
        }
        outs[i] = tiles[2];
    }
    let half = |cap: u64| (cap / 2).max(1);
    let ahead = |i: usize, k: usize| need[i][k].min(half(caps[k]));
    // fold 0's ahead-transfers happen before the layer
    let mut fill = 0u64;
    for k in 0..2 {
        let mut cyc = 0u64;
        while ((cyc as f64) * bw).floor() < ahead(0, k) as f64 {
            cyc += 1;
        }
        fill = fill.max(cyc);
    }
    // queues: (words left, id) per interface; ids: (fold, 0 ahead | 1 rest | 2 out)
    let mut queue: [std::collections::VecDeque<(u64, (usize, u8))>; 3] = Default::default();
    let mut credit = [0f64; 3];
    let mut done: std::collections::HashSet<(usize, u8, usize)> = Default::default();
    let mut started = vec![None::<u64>; folds.len()];
    let mut ended = vec![None::<u64>; folds.len()];
    let mut stall = 0u64;
    let mut cycle = 0u64;
    let mut next = 0usize;
    for k in 0..2 {
        done.insert((0, 0, k));
    }
    loop {
        // start the next fold if it can start this cycle
        if next < folds.len() {
            let prev_done = next == 0 || ended[next - 1].is_some_and(|e| e <= cycle);
            let ahead_in = (0..2).all(|k| need[next][k] == 0 || done.contains(&(next, 0, k)));
            let slot_free = next < 2 || done.contains(&(next - 2, 2, 2)) || outs[next - 2] > half(buf.ofmap_words);
            if prev_done && ahead_in && slot_free {
                started[next] = Some(cycle);
                for k in 0..2 {
                    let rest = need[next][k] - ahead(next, k);
                    if rest > 0 {
                        queue[k].push_back((rest, (next, 1)));
                    }
                    // the next fold's ahead-transfers begin now
                    if next + 1 < folds.len() && need[next + 1][k] > 0 {
                        queue[k].push_back((ahead(next + 1, k), (next + 1, 0)));
                    }
                }
                if outs[next] > half(buf.ofmap_words) {
                    queue[2].push_back((outs[next], (next, 2)));
                }
                next += 1;
            }
        }
        // serve the interfaces for this cycle
        for k in 0..3 {
            credit[k] += bw;
            // one transfer at a time per interface and cycle
            if let Some(front) = queue[k].front_mut() {
                let take = (credit[k].floor() as u64).min(front.0);
                front.0 -= take;
                credit[k] -= take as f64;
                if front.0 == 0 {
                    // a transfer ends with its cycle: the next one starts on the next cycle
                    let (_, (f, what)) = queue[k].pop_front().unwrap();
                    done.insert((f, what, k));
                    credit[k] = 0.0;
                }
            }
            if queue[k].is_empty() {
                credit[k] = 0.0;
            }
        }
        cycle += 1;
        // end the running fold once its compute and its streamed rest are done
        if let Some(i) = next.checked_sub(1)
            && ended[i].is_none()
        {
            let s = started[i].unwrap();
            let rest_in = (0..2).all(|k| need[i][k] == ahead(i, k) || done.contains(&(i, 1, k)));
            let big_out_in = outs[i] <= half(buf.ofmap_words) || done.contains(&(i, 2, 2));
            if cycle >= s + fold_c && rest_in && big_out_in {
                ended[i] = Some(cycle);
                let prev_end = if i == 0 { 0 } else { ended[i - 1].unwrap() };
                stall += cycle - prev_end - fold_c;
                if outs[i] <= half(buf.ofmap_words) {
                    queue[2].push_back((outs[i], (i, 2)));
                }
                if i + 1 == folds.len() {
                    break;
                }
            }
        }
    }
    (stall, fill, dram[0], dram[1])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn memory_model_equals_the_cycle_stepped_reference(m in 1u64..200, k in 1u64..60, n in 1u64..80, r in 2u64..16, c in 2u64..16, df in 0usize..3,
                                                          sram in prop::sample::select(vec![16u64, 64, 256, 1024, 1 << 20]), bw in prop::sample::select(vec![1.0f64, 2.0, 4.0, 16.0])) {
        let df = [Dataflow::Os, Dataflow::Ws, Dataflow::Is][df];
        let g = Gemm { m, k, n };
        let buf = Buffers { ifmap_words: sram, filter_words: sram, ofmap_words: sram, dram_words_per_cycle: bw };
        let fast = memory::gemm(g, df, r, c, &buf, None);
        let (stall, fill, di, df_) = stepped(g, df, r, c, &buf);
        prop_assert_eq!((fast.stall_cycles, fast.fill_cycles, fast.ifmap.dram, fast.filter.dram), (stall, fill, di, df_));
    }
}

#[test]
fn without_a_memory_limit_nothing_stalls_and_everything_is_read_once() {
    for df in [Dataflow::Os, Dataflow::Ws, Dataflow::Is] {
        let g = Gemm { m: 300, k: 75, n: 40 };
        let unlimited = Buffers { ifmap_words: u64::MAX, filter_words: u64::MAX, ofmap_words: u64::MAX, dram_words_per_cycle: f64::INFINITY };
        let m = memory::gemm(g, df, 16, 16, &unlimited, None);
        assert_eq!(m.stall_cycles, 0, "{df:?}");
        let map = g.mapping(df);
        // every distinct tile once: the operand matrices (window duplicates included)
        let (i, f) = match df {
            Dataflow::Os => (map.sr * map.t, map.t * map.sc),
            Dataflow::Ws => (map.t * map.sr, map.sr * map.sc),
            Dataflow::Is => (map.sr * map.sc, map.t * map.sr),
        };
        assert_eq!((m.ifmap.dram, m.filter.dram), (i, f), "{df:?}");
        // a memory limit and a slow interface make it stall
        let tight = Buffers { ifmap_words: 512, filter_words: 512, ofmap_words: 512, dram_words_per_cycle: 1.0 };
        assert!(memory::gemm(g, df, 16, 16, &tight, None).stall_cycles > 0, "{df:?}");
    }
}

// ------------------------------------------------------------ against SCALE-Sim and the paper

/// SCALE-Sim's compute cycles, hand-checked on one layer: 10x12 ifmap, 3x3
/// filter, 4 channels, 10 filters, stride 1, 8x8 array (SCALE-Sim v3 printed
/// 999, 1019 and 1599, its "last cycle index" count; mapping efficiency 62.5%
/// for OS).
#[test]
fn scalesim_single_layer_by_hand() {
    let conv = fusec::cost::sim::workload::ConvLayer { ifmap_h: 10, ifmap_w: 12, filt_h: 3, filt_w: 3, channels: 4, filters: 10, stride_h: 1, stride_w: 1, batch: 1, ceil_windows: true };
    let cfg = |df| fusec::cost::hw::HwConfig::new(8, 8, fusec::cost::hw::HwKind::Systolic, df).unwrap();
    let work = fusec::cost::sim::Work::Array { gemm: conv.gemm(), repeat: 1, conv: Some(conv) };
    for (df, want) in [(Dataflow::Os, 999), (Dataflow::Ws, 1019), (Dataflow::Is, 1599)] {
        let l = fusec::cost::sim::simulate_work(&work, &cfg(df), fusec::cost::sim::Convention::SCALESIM);
        assert_eq!(l.compute_cycles, want, "{df:?}");
    }
    let l = fusec::cost::sim::simulate_work(&work, &cfg(Dataflow::Os), fusec::cost::sim::Convention::SCALESIM);
    assert!((l.mapping_efficiency - 0.625).abs() < 1e-12);
    // SRAM reads as SCALE-Sim counts them: ifmap 5760, filter 3600 (its ofmap count adds R+C per fold: 1120)
    assert_eq!((l.memory.ifmap.sram, l.memory.filter.sram, l.memory.ofmap.sram), (5760, 3600, 800));
}

/// On OS with no memory limit, the FuSe 1-D dataflow takes exactly the paper's
/// analytical FuSe cycles, on every FuSe layer of the five reference networks
/// (Half and Full, 64x64 and 16x32 arrays).
#[test]
fn fuse_dataflow_equals_the_analytical_model_on_the_reference_networks() {
    use fusec::cost::hw::schedule::{schedule, LayerKind};
    use fusec::passes::fuse_depthwise::{Init, Variant};
    let mut checked = 0;
    for net in ["mobilenet-v1", "mobilenet-v2", "mnasnet-b1", "mobilenet-v3-small", "mobilenet-v3-large"] {
        let m = fusec::models::zoo::build(net, 0).unwrap();
        for variant in [Variant::Half, Variant::Full] {
            let (conv, _) = common::convert(&m, variant, Init::Center);
            let g = common::graph_of(&conv);
            for (rows, cols) in [(64, 64), (16, 32)] {
                let hw = fusec::cost::hw::HwConfig::array(rows, cols, fusec::cost::hw::HwKind::Fuse, 1000.0).unwrap();
                let analytical = schedule(&g, &hw, 1).unwrap();
                let cfg = fusec::cost::hw::HwConfig::new(rows, cols, fusec::cost::hw::HwKind::Fuse, Dataflow::Os).unwrap();
                let sim = fusec::cost::sim::simulate_graph(&g, &cfg, fusec::cost::sim::Convention::FUSEC, 1, None).unwrap();
                for (a, s) in analytical.iter().zip(&sim.nodes) {
                    assert_eq!(a.name, s.name);
                    if matches!(a.kind, LayerKind::FuseRow | LayerKind::FuseCol) {
                        assert_eq!(s.sim.compute_cycles, a.cycles, "{net} {variant:?} {rows}x{cols} {}", a.name);
                        assert_eq!(s.sim.stall_cycles, 0);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 250, "{checked} FuSe layers checked");
}

/// SCALE-Sim v3's own numbers for MobileNetV2 and MobileNetV3-Large on a 64x64
/// array in its CALC mode (testdata/scalesim/calc_64x64.json, recorded with
/// scripts/scalesim_compare.py): fusec's simulator, fed the same topology CSV,
/// gives the same compute cycles, SRAM reads and DRAM traffic on every layer
/// and dataflow. The one deliberate difference is SCALE-Sim's OS ofmap SRAM
/// write count, which also counts R + C writes per fold during the array's
/// drain (the same value written again).
#[test]
fn scalesim_calc_mode_layer_by_layer() {
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("testdata/scalesim/calc_64x64.json").unwrap()).unwrap();
    let models = golden["models"].as_object().unwrap();
    assert_eq!(models.len(), 2);
    for (model, per_df) in models {
        let rows = fusec::cost::sim::workload::read_topology(std::path::Path::new(&format!("testdata/scalesim/{model}.csv"))).unwrap();
        for (df_name, df) in [("os", Dataflow::Os), ("ws", Dataflow::Ws), ("is", Dataflow::Is)] {
            let cfg = fusec::cost::hw::HwConfig::new(64, 64, fusec::cost::hw::HwKind::Systolic, df).unwrap();
            let gs = fusec::cost::sim::simulate_topology(&rows, &cfg);
            let want = per_df[df_name]["layers"].as_array().unwrap();
            assert_eq!(want.len(), gs.nodes.len(), "{model} {df_name}");
            for (w, n) in want.iter().zip(&gs.nodes) {
                let v: Vec<u64> = w.as_array().unwrap()[1..].iter().map(|x| x.as_u64().unwrap()).collect();
                let m = &n.sim.memory;
                let ctx = format!("{model} {df_name} {}", n.name);
                assert_eq!(w[0].as_str().unwrap(), n.name, "{ctx}");
                assert_eq!((n.sim.compute_cycles, n.sim.stall_cycles), (v[0], v[1]), "{ctx}: compute, stall cycles");
                assert_eq!((m.ifmap.sram, m.filter.sram), (v[2], v[3]), "{ctx}: SRAM ifmap, filter reads");
                let drain = if df == Dataflow::Os { (cfg.rows + cfg.cols) * n.sim.folds } else { 0 };
                assert_eq!(m.ofmap.sram + drain, v[4], "{ctx}: SRAM ofmap writes (+ SCALE-Sim's drain count {drain})");
                assert_eq!((m.ifmap.dram, m.filter.dram, m.ofmap.dram), (v[5], v[6], v[7]), "{ctx}: DRAM traffic");
            }
        }
    }
}

// ------------------------------------------------------------ sweeps, topology and config files

fn zoo_graph(name: &str) -> fusec::ir::Graph {
    let m = fusec::models::zoo::build(name, 3).unwrap();
    fusec::ir::Graph::from_proto(m.graph.as_ref().unwrap(), fusec::onnx::opset_of(&m)).unwrap()
}

/// Every point of a sweep (parallel, with the shared per-layer cache) equals a
/// single simulation of that configuration.
#[test]
fn a_sweep_equals_single_simulations() {
    use fusec::cost::sim::sweep::{run, SweepSpec};
    let g = zoo_graph("mobilenet-v2");
    let spec = SweepSpec {
        arrays: vec![(16, 16), (32, 64)],
        kinds: vec![fusec::cost::hw::HwKind::Systolic, fusec::cost::hw::HwKind::Fuse],
        dataflows: vec![Dataflow::Os, Dataflow::Ws, Dataflow::Is],
        sram_kb: vec![Some(32.0), None],
    };
    let base = fusec::cost::hw::HwConfig::new(64, 64, fusec::cost::hw::HwKind::Fuse, Dataflow::Os).unwrap();
    let (points, (hits, misses)) = run(&[("baseline".into(), g.clone())], &spec, &base, fusec::cost::sim::Convention::FUSEC, 1, None).unwrap();
    assert_eq!(points.len(), 2 * 2 * 3 * 2);
    assert!(hits > misses, "layers repeat: {hits} hits, {misses} misses");
    for p in &points {
        let memory = p.sram_kb.map(|kb| fusec::cost::hw::config::Memory { ifmap_kb: kb, filter_kb: kb, ofmap_kb: kb, word_bytes: 1, word_bytes_from_types: false, dram_bytes_per_cycle: 16.0 });
        let cfg = fusec::cost::hw::HwConfig { memory, ..fusec::cost::hw::HwConfig::new(p.rows, p.cols, p.kind, p.dataflow).unwrap() };
        let one = fusec::cost::sim::simulate_graph(&g, &cfg, fusec::cost::sim::Convention::FUSEC, 1, None).unwrap();
        assert_eq!((p.total_cycles, p.array_compute_cycles, p.stall_cycles, p.vector_cycles), (one.total_cycles, one.array_compute_cycles, one.array_stall_cycles, one.vector_cycles), "{p:?}");
    }
    // the Pareto front: no point is beaten in both PEs and cycles by another
    for p in points.iter().filter(|p| p.pareto) {
        assert!(!points.iter().any(|q| q.pes <= p.pes && q.total_cycles < p.total_cycles || q.pes < p.pes && q.total_cycles <= p.total_cycles), "{p:?}");
    }
}

/// A model's exported topology, read back and simulated as SCALE-Sim's input,
/// gives the array layers' cycles of the model simulated in SCALE-Sim's
/// conventions; SCALE-Sim's `.cfg` files are read as it reads them.
#[test]
fn topology_export_round_trip_and_scalesim_cfg() {
    let g = zoo_graph("mobilenet-v3-small");
    let csv = fusec::cost::sim::workload::write_topology(&g, fusec::cost::sim::Padding::ScaleSim, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    std::fs::write(&path, &csv).unwrap();
    let rows = fusec::cost::sim::workload::read_topology(&path).unwrap();
    let cfg = fusec::cost::hw::HwConfig::new(32, 32, fusec::cost::hw::HwKind::Systolic, Dataflow::Ws).unwrap();
    let from_csv = fusec::cost::sim::simulate_topology(&rows, &cfg);
    let from_model = fusec::cost::sim::simulate_graph(&g, &cfg, fusec::cost::sim::Convention::SCALESIM, 1, None).unwrap();
    // the topology holds the convolutions (fully connected layers have no SCALE-Sim form)
    let array: Vec<u64> = from_model.nodes.iter().filter(|n| matches!(n.work, fusec::cost::sim::Work::Array { conv: Some(_), .. })).map(|n| n.sim.compute_cycles).collect();
    let topo: Vec<u64> = from_csv.nodes.iter().map(|n| n.sim.compute_cycles).collect();
    assert!(rows.len() == 36 && rows.iter().filter(|r| r.depthwise).count() == 11, "{} rows", rows.len());
    assert_eq!(array, topo);
    // SCALE-Sim's configuration format
    let cfg_text = "[general]\nrun_name = x\n\n[architecture_presets]\nArrayHeight: 16\nArrayWidth: 8\nIfmapSramSzkB: 64\nFilterSramSzkB: 32\nOfmapSramSzkB: 16\nBandwidth: 10\nDataflow: is\n\n[run_presets]\nInterfaceBandwidth: USER\n";
    let c = fusec::cost::hw::config::from_scalesim_cfg(cfg_text).unwrap();
    assert_eq!((c.rows, c.cols, c.dataflow, c.kind), (16, 8, Dataflow::Is, fusec::cost::hw::HwKind::Systolic));
    assert_eq!(c.sram_words(), Some(([65536, 32768, 16384], 10.0)));
    let calc = fusec::cost::hw::config::from_scalesim_cfg(&cfg_text.replace("USER", "CALC")).unwrap();
    assert!(calc.memory.is_none(), "CALC sizes the interface to never stall: no limit");
    let err = fusec::cost::hw::config::from_scalesim_cfg(&cfg_text.replace("Dataflow: is", "Dataflow: xs")).unwrap_err();
    assert!(err.contains("xs"), "{err}");
    // a topology line that is not one
    std::fs::write(&path, "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\nc1, 8, 8, 3, x, 1, 1, 1,\n").unwrap();
    let err = fusec::cost::sim::workload::read_topology(&path).unwrap_err().to_string();
    assert!(err.contains("t.csv") && err.contains("line 2") && err.contains("'x'"), "{err}");
}

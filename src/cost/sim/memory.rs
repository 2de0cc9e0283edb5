//! On-chip buffers and DRAM: what each fold reads, what must come from
//! DRAM, and how long the array waits for it.
//!
//! The model, fold by fold (no trace is held: a layer costs O(folds)):
//!
//! - **Tiles.** Each fold consumes one tile of each operand, as the array
//!   reads it (SCALE-Sim's operand matrices: convolution windows are
//!   replicated, so overlapping windows are read again). OS: ifmap
//!   `rows × T`, filter `T × cols`, ofmap `rows × cols`; WS: filter
//!   `rows × cols` (stationary), ifmap `T × rows`, ofmap `T × cols`; IS:
//!   ifmap `rows × cols` (stationary), filter `T × rows`, ofmap `T × cols`.
//!   These are the SRAM reads and writes (`sram_reads`/`sram_writes`).
//! - **Reuse.** A tile depends on the row fold, the column fold, or both
//!   (OS: ifmap on the row fold, filter on the column fold). If an operand's
//!   distinct tiles all fit in its SRAM, each is fetched from DRAM once (the
//!   ifmap as its distinct elements, as SCALE-Sim's CALC mode counts them);
//!   otherwise a tile is fetched whenever the previous fold used another one
//!   (only back-to-back reuse survives), windows replicated as the array
//!   reads them (as SCALE-Sim's USER mode fetches its operand matrices).
//!   These are the DRAM reads.
//! - **Double buffering.** Each SRAM is split in two halves. While fold `i`
//!   computes, fold `i+1`'s tiles load into the other half at the buffer's
//!   DRAM bandwidth (each of the three buffers has its own interface, as in
//!   SCALE-Sim, serving its transfers one after another, each in whole cycles
//!   of `bandwidth` words). A tile larger than
//!   half the SRAM loads its first half-buffer ahead and streams the rest
//!   while its fold runs. Outputs go to the ofmap SRAM and drain to DRAM while
//!   the next folds compute; a fold waits for the ofmap half it writes to
//!   have drained.
//! - **Stalls.** Fold `i` starts when the previous fold has finished and
//!   every operand's tile is in (and the ofmap half it writes has drained);
//!   the wait beyond compute is its stall. The array waits for the slowest
//!   buffer (SCALE-Sim's `max(ifmap, filter, ofmap)` per cycle). The first
//!   fold's tiles load before the layer starts (they overlap the previous
//!   layer: `fill_cycles`, not stalls); the last fold's outputs drain after
//!   it (`drain_cycles`, overlapping the next layer).
//!
//! Differences from SCALE-Sim, on purpose: DRAM traffic is counted in words,
//! not in lines of `bandwidth` words (SCALE-Sim rounds every request up to a
//! whole line); a read-buffer stall is counted once (SCALE-Sim's read buffer
//! adds the potential stall twice, and subtracts it when negative); OS ofmap
//! SRAM writes count the outputs (SCALE-Sim adds `R + C` per fold); buffer
//! residency is decided per tile, not per address set.

use serde::Serialize;

use crate::cost::sim::compute::{fold_cycles, folds, Dataflow, Gemm};

/// Reads and writes of one buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub sram: u64,
    pub dram: u64,
}

/// Memory behaviour of one layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MemStats {
    pub ifmap: Traffic,
    pub filter: Traffic,
    pub ofmap: Traffic,
    /// Cycles the array waits for data inside the layer.
    pub stall_cycles: u64,
    /// Loading the first fold's tiles before the layer starts.
    pub fill_cycles: u64,
    /// Draining the last outputs after the layer ends.
    pub drain_cycles: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        self.sram += o.sram;
        self.dram += o.dram;
    }
}

impl MemStats {
    pub fn add(&mut self, o: &MemStats) {
        self.ifmap += o.ifmap;
        self.filter += o.filter;
        self.ofmap += o.ofmap;
        self.stall_cycles += o.stall_cycles;
        self.fill_cycles += o.fill_cycles;
        self.drain_cycles += o.drain_cycles;
    }
    /// `n` back-to-back copies of the same GEMM (a depthwise conv's channels).
    pub fn times(&self, n: u64) -> MemStats {
        let t = |x: Traffic| Traffic { sram: x.sram * n, dram: x.dram * n };
        MemStats {
            ifmap: t(self.ifmap),
            filter: t(self.filter),
            ofmap: t(self.ofmap),
            // later copies' first loads overlap the earlier copies' compute like any fold
            stall_cycles: self.stall_cycles * n,
            fill_cycles: self.fill_cycles,
            drain_cycles: self.drain_cycles,
        }
    }
}

/// The SRAMs (words each) and the DRAM interface (words per cycle, per buffer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Buffers {
    pub ifmap_words: u64,
    pub filter_words: u64,
    pub ofmap_words: u64,
    pub dram_words_per_cycle: f64,
}

/// What an operand tile depends on.
#[derive(Clone, Copy)]
enum Key {
    Row,
    Col,
    Both,
}

fn cycles_for(words: u64, bw: f64) -> u64 {
    if words == 0 { 0 } else { (words as f64 / bw).ceil() as u64 }
}

/// Simulate the memory side of one GEMM in a dataflow on an R×C array.
/// Returns the stats; the compute cycles are [`crate::cost::sim::compute::gemm`]'s.
/// `ifmap_unique`: the distinct ifmap elements (a convolution's windows
/// overlap); an ifmap that fits in its SRAM is fetched as those, once.
pub fn gemm(g: Gemm, df: Dataflow, rows: u64, cols: u64, buf: &Buffers, ifmap_unique: Option<u64>) -> MemStats {
    let map = g.mapping(df);
    let t = map.t;
    let bw = buf.dram_words_per_cycle.max(1e-9);
    // (ifmap, filter): what each tile depends on, and all distinct tiles together
    let (keys, totals) = match df {
        Dataflow::Os => ([Key::Row, Key::Col], [map.sr * t, t * map.sc]),
        Dataflow::Ws => ([Key::Row, Key::Both], [t * map.sr, map.sr * map.sc]),
        Dataflow::Is => ([Key::Both, Key::Row], [map.sr * map.sc, t * map.sr]),
    };
    let caps = [buf.ifmap_words, buf.filter_words];
    let fits_all = [totals[0] <= caps[0], totals[1] <= caps[1]];
    let fold_c = fold_cycles(df, rows, cols, t);
    let mut st = MemStats::default();
    let mut prev: [Option<(u64, u64)>; 2] = [None, None];
    let mut seen: [std::collections::HashSet<(u64, u64)>; 2] = Default::default();
    // when the previous fold started and ended; when each interface (ifmap,
    // filter, ofmap) has finished its queued transfers; when each ofmap half is free
    let (mut prev_start, mut clock) = (0u64, 0u64);
    let mut iface_free = [0u64; 3];
    let mut ofmap_free_at = [0u64; 2];
    let half_out = (buf.ofmap_words / 2).max(1);
    for (i, f) in folds(map, rows, cols).enumerate() {
        let (fr, fc) = (f.row0 / rows, f.col0 / cols);
        // [ifmap, filter, ofmap] words this fold reads or writes
        let tiles = match df {
            Dataflow::Os => [f.rows * t, t * f.cols, f.rows * f.cols],
            Dataflow::Ws => [t * f.rows, f.rows * f.cols, t * f.cols],
            Dataflow::Is => [f.rows * f.cols, t * f.rows, t * f.cols],
        };
        st.ifmap.sram += tiles[0];
        st.filter.sram += tiles[1];
        // DRAM words each read stream needs for this fold
        let mut need = [0u64; 2];
        for k in 0..2 {
            let id = match keys[k] {
                Key::Row => (fr, 0),
                Key::Col => (0, fc),
                Key::Both => (fr, fc),
            };
            let fetch = if fits_all[k] { seen[k].insert(id) } else { prev[k] != Some(id) };
            prev[k] = Some(id);
            if fetch {
                need[k] = tiles[k];
            }
        }
        st.ifmap.dram += need[0];
        st.filter.dram += need[1];
        // up to half the SRAM loads ahead, from when the previous fold started (or
        // before the layer, for the first fold) once the interface is free
        let mut ready = clock.max(ofmap_free_at[i % 2]);
        let mut ahead = [0u64; 2];
        for k in 0..2 {
            ahead[k] = need[k].min((caps[k] / 2).max(1));
            if need[k] == 0 {
                continue;
            }
            if i == 0 {
                st.fill_cycles = st.fill_cycles.max(cycles_for(ahead[k], bw));
            } else {
                let done = prev_start.max(iface_free[k]) + cycles_for(ahead[k], bw);
                iface_free[k] = done;
                ready = ready.max(done);
            }
        }
        let start = ready;
        // the rest streams in while the fold runs, which may hold the array
        let mut end = start + fold_c;
        for k in 0..2 {
            let rest = need[k] - ahead[k];
            if rest > 0 {
                let done = start.max(iface_free[k]) + cycles_for(rest, bw);
                iface_free[k] = done;
                end = end.max(done);
            }
        }
        // outputs drain while the next folds run; a tile larger than half the
        // SRAM drains as it is produced and holds the array if that is slower
        let out = tiles[2];
        st.ofmap.sram += out;
        st.ofmap.dram += out;
        let drain = cycles_for(out, bw);
        if out > half_out {
            let done = start.max(iface_free[2]) + drain;
            iface_free[2] = done;
            end = end.max(done);
            ofmap_free_at[i % 2] = end;
        } else {
            let done = end.max(iface_free[2]) + drain;
            iface_free[2] = done;
            ofmap_free_at[i % 2] = done;
        }
        st.stall_cycles += end - clock - fold_c;
        prev_start = start;
        clock = end;
    }
    st.drain_cycles = iface_free[2].saturating_sub(clock);
    if fits_all[0]
        && let Some(u) = ifmap_unique
    {
        // kept whole on chip: every element once, however many windows read it
        st.ifmap.dram = u.min(st.ifmap.dram);
    }
    st
}

/// Memory of a FuSe 1-D layer in the broadcast dataflow: every input row is
/// read once per width fold (ifmap), the `K` taps once per row fold
/// (filter, broadcast along the row), every output written once; loads
/// overlap compute as for a GEMM, with the whole layer's data spread evenly
/// over its cycles.
pub fn fuse1d(convs: u64, width: u64, taps: u64, outputs: u64, compute: u64, buf: &Buffers) -> MemStats {
    let bw = buf.dram_words_per_cycle.max(1e-9);
    let ifmap = convs * width;
    let filter = taps * convs;
    let ofmap = convs * outputs;
    let mut st = MemStats {
        ifmap: Traffic { sram: ifmap, dram: ifmap },
        filter: Traffic { sram: filter, dram: filter },
        ofmap: Traffic { sram: ofmap, dram: ofmap },
        ..Default::default()
    };
    // each stream has its own interface: the slowest one bounds the layer
    let slowest = [ifmap, filter, ofmap].into_iter().map(|w| cycles_for(w, bw)).max().unwrap_or(0);
    st.stall_cycles = slowest.saturating_sub(compute);
    st.fill_cycles = cycles_for((buf.ifmap_words / 2).min(ifmap), bw);
    st
}

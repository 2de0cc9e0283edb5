//! Compute on the array: how a layer maps onto R×C processing elements in
//! each dataflow, how it folds, and how many cycles each fold takes.
//!
//! # GEMM dataflows (SCALE-Sim's mapping, `scalesim/compute/systolic_compute_*.py`)
//!
//! A convolution is the product of the ifmap operand matrix (one row per
//! output pixel, `M = N·E·F` rows of `K = R·S·C` window elements) and the
//! filter matrix (`K` × `Nf` filters). Each dataflow keeps one operand in
//! the PEs and streams the others:
//!
//! | dataflow | array rows (`Sr`) | array columns (`Sc`) | streamed over time (`T`) |
//! |---|---|---|---|
//! | OS (output stationary) | output pixels `M` | filters `Nf` | window `K` |
//! | WS (weight stationary) | window `K` | filters `Nf` | output pixels `M` |
//! | IS (input stationary) | window `K` | output pixels `M` | filters `Nf` |
//!
//! The mapped matrix is cut into `ceil(Sr/R) · ceil(Sc/C)` folds, visited
//! column-fold outer, row-fold inner; each fold is drained before the next
//! starts. A fold takes, with every term counted by SCALE-Sim's demand
//! matrices:
//!
//! - OS: `T + R + C − 2` cycles. The operands enter skewed: row `r` of the
//!   ifmap starts `r` cycles late and column `c` of the filter `c` cycles
//!   late (fill: `R − 1` and `C − 1`), each PE accumulates for `T` cycles, and
//!   the outputs leave through the bottom edge (drain, overlapping the fill
//!   of the skew: `T − 1` prefix + `R` rows + `C − 1` skew in the ofmap
//!   demand).
//! - WS and IS: `2R + C + T − 2` cycles. The stationary operand is loaded
//!   first (`R` cycles, one array row per cycle), the streamed operand then
//!   enters skewed over `R − 1` cycles, flows for `T` cycles, and partial
//!   sums travel down the `R` rows and out across `C − 1` columns of skew.
//!
//! SCALE-Sim reports a layer's cycles as the index of its last cycle counted
//! from 0, that is the fold cycles summed minus one, plus stalls
//! (`compute_os`: `ceil(Sr/R)·ceil(Sc/C)·(T + R + C − 2) − 1`). fusec counts
//! elapsed cycles (the sum itself); `--scalesim-compat` subtracts the one, per
//! SCALE-Sim layer (a depthwise conv is one SCALE-Sim layer per channel).
//!
//! # Depthwise convolutions
//!
//! C independent single-channel GEMMs (`K = R·S`, one filter each), run back
//! to back, each with its own fill and drain: C times the cycles of one. No
//! expansion into C simulations: the C GEMMs have the same shape.
//!
//! # The FuSe 1-D broadcast dataflow (`--hw fuse`, 1×K and K×1 depthwise convs)
//!
//! The FuSeConv extension runs a 1-D convolution per array row. Row `i`
//! takes one input row of one channel (there are `N·H·C` of them for a 1×K
//! conv; a K×1 conv is the same with height and width swapped). Its `C` PEs
//! hold `C` consecutive outputs (output stationary). Each cycle one input
//! element enters at the row's left edge and is broadcast to every PE of the
//! row, together with the weight tap it meets at each PE (the `K` weights of
//! the channel sit in the row's weight register and are broadcast along the
//! row as well, so no PE-to-PE weight movement): PE `j` multiplies input `t`
//! by weight `t − j` when `0 ≤ t − j < K`. A fold (R rows × C outputs) streams
//! `C + K − 1` inputs and drains in one more cycle: `C + K` cycles. The input
//! width folds into `ceil(W/C)` folds and the rows into `ceil(N·H·C/R)`.
//! With stride `s` the paper's model (`FuSeCycles` in
//! `analyticalLatencyModel.py`) divides the row folds by `s`: each PE row
//! interleaves `s` input rows (a stride-`s` row needs a new output only every
//! `s` inputs), so a fold covers `s·R` convolutions; the fractional last fold
//! is charged in proportion and the total rounded up once.

use serde::Serialize;

pub use crate::cost::hw::Dataflow;

/// A GEMM as the array sees it: `m` output pixels × `k` window elements ×
/// `n` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Gemm {
    pub m: u64,
    pub k: u64,
    pub n: u64,
}

/// The GEMM in array terms for one dataflow: what spans the rows, the
/// columns, and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub sr: u64,
    pub sc: u64,
    pub t: u64,
}

impl Gemm {
    pub fn mapping(&self, df: Dataflow) -> Mapping {
        match df {
            Dataflow::Os => Mapping { sr: self.m, sc: self.n, t: self.k },
            Dataflow::Ws => Mapping { sr: self.k, sc: self.n, t: self.m },
            Dataflow::Is => Mapping { sr: self.k, sc: self.m, t: self.n },
        }
    }

    pub fn macs(&self) -> u64 {
        self.m.saturating_mul(self.k).saturating_mul(self.n)
    }
}

/// One fold: which slice of the mapped matrix it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fold {
    /// Array rows and columns in use.
    pub rows: u64,
    pub cols: u64,
    /// Position of the fold in the mapped matrix (row start, column start).
    pub row0: u64,
    pub col0: u64,
}

/// Compute-side numbers of one GEMM on an R×C array.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ComputeStats {
    pub folds: u64,
    /// Elapsed cycles without stalls (the sum over folds).
    pub cycles: u64,
    /// Mean over folds of the fraction of PEs mapped.
    pub mapping_efficiency: f64,
    /// MACs / (PEs × cycles).
    pub utilization: f64,
    pub macs: u64,
}

/// Cycles of one fold of `t` steps in a dataflow (see the module doc).
pub fn fold_cycles(df: Dataflow, rows: u64, cols: u64, t: u64) -> u64 {
    match df {
        Dataflow::Os => t + rows + cols - 2,
        Dataflow::Ws | Dataflow::Is => 2 * rows + cols + t - 2,
    }
}

/// The folds of a mapping in SCALE-Sim's order (column fold outer, row fold inner).
pub fn folds(map: Mapping, rows: u64, cols: u64) -> impl Iterator<Item = Fold> {
    let rf = map.sr.div_ceil(rows);
    let cf = map.sc.div_ceil(cols);
    (0..cf).flat_map(move |fc| {
        (0..rf).map(move |fr| {
            let (row0, col0) = (fr * rows, fc * cols);
            Fold { rows: rows.min(map.sr - row0), cols: cols.min(map.sc - col0), row0, col0 }
        })
    })
}

/// Compute cycles, folds, mapping efficiency and utilization of a GEMM on an
/// R×C array in a dataflow, without memory stalls. Closed form: every fold
/// takes the same cycles (the full array's skew is charged to partial folds
/// too, as SCALE-Sim does).
pub fn gemm(g: Gemm, df: Dataflow, rows: u64, cols: u64) -> ComputeStats {
    let map = g.mapping(df);
    let (rf, cf) = (map.sr.div_ceil(rows), map.sc.div_ceil(cols));
    let folds = rf.saturating_mul(cf);
    let cycles = folds.saturating_mul(fold_cycles(df, rows, cols, map.t));
    // mapping efficiency: used PEs per fold, averaged over folds (SCALE-Sim's definition)
    let used_rows = map.sr; // summed over the row folds of one column fold
    let used_cols = map.sc;
    let mapping_efficiency = if folds == 0 { 0.0 } else { (used_rows as f64 * used_cols as f64) / (folds as f64 * (rows * cols) as f64) };
    let macs = g.macs();
    let utilization = if cycles == 0 { 0.0 } else { macs as f64 / (cycles as f64 * (rows * cols) as f64) };
    ComputeStats { folds, cycles, mapping_efficiency, utilization, macs }
}

/// A 1-D depthwise convolution for the FuSe broadcast dataflow: `convs`
/// independent rows (N·H·C for 1×K), each over an input of `width` elements
/// (padded), `taps` weights, stride `stride` along the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Fuse1d {
    pub convs: u64,
    pub width: u64,
    pub taps: u64,
    pub stride: u64,
}

impl Fuse1d {
    pub fn outputs_per_conv(&self) -> u64 {
        self.width.saturating_sub(self.taps) / self.stride.max(1) + 1
    }
}

/// Cycles of a FuSe 1-D layer in the broadcast dataflow (see the module
/// doc): `ceil(row_folds / stride · (C + K) · width_folds)`, the paper's
/// `FuSeCycles` in exact rational arithmetic.
pub fn fuse1d(f: Fuse1d, rows: u64, cols: u64) -> ComputeStats {
    let row_folds = f.convs.div_ceil(rows);
    let width_folds = f.width.div_ceil(cols);
    let s = f.stride.max(1);
    let num = row_folds.saturating_mul(cols + f.taps).saturating_mul(width_folds);
    let cycles = num.div_ceil(s);
    let macs = f.convs.saturating_mul(f.outputs_per_conv()).saturating_mul(f.taps);
    let folds = row_folds.div_ceil(s).saturating_mul(width_folds);
    let used = f.convs as f64 * f.width.min(width_folds * cols) as f64;
    let mapping_efficiency = if folds == 0 { 0.0 } else { (used / s as f64) / (folds as f64 * (rows * cols) as f64) };
    let utilization = if cycles == 0 { 0.0 } else { macs as f64 / (cycles as f64 * (rows * cols) as f64) };
    ComputeStats { folds, cycles, mapping_efficiency: mapping_efficiency.min(1.0), utilization, macs }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 100×9×70 GEMM on an 8×8 array: OS maps m×n = 100×70 (13 × 9 folds of k = 9
    /// steps), WS k×n = 9×70 (2 × 9 folds of m = 100), IS k×m = 9×100 (2 × 13 of n = 70).
    #[test]
    fn folds_and_cycles_by_hand() {
        let g = Gemm { m: 100, k: 9, n: 70 };
        let os = gemm(g, Dataflow::Os, 8, 8);
        assert_eq!((os.folds, os.cycles), (13 * 9, 13 * 9 * (9 + 8 + 8 - 2)));
        let ws = gemm(g, Dataflow::Ws, 8, 8);
        assert_eq!((ws.folds, ws.cycles), (2 * 9, 2 * 9 * (2 * 8 + 8 + 100 - 2)));
        let is = gemm(g, Dataflow::Is, 8, 8);
        assert_eq!((is.folds, is.cycles), (2 * 13, 2 * 13 * (2 * 8 + 8 + 70 - 2)));
        assert_eq!(os.macs, 100 * 9 * 70);
        // mapping efficiency: 100×70 mapped PEs over 117 folds of 64
        assert!((os.mapping_efficiency - 7000.0 / (117.0 * 64.0)).abs() < 1e-12);
        // the folds cover the mapped matrix exactly once, column fold outer
        let f: Vec<Fold> = folds(g.mapping(Dataflow::Os), 8, 8).collect();
        assert_eq!(f.len(), 117);
        assert_eq!(f.iter().map(|x| x.rows * x.cols).sum::<u64>(), 7000);
        assert_eq!((f[1].row0, f[1].col0), (8, 0));
        assert_eq!((f[12].rows, f[12].cols), (4, 8));
    }
}

//! The FuSeConv paper's analytical latency model (`analyticalLatencyModel.py`),
//! reproduced operation for operation so that cycle counts match exactly.

/// Shape of one GEMM-mapped convolution as the reference describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDims {
    /// Padded input height and width (the reference adds 2·pad).
    pub ifmap_h: u64,
    pub ifmap_w: u64,
    pub filt_h: u64,
    pub filt_w: u64,
    pub channels: u64,
    pub stride_h: u64,
    pub stride_w: u64,
    pub filters: u64,
    pub batch: u64,
}

/// `gemmCycles`: the conv as an (M × RSC) · (RSC × NEF) product on an
/// output-stationary array of `rows × cols`, folded with remainders.
///
/// Arithmetic saturates instead of overflowing on absurd (hostile) shapes;
/// for any real layer it is exact.
pub fn gemm_cycles(rows: u64, cols: u64, d: &ConvDims) -> u64 {
    let m = |a: u64, b: u64| a.saturating_mul(b);
    let e = (d.ifmap_h.saturating_sub(d.filt_h) + d.stride_h) / d.stride_h;
    let f = (d.ifmap_w.saturating_sub(d.filt_w) + d.stride_w) / d.stride_w;
    let num_input = m(m(d.batch, e), f);
    let num_time = m(m(d.filt_h, d.filt_w), d.channels);
    let num_filter = d.filters;
    let span = |a: u64, b: u64| num_time.saturating_add(a).saturating_add(b) - 1;
    let mut cycles = m(m(num_input / rows, num_filter / cols), span(rows, cols));
    if num_input % rows > 0 {
        cycles = cycles.saturating_add(m(num_filter / cols, span(num_input % rows, cols)));
    }
    if !num_filter.is_multiple_of(cols) {
        cycles = cycles.saturating_add(m(num_input / rows, span(rows, num_filter % cols)));
    }
    if num_input % rows > 0 && !num_filter.is_multiple_of(cols) {
        cycles = cycles.saturating_add(span(num_input % rows, num_filter % cols));
    }
    cycles
}

/// `FuSeCycles`: a 1×K depthwise conv in the broadcast dataflow. Rows of the
/// array take the N·H·C 1-D convolutions, columns the output width. The
/// floating-point steps follow the reference (Python floats are f64).
pub fn fuse_cycles(rows: u64, cols: u64, d: &ConvDims) -> u64 {
    let num_1d = (d.batch * d.ifmap_h * d.channels) as f64;
    let folds_x = (num_1d / rows as f64).ceil();
    let folds_y = (d.ifmap_w as f64 / cols as f64).ceil();
    let one_fold = (cols + d.filt_w) as f64;
    ((folds_x / d.stride_w as f64) * (one_fold * folds_y)).ceil() as u64
}

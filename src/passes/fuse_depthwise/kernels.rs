//! The 1-D kernels of a converted layer: derived from the K×K kernel
//! (`center`, `sum`) or fitted on data (`lsq`, in [`crate::calibrate`]).

use ndarray::{s, ArrayD, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::passes::fuse_depthwise::{DepthwiseConv, Variant};

crate::choice_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Init {
        /// Centre row (1×K) and centre column (K×1) of the original kernel.
        Center = "center",
        /// Rows (1×K) or columns (K×1) of the original kernel summed.
        Sum = "sum",
        /// Least squares on calibration activations (needs `--calib DATA`).
        Lsq = "lsq",
    }
}

impl Default for Init {
    fn default() -> Self {
        Init::Center
    }
}


crate::choice_enum! {
    /// Which channels Half gives to which branch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Assign {
        /// The paper's: the first ⌈C/2⌉ channels to 1×K, the rest to K×1.
        Ordered = "ordered",
        /// Each channel to the branch that reproduces its K×K conv best (with
        /// `--init lsq`: the smaller fitted output error; otherwise: the larger
        /// kernel energy kept), still ⌈C/2⌉ / ⌊C/2⌋. The block gathers each
        /// branch's channels and puts the outputs back in the original order.
        Fit = "fit",
    }
}

impl Default for Assign {
    fn default() -> Self {
        Assign::Ordered
    }
}


/// The channels of each Half branch, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    pub row: Vec<usize>,
    pub col: Vec<usize>,
}

impl Channels {
    /// The paper's split: [0, ⌈C/2⌉) to 1×K, the rest to K×1.
    pub fn ordered(c: usize) -> Channels {
        let c1 = c.div_ceil(2);
        Channels { row: (0..c1).collect(), col: (c1..c).collect() }
    }

    /// ⌈C/2⌉ channels with the largest `row_gain` (how much better 1×K
    /// reproduces the channel than K×1) to 1×K, the rest to K×1; ties keep
    /// the channel order, so equal gains give [`Channels::ordered`].
    pub fn balanced(row_gain: &[f64]) -> Channels {
        let c = row_gain.len();
        let mut by_gain: Vec<usize> = (0..c).collect();
        by_gain.sort_by(|&a, &b| row_gain[b].partial_cmp(&row_gain[a]).unwrap_or(std::cmp::Ordering::Equal));
        let c1 = c.div_ceil(2);
        let (mut row, mut col) = (by_gain[..c1].to_vec(), by_gain[c1..].to_vec());
        row.sort_unstable();
        col.sort_unstable();
        Channels { row, col }
    }

    pub fn is_ordered(&self) -> bool {
        self.row.iter().enumerate().all(|(i, &c)| i == c) && self.col.iter().enumerate().all(|(i, &c)| i + self.row.len() == c)
    }

    /// `perm[i]`: where original channel i sits in the concatenation [row; col].
    pub fn inverse(&self) -> Vec<usize> {
        let mut inv = vec![0; self.row.len() + self.col.len()];
        for (j, &c) in self.row.iter().chain(&self.col).enumerate() {
            inv[c] = j;
        }
        inv
    }
}

/// Kernels for one converted layer: 1×K weights [C_row, 1, 1, kw] and K×1
/// weights [C_col, 1, kh, 1], with biases, and (Half) which channels each
/// branch takes.
#[derive(Debug, Clone)]
pub struct FuseKernels {
    pub row: ArrayD<f32>,
    pub col: ArrayD<f32>,
    pub row_bias: Option<ArrayD<f32>>,
    pub col_bias: Option<ArrayD<f32>>,
    /// Half: the channels of each branch (Full: every channel in both).
    pub channels: Channels,
}

/// Chooses the 1-D kernels of a layer. `center` and `sum` derive them from
/// the K×K weights alone; a data-driven initializer implements the same trait.
pub trait KernelInit {
    fn kernels(&self, dw: &DepthwiseConv, variant: Variant, assign: Assign) -> Result<FuseKernels>;
}

impl KernelInit for Init {
    fn kernels(&self, dw: &DepthwiseConv, variant: Variant, assign: Assign) -> Result<FuseKernels> {
        let w = &dw.weight; // [C, 1, kh, kw]
        let [ch, cw] = dw.centre;
        let row_all: ArrayD<f32> = match self {
            Init::Center => w.slice(s![.., .., ch..ch + 1, ..]).to_owned().into_dyn(),
            Init::Sum => w.sum_axis(Axis(2)).insert_axis(Axis(2)).into_dyn(),
            Init::Lsq => return Err(Error::option("--init", "lsq needs calibration data (--calib DATA)")),
        };
        let col_all: ArrayD<f32> = match self {
            Init::Center => w.slice(s![.., .., .., cw..cw + 1]).to_owned().into_dyn(),
            Init::Sum => w.sum_axis(Axis(3)).insert_axis(Axis(3)).into_dyn(),
            Init::Lsq => return Err(Error::option("--init", "lsq needs calibration data (--calib DATA)")),
        };
        let channels = match (variant, assign) {
            (Variant::Half, Assign::Fit) => {
                // energy of the K×K kernel each 1-D kernel keeps
                let energy = |k: &ArrayD<f32>, c: usize| k.index_axis(Axis(0), c).iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
                Channels::balanced(&(0..dw.channels).map(|c| energy(&row_all, c) - energy(&col_all, c)).collect::<Vec<_>>())
            }
            _ => Channels::ordered(dw.channels),
        };
        Ok(split_kernels(dw, variant, row_all, col_all, channels))
    }
}

/// Assign per-channel kernels computed for all C channels to the branches
/// (Half: `channels`; Full: every channel to both).
pub fn split_kernels(dw: &DepthwiseConv, variant: Variant, row_all: ArrayD<f32>, col_all: ArrayD<f32>, channels: Channels) -> FuseKernels {
    match variant {
        Variant::Full => FuseKernels { row: row_all, col: col_all, row_bias: dw.bias.clone(), col_bias: dw.bias.clone(), channels: Channels { row: (0..dw.channels).collect(), col: (0..dw.channels).collect() } },
        Variant::Half => FuseKernels {
            row: row_all.select(Axis(0), &channels.row),
            col: col_all.select(Axis(0), &channels.col),
            row_bias: dw.bias.as_ref().map(|b| b.select(Axis(0), &channels.row)),
            col_bias: dw.bias.as_ref().map(|b| b.select(Axis(0), &channels.col)),
            channels,
        },
    }
}


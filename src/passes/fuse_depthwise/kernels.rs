//! The 1-D kernels of a converted layer: derived from the K×K kernel
//! (`center`, `sum`) or fitted on data (`lsq`, in [`crate::calibrate`]).

use ndarray::{s, ArrayD, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::passes::fuse_depthwise::{DepthwiseConv, Variant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// Centre row (1×K) and centre column (K×1) of the original kernel.
    #[default]
    Center,
    /// Rows (1×K) or columns (K×1) of the original kernel summed.
    Sum,
    /// Least squares on calibration activations (needs `--calib DATA`).
    Lsq,
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Init::Center => "center",
            Init::Sum => "sum",
            Init::Lsq => "lsq",
        })
    }
}

/// Kernels for one converted layer: 1×K weights [C_row, 1, 1, kw] and K×1
/// weights [C_col, 1, kh, 1], with biases.
#[derive(Debug, Clone)]
pub struct FuseKernels {
    pub row: ArrayD<f32>,
    pub col: ArrayD<f32>,
    pub row_bias: Option<ArrayD<f32>>,
    pub col_bias: Option<ArrayD<f32>>,
}

/// Chooses the 1-D kernels of a layer. `center` and `sum` derive them from
/// the K×K weights alone; a data-driven initializer implements the same trait.
pub trait KernelInit {
    fn kernels(&self, dw: &DepthwiseConv, variant: Variant) -> Result<FuseKernels>;
}

impl KernelInit for Init {
    fn kernels(&self, dw: &DepthwiseConv, variant: Variant) -> Result<FuseKernels> {
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
        Ok(split_kernels(dw, variant, row_all, col_all))
    }
}

/// Assign per-channel kernels computed for all C channels to the branches.
pub fn split_kernels(dw: &DepthwiseConv, variant: Variant, row_all: ArrayD<f32>, col_all: ArrayD<f32>) -> FuseKernels {
    match variant {
        Variant::Full => FuseKernels { row: row_all, col: col_all, row_bias: dw.bias.clone(), col_bias: dw.bias.clone() },
        Variant::Half => {
            let c1 = dw.half_split();
            FuseKernels {
                row: row_all.slice_axis(Axis(0), (..c1).into()).to_owned(),
                col: col_all.slice_axis(Axis(0), (c1..).into()).to_owned(),
                row_bias: dw.bias.as_ref().map(|b| b.slice_axis(Axis(0), (..c1).into()).to_owned()),
                col_bias: dw.bias.as_ref().map(|b| b.slice_axis(Axis(0), (c1..).into()).to_owned()),
            }
        }
    }
}


//! Systolic-array hardware and the mapping of ONNX layers onto it.

pub mod analytical;
pub mod schedule;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which array: a plain output-stationary systolic array, or the same array
/// with the FuSeConv 1-D broadcast extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HwKind {
    Systolic,
    Fuse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayConfig {
    pub rows: u64,
    pub cols: u64,
    pub kind: HwKind,
    #[serde(default = "default_freq")]
    pub freq_mhz: f64,
}

fn default_freq() -> f64 {
    1000.0
}

/// Largest array side we accept (a 1M × 1M array is not hardware).
pub const MAX_SIDE: u64 = 1 << 16;

impl ArrayConfig {
    pub fn new(rows: u64, cols: u64, kind: HwKind, freq_mhz: f64) -> Result<Self> {
        if !(1..=MAX_SIDE).contains(&rows) || !(1..=MAX_SIDE).contains(&cols) {
            return Err(Error::option("--array", format!("{rows}x{cols}: each side must be between 1 and {MAX_SIDE}")));
        }
        if !(freq_mhz.is_finite() && freq_mhz > 0.0) {
            return Err(Error::option("--freq-mhz", format!("{freq_mhz} is not a positive frequency")));
        }
        Ok(ArrayConfig { rows, cols, kind, freq_mhz })
    }

    /// `64x64` style.
    pub fn parse_size(s: &str) -> Result<(u64, u64)> {
        let (r, c) = s.split_once(['x', 'X']).ok_or_else(|| Error::option("--array", format!("'{s}' is not ROWSxCOLS (e.g. 64x64)")))?;
        let p = |v: &str| v.trim().parse::<u64>().map_err(|_| Error::option("--array", format!("'{s}' is not ROWSxCOLS (e.g. 64x64)")));
        Ok((p(r)?, p(c)?))
    }

    /// Micro-seconds for a cycle count.
    pub fn micros(&self, cycles: u64) -> f64 {
        cycles as f64 / self.freq_mhz
    }
}

/// Named configurations: the paper's 64×64 array and the sizes around it.
pub const PRESETS: &[(&str, u64, HwKind)] = &[
    ("paper-64x64", 64, HwKind::Fuse),
    ("paper-16x16", 16, HwKind::Fuse),
    ("paper-32x32", 32, HwKind::Fuse),
    ("paper-128x128", 128, HwKind::Fuse),
    ("paper-256x256", 256, HwKind::Fuse),
];

impl ArrayConfig {
    /// A preset name or a TOML file (`rows`, `cols`, `kind`, `freq_mhz`).
    pub fn load(name_or_path: &str) -> Result<ArrayConfig> {
        if let Some((_, side, kind)) = PRESETS.iter().find(|(n, _, _)| *n == name_or_path) {
            return ArrayConfig::new(*side, *side, *kind, default_freq());
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && !name_or_path.ends_with(".toml") {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                Error::option("--hw-config", format!("'{name_or_path}' is neither a preset ({}) nor a file", names.join(", ")))
            } else {
                Error::io(name_or_path, e)
            }
        })?;
        let c: ArrayConfig = toml::from_str(&text).map_err(|e| Error::option("--hw-config", format!("{name_or_path}: {e}")))?;
        ArrayConfig::new(c.rows, c.cols, c.kind, c.freq_mhz)
    }
}

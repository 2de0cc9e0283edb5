//! The hardware, one description for both latency models: the array (size,
//! kind, dataflow), its double-buffered SRAMs and DRAM interface, the vector
//! unit beside it, and the clock. The analytical model reads the array and
//! the clock; the simulator reads everything. Validated once when built;
//! presets, TOML files, and SCALE-Sim `.cfg` files.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

crate::choice_enum! {
    /// Which array: a plain output-stationary systolic array, or the same array
    /// with the FuSeConv 1-D broadcast extension.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum HwKind {
        Systolic = "systolic",
        Fuse = "fuse",
    }
}

crate::choice_enum! {
    /// A dataflow of the systolic array.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Dataflow {
        /// Output stationary.
        Os = "os",
        /// Weight stationary.
        Ws = "ws",
        /// Input stationary.
        Is = "is",
    }
}



/// Element-wise work classes of the vector unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum VectorClass {
    /// ReLU, Clip, casts: one op per element.
    Activation,
    /// Sigmoid, HardSwish, GELU, exp, sqrt...: a few ops per element.
    Transcendental,
    /// BatchNormalization (or Layer/Instance normalization) left unfolded.
    Normalization,
    /// Add, Mul, Sub, Div... of two tensors.
    Elementwise,
    /// Pooling and reductions, per input element.
    Pool,
    /// Concat, Split, Slice, Pad, Transpose copies.
    Copy,
    /// Resize / Upsample, per output element.
    Resize,
    /// Softmax, per element.
    Softmax,
}

impl VectorClass {
    pub const ALL: [VectorClass; 8] = [
        VectorClass::Activation,
        VectorClass::Transcendental,
        VectorClass::Normalization,
        VectorClass::Elementwise,
        VectorClass::Pool,
        VectorClass::Copy,
        VectorClass::Resize,
        VectorClass::Softmax,
    ];
}

/// The vector unit: `lanes` elements per cycle at one cycle per element and
/// op; each class has its cycles per element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorUnit {
    pub lanes: u64,
    #[serde(default = "default_costs")]
    pub cycles_per_element: std::collections::BTreeMap<VectorClass, f64>,
}

fn default_costs() -> std::collections::BTreeMap<VectorClass, f64> {
    [
        (VectorClass::Activation, 1.0),
        (VectorClass::Transcendental, 4.0),
        (VectorClass::Normalization, 2.0),
        (VectorClass::Elementwise, 1.0),
        (VectorClass::Pool, 1.0),
        (VectorClass::Copy, 1.0),
        (VectorClass::Resize, 2.0),
        (VectorClass::Softmax, 6.0),
    ]
    .into_iter()
    .collect()
}

impl Default for VectorUnit {
    fn default() -> Self {
        VectorUnit { lanes: 64, cycles_per_element: default_costs() }
    }
}

impl VectorUnit {
    /// Cycles for `elements` of work of `class`.
    pub fn cycles(&self, class: VectorClass, elements: u64) -> u64 {
        let per = self.cycles_per_element.get(&class).copied().unwrap_or(1.0);
        ((elements as f64 * per) / self.lanes.max(1) as f64).ceil() as u64
    }
}

/// On-chip memory and the DRAM interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// SRAM sizes in KB (each double-buffered: half active, half filling/draining).
    pub ifmap_kb: f64,
    pub filter_kb: f64,
    pub ofmap_kb: f64,
    /// Bytes per element (with `word_bytes_from_types`: for layers whose operand type is unknown).
    #[serde(default = "one")]
    pub word_bytes: u64,
    /// Each layer's word size from its operands' element type (4 bytes for float32, 1 for
    /// int8/uint8 of a quantized model) instead of `word_bytes` (`--word-bytes types`).
    #[serde(default)]
    pub word_bytes_from_types: bool,
    /// DRAM bandwidth in bytes per cycle, for each of the three streams
    /// (SCALE-Sim gives each buffer its own interface).
    pub dram_bytes_per_cycle: f64,
}

fn one() -> u64 {
    1
}

/// Everything the latency models need to know about the hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwConfig {
    pub rows: u64,
    pub cols: u64,
    #[serde(default = "default_kind")]
    pub kind: HwKind,
    #[serde(default = "default_dataflow")]
    pub dataflow: Dataflow,
    /// None: unlimited SRAM and bandwidth (compute only, no stalls).
    #[serde(default)]
    pub memory: Option<Memory>,
    #[serde(default)]
    pub vector: VectorUnit,
    #[serde(default = "default_freq")]
    pub freq_mhz: f64,
}

fn default_kind() -> HwKind {
    HwKind::Fuse
}
fn default_dataflow() -> Dataflow {
    Dataflow::Os
}
fn default_freq() -> f64 {
    1000.0
}

/// Largest array side we accept (a 1M × 1M array is not hardware).
pub const MAX_SIDE: u64 = 1 << 16;

/// Named configurations (`--hw-config NAME`, `--config NAME`), for both latency models.
pub const PRESETS: &[&str] = &["paper-64x64", "paper-16x16", "paper-32x32", "paper-128x128", "paper-256x256", "edge-32x32", "scalesim-google"];

fn preset(name: &str) -> Option<Result<HwConfig>> {
    let mem = |kb: f64, bw: f64| Some(Memory { ifmap_kb: kb, filter_kb: kb, ofmap_kb: kb, word_bytes: 1, word_bytes_from_types: false, dram_bytes_per_cycle: bw });
    let c = match name {
        // the paper's array (and the sizes around it) with generous buffers
        "paper-64x64" | "paper-16x16" | "paper-32x32" | "paper-128x128" | "paper-256x256" => {
            let side = name["paper-".len()..].split('x').next()?.parse().ok()?;
            HwConfig::new(side, side, HwKind::Fuse, Dataflow::Os).map(|c| HwConfig { memory: mem(512.0, 64.0), ..c })
        }
        "edge-32x32" => HwConfig::new(32, 32, HwKind::Fuse, Dataflow::Os).map(|c| HwConfig { memory: mem(64.0, 8.0), vector: VectorUnit { lanes: 16, ..VectorUnit::default() }, ..c }),
        // SCALE-Sim's configs/google.cfg: a 128x128 weight-stationary TPU-like array, 6 MB of SRAM
        "scalesim-google" => HwConfig::new(128, 128, HwKind::Systolic, Dataflow::Ws).map(|c| HwConfig { memory: mem(6144.0, 10.0), ..c }),
        _ => return None,
    };
    Some(c.and_then(HwConfig::validated))
}

impl HwConfig {
    /// Check the values; every constructor ends here.
    pub fn validated(self) -> Result<HwConfig> {
        let side = 1..=MAX_SIDE;
        if !side.contains(&self.rows) || !side.contains(&self.cols) {
            return Err(Error::option("--array", format!("{}x{}: each side must be between 1 and {}", self.rows, self.cols, MAX_SIDE)));
        }
        if !(self.freq_mhz.is_finite() && self.freq_mhz > 0.0) {
            return Err(Error::option("--freq-mhz", format!("{} is not a positive frequency", self.freq_mhz)));
        }
        if self.vector.lanes == 0 || self.vector.cycles_per_element.values().any(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(Error::option("vector", "lanes must be at least 1 and cycles per element non-negative"));
        }
        if let Some(m) = &self.memory {
            for (what, v) in [("ifmap_kb", m.ifmap_kb), ("filter_kb", m.filter_kb), ("ofmap_kb", m.ofmap_kb), ("dram_bytes_per_cycle", m.dram_bytes_per_cycle)] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(Error::option("memory", format!("{what} must be positive, got {v}")));
                }
            }
            if m.word_bytes == 0 || m.word_bytes > 8 {
                return Err(Error::option("memory", format!("word_bytes must be 1 to 8, got {}", m.word_bytes)));
            }
        }
        Ok(self)
    }

    /// An output-stationary array with unlimited memory.
    pub fn array(rows: u64, cols: u64, kind: HwKind, freq_mhz: f64) -> Result<HwConfig> {
        HwConfig { freq_mhz, ..HwConfig::new(rows, cols, kind, Dataflow::Os)? }.validated()
    }

    /// The array with unlimited memory (compute only, no stalls) at 1 GHz.
    pub fn new(rows: u64, cols: u64, kind: HwKind, dataflow: Dataflow) -> Result<HwConfig> {
        HwConfig { rows, cols, kind, dataflow, memory: None, vector: VectorUnit::default(), freq_mhz: default_freq() }.validated()
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

    /// A preset, a TOML file, or a SCALE-Sim `.cfg` file.
    pub fn load(name_or_path: &str) -> Result<HwConfig> {
        if let Some(c) = preset(name_or_path) {
            return c;
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && !name_or_path.contains('.') {
                Error::option("--hw-config", format!("'{name_or_path}' is neither a preset ({}) nor a file", PRESETS.join(", ")))
            } else {
                Error::io(name_or_path, e)
            }
        })?;
        if name_or_path.ends_with(".cfg") {
            return from_scalesim_cfg(&text).map_err(|e| Error::option("--config", format!("{name_or_path}: {e}")));
        }
        let c: HwConfig = toml::from_str(&text).map_err(|e| Error::option("--hw-config", format!("{name_or_path}: {e}")))?;
        c.validated()
    }

    /// Memory words of each SRAM (ifmap, filter, ofmap), and the DRAM words
    /// per cycle.
    pub fn sram_words(&self) -> Option<([u64; 3], f64)> {
        self.memory.as_ref().map(|m| {
            let w = |kb: f64| ((kb * 1024.0) / m.word_bytes as f64).floor() as u64;
            ([w(m.ifmap_kb), w(m.filter_kb), w(m.ofmap_kb)], m.dram_bytes_per_cycle / m.word_bytes as f64)
        })
    }
}

/// A SCALE-Sim configuration file (`[architecture_presets]` ArrayHeight,
/// ArrayWidth, IfmapSramSzkB, FilterSramSzkB, OfmapSramSzkB, Dataflow;
/// `[run_presets]` InterfaceBandwidth USER with `Bandwidth` in words per
/// cycle, or CALC, which sizes the interface to never stall: no memory
/// limit here). SCALE-Sim uses one-byte words.
pub fn from_scalesim_cfg(text: &str) -> std::result::Result<HwConfig, String> {
    let mut section = String::new();
    let mut kv = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].trim().to_lowercase();
            continue;
        }
        if let Some((k, v)) = line.split_once([':', '=']) {
            kv.insert(format!("{section}.{}", k.trim().to_lowercase()), v.trim().to_string());
        }
    }
    let get = |k: &str| kv.get(k).cloned().ok_or_else(|| format!("missing {k}"));
    let num = |k: &str| -> std::result::Result<f64, String> { get(k)?.parse::<f64>().map_err(|_| format!("{k} is not a number")) };
    let rows = num("architecture_presets.arrayheight")? as u64;
    let cols = num("architecture_presets.arraywidth")? as u64;
    let dataflow = match get("architecture_presets.dataflow")?.to_lowercase().as_str() {
        "os" => Dataflow::Os,
        "ws" => Dataflow::Ws,
        "is" => Dataflow::Is,
        other => return Err(format!("unknown dataflow '{other}'")),
    };
    let user = kv.get("run_presets.interfacebandwidth").is_some_and(|v| v.eq_ignore_ascii_case("USER"));
    let memory = if user {
        let bw = get("architecture_presets.bandwidth")?.split(',').next().unwrap_or("").trim().parse::<f64>().map_err(|_| "Bandwidth is not a number".to_string())?;
        Some(Memory {
            ifmap_kb: num("architecture_presets.ifmapsramszkb")?,
            filter_kb: num("architecture_presets.filtersramszkb")?,
            ofmap_kb: num("architecture_presets.ofmapsramszkb")?,
            word_bytes: 1,
            word_bytes_from_types: false,
            dram_bytes_per_cycle: bw,
        })
    } else {
        None
    };
    HwConfig { rows, cols, kind: HwKind::Systolic, dataflow, memory, vector: VectorUnit::default(), freq_mhz: default_freq() }.validated().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_loads_for_both_engines() {
        for name in PRESETS {
            let c = HwConfig::load(name).unwrap();
            assert!(c.rows >= 16 && c.rows == c.cols, "{name}");
            assert!(c.memory.is_some(), "{name}: a preset has buffers");
        }
        assert_eq!(HwConfig::load("paper-128x128").unwrap().rows, 128);
        let g = HwConfig::load("scalesim-google").unwrap();
        assert_eq!((g.kind, g.dataflow), (HwKind::Systolic, Dataflow::Ws));
        let e = HwConfig::load("paper-7x7").unwrap_err().to_string();
        assert!(e.contains("--hw-config") && e.contains("edge-32x32"), "{e}");
    }

    #[test]
    fn scalesim_cfg_and_sizes() {
        let cfg = "[general]\nrun_name = x\n[architecture_presets]\nArrayHeight: 32\nArrayWidth: 16\nIfmapSramSzkB: 64\nFilterSramSzkB: 32\nOfmapSramSzkB: 16\nDataflow: is\nBandwidth: 10\n[run_presets]\nInterfaceBandwidth: USER\n";
        let c = from_scalesim_cfg(cfg).unwrap();
        assert_eq!((c.rows, c.cols, c.dataflow), (32, 16, Dataflow::Is));
        let m = c.memory.unwrap();
        assert_eq!((m.ifmap_kb, m.filter_kb, m.ofmap_kb, m.dram_bytes_per_cycle, m.word_bytes), (64.0, 32.0, 16.0, 10.0, 1));
        // CALC: an interface that never stalls, so no memory limit
        assert!(from_scalesim_cfg(&cfg.replace("USER", "CALC")).unwrap().memory.is_none());
        assert!(from_scalesim_cfg(&cfg.replace("Dataflow: is", "Dataflow: xs")).unwrap_err().contains("xs"));
        assert_eq!(HwConfig::parse_size("64x32").unwrap(), (64, 32));
        assert!(HwConfig::parse_size("64").is_err());
        assert!(HwConfig::array(0, 8, HwKind::Fuse, 1000.0).is_err());
        assert!(HwConfig::array(8, 8, HwKind::Fuse, 0.0).is_err());
    }
}

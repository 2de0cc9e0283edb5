//! `fusec report`: the array description shared by report, simulate and sweep.

use std::path::PathBuf;

use clap::Args;

use crate::convert::InputShape;
use super::*;

#[derive(Args, Debug)]
pub struct HwArgs {
    /// Array size ROWSxCOLS [default: 64x64].
    #[arg(long)]
    pub array: Option<String>,
    /// Hardware the model runs on [default: fuse]; a baseline always runs on `systolic`.
    #[arg(long, value_enum)]
    pub hw: Option<crate::hw::HwKind>,
    /// Clock for converting cycles to time [default: 1000].
    #[arg(long)]
    pub freq_mhz: Option<f64>,
    /// A preset (paper-64x64, paper-16x16, paper-32x32, paper-128x128, paper-256x256) or a
    /// TOML file with rows, cols, kind, freq_mhz; --array/--hw/--freq-mhz override it. With
    /// --engine sim: a simulator preset (paper-64x64, edge-32x32, scalesim-google) or file.
    #[arg(long)]
    pub hw_config: Option<String>,
}

impl HwArgs {
    pub fn config(&self) -> crate::Result<crate::hw::ArrayConfig> {
        use crate::hw::{ArrayConfig, HwKind};
        let base = match &self.hw_config {
            Some(c) => ArrayConfig::load(c)?,
            None => ArrayConfig::new(64, 64, HwKind::Fuse, 1000.0)?,
        };
        let (rows, cols) = match &self.array {
            Some(a) => ArrayConfig::parse_size(a)?,
            None => (base.rows, base.cols),
        };
        ArrayConfig::new(rows, cols, self.hw.unwrap_or(base.kind), self.freq_mhz.unwrap_or(base.freq_mhz))
    }
}

/// The simulator's hardware beyond the array (used with --engine sim, `simulate`, `sweep`).

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Model to cost.
    pub model: PathBuf,
    /// Original model, costed on plain systolic hardware, for the speedup.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    #[command(flatten)]
    pub hw: HwArgs,
    /// Batch size for a symbolic batch dimension.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Concrete input shape (`1x3x224x224` or `NAME=1x3x224x224`), for both models.
    #[arg(long)]
    pub input_shape: Option<InputShape>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Write the report to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub gates: GateArgs,
    /// The latency model: the paper's analytical one, or the cycle-level simulator.
    #[arg(long, value_enum, default_value_t = Engine::Analytical)]
    pub engine: Engine,
    #[command(flatten)]
    pub sim: SimArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Md,
    Json,
    Csv,
    Svg,
}


pub(super) fn cmd_report(a: ReportArgs) -> anyhow::Result<()> {
    if a.batch == 0 {
        anyhow::bail!("option --batch: must be at least 1");
    }
    if a.gates.min_speedup.is_some() && a.baseline.is_none() {
        anyhow::bail!("option --min-speedup: needs --baseline");
    }
    let g = load_for_report(&a.model, a.input_shape.as_ref())?;
    let base = match &a.baseline {
        Some(b) => Some(load_for_report(b, a.input_shape.as_ref())?),
        None => None,
    };
    let name = a.model.display().to_string();
    let bname = a.baseline.as_ref().map(|b| b.display().to_string()).unwrap_or_default();
    let report = match a.engine {
        // each engine reads --hw-config as its own description (the simulator's has memory)
        Engine::Analytical => crate::report::build(&name, &g, base.as_ref().map(|bg| (bname.as_str(), bg)), &a.hw.config()?, a.batch),
        Engine::Sim => {
            let cfg = a.sim.config(&a.hw)?;
            crate::report::build_sim(&name, &g, base.as_ref().map(|bg| (bname.as_str(), bg)), &cfg, a.sim.convention(), a.batch)
        }
    }
    .map_err(|e| e.in_file(&a.model))?;
    let text = match a.format {
        ReportFormat::Table => report.to_table(),
        ReportFormat::Md => report.to_markdown(),
        ReportFormat::Json => report.to_json()?,
        ReportFormat::Csv => report.to_csv()?,
        ReportFormat::Svg => report.to_svg()?,
    };
    emit(&text, a.output.as_deref())?;
    report.append_github_summary()?;
    if let Err(reason) = crate::report::check_gates(&report, a.gates.min_speedup, a.gates.max_cycles) {
        anyhow::bail!("gate failed: {reason}");
    }
    Ok(())
}


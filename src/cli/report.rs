//! `fusec report`: the array description shared by report, simulate and sweep.

use std::path::PathBuf;

use clap::Args;

use fusec::convert::InputShape;
use super::*;

#[derive(Args, Debug)]
pub struct HwArgs {
    /// Array size ROWSxCOLS [default: 64x64].
    #[arg(long)]
    pub array: Option<String>,
    /// Hardware the model runs on [default: fuse]; a baseline always runs on `systolic`.
    #[arg(long, value_parser = choice::<fusec::cost::hw::HwKind>())]
    pub hw: Option<fusec::cost::hw::HwKind>,
    /// Clock for converting cycles to time [default: 1000].
    #[arg(long)]
    pub freq_mhz: Option<f64>,
    /// A preset (paper-64x64, paper-16x16, paper-32x32, paper-128x128, paper-256x256,
    /// edge-32x32, scalesim-google), a TOML file (rows, cols, kind, freq_mhz; dataflow,
    /// memory, vector for the simulator) or a SCALE-Sim .cfg; --array/--hw/--freq-mhz override it.
    #[arg(long)]
    pub hw_config: Option<String>,
}

impl HwArgs {
    /// --hw-config (a preset, TOML or SCALE-Sim .cfg) or the paper's 64×64 FuSe
    /// array, with --array, --hw and --freq-mhz applied.
    pub fn config(&self) -> fusec::Result<fusec::cost::hw::HwConfig> {
        use fusec::cost::hw::{Dataflow, HwConfig, HwKind};
        let mut c = match &self.hw_config {
            Some(p) => HwConfig::load(p)?,
            None => HwConfig::new(64, 64, HwKind::Fuse, Dataflow::Os)?,
        };
        if let Some(a) = &self.array {
            (c.rows, c.cols) = HwConfig::parse_size(a)?;
        }
        if let Some(k) = self.hw {
            c.kind = k;
        }
        if let Some(f) = self.freq_mhz {
            c.freq_mhz = f;
        }
        c.validated()
    }
}

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
    // one hardware description; the analytical model reads its array and clock
    let cfg = a.sim.config(&a.hw)?;
    let report = match a.engine {
        Engine::Analytical => fusec::cost::report::build(&name, &g, base.as_ref().map(|bg| (bname.as_str(), bg)), &cfg, a.batch),
        Engine::Sim => fusec::cost::report::build_sim(&name, &g, base.as_ref().map(|bg| (bname.as_str(), bg)), &cfg, a.sim.convention(), a.batch),
    }
    .map_err(|e| e.in_file(&a.model))?;
    finish_report(&report, a.format, a.output.as_deref(), &a.gates)
}

/// Write a report in `format` (to `output` or standard output), append its Markdown to
/// `$GITHUB_STEP_SUMMARY` when that is set, and apply the gates.
pub(super) fn finish_report(report: &fusec::LatencyReport, format: ReportFormat, output: Option<&std::path::Path>, gates: &GateArgs) -> anyhow::Result<()> {
    let text = match format {
        ReportFormat::Table => report.to_table(),
        ReportFormat::Md => report.to_markdown(),
        ReportFormat::Json => report.to_json()?,
        ReportFormat::Csv => report.to_csv()?,
        ReportFormat::Svg => report.to_svg()?,
    };
    emit(&text, output)?;
    report.append_github_summary()?;
    if let Err(reason) = gates.gates().check(report.speedup, report.total_cycles) {
        anyhow::bail!("gate failed: {reason}");
    }
    Ok(())
}


//! What a model costs on a systolic array: one hardware description
//! ([`hw::HwConfig`], presets, TOML and SCALE-Sim `.cfg` files), two latency
//! models (the paper's analytical one in [`hw::analytical`] and
//! [`hw::schedule`]; the cycle-level simulator in [`sim`]), the latency
//! report both produce ([`report::LatencyReport`]: the simulator's stalls,
//! traffic per buffer and timeline ride along in its engine's reports) and
//! the CI gates on either ([`hw::Gates`]).
//!
//! Dependencies run one way: `report` → `sim` → `hw`.

pub mod hw;
pub mod report;
pub mod sim;

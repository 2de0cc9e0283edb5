//! CI gates on a latency result, the same for both latency models.

/// `--min-speedup` and `--max-cycles`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gates {
    /// Fail when the speedup over the baseline is below this.
    pub min_speedup: Option<f64>,
    /// Fail when the model takes more cycles than this.
    pub max_cycles: Option<u64>,
}

impl Gates {
    /// `Err(reason)` when a result misses a gate: its speedup over the baseline
    /// (None without one) and its total cycles.
    pub fn check(&self, speedup: Option<f64>, total_cycles: u64) -> std::result::Result<(), String> {
        if let Some(m) = self.min_speedup {
            match speedup {
                None => return Err("--min-speedup needs --baseline".into()),
                Some(s) if s < m => return Err(format!("speedup {s:.3}x is below --min-speedup {m}")),
                _ => {}
            }
        }
        if let Some(m) = self.max_cycles
            && total_cycles > m
        {
            return Err(format!("{total_cycles} cycles exceed --max-cycles {m}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Gates;

    #[test]
    fn each_gate_fails_alone_and_names_its_option() {
        let g = Gates { min_speedup: Some(2.0), max_cycles: Some(100) };
        assert_eq!(g.check(Some(2.0), 100), Ok(()));
        assert_eq!(g.check(Some(1.999), 100).unwrap_err(), "speedup 1.999x is below --min-speedup 2");
        assert_eq!(g.check(Some(3.0), 101).unwrap_err(), "101 cycles exceed --max-cycles 100");
        assert_eq!(g.check(None, 1).unwrap_err(), "--min-speedup needs --baseline");
        assert_eq!(Gates::default().check(None, u64::MAX), Ok(()));
    }
}

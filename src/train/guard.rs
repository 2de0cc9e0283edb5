//! The divergence guard: when the loss runs away (it becomes non-finite, or
//! its running average climbs above `ratio` × the lowest it has been), the
//! weights, optimizer moments, moving average and BN statistics go back to the
//! last epoch end where training was healthy, and the learning rate is halved
//! from there on. A state that runs away again before a single step has gone
//! well is not healthy after all: the next rollback goes one epoch end further
//! back. After [`MAX_ROLLBACKS`] rollbacks training stops with an error instead
//! of writing a broken model.

use super::checkpoint::State;
use crate::error::{Error, Result};

/// Rollbacks allowed before the run is given up (the learning rate is then 1/16 of the asked one).
pub const MAX_ROLLBACKS: usize = 4;

/// Weight of the newest step in the running average of the loss.
const SMOOTHING: f32 = 0.1;

/// Healthy epoch ends kept to go back to (besides the start).
const KEPT: usize = 3;

/// The lowest loss the bound is measured from: this share of the first step's loss,
/// and never less than [`FLOOR`].
const FLOOR_OF_FIRST: f32 = 1e-3;
/// A loss at or below this is at its floor: rounding noise, as for a student equal to
/// its teacher (the training loop makes no update on such a step).
pub const FLOOR: f32 = 1e-5;

/// One rollback, as the summary reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rollback {
    /// The step at which the divergence was seen.
    pub at_step: usize,
    /// The step training went back to.
    pub to_step: usize,
    /// The running average of the loss then, and the lowest it had been.
    pub loss: f32,
    pub lowest: f32,
    /// The learning rate's scale from then on.
    pub lr_scale: f32,
}

pub struct Guard {
    /// None: no rollbacks (a non-finite loss still stops the run).
    ratio: Option<f32>,
    smoothed: Option<f32>,
    lowest: f32,
    /// The least `lowest` counts as (see [`FLOOR_OF_FIRST`]).
    floor: f32,
    /// The state training started from (None when the guard is off: nothing to go back to),
    /// and the healthy epoch ends since, newest last.
    start: Option<Snapshot>,
    saved: Vec<Snapshot>,
    /// Steps whose loss was within the bound since the last rollback.
    good_steps: usize,
    pub rollbacks: Vec<Rollback>,
}

struct Snapshot {
    state: State,
    /// Points of the loss curve at that time.
    curve_len: usize,
}

impl Guard {
    /// A guard that can go back to `st`, the state training starts from (a copy is kept
    /// only when the guard is on).
    pub fn new(ratio: Option<f32>, st: &State) -> Guard {
        let start = ratio.map(|_| Snapshot { state: st.clone(), curve_len: 0 });
        Guard { ratio, smoothed: None, lowest: f32::INFINITY, floor: FLOOR, start, saved: vec![], good_steps: 0, rollbacks: vec![] }
    }

    /// Take one step's loss; true when training has diverged. Without a ratio only a
    /// non-finite loss counts (and is an error: see [`Guard::roll_back`]).
    pub fn diverged(&mut self, loss: f32) -> bool {
        if !loss.is_finite() {
            return true;
        }
        let s = self.smoothed.map_or(loss, |e| (1.0 - SMOOTHING) * e + SMOOTHING * loss);
        if self.lowest.is_infinite() {
            self.floor = (FLOOR_OF_FIRST * loss).max(FLOOR);
        }
        self.smoothed = Some(s);
        self.lowest = self.lowest.min(s);
        // a loss at its floor (a student equal to its teacher: 0) is not a runaway when
        // rounding lifts it: the bound is measured from the floor at least
        let diverged = self.ratio.is_some_and(|r| s > r * self.lowest.max(self.floor));
        if !diverged {
            self.good_steps += 1;
        }
        diverged
    }

    /// At an epoch end: remember the state if the running loss is within twice its lowest
    /// (or √ratio for ratios under 4): a run that has started to climb but not yet crossed
    /// the bound is not a state to come back to.
    pub fn epoch_end(&mut self, st: &State, curve_len: usize) {
        let healthy = match (self.ratio, self.smoothed) {
            (Some(r), Some(s)) => s <= r.sqrt().min(2.0) * self.lowest.max(self.floor),
            _ => false,
        };
        if healthy {
            if self.saved.len() == KEPT {
                self.saved.remove(0);
            }
            self.saved.push(Snapshot { state: st.clone(), curve_len });
        }
    }

    /// Go back to the last healthy state (`st` and `curve` are reset to it) with half the
    /// learning rate; an error when the guard is off or has rolled back too often.
    /// The learning-rate scale travels with the state (and its checkpoints).
    pub fn roll_back(&mut self, st: &mut State, curve: &mut Vec<super::CurvePoint>, loss: f32) -> Result<Rollback> {
        let at = st.step;
        let lowest = self.lowest;
        let (Some(ratio), Some(start)) = (self.ratio, &self.start) else {
            return Err(Error::Eval(format!("loss became {loss} at step {at}; lower --lr (or turn the divergence guard on: --divergence-ratio)")));
        };
        if self.rollbacks.len() >= MAX_ROLLBACKS {
            return Err(Error::Eval(format!(
                "the loss diverged again at step {at} (running average {:.4}, lowest {lowest:.4}, bound {ratio} × lowest) after {MAX_ROLLBACKS} rollbacks, the learning rate at {} of --lr; lower --lr or set --clip-grad",
                self.smoothed.unwrap_or(loss),
                st.lr_scale
            )));
        }
        // the state last gone back to ran away before one good step: drop it, go further back
        if !self.rollbacks.is_empty() && self.good_steps == 0 {
            self.saved.pop();
        }
        let lr_scale = st.lr_scale * 0.5;
        let back = self.saved.last().unwrap_or(start);
        *st = back.state.clone();
        st.lr_scale = lr_scale;
        curve.truncate(back.curve_len);
        self.good_steps = 0;
        let r = Rollback { at_step: at, to_step: st.step, loss: self.smoothed.unwrap_or(loss), lowest, lr_scale };
        // the running average starts again from the restored weights; the lowest stays
        self.smoothed = None;
        self.rollbacks.push(r.clone());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize, p: f32) -> State {
        State { params: vec![vec![p]], m: vec![vec![0.0]], v: vec![vec![0.0]], bn_mean: vec![], bn_var: vec![], avg: None, step, lr_scale: 1.0 }
    }

    #[test]
    fn a_running_loss_above_the_bound_rolls_back_to_the_last_healthy_epoch() {
        let mut g = Guard::new(Some(10.0), &state(0, 0.0));
        let mut curve = vec![];
        for _ in 0..20 {
            assert!(!g.diverged(1.0));
        }
        g.epoch_end(&state(20, 1.0), 3);
        // a single step 5× higher moves the average by 0.4: not a divergence
        assert!(!g.diverged(5.0));
        // the running average climbs past 10 × 1.0 at the second step at 50 (6.26, then 10.63)
        let n = (0..10).take_while(|_| !g.diverged(50.0)).count();
        assert_eq!(n, 1);
        let mut st = state(27, 9.0);
        curve.resize(5, super::super::CurvePoint { step: 0, epoch: 0.0, lr: 0.0, loss: 0.0, components: vec![], grad_norm: 0.0, eval: None });
        let r = g.roll_back(&mut st, &mut curve, 100.0).unwrap();
        assert_eq!((st.step, st.params[0][0], curve.len()), (20, 1.0, 3));
        assert_eq!((r.at_step, r.to_step, r.lr_scale, r.lowest), (27, 20, 0.5, 1.0));
        // a non-finite loss always counts
        assert!(g.diverged(f32::NAN));
    }

    #[test]
    fn a_climbing_epoch_end_is_not_saved_and_rollbacks_are_bounded() {
        let mut g = Guard::new(Some(10.0), &state(0, 0.0));
        g.diverged(1.0);
        g.diverged(6.0); // average 1.5
        g.diverged(30.0); // average 4.35 > 2 × 1: not healthy
        g.epoch_end(&state(3, 3.0), 1);
        let mut st = state(5, 5.0);
        let mut curve = vec![];
        g.roll_back(&mut st, &mut curve, f32::NAN).unwrap();
        assert_eq!((st.step, st.params[0][0]), (0, 0.0), "back to the start, not to the climbing epoch end");
        for _ in 1..MAX_ROLLBACKS {
            g.roll_back(&mut st, &mut curve, f32::NAN).unwrap();
        }
        assert_eq!(st.lr_scale, 1.0 / 16.0);
        assert!(!g.diverged(1.234_567_9));
        let err = g.roll_back(&mut st, &mut curve, 50.0).unwrap_err().to_string();
        assert!(err.contains("after 4 rollbacks") && err.contains("--lr"), "{err}");
        assert!(err.contains("running average 1.2346,"), "rounded: {err}");
    }

    #[test]
    fn a_state_that_runs_away_at_once_is_dropped_for_the_one_before() {
        let mut g = Guard::new(Some(10.0), &state(0, 0.0));
        let mut curve = vec![];
        for e in 1..=3 {
            for _ in 0..10 {
                assert!(!g.diverged(1.0));
            }
            g.epoch_end(&state(10 * e, e as f32), e);
        }
        assert!(g.diverged(f32::NAN));
        let mut st = state(33, 9.0);
        g.roll_back(&mut st, &mut curve, f32::NAN).unwrap();
        assert_eq!(st.step, 30, "first back to the newest epoch end");
        // from there the very first step runs away again: that epoch end was not healthy
        assert!(g.diverged(f32::INFINITY));
        g.roll_back(&mut st, &mut curve, f32::INFINITY).unwrap();
        assert_eq!((st.step, st.params[0][0], st.lr_scale), (20, 2.0, 0.25));
        // a good step, then a runaway: back to the same epoch end, not further
        assert!(!g.diverged(1.0));
        assert!(g.diverged(f32::NAN));
        g.roll_back(&mut st, &mut curve, f32::NAN).unwrap();
        assert_eq!((st.step, st.lr_scale), (20, 0.125));
        // only KEPT epoch ends are kept: the oldest (10) went when the fourth would come
        let mut g = Guard::new(Some(10.0), &state(0, 0.0));
        for e in 1..=4 {
            g.diverged(1.0);
            g.epoch_end(&state(10 * e, e as f32), e);
        }
        assert_eq!(g.saved.iter().map(|s| s.state.step).collect::<Vec<_>>(), [20, 30, 40]);
    }

    #[test]
    fn a_loss_at_its_floor_is_not_a_runaway() {
        // a student equal to its teacher: loss 0, then rounding noise
        let mut g = Guard::new(Some(10.0), &state(0, 0.0));
        assert!(!g.diverged(0.0));
        for noise in [1e-8, 3e-7, 0.0, 5e-7, 1e-6] {
            assert!(!g.diverged(noise), "{noise} after a loss of 0");
        }
        g.epoch_end(&state(6, 0.0), 6);
        assert_eq!(g.saved.len(), 1, "an epoch end at the floor is healthy");
        // a real runaway from 0 still counts
        assert!((0..20).any(|_| g.diverged(1.0)));
        // from a positive start the floor is a thousandth of the first loss
        let mut g = Guard::new(Some(10.0), &state(0, 0.0));
        assert!(!g.diverged(2.0));
        for _ in 0..200 {
            g.diverged(1e-5);
        }
        assert!(!g.diverged(1e-3), "1e-3 is under 10 × (2.0 / 1000)");
        assert!((0..50).any(|_| g.diverged(0.05)), "0.05 is over 10 × 0.002");
    }

    #[test]
    fn without_a_ratio_only_a_non_finite_loss_stops_the_run() {
        let mut g = Guard::new(None, &state(0, 0.0));
        assert!(g.start.is_none(), "no copy of the state when the guard is off");
        assert!(!g.diverged(1.0) && !g.diverged(1e6));
        assert!(g.diverged(f32::INFINITY));
        let err = g.roll_back(&mut state(4, 0.0), &mut vec![], f32::INFINITY).unwrap_err().to_string();
        assert!(err.contains("loss became inf at step 4"), "{err}");
    }
}

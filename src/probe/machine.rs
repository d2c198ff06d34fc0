//! The per-target health state machine: consecutive results against thresholds. Pure: the
//! caller passes each result with the instant its probe started, so tests need no clock.

use std::time::Instant;

/// What the health checks say about a target: the controller's probes, and an agent's word
/// for a node in its peer view (where it is serialized by variant name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Health {
    /// Not enough results yet to call it either way.
    Unknown,
    /// `success_threshold` consecutive probes passed.
    Up,
    /// `failure_threshold` consecutive probes failed.
    Down,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A change of health, as [`Machine::record`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub from: Health,
    pub to: Health,
    /// For a change to Down: when the first probe of the failing run started.
    pub first_failure_at: Option<Instant>,
}

/// Consecutive-result counting for one target.
#[derive(Debug, Clone)]
pub struct Machine {
    health: Health,
    passes: u32,
    failures: u32,
    /// Start of the first failed probe since the last pass.
    run_started: Option<Instant>,
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

impl Machine {
    pub fn new() -> Self {
        Self {
            health: Health::Unknown,
            passes: 0,
            failures: 0,
            run_started: None,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// The latest result has not settled the health yet: it failed while the target is not
    /// Down, or passed while it is not Up (so also any result while Unknown). Another probe
    /// then settles it sooner than waiting an interval.
    pub fn undecided(&self) -> bool {
        (self.failures > 0 && self.health != Health::Down)
            || (self.passes > 0 && self.health != Health::Up)
    }

    /// The latest probe failed and the one before it did not: a run of failures just began.
    pub fn first_failure(&self) -> bool {
        self.failures == 1
    }

    /// When the current run of failed probes began, if the latest probe failed (the target
    /// may still be Up: fewer failures than the threshold).
    pub fn failing_since(&self) -> Option<Instant> {
        self.run_started
    }

    /// Feeds one probe result. The thresholds are passed per call so a changed spec applies
    /// from the next result on; a threshold of 0 counts as 1.
    pub fn record(
        &mut self,
        passed: bool,
        started: Instant,
        failure_threshold: u32,
        success_threshold: u32,
    ) -> Option<Step> {
        let from = self.health;
        if passed {
            self.failures = 0;
            self.run_started = None;
            self.passes = self.passes.saturating_add(1);
            if from != Health::Up && self.passes >= success_threshold.max(1) {
                self.health = Health::Up;
                return Some(Step {
                    from,
                    to: Health::Up,
                    first_failure_at: None,
                });
            }
        } else {
            self.passes = 0;
            if self.failures == 0 {
                self.run_started = Some(started);
            }
            self.failures = self.failures.saturating_add(1);
            if from != Health::Down && self.failures >= failure_threshold.max(1) {
                self.health = Health::Down;
                return Some(Step {
                    from,
                    to: Health::Down,
                    first_failure_at: self.run_started,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Feeds `results` ('P' pass, 'F' fail), probe i starting at t0 + i seconds, and returns
    /// (index, step) for every change.
    fn feed(
        m: &mut Machine,
        results: &str,
        fail: u32,
        succ: u32,
        t0: Instant,
    ) -> Vec<(usize, Step)> {
        results
            .chars()
            .enumerate()
            .filter_map(|(i, c)| {
                let at = t0 + Duration::from_secs(i as u64);
                m.record(c == 'P', at, fail, succ).map(|s| (i, s))
            })
            .collect()
    }

    #[test]
    fn starts_unknown_and_goes_up_at_the_success_threshold() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        assert_eq!(m.health(), Health::Unknown);
        let steps = feed(&mut m, "PPPPP", 3, 2, t0);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].0, 1, "second pass crosses success_threshold 2");
        assert_eq!(
            steps[0].1,
            Step {
                from: Health::Unknown,
                to: Health::Up,
                first_failure_at: None
            }
        );
        assert_eq!(m.health(), Health::Up);
    }

    #[test]
    fn unknown_goes_down_at_the_failure_threshold_with_the_run_start() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        let steps = feed(&mut m, "FFFF", 3, 2, t0);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].0, 2);
        assert_eq!(steps[0].1.from, Health::Unknown);
        assert_eq!(steps[0].1.to, Health::Down);
        assert_eq!(steps[0].1.first_failure_at, Some(t0));
    }

    #[test]
    fn exact_transition_points_up_down_up() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        //            0123456789
        let input = "PPFFPFFFPP";
        let steps = feed(&mut m, input, 3, 2, t0);
        let points: Vec<(usize, Health, Health)> =
            steps.iter().map(|(i, s)| (*i, s.from, s.to)).collect();
        assert_eq!(
            points,
            vec![
                (1, Health::Unknown, Health::Up),
                (7, Health::Up, Health::Down),
                (9, Health::Down, Health::Up),
            ]
        );
        // The pass at 4 broke the first run; the run that led to Down began at 5.
        assert_eq!(
            steps[1].1.first_failure_at,
            Some(t0 + Duration::from_secs(5))
        );
    }

    #[test]
    fn alternating_results_never_transition_with_thresholds_above_one() {
        let t0 = Instant::now();
        let flaps = "PF".repeat(50);
        for start in [Health::Unknown, Health::Up, Health::Down] {
            let mut m = Machine::new();
            match start {
                Health::Up => assert!(m.record(true, t0, 2, 1).is_some()),
                Health::Down => assert!(m.record(false, t0, 1, 2).is_some()),
                Health::Unknown => {}
            }
            assert_eq!(m.health(), start);
            let steps = feed(&mut m, &flaps, 2, 2, t0);
            assert!(steps.is_empty(), "from {start}: {steps:?}");
            assert_eq!(m.health(), start);
        }
    }

    #[test]
    fn flapping_with_short_runs_stays_up_below_the_failure_threshold() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        feed(&mut m, "PP", 3, 2, t0);
        // Runs of two failures never reach three.
        let steps = feed(&mut m, &"FFP".repeat(30), 3, 2, t0);
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(m.health(), Health::Up);
        // A third failure in a row does.
        let steps = feed(&mut m, "FFF", 3, 2, t0);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].0, 2);
    }

    #[test]
    fn thresholds_of_one_follow_every_result() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        let steps = feed(&mut m, "PFPF", 1, 1, t0);
        let tos: Vec<Health> = steps.iter().map(|(_, s)| s.to).collect();
        assert_eq!(
            tos,
            vec![Health::Up, Health::Down, Health::Up, Health::Down]
        );
    }

    #[test]
    fn a_result_is_undecided_until_the_threshold_settles_it() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        assert!(!m.undecided(), "nothing probed yet");
        m.record(true, t0, 3, 2);
        assert!(m.undecided(), "one pass of two while Unknown");
        m.record(true, t0, 3, 2);
        assert!(!m.undecided(), "Up");
        m.record(false, t0, 3, 2);
        assert!(
            m.undecided() && m.first_failure(),
            "Up with a first failure"
        );
        m.record(false, t0, 3, 2);
        assert!(m.undecided() && !m.first_failure());
        m.record(false, t0, 3, 2);
        assert!(!m.undecided(), "Down");
        m.record(false, t0, 3, 2);
        assert!(!m.undecided(), "still Down");
        m.record(true, t0, 3, 2);
        assert!(m.undecided(), "Down with a pass: recovering");
    }

    #[test]
    fn zero_thresholds_count_as_one() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        assert_eq!(m.record(true, t0, 0, 0).map(|s| s.to), Some(Health::Up));
        assert_eq!(m.record(false, t0, 0, 0).map(|s| s.to), Some(Health::Down));
    }

    #[test]
    fn a_raised_threshold_applies_from_the_next_result() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        feed(&mut m, "PP", 2, 2, t0);
        assert!(m.record(false, t0, 2, 2).is_none());
        // Threshold raised to 4: the second failure no longer trips it.
        assert!(m.record(false, t0, 4, 2).is_none());
        assert!(m.record(false, t0, 4, 2).is_none());
        assert_eq!(m.record(false, t0, 4, 2).map(|s| s.to), Some(Health::Down));
    }
}

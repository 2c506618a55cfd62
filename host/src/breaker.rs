//! A style's circuit breaker. After `failures` consecutive generations that the sandbox had to
//! stop (timeouts, traps, memory or stack limits, bad output), the style gets no work for
//! `open_secs`; then a single trial generation is let through, and its outcome closes the
//! breaker (the style serves again) or opens it for another period.

use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// How long to wait while another request is the trial of a half-open breaker.
const TRIAL_RETRY: Duration = Duration::from_secs(1);

/// What one generation says about its style's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The style did its work.
    Healthy,
    /// The sandbox stopped the style (timeout, trap, memory or stack limit, bad output).
    Faulty,
    /// Nothing about the style (a bad photo, refused options, a cancellation).
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Work flows; counting consecutive faults.
    Closed { faults: u32 },
    /// No work until then.
    Open { until: Instant },
    /// One trial generation decides; `running` while it is in flight.
    Trial { running: bool },
}

/// The breaker of one style.
#[derive(Debug)]
pub struct Breaker {
    state: State,
    config: BreakerConfig,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: &BreakerConfig) -> Breaker {
        Breaker {
            state: State::Closed { faults: 0 },
            config: config.clone(),
        }
    }

    /// Whether work may go to the style at `now`: `Ok(true)` when this admission is the trial
    /// of a half-open breaker (only when `reserve`, which then must be reported or released),
    /// `Err(retry_after)` while the breaker keeps work away.
    pub fn admit(&mut self, now: Instant, reserve: bool) -> Result<bool, Duration> {
        if let State::Open { until } = self.state {
            if now < until {
                return Err(until - now);
            }
            self.state = State::Trial { running: false };
        }
        match self.state {
            State::Closed { .. } => Ok(false),
            State::Trial { running: true } => Err(TRIAL_RETRY),
            State::Trial { running: false } => {
                if reserve {
                    self.state = State::Trial { running: true };
                }
                Ok(reserve)
            }
            State::Open { .. } => unreachable!("an open breaker was handled above"),
        }
    }

    /// Records the outcome of a generation (`trial` if it was admitted as the trial). Returns
    /// whether this opened the breaker.
    pub fn report(&mut self, trial: bool, verdict: Verdict, now: Instant) -> bool {
        let open = State::Open {
            until: now + self.config.open_for(),
        };
        match (self.state, verdict) {
            (State::Trial { .. }, Verdict::Neutral) if trial => {
                self.state = State::Trial { running: false };
                false
            }
            (State::Trial { .. }, Verdict::Healthy) if trial => {
                self.state = State::Closed { faults: 0 };
                false
            }
            (State::Trial { .. }, Verdict::Faulty) if trial => {
                self.state = open;
                true
            }
            (State::Closed { .. }, Verdict::Healthy) => {
                self.state = State::Closed { faults: 0 };
                false
            }
            (State::Closed { faults }, Verdict::Faulty) => {
                let faults = faults + 1;
                let opens = faults >= self.config.failures;
                self.state = if opens {
                    open
                } else {
                    State::Closed { faults }
                };
                opens
            }
            // Outcomes of work admitted before the breaker opened do not decide anything.
            _ => false,
        }
    }

    /// Gives back a trial that ended without an outcome (dropped before it ran).
    pub fn release_trial(&mut self) {
        if self.state == (State::Trial { running: true }) {
            self.state = State::Trial { running: false };
        }
    }

    /// Whether the breaker keeps work away (open, or half-open awaiting its trial).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(&BreakerConfig {
            failures: 3,
            open_secs: 10,
        })
    }

    #[test]
    fn opens_after_consecutive_faults_and_a_success_resets_the_count() {
        let mut breaker = breaker();
        let now = Instant::now();
        assert!(!breaker.report(false, Verdict::Faulty, now));
        assert!(!breaker.report(false, Verdict::Faulty, now));
        assert!(!breaker.report(false, Verdict::Healthy, now));
        assert!(!breaker.report(false, Verdict::Neutral, now));
        assert!(!breaker.report(false, Verdict::Faulty, now));
        assert!(!breaker.report(false, Verdict::Faulty, now));
        assert_eq!(breaker.admit(now, true), Ok(false));
        assert!(breaker.report(false, Verdict::Faulty, now));
        assert!(breaker.is_open());
        assert_eq!(breaker.admit(now, false), Err(Duration::from_secs(10)));
        // Late outcomes of work admitted before it opened change nothing.
        assert!(!breaker.report(false, Verdict::Healthy, now));
        assert!(breaker.admit(now + Duration::from_secs(9), true).is_err());
    }

    #[test]
    fn after_the_open_period_one_trial_decides() {
        let mut breaker = breaker();
        let now = Instant::now();
        for _ in 0..3 {
            breaker.report(false, Verdict::Faulty, now);
        }
        let later = now + Duration::from_secs(10);
        // A check that reserves nothing passes; the first reserving admission is the trial.
        assert_eq!(breaker.admit(later, false), Ok(false));
        assert_eq!(breaker.admit(later, true), Ok(true));
        assert_eq!(breaker.admit(later, true), Err(TRIAL_RETRY));
        // A trial dropped without an outcome lets the next one through.
        breaker.release_trial();
        assert_eq!(breaker.admit(later, true), Ok(true));
        assert!(breaker.report(true, Verdict::Faulty, later));
        assert!(breaker.admit(later, true).is_err());

        let again = later + Duration::from_secs(10);
        assert_eq!(breaker.admit(again, true), Ok(true));
        assert!(!breaker.report(true, Verdict::Healthy, again));
        assert!(!breaker.is_open());
        assert_eq!(breaker.admit(again, true), Ok(false));
    }
}

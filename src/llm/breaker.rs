//! A circuit breaker per upstream: after `failures` consecutive failures it opens and the
//! upstream is skipped (a dead provider costs no latency); after `cooldown` one request
//! is let through as a probe, and its outcome closes or reopens the circuit.
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit (0: never opens).
    pub failures: u32,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else skips the upstream until it reports.
    Probing,
}

/// What a caller may do with the upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// The circuit was open and cooled down: this request is the probe.
    Probe,
    Skip,
}

pub struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Breaker { policy, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => Admission::Go,
            State::Open { until } if now >= until => {
                *state = State::Probing;
                Admission::Probe
            }
            State::Open { .. } | State::Probing => Admission::Skip,
        }
    }

    pub fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Closed { failures: 0 };
    }

    /// Records a failure (`probe`: of the request admitted as the probe); true when this
    /// one opened the circuit.
    pub fn failed(&self, now: Instant, probe: bool) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let open = State::Open { until: now + self.policy.cooldown };
        match *state {
            State::Closed { failures } => {
                let failures = failures + 1;
                if self.policy.failures > 0 && failures >= self.policy.failures {
                    *state = open;
                    true
                } else {
                    *state = State::Closed { failures };
                    false
                }
            }
            State::Probing if probe => {
                *state = open;
                true
            }
            // A request admitted before the circuit opened reports late: the probe decides.
            State::Probing => false,
            // A request admitted before the circuit opened reports late: it stays open.
            State::Open { .. } => false,
        }
    }

    /// A probe that ended without a verdict (the caller gave up): let the next one try.
    pub fn probe_abandoned(&self, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *state == State::Probing {
            *state = State::Open { until: now };
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock().unwrap_or_else(|e| e.into_inner()), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Admit(u64, Admission),
        Fail(u64, bool),
        /// A failure reported by a request that was not the probe.
        LateFail(u64),
        Succeed,
        Abandon(u64),
    }

    #[test]
    fn the_circuit_opens_after_consecutive_failures_and_a_probe_decides_when_it_closes() {
        use Admission::*;
        use Step::*;
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "closed lets everything through",
                vec![Admit(0, Go), Fail(0, false), Admit(0, Go), Fail(0, false), Admit(0, Go)],
            ),
            ("three failures in a row open it", vec![Fail(0, false), Fail(0, false), Fail(0, true), Admit(1, Skip)]),
            (
                "a success in between starts the count again",
                vec![Fail(0, false), Fail(0, false), Succeed, Fail(0, false), Fail(0, false), Admit(0, Go)],
            ),
            (
                "after the cool-down one probe goes, the rest skip",
                vec![
                    Fail(0, false),
                    Fail(0, false),
                    Fail(0, true),
                    Admit(9, Skip),
                    Admit(10, Probe),
                    Admit(10, Skip),
                    Admit(50, Skip),
                ],
            ),
            (
                "a successful probe closes it",
                vec![
                    Fail(0, false),
                    Fail(0, false),
                    Fail(0, true),
                    Admit(10, Probe),
                    Succeed,
                    Admit(10, Go),
                    Fail(10, false),
                    Admit(10, Go),
                ],
            ),
            (
                "a failed probe reopens it for another cool-down",
                vec![
                    Fail(0, false),
                    Fail(0, false),
                    Fail(0, true),
                    Admit(10, Probe),
                    Fail(12, true),
                    Admit(21, Skip),
                    Admit(22, Probe),
                ],
            ),
            (
                "a late failure while open changes nothing",
                vec![Fail(0, false), Fail(0, false), Fail(0, true), Fail(5, false), Admit(10, Probe)],
            ),
            (
                "a late failure while the probe is out does not reopen it",
                vec![
                    Fail(0, false),
                    Fail(0, false),
                    Fail(0, true),
                    Admit(10, Probe),
                    LateFail(11),
                    Admit(11, Skip),
                    Succeed,
                    Admit(11, Go),
                ],
            ),
            (
                "an abandoned probe lets the next request probe",
                vec![Fail(0, false), Fail(0, false), Fail(0, true), Admit(10, Probe), Abandon(11), Admit(11, Probe)],
            ),
        ];
        for (label, steps) in cases {
            let start = Instant::now();
            let at = |secs: u64| start + Duration::from_secs(secs);
            let breaker = Breaker::new(BreakerPolicy { failures: 3, cooldown: Duration::from_secs(10) });
            for (i, step) in steps.iter().enumerate() {
                match *step {
                    Admit(t, expected) => assert_eq!(breaker.admit(at(t)), expected, "{label}: step {i}"),
                    Fail(t, opened) => assert_eq!(breaker.failed(at(t), true), opened, "{label}: step {i}"),
                    LateFail(t) => assert!(!breaker.failed(at(t), false), "{label}: step {i}"),
                    Succeed => breaker.succeeded(),
                    Abandon(t) => breaker.probe_abandoned(at(t)),
                }
            }
        }
    }

    #[test]
    fn a_zero_failure_threshold_never_opens_the_circuit() {
        let breaker = Breaker::new(BreakerPolicy { failures: 0, cooldown: Duration::from_secs(10) });
        let now = Instant::now();
        for _ in 0..100 {
            assert!(!breaker.failed(now, false));
        }
        assert_eq!(breaker.admit(now), Admission::Go);
    }
}

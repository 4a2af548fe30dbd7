//! Continuous use, measured by the server across every transport: activity with gaps
//! shorter than the pause is one session; a session longer than the limit earns one
//! reminder.
use chrono::{DateTime, Utc};

use crate::domain::Activity;

/// The session after activity at `at`: the same one continued, or a new one after a pause.
pub fn next_activity(previous: Option<Activity>, at: DateTime<Utc>, pause: chrono::Duration) -> Activity {
    match previous {
        Some(p) if at >= p.last && at - p.last < pause => Activity { last: at, ..p },
        Some(p) if at < p.last => p,
        _ => Activity { session_start: at, last: at, reminded_session: None },
    }
}

/// Whether this session has just passed the limit without a reminder yet (0: never).
pub fn reminder_due(activity: &Activity, limit: chrono::Duration) -> bool {
    limit > chrono::Duration::zero()
        && activity.last - activity.session_start >= limit
        && activity.reminded_session != Some(activity.session_start)
}

/// Time added to today's use by activity at `at` (a gap longer than the pause adds none).
pub fn time_used(previous: Option<Activity>, at: DateTime<Utc>, pause: chrono::Duration) -> chrono::Duration {
    match previous {
        Some(p) if at >= p.last && at - p.last < pause => at - p.last,
        _ => chrono::Duration::zero(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn session(start: i64, last: i64, reminded: Option<i64>) -> Activity {
        Activity { session_start: at(start), last: at(last), reminded_session: reminded.map(at) }
    }

    #[test]
    fn activity_continues_a_session_until_a_pause() {
        let pause = chrono::Duration::minutes(15);
        let cases = [
            ("first activity starts a session", None, 0, session(0, 0, None)),
            ("a short gap continues it", Some(session(0, 10, None)), 20, session(0, 20, None)),
            ("a pause starts a new one", Some(session(0, 10, Some(0))), 30, session(30, 30, None)),
            ("a clock that went back keeps it", Some(session(0, 10, None)), 5, session(0, 10, None)),
        ];
        for (label, previous, minute, expected) in cases {
            assert_eq!(next_activity(previous, at(minute), pause), expected, "{label}");
        }
    }

    #[test]
    fn one_reminder_per_session_once_it_passes_the_limit() {
        let limit = chrono::Duration::minutes(120);
        let cases = [
            ("under the limit", session(0, 119, None), limit, false),
            ("at the limit", session(0, 120, None), limit, true),
            ("already reminded this session", session(0, 150, Some(0)), limit, false),
            ("reminded in an earlier session", session(200, 330, Some(0)), limit, true),
            ("reminders off", session(0, 500, None), chrono::Duration::zero(), false),
        ];
        for (label, activity, limit, expected) in cases {
            assert_eq!(reminder_due(&activity, limit), expected, "{label}");
        }
    }

    #[test]
    fn only_continuous_use_counts_as_time_used() {
        let pause = chrono::Duration::minutes(15);
        assert_eq!(time_used(None, at(5), pause), chrono::Duration::zero());
        assert_eq!(time_used(Some(session(0, 10, None)), at(14), pause), chrono::Duration::minutes(4));
        assert_eq!(time_used(Some(session(0, 10, None)), at(40), pause), chrono::Duration::zero());
    }
}

//! Pure: when the operator last wrote to each role of one account. A listing that started
//! before a write to a role does not show it, so it cannot stand for that role's policies
//! (`snapshot::observed_from_listing`).

use std::{collections::HashMap, time::Instant};

#[derive(Debug)]
pub struct WriteLog {
    /// Writes before then (an earlier term's, another replica's) are not known: any role
    /// may have been written up to then.
    began: Instant,
    last: HashMap<String, Instant>,
}

impl WriteLog {
    pub fn new(began: Instant) -> Self {
        Self {
            began,
            last: HashMap::new(),
        }
    }

    /// A write to `role` that ended, or was abandoned, at `at`.
    pub fn record(&mut self, role: &str, at: Instant) {
        let last = self.last.entry(role.to_string()).or_insert(at);
        *last = (*last).max(at);
    }

    /// The latest a write to `role` may have ended.
    pub fn last_write(&self, role: &str) -> Instant {
        self.last
            .get(role)
            .map_or(self.began, |at| (*at).max(self.began))
    }

    /// Forgets the writes a listing that started at `started` shows, once it is the one
    /// reconciles go by: what is kept is the writes of about one listing interval.
    pub fn seen_by_listing(&mut self, started: Instant) {
        self.last.retain(|_, at| *at >= started);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_role_is_last_written_at_its_latest_write_or_when_the_log_began() {
        let began = Instant::now();
        let later = |secs| began + Duration::from_secs(secs);
        let mut log = WriteLog::new(began);
        assert_eq!(log.last_write("a"), began, "unknown before the log");
        log.record("a", later(2));
        log.record("a", later(1));
        assert_eq!(log.last_write("a"), later(2), "writes may end out of order");
        assert_eq!(log.last_write("b"), began);
    }

    #[test]
    fn a_listing_that_started_after_a_write_lets_the_log_forget_it() {
        let began = Instant::now();
        let later = |secs| began + Duration::from_secs(secs);
        let mut log = WriteLog::new(began);
        log.record("a", later(1));
        log.record("b", later(3));
        log.seen_by_listing(later(2));
        assert_eq!(log.last_write("a"), began);
        assert_eq!(log.last_write("b"), later(3), "after the listing started");
        assert_eq!(log.last.len(), 1);
    }
}

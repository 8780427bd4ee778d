//! The latest audit events kept in memory, newest last, for the operators' console: a ring of a
//! fixed size, so a burst of refusals costs no more than its length.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many events the console can show.
pub const KEPT: usize = 1000;

#[derive(Debug, Default)]
pub struct Recent {
    lines: Mutex<VecDeque<Arc<str>>>,
}

impl Recent {
    /// Keeps an event's JSON line, forgetting the oldest past `KEPT`.
    pub fn push(&self, line: Arc<str>) {
        // a poisoned ring (a panic while pushing, which cannot happen) is still a ring
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == KEPT {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The events kept, newest first.
    pub fn newest_first(&self) -> Vec<Arc<str>> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_newest_first() {
        let r = Recent::default();
        for i in 0..KEPT + 5 {
            r.push(Arc::from(i.to_string()));
        }
        let all = r.newest_first();
        assert_eq!(all.len(), KEPT);
        assert_eq!(&*all[0], (KEPT + 4).to_string());
        assert_eq!(&*all[KEPT - 1], "5");
    }
}

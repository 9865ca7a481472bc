//! The registry of live watchers, shared by both backends.
//!
//! Each subscriber has a prefix and a revision `after`: it gets only events
//! of keys under its prefix with a revision greater than `after`. The
//! backend sets `after` to the last revision it already replayed from
//! history, which is what makes the hand-over from replay to live delivery
//! free of gaps and duplicates (see `SqliteStore::watch`).

use tokio::sync::mpsc::UnboundedSender;

use crate::{Revision, WatchEvent};

#[derive(Debug)]
struct Subscriber {
    prefix: String,
    after: Revision,
    tx: UnboundedSender<WatchEvent>,
}

#[derive(Debug)]
pub(crate) struct Hub {
    subscribers: Vec<Subscriber>,
    /// Every event up to this revision has been handed to `publish`.
    published: Revision,
}

impl Hub {
    pub(crate) fn new(published: Revision) -> Self {
        Hub {
            subscribers: Vec::new(),
            published,
        }
    }

    pub(crate) fn published(&self) -> Revision {
        self.published
    }

    pub(crate) fn subscribe(
        &mut self,
        prefix: String,
        after: Revision,
        tx: UnboundedSender<WatchEvent>,
    ) {
        self.subscribers.push(Subscriber { prefix, after, tx });
    }

    /// Delivers committed events (in revision order, all newer than any
    /// published before) and records `revision` as published. Subscribers
    /// whose receiver is gone are dropped.
    pub(crate) fn publish(&mut self, events: &[WatchEvent], revision: Revision) {
        self.subscribers.retain(|s| !s.tx.is_closed());
        let mut dead = false;
        for event in events {
            for sub in &self.subscribers {
                if event.kv.mod_revision > sub.after
                    && event.kv.key.starts_with(&sub.prefix)
                    && sub.tx.send(event.clone()).is_err()
                {
                    dead = true;
                }
            }
        }
        if dead {
            self.subscribers.retain(|s| !s.tx.is_closed());
        }
        self.published = self.published.max(revision);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.subscribers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::delete_event;

    #[test]
    fn dropped_receivers_are_cleaned_up() {
        let mut hub = Hub::new(0);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        hub.subscribe("a".into(), 0, tx);
        let (tx2, mut rx2) = tokio::sync::mpsc::unbounded_channel();
        hub.subscribe("b".into(), 1, tx2);
        drop(rx);
        hub.publish(
            &[delete_event("b1".into(), 1), delete_event("b2".into(), 2)],
            2,
        );
        assert_eq!(hub.len(), 1);
        assert_eq!(hub.published(), 2);
        assert!(matches!(rx2.try_recv(), Ok(e) if e.kv.key == "b2"));
        assert!(rx2.try_recv().is_err());
    }
}

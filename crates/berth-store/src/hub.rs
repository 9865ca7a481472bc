//! The registry of live watchers, shared by both backends.
//!
//! Each subscriber has a prefix and a revision `after`: it gets only events
//! of keys under its prefix with a revision greater than `after`. The
//! backend sets `after` to the last revision it already replayed from
//! history, which is what makes the hand-over from replay to live delivery
//! free of gaps and duplicates (see `SqliteStore::watch`).
//!
//! Each subscriber's channel is bounded ([`channel`]): its capacity is what
//! its replay holds, plus the live buffer, plus one slot kept for the
//! notice of lag. Only the hub sends once a subscriber is registered, so
//! when a channel has one free slot left the subscriber has fallen a whole
//! buffer behind: the hub sends it [`StoreError::WatchLagged`] in that
//! slot and forgets it, which ends its stream.

use tokio::sync::mpsc::Sender;

use crate::{Result, Revision, StoreError, Watch, WatchEvent};

#[derive(Debug)]
struct Subscriber {
    prefix: String,
    after: Revision,
    tx: Sender<Result<WatchEvent>>,
}

/// A watch's channel, holding `replayed` (sent at once) and room for
/// `buffer` live events and the notice of lag.
pub(crate) fn channel(
    replayed: Vec<WatchEvent>,
    buffer: usize,
) -> (Sender<Result<WatchEvent>>, Watch) {
    let (tx, rx) = tokio::sync::mpsc::channel(replayed.len() + buffer.max(1) + 1);
    for event in replayed {
        // The channel has room for every replayed event and the receiver
        // is still in hand, so this cannot fail.
        let _ = tx.try_send(Ok(event));
    }
    (tx, rx)
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
        tx: Sender<Result<WatchEvent>>,
    ) {
        self.subscribers.push(Subscriber { prefix, after, tx });
    }

    /// Delivers committed events (in revision order, all newer than any
    /// published before) and records `revision` as published. Subscribers
    /// whose receiver is gone are dropped; those a buffer behind are told
    /// so and dropped.
    pub(crate) fn publish(&mut self, events: &[WatchEvent], revision: Revision) {
        self.subscribers.retain(|s| !s.tx.is_closed());
        let mut dead = false;
        for event in events {
            for sub in &mut self.subscribers {
                if event.kv.mod_revision <= sub.after || !event.kv.key.starts_with(&sub.prefix) {
                    continue;
                }
                let sent = if sub.tx.capacity() > 1 {
                    sub.tx.try_send(Ok(event.clone())).is_ok()
                } else {
                    let _ = sub.tx.try_send(Err(StoreError::WatchLagged));
                    tracing::warn!(prefix = %sub.prefix, revision = event.kv.mod_revision, "watcher fell a whole buffer behind and was cancelled");
                    false
                };
                if !sent {
                    // Nothing more goes to it; `retain` below forgets it.
                    sub.after = Revision::MAX;
                    dead = true;
                }
            }
        }
        if dead {
            self.subscribers
                .retain(|s| !s.tx.is_closed() && s.after != Revision::MAX);
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
        let (tx, rx) = channel(Vec::new(), 8);
        hub.subscribe("a".into(), 0, tx);
        let (tx2, mut rx2) = channel(Vec::new(), 8);
        hub.subscribe("b".into(), 1, tx2);
        drop(rx);
        hub.publish(
            &[delete_event("b1".into(), 1), delete_event("b2".into(), 2)],
            2,
        );
        assert_eq!(hub.len(), 1);
        assert_eq!(hub.published(), 2);
        assert!(matches!(rx2.try_recv(), Ok(Ok(e)) if e.kv.key == "b2"));
        assert!(rx2.try_recv().is_err());
    }

    #[test]
    fn a_watcher_a_buffer_behind_is_told_and_forgotten() {
        let mut hub = Hub::new(0);
        let (tx, mut slow) = channel(vec![delete_event("r".into(), 1)], 2);
        hub.subscribe(String::new(), 1, tx);
        let events: Vec<_> = (2..=6).map(|r| delete_event(format!("k{r}"), r)).collect();
        hub.publish(&events, 6);
        assert_eq!(hub.len(), 0, "the lagging watcher is forgotten");
        let mut got = Vec::new();
        while let Ok(item) = slow.try_recv() {
            got.push(item.map(|e| e.kv.key));
        }
        // The replay, the two buffered events, then the notice; nothing after.
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(matches!(&got[..3], [Ok(a), Ok(b), Ok(c)] if a == "r" && b == "k2" && c == "k3"));
        assert!(matches!(got[3], Err(StoreError::WatchLagged)));
    }
}

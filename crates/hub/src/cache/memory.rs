//! The in-memory store: an LRU bounded by entries and bytes, entries expiring after their TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Answer, CacheSettings, Key};

#[derive(Debug)]
pub(super) struct Entry {
    answer: Arc<Answer>,
    expires: Instant,
    size: usize,
    seq: u64,
}

/// In-memory LRU bounded by entries and bytes.
#[derive(Debug, Default)]
pub(super) struct Memory {
    pub(super) map: HashMap<Key, Entry>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, Key>,
    bytes: usize,
    seq: u64,
}

impl Memory {
    pub(super) fn get(&mut self, key: &Key, now: Instant) -> Option<Arc<Answer>> {
        let (expired, old_seq) = match self.map.get(key) {
            None => return None,
            Some(e) => (e.expires <= now, e.seq),
        };
        if expired {
            self.remove(key);
            return None;
        }
        self.seq += 1;
        let seq = self.seq;
        self.order.remove(&old_seq);
        self.order.insert(seq, *key);
        let e = self.map.get_mut(key)?;
        e.seq = seq;
        Some(e.answer.clone())
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.map.remove(key) {
            self.order.remove(&e.seq);
            self.bytes -= e.size;
        }
    }

    pub(super) fn put(
        &mut self,
        key: Key,
        answer: Arc<Answer>,
        ttl: Duration,
        limits: &CacheSettings,
    ) {
        let size = answer.size();
        if size > limits.max_bytes {
            return;
        }
        self.remove(&key);
        while !self.map.is_empty()
            && (self.map.len() >= limits.max_entries || self.bytes + size > limits.max_bytes)
        {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.map.remove(&oldest) {
                self.bytes -= e.size;
            }
        }
        self.seq += 1;
        self.order.insert(self.seq, key);
        self.bytes += size;
        self.map.insert(
            key,
            Entry {
                answer,
                expires: Instant::now() + ttl,
                size,
                seq: self.seq,
            },
        );
    }
}

//! A bounded cache of serialized generated records.
//!
//! Generated data is a pure function of `(seed, index, slot)`, so its JSON bytes never change;
//! only writes change what a read returns, and records touched by a write never go through
//! the cache (`api::Simulator::fast_read` checks). Each entry holds the records of one patient
//! of one kind (or the patient itself), serialized back to back with their end offsets, so a
//! response is assembled by copying bytes instead of building and serializing JSON values.
//!
//! Memory is bounded: the cache is split into shards, each with a byte budget; inserting past
//! the budget evicts that shard's oldest entries first (FIFO). At 100,000 patients the data
//! does not fit and the oldest entries are regenerated when asked for again, which is correct,
//! only slower.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde_json::{Map, Value};

/// What an entry holds: the census patient, or a patient's records of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// `Dataset::patient(index)`.
    Patient,
    /// `Dataset::record(kind, index, 0..count)`; the discriminant of `data::Kind`.
    Records(u8),
}

/// Serialized records back to back: record `n` is `bytes[ends[n-1]..ends[n]]`.
#[derive(Debug)]
pub(crate) struct Serialized {
    bytes: Bytes,
    ends: Vec<usize>,
}

impl Serialized {
    /// Serializes each record with `serde_json` (the same bytes as a full response would hold).
    pub(crate) fn build(records: &[Map<String, Value>]) -> Self {
        let mut buf = Vec::with_capacity(512 * records.len().max(1));
        let mut ends = Vec::with_capacity(records.len());
        for r in records {
            // Serializing a `serde_json::Map` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, r);
            ends.push(buf.len());
        }
        Self {
            bytes: Bytes::from(buf),
            ends,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Record `n` (`n < len()`).
    pub(crate) fn get(&self, n: usize) -> &[u8] {
        let start = if n == 0 { 0 } else { self.ends[n - 1] };
        &self.bytes[start..self.ends[n]]
    }

    fn weight(&self) -> usize {
        self.bytes.len() + self.ends.len() * std::mem::size_of::<usize>() + 64
    }
}

type Key = (Slot, u64);

#[derive(Default)]
struct Shard {
    map: HashMap<Key, Arc<Serialized>>,
    order: VecDeque<Key>,
    bytes: usize,
}

/// The cache: 16 shards, each with an equal share of the byte budget.
pub(crate) struct Cache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shard_budget", &self.shard_budget)
            .finish_non_exhaustive()
    }
}

const SHARDS: usize = 16;

impl Cache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: budget_bytes / SHARDS,
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let h = crate::data::hash_words(&[key.1, slot_word(key.0)]);
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// The entry for `(slot, index)`, built with `make` (outside the lock) on a miss.
    pub(crate) fn get_or_build(
        &self,
        slot: Slot,
        index: u64,
        make: impl FnOnce() -> Serialized,
    ) -> Arc<Serialized> {
        let key = (slot, index);
        let shard = self.shard(&key);
        if let Some(hit) = lock(shard).map.get(&key) {
            return Arc::clone(hit);
        }
        let built = Arc::new(make());
        let weight = built.weight();
        if weight > self.shard_budget {
            return built;
        }
        let mut s = lock(shard);
        if let Some(raced) = s.map.get(&key) {
            return Arc::clone(raced);
        }
        while s.bytes + weight > self.shard_budget {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            if let Some(evicted) = s.map.remove(&old) {
                s.bytes -= evicted.weight();
            }
        }
        s.map.insert(key, Arc::clone(&built));
        s.order.push_back(key);
        s.bytes += weight;
        built
    }

    /// Bytes held (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes).sum()
    }
}

fn slot_word(slot: Slot) -> u64 {
    match slot {
        Slot::Patient => 0,
        Slot::Records(k) => 1 + u64::from(k),
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_split_back_at_their_ends() {
        let a = crate::data::obj(serde_json::json!({"a": 1}));
        let b = crate::data::obj(serde_json::json!({"b": [2, "x"]}));
        let s = Serialized::build(&[a, b]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(0), br#"{"a":1}"#);
        assert_eq!(s.get(1), br#"{"b":[2,"x"]}"#);
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_evicts_oldest_first() {
        let cache = Cache::new(16 * 4096);
        let big = crate::data::obj(serde_json::json!({"x": "x".repeat(1000)}));
        for i in 0..10_000u64 {
            let e = cache.get_or_build(Slot::Patient, i, || {
                Serialized::build(std::slice::from_ref(&big))
            });
            assert_eq!(e.get(0).len(), 1008);
        }
        assert!(cache.bytes() <= 16 * 4096, "{}", cache.bytes());
        // The newest entry is still there: building it again is not needed.
        let again = cache.get_or_build(Slot::Patient, 9_999, || unreachable!("evicted"));
        assert_eq!(again.len(), 1);
    }
}

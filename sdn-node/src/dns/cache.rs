//! Replies by query bytes, one cache per UDP worker thread (so no lock is taken per query).
//!
//! The key is the whole query but its ID: flags, question (in the case it was asked) and OPT
//! record. The same bytes always get the same reply from the same index, so a hit only needs
//! the ID written in; resolvers send byte-identical queries for a name again and again (as do
//! benchmarks). The index's generation is part of the entry, so a change in etcd is answered at
//! once, not after a TTL.

use std::collections::HashMap;

/// Entries per worker; the cache starts over when full (simpler than an LRU, and a full cache
/// means the queries do not repeat much anyway).
const CAPACITY: usize = 16384;
/// Bytes of keys and replies per worker, whatever the entries: clients choose their queries'
/// sizes (EDNS options) and so, in part, the replies'.
const MAX_BYTES: usize = 8 << 20;
/// Queries longer than this are not cached (no real question is; it bounds the memory).
const MAX_QUERY: usize = 512;

#[derive(Debug, Default)]
pub struct ReplyCache {
    generation: u64,
    replies: HashMap<Box<[u8]>, Box<[u8]>>,
    bytes: usize,
}

impl ReplyCache {
    /// The reply to `query` (with its ID) if one is cached for index `generation`, written
    /// into `out`.
    pub fn get(&mut self, query: &[u8], generation: u64, out: &mut Vec<u8>) -> bool {
        if generation != self.generation {
            self.clear(generation);
            return false;
        }
        let (Some(id), Some(key)) = (query.get(..2), query.get(2..)) else { return false };
        let Some(reply) = self.replies.get(key) else { return false };
        out.clear();
        out.extend_from_slice(id);
        out.extend_from_slice(reply.get(2..).unwrap_or_default());
        true
    }

    /// Remembers `reply` as the answer to `query` from index `generation`.
    pub fn put(&mut self, query: &[u8], generation: u64, reply: &[u8]) {
        if generation != self.generation {
            self.clear(generation);
        }
        if query.len() < 12 || query.len() > MAX_QUERY || reply.len() < 12 {
            return;
        }
        let size = query.len() + reply.len();
        if self.replies.len() >= CAPACITY || self.bytes + size > MAX_BYTES {
            self.clear(generation);
        }
        if self.replies.insert(query[2..].into(), reply.into()).is_none() {
            self.bytes += size;
        }
    }

    fn clear(&mut self, generation: u64) {
        self.replies.clear();
        self.bytes = 0;
        self.generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_takes_the_queries_id_and_a_new_generation_misses() {
        let mut cache = ReplyCache::default();
        let mut out = Vec::new();
        let query = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        let reply = [0, 1, 0x85, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        assert!(!cache.get(&query, 7, &mut out));
        cache.put(&query, 7, &reply);
        let mut again = query;
        again[..2].copy_from_slice(&[0xbe, 0xef]);
        assert!(cache.get(&again, 7, &mut out));
        assert_eq!(&out[..2], &[0xbe, 0xef]);
        assert_eq!(&out[2..], &reply[2..]);
        let mut other_case = again;
        other_case[13] = b'A';
        assert!(!cache.get(&other_case, 7, &mut out), "another case is another question");
        assert!(!cache.get(&again, 8, &mut out), "the index changed");
        assert!(!cache.get(&again, 8, &mut out), "and the entry is gone");
        cache.put(&query[..5], 8, &reply);
        assert!(!cache.get(&query[..5], 8, &mut out), "a header fragment is not cached");
    }

    #[test]
    fn memory_is_bounded_in_bytes() {
        let mut cache = ReplyCache::default();
        let big = vec![0u8; MAX_BYTES / 3];
        for i in 0..10u8 {
            let query = [0, i, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, i, 0, 0, 1, 0, 1];
            cache.put(&query, 1, &big);
            assert!(cache.bytes <= MAX_BYTES, "{} bytes held", cache.bytes);
        }
        assert!(cache.replies.len() < 3);
    }
}

//! A list+watch cache of one etcd key prefix (the informer pattern of
//! Kubernetes clients).
//!
//! It lists the prefix, then watches from the next revision. When the watch
//! breaks (etcd down, connection reset) it resumes from the last revision it
//! applied, so no event is missed; when that revision has been compacted away
//! it lists again. Readers see a consistent snapshot at one revision and can
//! wait for a revision they wrote themselves (read-your-writes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions, WatchStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::etcd::{Backoff, concise};

/// One key's value and revisions, as etcd reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// The cached keys and the etcd revision they reflect.
#[derive(Debug, Default)]
pub struct Cache {
    entries: BTreeMap<String, Entry>,
    revision: i64,
    /// Per directory (every prefix of a key that ends in `/`): its entries' count and newest
    /// mod revision, kept as entries come and go, so [`Cache::fingerprint`] of a directory is
    /// a lookup (every agent asks it on every event of a thousand-node cluster).
    dirs: std::collections::HashMap<String, (usize, i64)>,
}

impl Cache {
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// How many entries lie under `prefix`, and the newest mod revision written there (since
    /// the cache was listed; a deletion does not lower it). It changes whenever an entry there
    /// is written (a write is the newest revision there is) or deleted (the count drops, or a
    /// write in the same transaction raises the revision), so a reader can tell that nothing
    /// under `prefix` changed without looking at a value.
    pub fn fingerprint(&self, prefix: &str) -> (usize, i64) {
        if let Some(stats) = self.dirs.get(prefix) {
            return *stats;
        }
        if prefix.ends_with('/') {
            // Every directory with an entry is kept: this one has none.
            return (0, 0);
        }
        self.range(prefix).fold((0, 0), |(count, newest), (_, entry)| (count + 1, newest.max(entry.mod_revision)))
    }

    /// The directories `key` lies in: its prefixes that end in `/`.
    fn dirs_of(key: &str) -> impl Iterator<Item = &str> {
        key.match_indices('/').map(move |(i, _)| &key[..=i])
    }

    fn put(&mut self, key: String, entry: Entry) {
        let revision = entry.mod_revision;
        let new = self.entries.insert(key.clone(), entry).is_none();
        for dir in Self::dirs_of(&key) {
            match self.dirs.get_mut(dir) {
                Some((count, newest)) => {
                    *count += usize::from(new);
                    *newest = (*newest).max(revision);
                }
                None => {
                    self.dirs.insert(dir.to_owned(), (1, revision));
                }
            }
        }
    }

    fn delete(&mut self, key: &str) {
        if self.entries.remove(key).is_none() {
            return;
        }
        for dir in Self::dirs_of(key) {
            if let Some((count, _)) = self.dirs.get_mut(dir) {
                *count -= 1;
                if *count == 0 {
                    self.dirs.remove(dir);
                }
            }
        }
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.entries
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
    }

    fn upsert(&mut self, kv: &KeyValue) {
        let Ok(key) = kv.key_str() else {
            tracing::warn!("informer: ignoring a key that is not UTF-8: {:?}", kv.key());
            return;
        };
        self.put(
            key.to_owned(),
            Entry {
                value: kv.value().to_vec(),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
            },
        );
    }

    fn remove(&mut self, kv: &KeyValue) {
        if let Ok(key) = kv.key_str() {
            self.delete(key);
        }
    }
}

struct Shared {
    cache: RwLock<Cache>,
    connected: AtomicBool,
}

/// Handle to a running informer; cheap to clone.
#[derive(Clone)]
pub struct Informer {
    shared: Arc<Shared>,
    revision: watch::Receiver<i64>,
    // Held, not read: the watch task stops when the last handle is dropped.
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Informer {
    /// Starts watching `prefix`. Returns at once; [`Informer::synced`] waits
    /// for the first list.
    pub fn start(client: Client, prefix: String) -> Self {
        let shared = Arc::new(Shared { cache: RwLock::default(), connected: AtomicBool::new(false) });
        let (tx, revision) = watch::channel(0);
        let task = tokio::spawn(run(client, prefix, shared.clone(), tx));
        Self { shared, revision, _task: Arc::new(AbortOnDrop(task)) }
    }

    /// Read access to the cache. Do not hold it across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, Cache> {
        // A writer panicking mid-update is a bug; the map itself stays usable.
        self.shared.cache.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the last etcd call of the informer succeeded.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// A receiver that changes whenever the cache moves to a new revision.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.revision.clone()
    }

    /// Waits until the first list has been applied.
    pub async fn synced(&self) {
        self.wait_for(1).await;
    }

    /// Waits until the cache reflects at least `revision`.
    pub async fn wait_for(&self, revision: i64) {
        let mut rx = self.revision.clone();
        // The sender lives as long as the task, which lives as long as self.
        let _ = rx.wait_for(|r| *r >= revision).await;
    }
}

/// Largest list or watch message accepted: a whole cluster's records in one
/// list must fit (tonic's default of 4 MiB would not for large clusters).
const MAX_MESSAGE: usize = 512 << 20;

/// How one watch stream ended.
enum WatchEnd {
    /// Resume from the last applied revision.
    Resume,
    /// The revision is gone (compacted, or the store was recreated): list again.
    Relist,
}

async fn run(client: Client, prefix: String, shared: Arc<Shared>, tx: watch::Sender<i64>) {
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let mut watcher = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    let mut backoff = Backoff::default();
    let mut need_list = true;
    let set_connected = |up: bool| {
        if shared.connected.swap(up, Ordering::Relaxed) != up && up {
            tracing::info!("informer {prefix}: connected to etcd");
        }
    };
    loop {
        if need_list {
            match kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await {
                Ok(resp) => {
                    let revision = resp.header().map_or(0, |h| h.revision());
                    let mut cache = Cache { revision, ..Cache::default() };
                    resp.kvs().iter().for_each(|kv| cache.upsert(kv));
                    tracing::info!("informer {prefix}: listed {} keys at revision {revision}", cache.entries.len());
                    *shared.cache.write().unwrap_or_else(|p| p.into_inner()) = cache;
                    tx.send_replace(revision);
                    set_connected(true);
                }
                Err(err) => {
                    set_connected(false);
                    let delay = backoff.next_delay();
                    tracing::warn!("informer {prefix}: list failed ({}); retrying in {delay:?}", concise(&err));
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
        }
        let from = *tx.borrow() + 1;
        let options = WatchOptions::new().with_prefix().with_start_revision(from).with_progress_notify();
        let end = match watcher.watch(prefix.as_str(), Some(options)).await {
            Ok(stream) => follow(stream, &prefix, &shared, &tx, &mut backoff, &set_connected).await,
            Err(err) => {
                set_connected(false);
                tracing::warn!("informer {prefix}: watch from revision {from} failed ({})", concise(&err));
                WatchEnd::Resume
            }
        };
        need_list = matches!(end, WatchEnd::Relist);
        // Every end of a watch waits, so a watch that keeps ending at once
        // (or a list that keeps being refused) cannot spin.
        let delay = backoff.next_delay();
        tracing::debug!("informer {prefix}: watching again in {delay:?}");
        tokio::time::sleep(delay).await;
    }
}

/// Applies one watch stream's events to the cache until it ends.
async fn follow(
    mut stream: WatchStream,
    prefix: &str,
    shared: &Shared,
    tx: &watch::Sender<i64>,
    backoff: &mut Backoff,
    set_connected: &impl Fn(bool),
) -> WatchEnd {
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                set_connected(false);
                tracing::warn!("informer {prefix}: watch closed by etcd at revision {}; resuming", *tx.borrow());
                return WatchEnd::Resume;
            }
            Err(err) => {
                set_connected(false);
                tracing::warn!(
                    "informer {prefix}: watch broken at revision {} ({}); resuming",
                    *tx.borrow(),
                    concise(&err)
                );
                return WatchEnd::Resume;
            }
        };
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                tracing::info!(
                    "informer {prefix}: revision {} was compacted (now {}); listing again",
                    *tx.borrow() + 1,
                    resp.compact_revision()
                );
            } else {
                tracing::warn!("informer {prefix}: watch canceled ({}); listing again", resp.cancel_reason());
            }
            return WatchEnd::Relist;
        }
        set_connected(true);
        let header_revision = resp.header().map_or(0, |h| h.revision());
        if resp.created() {
            // A store whose revision went backwards was wiped and recreated;
            // what we hold describes a cluster that no longer exists.
            if header_revision < *tx.borrow() {
                tracing::warn!("informer {prefix}: etcd revision went back to {header_revision}; listing again");
                return WatchEnd::Relist;
            }
            continue;
        }
        // Only a delivered event or progress notice proves the watch works.
        backoff.reset();
        let events = resp.events();
        let revision = match events.last().and_then(|e| e.kv()) {
            Some(kv) => kv.mod_revision(),
            // A progress notification: everything up to the header revision
            // has been delivered.
            None => header_revision,
        };
        {
            let mut cache = shared.cache.write().unwrap_or_else(|p| p.into_inner());
            for event in events {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => cache.upsert(kv),
                    EventType::Delete => cache.remove(kv),
                }
            }
            cache.revision = cache.revision.max(revision);
        }
        if revision > *tx.borrow() {
            tx.send_replace(revision);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rev: i64) -> Entry {
        Entry { value: vec![], create_revision: rev, mod_revision: rev }
    }

    #[test]
    fn range_stays_inside_the_prefix() {
        let mut cache = Cache::default();
        for (i, k) in ["/sdn/nodes/a", "/sdn/nodes/b", "/sdn/nodesx", "/sdn/node", "/sdn/subnets/a"].iter().enumerate()
        {
            cache.put((*k).to_owned(), entry(i as i64));
        }
        let keys: Vec<_> = cache.range("/sdn/nodes/").map(|(k, _)| k).collect();
        assert_eq!(keys, ["/sdn/nodes/a", "/sdn/nodes/b"]);
        assert_eq!(cache.range("/sdn/zzz/").count(), 0);
    }

    #[test]
    fn the_fingerprint_moves_with_every_write_and_deletion_under_the_prefix() {
        let mut cache = Cache::default();
        cache.put("/sdn/subnets/a".into(), entry(4));
        cache.put("/sdn/subnets/b".into(), entry(7));
        let before = cache.fingerprint("/sdn/subnets/");
        assert_eq!(before, (2, 7));
        cache.put("/sdn/pods/x".into(), entry(9));
        assert_eq!(cache.fingerprint("/sdn/subnets/"), before, "another prefix");
        cache.put("/sdn/subnets/a".into(), entry(10));
        let rewritten = cache.fingerprint("/sdn/subnets/");
        assert_ne!(rewritten, before);
        cache.delete("/sdn/subnets/a");
        assert_ne!(cache.fingerprint("/sdn/subnets/"), rewritten, "a deletion");
        assert_eq!(cache.fingerprint("/sdn/none/"), (0, 0));
        // The kept directory counts are what a scan finds.
        for dir in ["/sdn/", "/sdn/subnets/", "/sdn/pods/"] {
            assert_eq!(cache.fingerprint(dir).0, cache.range(dir).count(), "{dir}");
        }
        assert_eq!(cache.fingerprint("/sdn/subnets/b"), (1, 7), "a key, scanned");
        cache.delete("/sdn/subnets/b");
        assert_eq!(cache.fingerprint("/sdn/subnets/"), (0, 0), "emptied");
    }
}

//! A list+watch cache of one etcd key prefix (the informer pattern of
//! Kubernetes clients).
//!
//! It lists the prefix, then watches from the next revision. When the watch
//! breaks (etcd down, connection reset) it resumes from the last revision it
//! applied, so no event is missed; when that revision has been compacted away
//! it lists again. Readers see a consistent snapshot at one revision and can
//! wait for a revision they wrote themselves (read-your-writes).

use std::collections::{BTreeMap, VecDeque, btree_map};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions, WatchStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::etcd::{Backoff, concise};

/// One key's value and revisions, as etcd reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Boxed, as the key is: a cache holds tens of thousands of entries, and a vector's
    /// capacity would be 8 bytes more of each (16 with a `String` key) in every map node.
    pub value: Box<[u8]>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// The cached keys and the etcd revision they reflect.
#[derive(Debug, Default)]
pub struct Cache {
    entries: BTreeMap<Box<str>, Entry>,
    revision: i64,
    /// Per directory (every prefix of a key that ends in `/`): its entries' count and newest
    /// mod revision, kept as entries come and go, so [`Cache::fingerprint`] of a directory is
    /// a lookup (every agent asks it on every event of a thousand-node cluster).
    dirs: std::collections::HashMap<String, (usize, i64)>,
    /// The keys written or deleted last, oldest first, the first numbered `log_start`: a reader
    /// that kept [`Cache::position`] finds what changed since without a scan of a directory
    /// (each of a thousand agents would scan a thousand subnets on every join).
    log: VecDeque<Box<str>>,
    log_start: u64,
}

/// How many changes [`Cache::changed_since`] reaches back: a reader further behind scans.
const LOG: usize = 1024;

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

    /// Where the change log ends: what [`Cache::changed_since`] takes to tell what changed
    /// after this read.
    pub fn position(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    /// The keys written or deleted since `position` (a key may come more than once); `None` if
    /// the log no longer reaches back that far, or a list replaced entries since: the reader
    /// must look at everything.
    pub fn changed_since(&self, position: u64) -> Option<impl Iterator<Item = &str>> {
        let skip = position.checked_sub(self.log_start)?;
        Some(self.log.iter().skip(usize::try_from(skip).ok()?).map(|key| &**key))
    }

    fn logged(&mut self, key: &str) {
        if self.log.len() == LOG {
            self.log.pop_front();
            self.log_start += 1;
        }
        self.log.push_back(key.into());
    }

    /// Replaces every entry under `prefix` by `kvs`, listed at `revision`; how many there are.
    fn relist(&mut self, prefix: &str, kvs: &[KeyValue], revision: i64) -> usize {
        let gone: Vec<String> = self.range(prefix).map(|(key, _)| key.to_owned()).collect();
        for key in &gone {
            self.delete(key);
        }
        for (key, entry) in kvs.iter().filter_map(entry_of) {
            self.put(key, entry);
        }
        self.revision = self.revision.max(revision);
        // What the list changed is not in the log: every reader's position is now before it.
        self.log_start = self.position() + 1;
        self.log.clear();
        kvs.len()
    }

    /// The directories `key` lies in: its prefixes that end in `/`.
    fn dirs_of(key: &str) -> impl Iterator<Item = &str> {
        key.match_indices('/').map(move |(i, _)| &key[..=i])
    }

    /// Takes `key` as it is stored: the entry API keeps the map and the directory counts to
    /// one allocation of the key per event.
    fn put(&mut self, key: Box<str>, entry: Entry) {
        let revision = entry.mod_revision;
        match self.entries.entry(key) {
            btree_map::Entry::Occupied(mut slot) => {
                slot.insert(entry);
                Self::count(&mut self.dirs, slot.key(), false, revision);
            }
            btree_map::Entry::Vacant(slot) => {
                Self::count(&mut self.dirs, slot.key(), true, revision);
                slot.insert(entry);
            }
        }
    }

    /// Counts a write of `key` in its directories' stats: a `new` key, at `revision`.
    fn count(dirs: &mut std::collections::HashMap<String, (usize, i64)>, key: &str, new: bool, revision: i64) {
        for dir in Self::dirs_of(key) {
            match dirs.get_mut(dir) {
                Some((count, newest)) => {
                    *count += usize::from(new);
                    *newest = (*newest).max(revision);
                }
                None => {
                    dirs.insert(dir.to_owned(), (1, revision));
                }
            }
        }
    }

    /// Whether there was an entry at `key`.
    fn delete(&mut self, key: &str) -> bool {
        if self.entries.remove(key).is_none() {
            return false;
        }
        for dir in Self::dirs_of(key) {
            if let Some((count, _)) = self.dirs.get_mut(dir) {
                *count -= 1;
                if *count == 0 {
                    self.dirs.remove(dir);
                }
            }
        }
        true
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.entries
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (&**k, v))
    }

    /// A watched write: applied and logged.
    fn upsert(&mut self, kv: &KeyValue) {
        if let Some((key, entry)) = entry_of(kv) {
            self.watched_put(key, entry);
        }
    }

    /// A watched write as the informer applies it, without etcd (readers' tests).
    pub fn watched_put(&mut self, key: Box<str>, entry: Entry) {
        self.logged(&key);
        self.put(key, entry);
    }

    /// A watched deletion: applied and logged.
    fn remove(&mut self, kv: &KeyValue) {
        if let Ok(key) = kv.key_str() {
            self.watched_delete(key);
        }
    }

    /// A watched deletion as the informer applies it, without etcd (readers' tests).
    pub fn watched_delete(&mut self, key: &str) {
        if self.delete(key) {
            self.logged(key);
        }
    }
}

/// A listed or watched key and its entry; `None` (logged) for a key that is not UTF-8.
fn entry_of(kv: &KeyValue) -> Option<(Box<str>, Entry)> {
    let Ok(key) = kv.key_str() else {
        tracing::warn!("informer: ignoring a key that is not UTF-8: {:?}", kv.key());
        return None;
    };
    let entry =
        Entry { value: kv.value().into(), create_revision: kv.create_revision(), mod_revision: kv.mod_revision() };
    Some((key.into(), entry))
}

impl FromIterator<(String, Entry)> for Cache {
    /// A cache holding `entries`, at the newest revision among them: what a reader of the
    /// cache sees, without etcd (readers' tests).
    fn from_iter<I: IntoIterator<Item = (String, Entry)>>(entries: I) -> Self {
        let mut cache = Self::default();
        for (key, entry) in entries {
            cache.revision = cache.revision.max(entry.mod_revision);
            cache.put(key.into_boxed_str(), entry);
        }
        cache
    }
}

struct Shared {
    cache: RwLock<Cache>,
    /// How many of the watch streams are connected.
    connected: AtomicUsize,
    streams: usize,
}

/// Handle to a running informer; cheap to clone.
#[derive(Clone)]
pub struct Informer {
    shared: Arc<Shared>,
    revision: watch::Receiver<i64>,
    // Held, not read: the watch task stops when the last handle is dropped.
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

impl Informer {
    /// Starts watching `prefix`. Returns at once; [`Informer::synced`] waits
    /// for the first list.
    pub fn start(client: Client, prefix: String) -> Self {
        Self::start_dirs(client, vec![prefix])
    }

    /// Starts watching each of `dirs` (disjoint prefixes) into one cache, a list and watch
    /// each: a reader that needs only some directories of the prefix is sent only their
    /// events. The cache's revision is the newest any of them reached.
    pub fn start_dirs(client: Client, dirs: Vec<String>) -> Self {
        let streams = dirs.len();
        let shared = Arc::new(Shared { cache: RwLock::default(), connected: AtomicUsize::new(0), streams });
        let (tx, revision) = watch::channel(0);
        let tx = Arc::new(tx);
        let tasks: Vec<JoinHandle<()>> =
            dirs.into_iter().map(|dir| tokio::spawn(run(client.clone(), dir, shared.clone(), tx.clone()))).collect();
        Self { shared, revision, _task: Arc::new(AbortOnDrop(tasks)) }
    }

    /// Read access to the cache. Do not hold it across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, Cache> {
        // A writer panicking mid-update is a bug; the map itself stays usable.
        self.shared.cache.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the last etcd call of every watch stream succeeded.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed) == self.shared.streams
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

/// One stream's list and watch of `prefix`, for as long as the informer lives. `tx` carries
/// the newest revision any stream reached, and wakes the readers on every change.
async fn run(client: Client, prefix: String, shared: Arc<Shared>, tx: Arc<watch::Sender<i64>>) {
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let mut watcher = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    let mut backoff = Backoff::default();
    let mut need_list = true;
    // This stream's own progress: where its watch resumes.
    let mut applied = 0;
    // Only this task touches it; atomic because the task's future must be `Send`.
    let up = std::sync::atomic::AtomicBool::new(false);
    let set_connected = |now: bool| {
        if up.swap(now, Ordering::Relaxed) != now {
            if now {
                shared.connected.fetch_add(1, Ordering::Relaxed);
                tracing::info!("informer {prefix}: connected to etcd");
            } else {
                shared.connected.fetch_sub(1, Ordering::Relaxed);
            }
        }
    };
    loop {
        if need_list {
            match kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix())).await {
                Ok(resp) => {
                    let revision = resp.header().map_or(0, |h| h.revision());
                    let listed =
                        shared.cache.write().unwrap_or_else(|p| p.into_inner()).relist(&prefix, resp.kvs(), revision);
                    tracing::info!("informer {prefix}: listed {listed} keys at revision {revision}");
                    applied = revision;
                    tx.send_modify(|newest| *newest = (*newest).max(revision));
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
        let from = applied + 1;
        let options = WatchOptions::new().with_prefix().with_start_revision(from).with_progress_notify();
        let end = match watcher.watch(prefix.as_str(), Some(options)).await {
            Ok(stream) => {
                let mut progress = Progress { applied: &mut applied, tx: &tx };
                follow(stream, &prefix, &shared, &mut progress, &mut backoff, &set_connected).await
            }
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

/// A stream's revision and the readers' channel.
struct Progress<'a> {
    applied: &'a mut i64,
    tx: &'a watch::Sender<i64>,
}

/// Applies one watch stream's events to the cache until it ends.
async fn follow(
    mut stream: WatchStream,
    prefix: &str,
    shared: &Shared,
    progress: &mut Progress<'_>,
    backoff: &mut Backoff,
    set_connected: &impl Fn(bool),
) -> WatchEnd {
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                set_connected(false);
                tracing::warn!("informer {prefix}: watch closed by etcd at revision {}; resuming", progress.applied);
                return WatchEnd::Resume;
            }
            Err(err) => {
                set_connected(false);
                tracing::warn!(
                    "informer {prefix}: watch broken at revision {} ({}); resuming",
                    progress.applied,
                    concise(&err)
                );
                return WatchEnd::Resume;
            }
        };
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                tracing::info!(
                    "informer {prefix}: revision {} was compacted (now {}); listing again",
                    *progress.applied + 1,
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
            if header_revision < *progress.applied {
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
        if revision > *progress.applied {
            *progress.applied = revision;
            progress.tx.send_modify(|newest| *newest = (*newest).max(revision));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rev: i64) -> Entry {
        Entry { value: Box::default(), create_revision: rev, mod_revision: rev }
    }

    #[test]
    fn the_log_tells_what_changed_since_a_position_as_far_as_it_reaches() {
        let mut cache = Cache::default();
        let start = cache.position();
        cache.watched_put("/sdn/subnets/a".into(), entry(2));
        let after_a = cache.position();
        cache.watched_put("/sdn/subnets/b".into(), entry(3));
        cache.watched_delete("/sdn/subnets/a");
        cache.watched_delete("/sdn/subnets/none");
        fn since(cache: &Cache, at: u64) -> Option<Vec<&str>> {
            cache.changed_since(at).map(Iterator::collect)
        }
        assert_eq!(since(&cache, start), Some(vec!["/sdn/subnets/a", "/sdn/subnets/b", "/sdn/subnets/a"]));
        assert_eq!(
            since(&cache, after_a),
            Some(vec!["/sdn/subnets/b", "/sdn/subnets/a"]),
            "an absent key's deletion is no change"
        );
        assert_eq!(since(&cache, cache.position()), Some(vec![]));
        // A reader further behind than the log reaches is told to look at everything.
        let behind = cache.position();
        for i in 0..LOG {
            cache.watched_put(format!("/sdn/pods/{i}").into(), entry(4));
        }
        assert_eq!(since(&cache, behind).map(|keys| keys.len()), Some(LOG));
        cache.watched_put("/sdn/pods/last".into(), entry(5));
        assert_eq!(since(&cache, behind), None);
        // So is every reader after a list replaced entries.
        let listed = cache.position();
        cache.relist("/sdn/subnets/", &[], 6);
        assert_eq!(since(&cache, listed), None);
        assert_eq!(since(&cache, cache.position()), Some(vec![]));
    }

    #[test]
    fn range_stays_inside_the_prefix() {
        let mut cache = Cache::default();
        for (i, k) in ["/sdn/nodes/a", "/sdn/nodes/b", "/sdn/nodesx", "/sdn/node", "/sdn/subnets/a"].iter().enumerate()
        {
            cache.put((*k).into(), entry(i as i64));
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

//! The registry's `HostSubnet`s as the follow loops read them. Most of a big cluster's etcd
//! traffic is not about subnets (pods come and go on every node, claims, services), and every
//! event wakes every agent; so the set is handed on only when something under `subnets/` or the
//! network changed (a look at the keys' revisions), and each record is decoded once per change
//! of it.

use std::collections::HashMap;

use sdn_cluster::informer::{Cache, Entry};
use sdn_cluster::store::decode;
use sdn_cluster::{HostSubnet, Keys};

use crate::remotes::Registered;

/// What changed since the last read.
#[derive(Debug, PartialEq)]
pub enum Change {
    Unchanged,
    /// Only new records (oldest first).
    Added(Vec<Registered>),
    /// Only records gone: their nodes.
    Removed(Vec<String>),
    /// Anything else (a record rewritten, the network changed, the first read).
    Rebuilt,
}

/// What the last read saw.
#[derive(Debug, Default)]
pub struct SubnetCache {
    /// The fingerprints of `subnets/` and of the network key.
    seen: Option<((usize, i64), (usize, i64))>,
    /// Where the cache's change log stood at that read.
    position: u64,
    /// Each record's mod revision and what it decoded to (`None`: unreadable), by key.
    decoded: HashMap<String, (i64, Option<Registered>)>,
}

/// What one read found, before it is told as a [`Change`].
#[derive(Default)]
struct Found {
    added: Vec<Registered>,
    removed: Vec<String>,
    rewritten: bool,
}

impl SubnetCache {
    /// What changed under `subnets/` or in the network since the last call.
    pub fn changed(&mut self, cache: &Cache, keys: &Keys) -> Change {
        let dir = keys.subnets();
        let seen = (cache.fingerprint(&dir), cache.fingerprint(&keys.network()));
        let logged = cache.changed_since(self.position).map(|keys| keys.filter(|k| k.starts_with(&dir)).collect());
        self.position = cache.position();
        self.changed_records(seen, logged, |key| cache.get(key), || cache.range(&dir))
    }

    /// Every readable record as the last read left them, oldest first.
    pub fn records(&self) -> Vec<Registered> {
        let mut all: Vec<Registered> = self.decoded.values().filter_map(|(_, r)| r.clone()).collect();
        all.sort_by(|(a, ra), (b, rb)| (ra, &a.host).cmp(&(rb, &b.host)));
        all
    }

    /// [`SubnetCache::changed`] on the fingerprints `seen`, the `subnets/` keys the cache's
    /// log holds since the last read (`None`: it does not reach back) and the records.
    ///
    /// With the log, only the keys in it are looked at. Without it, every write under
    /// `subnets/` since the last read has a mod revision above the newest one seen then, so
    /// only those records are decoded; the others are only looked up when the count says some
    /// went.
    fn changed_records<'a, I: Iterator<Item = (&'a str, &'a Entry)>>(
        &mut self,
        seen: ((usize, i64), (usize, i64)),
        logged: Option<Vec<&str>>,
        get: impl Fn(&str) -> Option<&'a Entry>,
        records: impl Fn() -> I,
    ) -> Change {
        let before = self.seen.replace(seen);
        let ((count, _), network) = seen;
        let newest_before = match before {
            Some(before) if before == seen => return Change::Unchanged,
            Some(((_, newest), old_network)) if old_network == network => newest,
            // The first read, or the network changed: every record again.
            _ => {
                self.decoded.clear();
                -1
            }
        };
        let mut found = Found::default();
        let logged = logged.filter(|_| newest_before >= 0);
        let from_log = logged.is_some();
        for key in logged.into_iter().flatten() {
            self.look(key, get(key), &mut found);
        }
        // Without the log, or if it did not account for every record: the scan.
        if !from_log || self.decoded.len() != count {
            for (key, entry) in records().filter(|(_, entry)| entry.mod_revision > newest_before) {
                self.look(key, Some(entry), &mut found);
            }
        }
        if self.decoded.len() > count {
            let present: std::collections::HashSet<&str> = records().map(|(key, _)| key).collect();
            let gone: Vec<String> =
                self.decoded.keys().filter(|key| !present.contains(key.as_str())).cloned().collect();
            for key in gone {
                self.look(&key, None, &mut found);
            }
        }
        let Found { mut added, removed, rewritten } = found;
        match (newest_before < 0 || rewritten, added.is_empty(), removed.is_empty()) {
            (false, false, true) => {
                added.sort_by(|(a, ra), (b, rb)| (ra, &a.host).cmp(&(rb, &b.host)));
                Change::Added(added)
            }
            (false, true, false) => Change::Removed(removed),
            (false, true, true) => Change::Unchanged,
            _ => Change::Rebuilt,
        }
    }

    /// Takes in the record at `key` as it is now (`None`: gone), unless it was taken in at this
    /// revision already.
    fn look(&mut self, key: &str, entry: Option<&Entry>, found: &mut Found) {
        let known = self.decoded.get(key).map(|(revision, _)| *revision);
        match entry {
            Some(entry) if known == Some(entry.mod_revision) => {}
            Some(entry) => {
                let record = decode::<HostSubnet>(key, &entry.value).ok().map(|r| (r, entry.create_revision));
                found.added.extend(record.clone());
                found.rewritten |= self.decoded.insert(key.to_owned(), (entry.mod_revision, record)).is_some();
            }
            None => {
                if let Some((_, Some((record, _)))) = self.decoded.remove(key) {
                    found.removed.push(record.host);
                }
            }
        }
    }

    /// Forgets what was seen: the next [`SubnetCache::changed`] is a rebuild (after a failed
    /// update, so it is tried again).
    pub fn forget(&mut self) {
        self.seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, subnet: &str, revision: i64) -> Entry {
        let record = format!(r#"{{"host":"{host}","hostIP":"192.0.2.9","subnet":"{subnet}"}}"#);
        Entry { value: record.into_bytes().into(), create_revision: revision, mod_revision: revision }
    }

    #[test]
    fn joins_leaves_and_rewrites_are_told_apart() {
        let mut cache = SubnetCache::default();
        let mut records =
            vec![("/sdn/subnets/a", entry("a", "10.1.1.0/24", 3)), ("/sdn/subnets/b", entry("b", "bad", 4))];
        let network = (1, 1);
        let read = |cache: &mut SubnetCache, records: &[(&'static str, Entry)], seen| {
            let get = |key: &str| records.iter().find(|(k, _)| *k == key).map(|(_, e)| e);
            cache.changed_records((seen, network), None, get, || records.iter().map(|(k, e)| (*k, e)))
        };
        assert_eq!(read(&mut cache, &records, (2, 4)), Change::Rebuilt, "the first read");
        assert_eq!(cache.records().len(), 1, "the unreadable record is left out");
        assert_eq!(read(&mut cache, &records, (2, 4)), Change::Unchanged);
        records.push(("/sdn/subnets/c", entry("c", "10.1.3.0/24", 7)));
        let Change::Added(added) = read(&mut cache, &records, (3, 7)) else { panic!("a join") };
        assert_eq!((added.len(), added[0].0.host.as_str(), added[0].1), (1, "c", 7));
        records.remove(0);
        assert_eq!(read(&mut cache, &records, (2, 7)), Change::Removed(vec!["a".into()]));
        records[1].1 = Entry { mod_revision: 9, ..entry("c", "10.1.4.0/24", 7) };
        assert_eq!(read(&mut cache, &records, (2, 9)), Change::Rebuilt, "a rewrite");
        cache.forget();
        assert_eq!(read(&mut cache, &records, (2, 9)), Change::Rebuilt, "forgotten after a failed update");
    }

    #[test]
    fn the_log_is_followed_and_a_short_one_falls_back_to_the_scan() {
        let mut cache = SubnetCache::default();
        let mut records = vec![("/sdn/subnets/a", entry("a", "10.1.1.0/24", 3))];
        let network = (1, 1);
        let read = |cache: &mut SubnetCache, records: &[(&'static str, Entry)], seen, logged: Option<Vec<&str>>| {
            let get = |key: &str| records.iter().find(|(k, _)| *k == key).map(|(_, e)| e);
            // The scan is only for a log that falls short: counted, to tell which path ran.
            let scans = std::cell::Cell::new(0);
            let change = cache.changed_records((seen, network), logged, get, || {
                scans.set(scans.get() + 1);
                records.iter().map(|(k, e)| (*k, e))
            });
            (change, scans.get())
        };
        assert_eq!(read(&mut cache, &records, (1, 3), None), (Change::Rebuilt, 1), "the first read scans");
        records.push(("/sdn/subnets/b", entry("b", "10.1.2.0/24", 5)));
        let (change, scans) = read(&mut cache, &records, (2, 5), Some(vec!["/sdn/subnets/b"]));
        assert!(matches!(change, Change::Added(ref added) if added.len() == 1 && added[0].0.host == "b"), "{change:?}");
        assert_eq!(scans, 0, "a join is read from the log alone");
        records.remove(0);
        let (change, scans) = read(&mut cache, &records, (1, 5), Some(vec!["/sdn/subnets/b", "/sdn/subnets/a"]));
        assert_eq!((change, scans), (Change::Removed(vec!["a".into()]), 0), "a key seen already is no change");
        // A log that misses a write (a list replaced entries): the count tells, the scan finds it.
        records.push(("/sdn/subnets/c", entry("c", "10.1.3.0/24", 8)));
        let (change, scans) = read(&mut cache, &records, (2, 8), Some(vec![]));
        assert!(matches!(change, Change::Added(ref added) if added[0].0.host == "c"), "{change:?}");
        assert_eq!(scans, 1);
        records[0].1 = Entry { mod_revision: 9, ..entry("b", "10.1.4.0/24", 5) };
        assert_eq!(read(&mut cache, &records, (2, 9), Some(vec!["/sdn/subnets/b"])).0, Change::Rebuilt, "a rewrite");
    }
}

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

/// What the last read saw.
#[derive(Debug, Default)]
pub struct SubnetCache {
    /// The fingerprints of `subnets/` and of the network key.
    seen: Option<((usize, i64), (usize, i64))>,
    /// Each record's mod revision and what it decoded to (`None`: unreadable).
    decoded: HashMap<String, (i64, Option<HostSubnet>)>,
}

impl SubnetCache {
    /// Every readable `HostSubnet` with its create revision, if anything under `subnets/` or
    /// the network changed since the last call; `None` if nothing did.
    pub fn changed(&mut self, cache: &Cache, keys: &Keys) -> Option<Vec<Registered>> {
        let dir = keys.subnets();
        let seen = (cache.fingerprint(&dir), cache.fingerprint(&keys.network()));
        self.changed_records(seen, cache.range(&dir))
    }

    /// [`SubnetCache::changed`] on the fingerprints `seen` and the `subnets/` records.
    fn changed_records<'a>(
        &mut self,
        seen: ((usize, i64), (usize, i64)),
        records: impl Iterator<Item = (&'a str, &'a Entry)>,
    ) -> Option<Vec<Registered>> {
        if self.seen == Some(seen) {
            return None;
        }
        self.seen = Some(seen);
        let mut decoded = HashMap::with_capacity(seen.0.0);
        let mut subnets = Vec::with_capacity(seen.0.0);
        for (key, entry) in records {
            let record = match self.decoded.remove(key) {
                Some((revision, record)) if revision == entry.mod_revision => record,
                _ => decode::<HostSubnet>(key, &entry.value).ok(),
            };
            if let Some(record) = &record {
                subnets.push((record.clone(), entry.create_revision));
            }
            decoded.insert(key.to_owned(), (entry.mod_revision, record));
        }
        self.decoded = decoded;
        Some(subnets)
    }

    /// Forgets what was seen: the next [`SubnetCache::changed`] hands the set on again (after
    /// a failed update, so it is tried again).
    pub fn forget(&mut self) {
        self.seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, subnet: &str, revision: i64) -> Entry {
        let record = format!(r#"{{"host":"{host}","hostIP":"192.0.2.9","subnet":"{subnet}"}}"#);
        Entry { value: record.into_bytes(), create_revision: revision, mod_revision: revision }
    }

    #[test]
    fn the_set_is_handed_on_only_when_it_changed_and_unreadable_records_are_left_out() {
        let mut cache = SubnetCache::default();
        let records = [("/sdn/subnets/a", entry("a", "10.1.1.0/24", 3)), ("/sdn/subnets/b", entry("b", "bad", 4))];
        let iter = || records.iter().map(|(k, e)| (*k, e));
        let seen = ((2, 4), (1, 1));
        let first = cache.changed_records(seen, iter()).expect("the first read hands it on");
        assert_eq!(first.len(), 1, "the unreadable record is left out");
        assert_eq!((first[0].0.host.as_str(), first[0].1), ("a", 3));
        assert!(cache.changed_records(seen, iter()).is_none(), "nothing changed");
        let network_changed = ((2, 4), (1, 9));
        assert!(cache.changed_records(network_changed, iter()).is_some(), "the network changed");
        cache.forget();
        assert!(cache.changed_records(network_changed, iter()).is_some(), "forgotten after a failed update");
    }
}

//! Keeps the DNS index level with the informer's cache of `services/` and `endpoints/`.
//!
//! Each sync compares the mod revision of every cached record with the one last loaded, so an
//! event costs one pass over the keys and one index update per record that changed, instead of
//! a rebuild of every service (10,000 of them take far longer than an event may).

use std::collections::{HashMap, HashSet};

use sdn_cluster::informer::Entry;
use sdn_cluster::store::decode;
use sdn_cluster::{Endpoints, Service};
use sdn_dns::Index;

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Records added, changed or removed.
    pub changed: usize,
    /// Records that could not be loaded, one message each (key and reason).
    pub errors: Vec<String>,
}

/// The mod revision of every record loaded into the index, by key.
#[derive(Debug, Default)]
pub struct Feed {
    services: HashMap<String, i64>,
    endpoints: HashMap<String, i64>,
}

impl Feed {
    /// Whether the index holds exactly the cached records (same keys, same revisions). A pass
    /// over the keys without the index, so answers are not held up while nothing changed.
    pub fn is_current<'a>(
        &self,
        services: impl Iterator<Item = (&'a str, &'a Entry)>,
        endpoints: impl Iterator<Item = (&'a str, &'a Entry)>,
    ) -> bool {
        same(&self.services, services) && same(&self.endpoints, endpoints)
    }

    /// Brings `index` up to the cached records: `services` and `endpoints` are every key and
    /// entry under the `services/` and `endpoints/` prefixes.
    pub fn sync<'a>(
        &mut self,
        index: &mut Index,
        services: impl Iterator<Item = (&'a str, &'a Entry)>,
        endpoints: impl Iterator<Item = (&'a str, &'a Entry)>,
    ) -> Synced {
        let mut synced = Synced::default();
        let gone = sync_kind(&mut self.services, services, &mut synced, |key, value| {
            let service: Service = decode(key, value).map_err(|e| e.to_string())?;
            index.upsert_service(&service).map_err(|e| format!("{key}: {e}"))
        });
        gone.iter().for_each(|(namespace, name)| index.remove_service(namespace, name));
        let gone = sync_kind(&mut self.endpoints, endpoints, &mut synced, |key, value| {
            let endpoints: Endpoints = decode(key, value).map_err(|e| e.to_string())?;
            index.set_endpoints(&endpoints).map_err(|e| format!("{key}: {e}"))
        });
        gone.iter().for_each(|(namespace, name)| index.remove_endpoints(namespace, name));
        synced
    }
}

/// Whether `cached` has exactly the keys of `loaded`, at the revisions loaded.
fn same<'a>(loaded: &HashMap<String, i64>, cached: impl Iterator<Item = (&'a str, &'a Entry)>) -> bool {
    let mut count = 0;
    for (key, entry) in cached {
        if loaded.get(key) != Some(&entry.mod_revision) {
            return false;
        }
        count += 1;
    }
    count == loaded.len()
}

/// Loads every record of one kind whose revision changed (with `load`) and returns the
/// namespace and name of every loaded record that is gone, for the caller to remove.
fn sync_kind<'a>(
    loaded: &mut HashMap<String, i64>,
    cached: impl Iterator<Item = (&'a str, &'a Entry)>,
    synced: &mut Synced,
    mut load: impl FnMut(&str, &[u8]) -> Result<(), String>,
) -> Vec<(String, String)> {
    let mut seen = HashSet::with_capacity(loaded.len());
    for (key, entry) in cached {
        seen.insert(key);
        if loaded.get(key) == Some(&entry.mod_revision) {
            continue;
        }
        synced.changed += 1;
        // A record that cannot be read keeps whatever was loaded before for it, and is tried
        // again when it changes.
        if let Err(reason) = load(key, &entry.value) {
            synced.errors.push(reason);
        }
        loaded.insert(key.to_owned(), entry.mod_revision);
    }
    let gone: Vec<String> = loaded.keys().filter(|key| !seen.contains(key.as_str())).cloned().collect();
    synced.changed += gone.len();
    gone.into_iter()
        .filter_map(|key| {
            loaded.remove(&key);
            id_from_key(&key)
        })
        .collect()
}

/// The namespace and name of `…/<kind>/<namespace>/<name>`.
fn id_from_key(key: &str) -> Option<(String, String)> {
    let mut parts = key.rsplit('/');
    let name = parts.next().filter(|s| !s.is_empty())?;
    let namespace = parts.next().filter(|s| !s.is_empty())?;
    Some((namespace.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn entry(json: &str, revision: i64) -> Entry {
        Entry { value: json.as_bytes().to_vec(), create_revision: revision, mod_revision: revision }
    }

    fn service(ns: &str, name: &str, ip: &str) -> String {
        format!(r#"{{"namespace":"{ns}","name":"{name}","clusterIP":"{ip}","ports":[{{"name":"http","port":80}}]}}"#)
    }

    fn query(index: &Index, name: &str) -> Vec<u8> {
        // A plain A query with ID 1, built by hand so the test needs no DNS library.
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        match sdn_dns::respond(index, &q, sdn_dns::Transport::Tcp) {
            sdn_dns::Outcome::Reply(bytes) => bytes,
            other => panic!("{other:?}"),
        }
    }

    /// The response code of a reply.
    fn rcode(reply: &[u8]) -> u8 {
        reply[3] & 0x0f
    }

    #[test]
    fn only_changed_records_are_loaded_and_gone_ones_removed() {
        let mut index = Index::new(sdn_dns::Config::default()).expect("index");
        let mut feed = Feed::default();
        let mut services = BTreeMap::new();
        services.insert("/sdn/services/default/web".to_owned(), entry(&service("default", "web", "172.30.0.10"), 5));
        services.insert("/sdn/services/default/db".to_owned(), entry(&service("default", "db", "172.30.0.11"), 6));
        services.insert("/sdn/services/default/bad".to_owned(), entry("{not json", 7));
        let endpoints: BTreeMap<String, Entry> = BTreeMap::new();
        let run = |feed: &mut Feed, index: &mut Index, services: &BTreeMap<String, Entry>| {
            feed.sync(
                index,
                services.iter().map(|(k, v)| (k.as_str(), v)),
                endpoints.iter().map(|(k, v)| (k.as_str(), v)),
            )
        };

        let first = run(&mut feed, &mut index, &services);
        assert_eq!(first.changed, 3);
        assert_eq!(first.errors.len(), 1, "{:?}", first.errors);
        assert!(first.errors[0].contains("/sdn/services/default/bad"), "{:?}", first.errors);
        assert_eq!(rcode(&query(&index, "web.default.svc.cluster.local")), 0);

        let current = |feed: &Feed, services: &BTreeMap<String, Entry>| {
            feed.is_current(
                services.iter().map(|(k, v)| (k.as_str(), v)),
                endpoints.iter().map(|(k, v)| (k.as_str(), v)),
            )
        };
        assert!(current(&feed, &services));
        let again = run(&mut feed, &mut index, &services);
        assert_eq!(again, Synced::default(), "nothing changed, nothing loaded");
        let mut removed = services.clone();
        removed.remove("/sdn/services/default/db");
        assert!(!current(&feed, &removed), "a record gone");

        services.remove("/sdn/services/default/web");
        services.insert("/sdn/services/default/db".to_owned(), entry(&service("default", "db", "172.30.0.12"), 9));
        assert!(!current(&feed, &services), "a record changed");
        let changed = run(&mut feed, &mut index, &services);
        assert_eq!(changed.changed, 2);
        assert_eq!(rcode(&query(&index, "web.default.svc.cluster.local")), 3, "NXDOMAIN once removed");
        let db = query(&index, "db.default.svc.cluster.local");
        assert!(db.ends_with(&[172, 30, 0, 12]), "the new address is answered: {db:?}");
    }

    #[test]
    fn keys_name_their_record() {
        assert_eq!(id_from_key("/sdn/services/ns/svc"), Some(("ns".into(), "svc".into())));
        assert_eq!(id_from_key("svc"), None);
        assert_eq!(id_from_key("/sdn/services/ns/"), None);
    }
}

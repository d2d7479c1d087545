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

/// The mod revision of every record loaded into the index, by its key below its directory (a
/// service's and its endpoints' are `<namespace>/<name>` both): one entry holds both, and the
/// directories are not repeated in every key (two maps of whole keys took 2 MB for 10,000
/// services).
#[derive(Debug, Default)]
pub struct Feed {
    loaded: HashMap<Box<str>, [i64; 2]>,
    /// How many records of each kind are loaded.
    counts: [usize; 2],
}

/// A [`Feed::loaded`] revision where no record of that kind is loaded (etcd's start at 1).
const NONE: i64 = 0;
const SERVICE: usize = 0;
const ENDPOINTS: usize = 1;

impl Feed {
    /// Whether the index holds exactly the cached records (same keys, same revisions). A pass
    /// over the keys without the index, so answers are not held up while nothing changed.
    /// `services` and `endpoints` are every key and entry under the directories `service_dir`
    /// and `endpoints_dir`.
    pub fn is_current<'a>(
        &self,
        service_dir: &str,
        services: impl Iterator<Item = (&'a str, &'a Entry)>,
        endpoints_dir: &str,
        endpoints: impl Iterator<Item = (&'a str, &'a Entry)>,
    ) -> bool {
        self.same(SERVICE, service_dir, services) && self.same(ENDPOINTS, endpoints_dir, endpoints)
    }

    /// Brings `index` up to the cached records, given as for [`Feed::is_current`].
    pub fn sync<'a>(
        &mut self,
        index: &mut Index,
        service_dir: &str,
        services: impl Iterator<Item = (&'a str, &'a Entry)>,
        endpoints_dir: &str,
        endpoints: impl Iterator<Item = (&'a str, &'a Entry)>,
    ) -> Synced {
        let mut synced = Synced::default();
        let gone = self.sync_kind(SERVICE, service_dir, services, &mut synced, |key, value| {
            let service: Service = decode(key, value).map_err(|e| e.to_string())?;
            index.upsert_service(&service).map_err(|e| format!("{key}: {e}"))
        });
        gone.iter().for_each(|(namespace, name)| index.remove_service(namespace, name));
        let gone = self.sync_kind(ENDPOINTS, endpoints_dir, endpoints, &mut synced, |key, value| {
            let endpoints: Endpoints = decode(key, value).map_err(|e| e.to_string())?;
            index.set_endpoints(&endpoints).map_err(|e| format!("{key}: {e}"))
        });
        gone.iter().for_each(|(namespace, name)| index.remove_endpoints(namespace, name));
        synced
    }

    /// The revision of the record of `kind` at `id` loaded.
    fn revision(&self, kind: usize, id: &str) -> i64 {
        self.loaded.get(id).map_or(NONE, |revisions| revisions[kind])
    }

    /// Whether `cached` (under `dir`) has exactly the records of `kind` loaded, at the
    /// revisions loaded.
    fn same<'a>(&self, kind: usize, dir: &str, cached: impl Iterator<Item = (&'a str, &'a Entry)>) -> bool {
        let mut count = 0;
        for (key, entry) in cached {
            if self.revision(kind, below(key, dir)) != entry.mod_revision {
                return false;
            }
            count += 1;
        }
        count == self.counts[kind]
    }

    /// Loads every record of `kind` whose revision changed (with `load`) and returns the
    /// namespace and name of every loaded record that is gone, for the caller to remove.
    fn sync_kind<'a>(
        &mut self,
        kind: usize,
        dir: &str,
        cached: impl Iterator<Item = (&'a str, &'a Entry)>,
        synced: &mut Synced,
        mut load: impl FnMut(&str, &[u8]) -> Result<(), String>,
    ) -> Vec<(String, String)> {
        let mut seen = HashSet::with_capacity(self.counts[kind]);
        for (key, entry) in cached {
            let id = below(key, dir);
            seen.insert(id);
            let loaded = self.revision(kind, id);
            if loaded == entry.mod_revision {
                continue;
            }
            synced.changed += 1;
            // A record that cannot be read keeps whatever was loaded before for it, and is
            // tried again when it changes.
            if let Err(reason) = load(key, &entry.value) {
                synced.errors.push(reason);
            }
            if loaded == NONE {
                self.counts[kind] += 1;
            }
            match self.loaded.get_mut(id) {
                Some(revisions) => revisions[kind] = entry.mod_revision,
                None => {
                    let mut revisions = [NONE; 2];
                    revisions[kind] = entry.mod_revision;
                    self.loaded.insert(id.into(), revisions);
                }
            }
        }
        let gone: Vec<Box<str>> = self
            .loaded
            .iter()
            .filter(|(id, revisions)| revisions[kind] != NONE && !seen.contains(&***id))
            .map(|(id, _)| id.clone())
            .collect();
        synced.changed += gone.len();
        self.counts[kind] -= gone.len();
        gone.into_iter()
            .filter_map(|id| {
                if let Some(revisions) = self.loaded.get_mut(&id) {
                    revisions[kind] = NONE;
                    if *revisions == [NONE; 2] {
                        self.loaded.remove(&id);
                    }
                }
                id_from_key(&format!("{dir}{id}"))
            })
            .collect()
    }
}

/// `key` without `dir`, which every cached key of the directory starts with.
fn below<'a>(key: &'a str, dir: &str) -> &'a str {
    key.strip_prefix(dir).unwrap_or(key)
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

    const SERVICES: &str = "/sdn/services/";
    const ENDPOINTS_DIR: &str = "/sdn/endpoints/";

    fn entry(json: &str, revision: i64) -> Entry {
        Entry { value: json.as_bytes().into(), create_revision: revision, mod_revision: revision }
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
                SERVICES,
                services.iter().map(|(k, v)| (k.as_str(), v)),
                ENDPOINTS_DIR,
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
                SERVICES,
                services.iter().map(|(k, v)| (k.as_str(), v)),
                ENDPOINTS_DIR,
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

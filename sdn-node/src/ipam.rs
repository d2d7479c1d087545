//! Pod addresses from the node's subnet.
//!
//! The choice is pure ([`next_free`]); the record is a directory with one
//! file per address (named by the address, holding its owner's record, which
//! this module keeps opaque but for the key the caller derives from it), created
//! exclusively, as the reference `host-local` plugin does with `O_EXCL`, and whole
//! (see [`crate::durable::create_new`]), so a power cut leaves no half-written owner. The directory is the
//! truth: it survives agent restarts, and no address is handed to two live
//! pods because a second create of the same file fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnetwork::Ipv4Network;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Network),
    #[error("IPAM state {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The first free host address after `after` (wrapping around), skipping
/// the network and broadcast addresses and the gateway. Starting after the
/// last one handed out keeps a released address from being reused at once.
pub fn next_free(
    subnet: Ipv4Network,
    gateway: Ipv4Addr,
    used: impl Fn(&Ipv4Addr) -> bool,
    after: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let size = subnet.size();
    if size < 4 {
        return None;
    }
    let base = u32::from(subnet.network());
    // Host offsets run from 1 to size - 2.
    let hosts = size - 2;
    let start = after.filter(|ip| subnet.contains(*ip)).map_or(0, |ip| u32::from(ip) - base);
    (0..hosts).map(|i| base + 1 + (start + i) % hosts).map(Ipv4Addr::from).find(|ip| *ip != gateway && !used(ip))
}

/// The address records of one node's subnet. The directory is read once,
/// at open; after that this store is its only writer (one agent per node),
/// so the records are served from memory and each change costs one file.
pub struct IpamStore {
    dir: PathBuf,
    subnet: Ipv4Network,
    gateway: Ipv4Addr,
    state: Mutex<State>,
}

struct State {
    records: BTreeMap<Ipv4Addr, String>,
    /// Each record's address by its owner's key, so finding a pod's address costs no pass over
    /// (and no decoding of) every record.
    by_key: HashMap<String, Ipv4Addr>,
    /// The last address handed out, also kept in `last-reserved`.
    last: Option<Ipv4Addr>,
    /// `last-reserved`, rewritten in place (a fixed-width record, no truncation).
    last_file: File,
}

const LAST: &str = "last-reserved";
/// Room for the longest IPv4 address; shorter ones are padded with spaces.
const LAST_WIDTH: usize = 15;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IpamError {
    let path = path.to_owned();
    move |source| IpamError::Io { path, source }
}

impl IpamStore {
    /// Reads the records under `dir`; `key_of` names the owner of a record (the caller's
    /// identity of a pod), which [`Self::allocate`], [`Self::get`] and [`Self::release`] take.
    pub fn open(
        dir: &Path,
        subnet: Ipv4Network,
        gateway: Ipv4Addr,
        key_of: impl Fn(&str) -> String,
    ) -> Result<Self, IpamError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A record staged by an agent that stopped before linking it: never handed out.
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                continue;
            }
            let Ok(ip) = name.parse::<Ipv4Addr>() else { continue };
            let owner = std::fs::read_to_string(entry.path()).map_err(io(&entry.path()))?;
            let owner = owner.trim();
            if owner.is_empty() {
                // Made by an agent killed between creating the file and writing its owner: that
                // request was never answered, so the address is nobody's.
                tracing::warn!("freeing {ip}: its record names no owner (an interrupted allocation)");
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                continue;
            }
            records.insert(ip, owner.to_owned());
        }
        let last_path = dir.join(LAST);
        let last = std::fs::read_to_string(&last_path).ok().and_then(|s| s.trim().parse().ok());
        let last_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&last_path)
            .map_err(io(&last_path))?;
        let by_key = records.iter().map(|(ip, owner)| (key_of(owner), *ip)).collect();
        Ok(Self { dir: dir.to_owned(), subnet, gateway, state: Mutex::new(State { records, by_key, last, last_file }) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::locked(&self.state)
    }

    /// Every recorded address and its owner's record.
    pub fn list(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        Ok(self.state().records.iter().map(|(ip, owner)| (*ip, owner.clone())).collect())
    }

    /// The address and owner record of `key`.
    pub fn get(&self, key: &str) -> Option<(Ipv4Addr, String)> {
        let state = self.state();
        let ip = *state.by_key.get(key)?;
        state.records.get(&ip).map(|owner| (ip, owner.clone()))
    }

    /// The address of `key`, allocating one recorded as `owner` if there is none (so a
    /// repeated request for the same pod gets the same address).
    pub fn allocate(&self, key: &str, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let mut state = self.state();
        if let Some(ip) = state.by_key.get(key) {
            return Ok(*ip);
        }
        let mut skipped = HashSet::new();
        let mut after = state.last;
        loop {
            let used = |ip: &Ipv4Addr| state.records.contains_key(ip) || skipped.contains(ip);
            let ip = next_free(self.subnet, self.gateway, used, after).ok_or(IpamError::Exhausted(self.subnet))?;
            let path = self.dir.join(ip.to_string());
            match crate::durable::create_new(&path, owner.as_bytes()) {
                Ok(()) => {
                    state.records.insert(ip, owner.to_owned());
                    state.by_key.insert(key.to_owned(), ip);
                    state.last = Some(ip);
                    let padded = format!("{:<LAST_WIDTH$}", ip.to_string());
                    let last_path = self.dir.join(LAST);
                    state.last_file.write_all_at(padded.as_bytes(), 0).map_err(io(&last_path))?;
                    return Ok(ip);
                }
                // A file nobody recorded (left by hand, or by a crash between create and
                // write): skip the address rather than take it over.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    skipped.insert(ip);
                    after = Some(ip);
                }
                Err(err) => return Err(io(&path)(err)),
            }
        }
    }

    /// Releases the address of `key`; releasing what is not there succeeds.
    pub fn release(&self, key: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let mut state = self.state();
        let Some(ip) = state.by_key.get(key).copied() else {
            return Ok(None);
        };
        let path = self.dir.join(ip.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(&path)(err)),
        }
        state.records.remove(&ip);
        state.by_key.remove(key);
        Ok(Some(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cidr: &str) -> Ipv4Network {
        cidr.parse().expect("cidr")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn skips_network_gateway_and_broadcast() {
        let subnet = net("10.1.3.0/24");
        let gateway = ip("10.1.3.1");
        assert_eq!(next_free(subnet, gateway, |_| false, None), Some(ip("10.1.3.2")));
        let used: HashSet<_> = (2..=254).map(|i| Ipv4Addr::new(10, 1, 3, i)).collect();
        assert_eq!(next_free(subnet, gateway, |ip| used.contains(ip), None), None, "254 hosts less the gateway");
        let almost: HashSet<_> = (2..=253).map(|i| Ipv4Addr::new(10, 1, 3, i)).collect();
        assert_eq!(next_free(subnet, gateway, |ip| almost.contains(ip), None), Some(ip("10.1.3.254")));
    }

    #[test]
    fn continues_after_the_last_and_wraps() {
        let subnet = net("10.1.3.0/29");
        let gateway = ip("10.1.3.1");
        let used = |ip: &Ipv4Addr| *ip == Ipv4Addr::new(10, 1, 3, 3);
        assert_eq!(next_free(subnet, gateway, used, Some(ip("10.1.3.5"))), Some(ip("10.1.3.6")));
        assert_eq!(next_free(subnet, gateway, used, Some(ip("10.1.3.6"))), Some(ip("10.1.3.2")), "wraps");
        assert_eq!(next_free(net("10.1.3.0/31"), gateway, |_| false, None), None);
    }

    #[test]
    fn store_is_idempotent_per_pod_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("sdn-ipam-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let subnet = net("10.1.3.0/29");
        // Records are "<key> <payload>"; the key is the first word.
        let key_of = |record: &str| record.split(' ').next().unwrap_or_default().to_owned();
        let store = IpamStore::open(&dir, subnet, ip("10.1.3.1"), key_of).expect("open");
        let a = store.allocate("pod-a", "pod-a 1").expect("a");
        assert_eq!(store.allocate("pod-a", "pod-a 2").expect("again"), a, "same pod, same address");
        let b = store.allocate("pod-b", "pod-b 1").expect("b");
        assert_ne!(a, b);
        let reopened = IpamStore::open(&dir, subnet, ip("10.1.3.1"), key_of).expect("reopen");
        assert_eq!(reopened.list().expect("list"), vec![(a, "pod-a 1".into()), (b, "pod-b 1".into())]);
        assert_eq!(reopened.get("pod-b"), Some((b, "pod-b 1".into())), "found by key after reopen");
        assert_eq!(reopened.release("pod-a").expect("release"), Some(a));
        assert_eq!(reopened.release("pod-a").expect("release twice"), None);
        assert_eq!(reopened.get("pod-a"), None);
        // Six host addresses less the gateway: b and four more fill it.
        for pod in ["c", "d", "e", "f"] {
            reopened.allocate(pod, pod).expect("room");
        }
        let err = reopened.allocate("g", "g").expect_err("full");
        assert_eq!(err.to_string(), "no free address left in 10.1.3.0/29");
        // A record left empty by an allocation a crash cut short frees its address on reopen.
        let (f, _) = reopened.get("f").expect("f's record");
        std::fs::write(dir.join(f.to_string()), "").expect("an empty record");
        let reopened = IpamStore::open(&dir, subnet, ip("10.1.3.1"), key_of).expect("reopen with an empty record");
        assert_eq!(reopened.get("f"), None);
        assert_eq!(reopened.allocate("g", "g").expect("the freed address"), f);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

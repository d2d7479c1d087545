//! The PTR owners by address: which of the index's entries an address names, kept beside the
//! entries so that a reverse lookup is one search.
//!
//! There is an owner for every endpoint and cluster IP (60,000 for 10,000 services), so their
//! shape is most of the index's size. An owner is an address and a 4-byte entry id in an ordered
//! set: 8 bytes an IPv4 owner, where a map from addresses to owners holding the entries' keys
//! (16 bytes each) took three times the memory.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Who an address belongs to: an entry, as an endpoint of its service or as its cluster IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PtrOwner {
    pub entry: u32,
    pub endpoint: bool,
}

/// Entry ids are below this, so an owner packs into 31 bits and a flag.
const MAX_ENTRIES: u32 = 1 << 31;

impl PtrOwner {
    fn pack(self) -> u32 {
        self.entry << 1 | u32::from(self.endpoint)
    }

    fn unpack(packed: u32) -> Self {
        Self { entry: packed >> 1, endpoint: packed & 1 == 1 }
    }
}

/// Every address with its owners, one element each, in address order (IPv4 before IPv6, as
/// `IpAddr` orders them).
#[derive(Debug, Clone, Default)]
pub(crate) struct Reverse {
    v4: BTreeSet<(u32, u32)>,
    v6: BTreeSet<(u128, u32)>,
}

impl Reverse {
    /// The owners of `ip`, ordered by entry id.
    pub fn owners(&self, ip: IpAddr) -> Vec<PtrOwner> {
        match ip {
            IpAddr::V4(ip) => {
                let ip = u32::from(ip);
                self.v4.range((ip, 0)..=(ip, u32::MAX)).map(|&(_, packed)| PtrOwner::unpack(packed)).collect()
            }
            IpAddr::V6(ip) => {
                let ip = u128::from(ip);
                self.v6.range((ip, 0)..=(ip, u32::MAX)).map(|&(_, packed)| PtrOwner::unpack(packed)).collect()
            }
        }
    }

    /// Adds an owner of `ip`; an entry id past [`MAX_ENTRIES`] (an index no memory could hold)
    /// owns nothing.
    pub fn add(&mut self, ip: IpAddr, owner: PtrOwner) {
        if owner.entry >= MAX_ENTRIES {
            return;
        }
        match ip {
            IpAddr::V4(ip) => self.v4.insert((ip.into(), owner.pack())),
            IpAddr::V6(ip) => self.v6.insert((ip.into(), owner.pack())),
        };
    }

    pub fn remove(&mut self, ip: IpAddr, owner: PtrOwner) {
        match ip {
            IpAddr::V4(ip) => self.v4.remove(&(ip.into(), owner.pack())),
            IpAddr::V6(ip) => self.v6.remove(&(ip.into(), owner.pack())),
        };
    }

    /// Whether any address from `first` to `last` (in `IpAddr`'s order) has an owner.
    pub fn any_in(&self, first: IpAddr, last: IpAddr) -> bool {
        let v4 = |first: Ipv4Addr, last: Ipv4Addr| self.v4.range((first.into(), 0)..=(last.into(), u32::MAX)).next();
        let v6 = |first: u128, last: u128| self.v6.range((first, 0)..=(last, u32::MAX)).next();
        match (first, last) {
            _ if first > last => false,
            (IpAddr::V4(first), IpAddr::V4(last)) => v4(first, last).is_some(),
            (IpAddr::V6(first), IpAddr::V6(last)) => v6(first.into(), last.into()).is_some(),
            (IpAddr::V4(first), IpAddr::V6(last)) => {
                v4(first, Ipv4Addr::BROADCAST).is_some() || v6(0, last.into()).is_some()
            }
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// The keys of the index's entries by id, the lowest free id first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ids {
    keys: Vec<Option<Arc<str>>>,
    free: BTreeSet<u32>,
}

impl Ids {
    /// An id for the new entry `key`.
    pub fn take(&mut self, key: &Arc<str>) -> u32 {
        if let Some(id) = self.free.pop_first()
            && let Some(slot) = self.keys.get_mut(id as usize)
        {
            *slot = Some(key.clone());
            return id;
        }
        self.keys.push(Some(key.clone()));
        u32::try_from(self.keys.len() - 1).unwrap_or(u32::MAX)
    }

    /// Frees the id of an entry that is gone.
    pub fn release(&mut self, id: u32) {
        if let Some(slot) = self.keys.get_mut(id as usize) {
            *slot = None;
            self.free.insert(id);
        }
    }

    pub fn key(&self, id: u32) -> Option<&Arc<str>> {
        self.keys.get(id as usize)?.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn owners_of_one_address_come_by_entry_id() {
        let mut reverse = Reverse::default();
        let owner = |entry, endpoint| PtrOwner { entry, endpoint };
        for o in [owner(7, true), owner(2, false), owner(2, true)] {
            reverse.add(ip("10.1.0.5"), o);
        }
        reverse.add(ip("10.1.0.6"), owner(1, true));
        assert_eq!(reverse.owners(ip("10.1.0.5")), [owner(2, false), owner(2, true), owner(7, true)]);
        reverse.remove(ip("10.1.0.5"), owner(2, true));
        assert_eq!(reverse.owners(ip("10.1.0.5")), [owner(2, false), owner(7, true)]);
        assert_eq!(reverse.owners(ip("10.1.0.6")), [owner(1, true)]);
        reverse.add(ip("fd00::5"), owner(MAX_ENTRIES - 1, true));
        assert_eq!(reverse.owners(ip("fd00::5")), [owner(MAX_ENTRIES - 1, true)], "the highest id");
        reverse.add(ip("fd00::6"), owner(MAX_ENTRIES, true));
        assert!(reverse.owners(ip("fd00::6")).is_empty(), "no id that cannot be packed");
    }

    #[test]
    fn ranges_of_addresses_find_both_families() {
        let mut reverse = Reverse::default();
        let owner = PtrOwner { entry: 3, endpoint: true };
        reverse.add(ip("10.1.0.5"), owner);
        reverse.add(ip("fd00::5"), owner);
        assert!(reverse.any_in(ip("10.1.0.0"), ip("10.1.0.255")));
        assert!(reverse.any_in(ip("10.1.0.5"), ip("10.1.0.5")));
        assert!(!reverse.any_in(ip("10.1.1.0"), ip("10.1.1.255")));
        assert!(reverse.any_in(ip("fd00::"), ip("fd00::ff")));
        assert!(!reverse.any_in(ip("fd00::6"), ip("fd00::ff")));
        assert!(reverse.any_in(ip("10.1.1.0"), ip("fd00::ff")), "IPv4 sorts before IPv6");
        assert!(reverse.any_in(ip("10.1.0.6"), ip("fd00::5")));
        assert!(!reverse.any_in(ip("10.1.0.6"), ip("fd00::4")));
        assert!(!reverse.any_in(ip("10.1.0.255"), ip("10.1.0.0")), "an empty range");
        assert!(!reverse.any_in(ip("fd00::"), ip("10.1.0.255")), "an empty range across families");
        reverse.remove(ip("10.1.0.5"), owner);
        reverse.remove(ip("fd00::5"), owner);
        assert!(reverse.is_empty());
    }

    #[test]
    fn ids_are_reused_lowest_first() {
        let mut ids = Ids::default();
        let key = |text: &str| Arc::<str>::from(text);
        let taken: Vec<u32> = ["a", "b", "c"].iter().map(|k| ids.take(&key(k))).collect();
        assert_eq!(taken, [0, 1, 2]);
        ids.release(2);
        ids.release(0);
        assert_eq!(ids.key(0), None);
        assert_eq!(ids.take(&key("d")), 0);
        assert_eq!(ids.take(&key("e")), 2);
        assert_eq!(ids.take(&key("f")), 3);
        assert_eq!(ids.key(1).map(|k| &**k), Some("b"));
        assert_eq!(ids.key(9), None);
        ids.release(9);
        assert_eq!(ids.take(&key("g")), 4, "an unknown id is never handed out");
    }
}

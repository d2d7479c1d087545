//! A service's ready endpoints as the index keeps them: the addresses apart from the hostnames,
//! which few endpoints have. An address beside an `Option<Box<str>>` takes 40 bytes; alone it
//! takes 17, which is a megabyte of 10,000 services' 50,000 endpoints.

use std::net::IpAddr;

/// Ready endpoints, each address once, in the order of their record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    ips: Box<[IpAddr]>,
    /// The hostname of the endpoint at the same position in `ips`; empty when none has one.
    hostnames: Box<[Option<Box<str>>]>,
}

/// One ready endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint<'a> {
    pub ip: IpAddr,
    pub hostname: Option<&'a str>,
}

impl Ready {
    /// The endpoints of `addresses`, where an address given twice keeps its first hostname (two
    /// records with one address would make a duplicate record in an RRset).
    pub fn new<'a>(addresses: impl Iterator<Item = (IpAddr, Option<&'a str>)>) -> Self {
        let (mut ips, mut hostnames): (Vec<IpAddr>, Vec<Option<Box<str>>>) = (Vec::new(), Vec::new());
        for (ip, hostname) in addresses {
            if !ips.contains(&ip) {
                ips.push(ip);
                hostnames.push(hostname.map(Into::into));
            }
        }
        if hostnames.iter().all(Option::is_none) {
            hostnames.clear();
        }
        Self { ips: ips.into_boxed_slice(), hostnames: hostnames.into_boxed_slice() }
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }

    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ips.iter().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = Endpoint<'_>> + '_ {
        self.ips.iter().enumerate().map(|(i, &ip)| Endpoint { ip, hostname: self.hostname(i) })
    }

    /// The endpoint at `ip`.
    pub fn find(&self, ip: IpAddr) -> Option<Endpoint<'_>> {
        let i = self.ips.iter().position(|&known| known == ip)?;
        Some(Endpoint { ip, hostname: self.hostname(i) })
    }

    fn hostname(&self, i: usize) -> Option<&str> {
        self.hostnames.get(i).and_then(Option::as_deref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn each_address_once_with_its_first_hostname() {
        let ready = Ready::new(
            [(ip("10.1.0.2"), None), (ip("10.1.0.3"), Some("db-0")), (ip("10.1.0.2"), Some("late"))].into_iter(),
        );
        let all: Vec<Endpoint> = ready.iter().collect();
        assert_eq!(
            all,
            [Endpoint { ip: ip("10.1.0.2"), hostname: None }, Endpoint { ip: ip("10.1.0.3"), hostname: Some("db-0") }]
        );
        assert_eq!(ready.find(ip("10.1.0.3")).and_then(|e| e.hostname), Some("db-0"));
        assert_eq!(ready.find(ip("10.1.0.4")), None);
    }

    #[test]
    fn no_hostnames_keep_no_room_for_them() {
        let ready = Ready::new([(ip("10.1.0.2"), None), (ip("fd00::2"), None)].into_iter());
        assert!(ready.hostnames.is_empty());
        assert_eq!(ready.ips().collect::<Vec<_>>(), [ip("10.1.0.2"), ip("fd00::2")]);
        assert!(Ready::default().is_empty() && Ready::default().iter().next().is_none());
    }
}

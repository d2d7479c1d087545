//! The service maps: each frontend's entry (its id and backend count) and its backends' slots,
//! written so the programs never read half of a change: a growing frontend gets its new slots
//! before its count, a shrinking one its count before its old slots go.

use std::net::Ipv4Addr;

use sdn_cluster::services::Protocol;
use sdn_ebpf_common::{Backend, BackendKey, MAP_BACKENDS, MAP_SERVICES, ServiceEntry, ServiceKey};

use super::{BpfError, Dataplane, ip_key, key_ip, map_err, optional};
use crate::services;

/// The map key of a frontend.
pub fn frontend_key(frontend: &services::Frontend) -> ServiceKey {
    let protocol = match frontend.protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        // The table holds no SCTP frontends (`services::wanted` leaves them out).
        Protocol::Sctp => 132,
    };
    ServiceKey { ip: ip_key(frontend.ip), port: frontend.port.to_be(), protocol, _pad: 0 }
}

/// The marker key that says `ip` is a cluster IP.
pub fn marker_key(ip: Ipv4Addr) -> ServiceKey {
    ServiceKey { ip: ip_key(ip), port: 0, protocol: 0, _pad: 0 }
}

/// The map value of a backend.
pub fn backend_value(backend: &services::Backend) -> Backend {
    Backend { ip: ip_key(backend.ip), port: backend.port.to_be(), _pad: 0 }
}

/// A frontend key read back, as the programs match it: address, protocol number, port.
pub fn key_parts(key: &ServiceKey) -> (Ipv4Addr, u8, u16) {
    (key_ip(key.ip), key.protocol, u16::from_be(key.port))
}

impl Dataplane {
    /// Every entry of the service map (frontends and markers).
    pub fn service_entries(&self) -> Result<Vec<(ServiceKey, ServiceEntry)>, BpfError> {
        self.services.iter().map(|entry| entry.map_err(map_err(MAP_SERVICES))).collect()
    }

    /// The backends of frontend `id` in slots `0..count`.
    pub fn backends(&self, id: u32, count: u32) -> Result<Vec<Backend>, BpfError> {
        let mut found = Vec::new();
        for slot in 0..count {
            if let Some(backend) =
                optional(self.backends.get(&BackendKey { id, slot }, 0)).map_err(map_err(MAP_BACKENDS))?
            {
                found.push(backend);
            }
        }
        Ok(found)
    }

    /// Writes frontend `key` as `id` with `backends` and `affinity` (seconds, 0 for none),
    /// where it had `old_count` backends before (0 for a new one); its counters stay.
    pub fn write_frontend(
        &mut self,
        key: ServiceKey,
        id: u32,
        backends: &[Backend],
        affinity: u32,
        old_count: u32,
    ) -> Result<(), BpfError> {
        let count = u32::try_from(backends.len()).unwrap_or(u32::MAX);
        for (slot, backend) in (0..count).zip(backends) {
            self.backends.insert(BackendKey { id, slot }, *backend, 0).map_err(map_err(MAP_BACKENDS))?;
        }
        let existing = optional(self.services.get(&key, 0)).map_err(map_err(MAP_SERVICES))?;
        let entry = ServiceEntry { id, count, affinity, ..existing.unwrap_or_default() };
        if existing != Some(entry) {
            self.services.insert(key, entry, 0).map_err(map_err(MAP_SERVICES))?;
        }
        self.remove_slots(id, count, old_count)
    }

    /// Removes frontend (or marker) `key`, whose backends are `count` slots of `id`.
    pub fn remove_frontend(&mut self, key: ServiceKey, id: u32, count: u32) -> Result<(), BpfError> {
        optional(self.services.remove(&key)).map_err(map_err(MAP_SERVICES))?;
        self.remove_slots(id, 0, count)
    }

    /// Writes the marker of cluster IP `ip`.
    pub fn write_marker(&mut self, ip: Ipv4Addr) -> Result<(), BpfError> {
        let key = marker_key(ip);
        if optional(self.services.get(&key, 0)).map_err(map_err(MAP_SERVICES))?.is_none() {
            self.services.insert(key, ServiceEntry::default(), 0).map_err(map_err(MAP_SERVICES))?;
        }
        Ok(())
    }

    fn remove_slots(&mut self, id: u32, from: u32, to: u32) -> Result<(), BpfError> {
        for slot in from..to {
            optional(self.backends.remove(&BackendKey { id, slot })).map_err(map_err(MAP_BACKENDS))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_addresses_and_ports_as_the_packet_does() {
        let frontend = services::Frontend { ip: Ipv4Addr::new(172, 30, 0, 1), protocol: Protocol::Udp, port: 53 };
        let key = frontend_key(&frontend);
        assert_eq!(key.ip.to_ne_bytes(), [172, 30, 0, 1]);
        assert_eq!(key.port.to_ne_bytes(), [0, 53]);
        assert_eq!(key.protocol, 17);
        assert_eq!(key_parts(&key), (Ipv4Addr::new(172, 30, 0, 1), 17, 53));
        let backend = backend_value(&services::Backend { ip: Ipv4Addr::new(10, 1, 0, 2), port: 8080 });
        assert_eq!((backend.ip.to_ne_bytes(), backend.port.to_ne_bytes()), ([10, 1, 0, 2], [0x1f, 0x90]));
        assert_eq!(marker_key(frontend.ip), ServiceKey { ip: key.ip, port: 0, protocol: 0, _pad: 0 });
    }
}

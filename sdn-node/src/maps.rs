//! The flow-table maps the agent's control-plane side writes (remote subnets, tunnel senders,
//! service frontends), as a trait with two shells: the pinned BPF maps of a node
//! ([`Dataplane`]), and plain memory ([`MemoryMaps`]) for agents simulated by the thousand in
//! one process (`make bench-scale`), which run the same registry and service code.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Instant;

use ipnetwork::Ipv4Network;
use sdn_ebpf_common::{Backend, ServiceKey};

use crate::bpf::{self, BpfError, Dataplane};
use crate::remotes::Transport;

/// A remote subnet's route: its node and how packets get there.
pub type Route = (Ipv4Addr, Transport);

/// What the registry and service shells write; every call changes only what it names.
pub trait FlowMaps {
    /// Every remote subnet with its node and transport.
    fn remotes(&self) -> Result<Vec<(Ipv4Network, Route)>, BpfError>;
    fn upsert_remote(&mut self, subnet: Ipv4Network, node_ip: Ipv4Addr, path: Transport) -> Result<(), BpfError>;
    fn remove_remote(&mut self, subnet: Ipv4Network) -> Result<(), BpfError>;
    /// Every tunnel sender with the subnet it speaks for.
    fn nodes(&self) -> Result<Vec<(Ipv4Addr, Ipv4Network)>, BpfError>;
    fn upsert_node(&mut self, ip: Ipv4Addr, subnet: Ipv4Network) -> Result<(), BpfError>;
    fn remove_node(&mut self, ip: Ipv4Addr) -> Result<(), BpfError>;
    /// The marker that `ip` is a cluster IP.
    fn write_marker(&mut self, ip: Ipv4Addr) -> Result<(), BpfError>;
    /// Frontend `key` as `id` with `backends`, where it had `old_count` before.
    fn write_frontend(
        &mut self,
        key: ServiceKey,
        id: u32,
        backends: &[Backend],
        affinity: u32,
        old_count: u32,
    ) -> Result<(), BpfError>;
    /// Removes frontend (or marker) `key` and its `count` backend slots.
    fn remove_frontend(&mut self, key: ServiceKey, id: u32, count: u32) -> Result<(), BpfError>;
}

impl FlowMaps for Dataplane {
    fn remotes(&self) -> Result<Vec<(Ipv4Network, Route)>, BpfError> {
        let remotes = Dataplane::remotes(self)?;
        Ok(remotes.into_iter().map(|(s, r)| (s, (bpf::key_ip(r.node_ip), bpf::remote_path(&r)))).collect())
    }

    fn upsert_remote(&mut self, subnet: Ipv4Network, node_ip: Ipv4Addr, path: Transport) -> Result<(), BpfError> {
        Dataplane::upsert_remote(self, subnet, node_ip, path)
    }

    fn remove_remote(&mut self, subnet: Ipv4Network) -> Result<(), BpfError> {
        Dataplane::remove_remote(self, subnet)
    }

    fn nodes(&self) -> Result<Vec<(Ipv4Addr, Ipv4Network)>, BpfError> {
        Dataplane::nodes(self)
    }

    fn upsert_node(&mut self, ip: Ipv4Addr, subnet: Ipv4Network) -> Result<(), BpfError> {
        Dataplane::upsert_node(self, ip, subnet)
    }

    fn remove_node(&mut self, ip: Ipv4Addr) -> Result<(), BpfError> {
        Dataplane::remove_node(self, ip)
    }

    fn write_marker(&mut self, ip: Ipv4Addr) -> Result<(), BpfError> {
        Dataplane::write_marker(self, ip)
    }

    fn write_frontend(
        &mut self,
        key: ServiceKey,
        id: u32,
        backends: &[Backend],
        affinity: u32,
        old_count: u32,
    ) -> Result<(), BpfError> {
        Dataplane::write_frontend(self, key, id, backends, affinity, old_count)
    }

    fn remove_frontend(&mut self, key: ServiceKey, id: u32, count: u32) -> Result<(), BpfError> {
        Dataplane::remove_frontend(self, key, id, count)
    }
}

/// The maps in memory, each entry with the moment it was last written (what a simulation
/// measures convergence by).
#[derive(Debug, Default)]
pub struct MemoryMaps {
    pub remotes: BTreeMap<Ipv4Network, (Ipv4Addr, Transport, Instant)>,
    pub nodes: BTreeMap<Ipv4Addr, Ipv4Network>,
    /// Frontends (and markers, with no backends) by key: id, backends, written at.
    pub frontends: HashMap<ServiceKey, (u32, Vec<Backend>, Instant)>,
}

impl FlowMaps for MemoryMaps {
    fn remotes(&self) -> Result<Vec<(Ipv4Network, Route)>, BpfError> {
        Ok(self.remotes.iter().map(|(subnet, (ip, path, _))| (*subnet, (*ip, *path))).collect())
    }

    fn upsert_remote(&mut self, subnet: Ipv4Network, node_ip: Ipv4Addr, path: Transport) -> Result<(), BpfError> {
        self.remotes.insert(subnet, (node_ip, path, Instant::now()));
        Ok(())
    }

    fn remove_remote(&mut self, subnet: Ipv4Network) -> Result<(), BpfError> {
        self.remotes.remove(&subnet);
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<(Ipv4Addr, Ipv4Network)>, BpfError> {
        Ok(self.nodes.iter().map(|(ip, subnet)| (*ip, *subnet)).collect())
    }

    fn upsert_node(&mut self, ip: Ipv4Addr, subnet: Ipv4Network) -> Result<(), BpfError> {
        self.nodes.insert(ip, subnet);
        Ok(())
    }

    fn remove_node(&mut self, ip: Ipv4Addr) -> Result<(), BpfError> {
        self.nodes.remove(&ip);
        Ok(())
    }

    fn write_marker(&mut self, ip: Ipv4Addr) -> Result<(), BpfError> {
        let key = bpf::services::marker_key(ip);
        self.frontends.entry(key).or_insert_with(|| (0, Vec::new(), Instant::now()));
        Ok(())
    }

    fn write_frontend(
        &mut self,
        key: ServiceKey,
        id: u32,
        backends: &[Backend],
        _affinity: u32,
        _old_count: u32,
    ) -> Result<(), BpfError> {
        self.frontends.insert(key, (id, backends.to_vec(), Instant::now()));
        Ok(())
    }

    fn remove_frontend(&mut self, key: ServiceKey, _id: u32, _count: u32) -> Result<(), BpfError> {
        self.frontends.remove(&key);
        Ok(())
    }
}

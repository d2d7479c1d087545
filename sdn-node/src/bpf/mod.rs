//! The eBPF dataplane adapter: loads the TC programs of `ebpf/sdn-ebpf` (built by `build.rs` and
//! embedded here), keeps their maps and links pinned on a bpffs, and reads and writes the flow
//! tables. The design is `docs/dataplane.md`.
//!
//! Pin layout under the node's pin directory (which must be on a bpffs):
//!
//! ```text
//! <pin_dir>/maps/SDN_ENDPOINTS, SDN_REMOTES, SDN_CONFIG, SDN_COUNTERS, SDN_TUNNEL,
//!                SDN_SERVICES, SDN_BACKENDS, SDN_CONNTRACK, SDN_AFFINITY,
//!                SDN_NODES, SDN_DROPS                        the maps
//! <pin_dir>/links/<iface>            one TCX ingress link per device (vxlan0, tun0-br, underlay)
//! ```
//!
//! A new [`Dataplane`] reuses pinned maps (so a restarted agent finds its tables filled) and
//! replaces the program of a pinned link atomically, so traffic never stops across a restart.
//!
//! The pure parts live in their own files and are unit-tested there: map keys and entries
//! (`entries.rs`) and the rendered flow tables (`flows.rs`); pin checks and cleanup are in
//! `pins.rs`, pod-port filters in `filter.rs`. Loading and attaching are tested as root in
//! `tests/bpf_load.rs`.

pub mod drops;
mod entries;
mod error;
mod filter;
mod flows;
mod pins;
pub mod services;

use std::{
    fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

pub use crate::remotes::Transport;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, lpm_trie::Key},
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType,
        links::{FdLink, LinkError, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
    },
    sys::SyscallError,
};
use ipnetwork::Ipv4Network;
use sdn_ebpf_common::{
    Backend, BackendKey, MAP_BACKENDS, MAP_CONFIG, MAP_COUNTERS, MAP_ENDPOINTS, MAP_NODES, MAP_REMOTES, MAP_SERVICES,
    MAP_TUNNEL, PeerNode, ServiceEntry, ServiceKey,
};
pub use sdn_ebpf_common::{Counter, Decision, DropEvent, Endpoint, NodeConfig, Remote, Tunnel};

pub use entries::{Ports, ip_key, key_ip, key_network, node_config, remote_key, remote_path, with_service_network};
use entries::{endpoint_update, peer_node, remote_update, strip_gso_update};
pub use error::BpfError;
pub use flows::render_flows;
pub use pins::remove_pins;
use pins::{check_bpffs, check_pinned_map, expected_maps, remove_if_exists, valid_ifname};

/// The eBPF object built by `build.rs` from `ebpf/`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sdn-ebpf"));

/// The TC programs and the ports they belong on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Program {
    /// `sdn_from_pod`: ingress of each pod's host-side veth.
    FromPod,
    /// `sdn_from_tunnel`: ingress of `vxlan0`.
    FromTunnel,
    /// `sdn_from_host`: ingress of `tun0-br`.
    FromHost,
    /// `sdn_from_underlay`: ingress of the underlay interface.
    FromUnderlay,
}

impl Program {
    /// Every program.
    pub const ALL: [Program; 4] = [Program::FromPod, Program::FromTunnel, Program::FromHost, Program::FromUnderlay];

    /// The program's function name in the object.
    pub const fn name(self) -> &'static str {
        match self {
            Program::FromPod => sdn_ebpf_common::PROG_FROM_POD,
            Program::FromTunnel => sdn_ebpf_common::PROG_FROM_TUNNEL,
            Program::FromHost => sdn_ebpf_common::PROG_FROM_HOST,
            Program::FromUnderlay => sdn_ebpf_common::PROG_FROM_UNDERLAY,
        }
    }
}

/// The loaded programs and the node's flow tables.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    endpoints: HashMap<MapData, u32, Endpoint>,
    remotes: LpmTrie<MapData, u32, Remote>,
    config: Array<MapData, NodeConfig>,
    counters: PerCpuArray<MapData, Counter>,
    tunnel: Array<MapData, Tunnel>,
    services: HashMap<MapData, ServiceKey, ServiceEntry>,
    backends: HashMap<MapData, BackendKey, Backend>,
    nodes: HashMap<MapData, u32, PeerNode>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane").field("pin_dir", &self.pin_dir).finish_non_exhaustive()
    }
}

impl Dataplane {
    /// Loads the programs, reusing the maps pinned under `<pin_dir>/maps` (or creating and
    /// pinning them), and creates `<pin_dir>/links`. `pin_dir` must be on a bpffs. Attaches
    /// nothing.
    pub fn load(pin_dir: &Path) -> Result<Self, BpfError> {
        let maps_dir = pin_dir.join("maps");
        let links_dir = pin_dir.join("links");
        for dir in [&maps_dir, &links_dir] {
            fs::create_dir_all(dir).map_err(|source| BpfError::Io { action: "creating", path: dir.clone(), source })?;
        }
        check_bpffs(&maps_dir)?;
        check_bpffs(&links_dir)?;
        for expected in expected_maps() {
            check_pinned_map(&maps_dir, &expected)?;
        }

        let mut ebpf = EbpfLoader::new().default_map_pin_directory(&maps_dir).load(OBJECT).map_err(BpfError::Load)?;
        for program in Program::ALL {
            classifier(&mut ebpf, program)?
                .load()
                .map_err(|source| BpfError::Program { program: program.name(), source })?;
        }
        let endpoints = take_map(&mut ebpf, MAP_ENDPOINTS, HashMap::try_from)?;
        let remotes = take_map(&mut ebpf, MAP_REMOTES, LpmTrie::try_from)?;
        let config = take_map(&mut ebpf, MAP_CONFIG, Array::try_from)?;
        let counters = take_map(&mut ebpf, MAP_COUNTERS, PerCpuArray::try_from)?;
        let tunnel = take_map(&mut ebpf, MAP_TUNNEL, Array::try_from)?;
        let services = take_map(&mut ebpf, MAP_SERVICES, HashMap::try_from)?;
        let backends = take_map(&mut ebpf, MAP_BACKENDS, HashMap::try_from)?;
        let nodes = take_map(&mut ebpf, MAP_NODES, HashMap::try_from)?;
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.to_owned(),
            endpoints,
            remotes,
            config,
            counters,
            tunnel,
            services,
            backends,
            nodes,
        })
    }

    /// Attaches `program` to the ingress of `iface` as a TCX link pinned at
    /// `<pin_dir>/links/<iface>`. If that pin exists (an earlier agent's link), the link's
    /// program is replaced atomically instead; a pinned link whose interface is gone is
    /// replaced by a new one. Where the kernel has no TCX, the program is attached as the
    /// device's `cls_bpf` filter instead ([`Dataplane::attach_filter`]).
    ///
    /// Must run in the network namespace of `iface` (on the calling thread).
    pub fn attach(&mut self, program: Program, iface: &str) -> Result<(), BpfError> {
        let pin = self.link_pin(iface)?;
        let prog = classifier(&mut self.ebpf, program)?;
        let attach_err = |source| BpfError::Attach { program: program.name(), iface: iface.to_owned(), source };

        let replaced = match PinnedLink::from_pin(&pin) {
            Ok(pinned) => {
                let link = SchedClassifierLink::try_from(FdLink::from(pinned))
                    .map_err(|source| BpfError::Link { path: pin.clone(), source })?;
                match prog.attach_to_link(link) {
                    Ok(id) => Some(id),
                    // The link outlived its interface (a pod's veth deleted and made again):
                    // drop the stale pin and attach afresh.
                    Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                        if io_error.raw_os_error() == Some(libc::ENOLINK) =>
                    {
                        remove_if_exists(&pin)?;
                        None
                    }
                    Err(source) => return Err(attach_err(source)),
                }
            }
            Err(LinkError::SyscallError(SyscallError { io_error, .. }))
                if io_error.kind() == io::ErrorKind::NotFound =>
            {
                None
            }
            Err(source) => return Err(BpfError::Link { path: pin, source }),
        };

        let (id, pin_it) = match replaced {
            Some(id) => (id, false),
            None => {
                let options = TcAttachOptions::TcxOrder(LinkOrder::default());
                match prog.attach_with_options(iface, TcAttachType::Ingress, options) {
                    Ok(id) => (id, true),
                    // Kernels before 6.6 (Debian 12's 6.1) have no TCX: the program goes on as
                    // a cls_bpf filter, which outlives the agent with the device as the pin would.
                    Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                        if io_error.raw_os_error() == Some(libc::EINVAL) =>
                    {
                        return self.attach_filter(program, iface);
                    }
                    Err(source) => return Err(attach_err(source)),
                }
            }
        };
        // Take the link out of the program's care (which would detach it when the program is
        // dropped); the pin keeps it attached.
        let link = prog.take_link(id).map_err(attach_err)?;
        let link = FdLink::try_from(link).map_err(|source| BpfError::Link { path: pin.clone(), source })?;
        if pin_it {
            link.pin(&pin).map_err(|source| BpfError::Pin { path: pin, source })?;
        }
        Ok(())
    }

    /// Removes the pinned link of `iface`, which detaches its program: no agent holds link
    /// descriptors, so the pin is the link's last reference, and the kernel releases it from a
    /// work queue right after (in tests, within one 20 ms poll). A missing pin is fine.
    pub fn detach(&mut self, iface: &str) -> Result<(), BpfError> {
        let pin = self.link_pin(iface)?;
        remove_if_exists(&pin)
    }

    /// The interfaces that have a pinned link, sorted (to find links of pods that are gone).
    pub fn linked_interfaces(&self) -> Result<Vec<String>, BpfError> {
        let dir = self.pin_dir.join("links");
        let io_err = |source| BpfError::Io { action: "listing", path: dir.clone(), source };
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err)? {
            names.push(entry.map_err(io_err)?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// The kernel's id of a loaded program.
    pub fn program_id(&mut self, program: Program) -> Result<u32, BpfError> {
        let prog = classifier(&mut self.ebpf, program)?;
        let info = prog.info().map_err(|source| BpfError::Program { program: program.name(), source })?;
        Ok(info.id())
    }

    /// The ids of the programs attached to `iface`'s TCX ingress, in run order. Must run in the
    /// network namespace of `iface`.
    pub fn tcx_ingress_programs(iface: &str) -> Result<Vec<u32>, BpfError> {
        let (_revision, programs) = SchedClassifier::query_tcx(iface, TcAttachType::Ingress)
            .map_err(|source| BpfError::Attach { program: "(query)", iface: iface.to_owned(), source })?;
        Ok(programs.iter().map(|p| p.id()).collect())
    }

    /// Writes the node's configuration.
    pub fn set_config(&mut self, config: NodeConfig) -> Result<(), BpfError> {
        self.config.set(0, config, 0).map_err(map_err(MAP_CONFIG))
    }

    /// The node's configuration as the programs see it.
    pub fn config(&self) -> Result<NodeConfig, BpfError> {
        self.config.get(&0, 0).map_err(map_err(MAP_CONFIG))
    }

    /// Makes the programs send and receive VXLAN themselves through the interface
    /// `underlay_ifindex` (which has `sdn_from_underlay` attached), or, with `None`, through
    /// `vxlan0` only.
    pub fn set_tunnel(&mut self, underlay_ifindex: Option<u32>, node_ip: Ipv4Addr, port: u16) -> Result<(), BpfError> {
        let value = match underlay_ifindex {
            Some(ifindex) => {
                Tunnel { node_ip: ip_key(node_ip), underlay_ifindex: ifindex, port: port.to_be(), _pad: [0; 2] }
            }
            None => Tunnel::default(),
        };
        self.tunnel.set(0, value, 0).map_err(map_err(MAP_TUNNEL))
    }

    /// The tunnel settings as the programs see them.
    pub fn tunnel(&self) -> Result<Tunnel, BpfError> {
        self.tunnel.get(&0, 0).map_err(map_err(MAP_TUNNEL))
    }

    /// Adds or changes the endpoint `ip`, keeping its counters if it exists already.
    pub fn upsert_endpoint(&mut self, ip: Ipv4Addr, ifindex: u32, mac: [u8; 6]) -> Result<(), BpfError> {
        let key = ip_key(ip);
        let existing = optional(self.endpoints.get(&key, 0)).map_err(map_err(MAP_ENDPOINTS))?;
        let Some(value) = endpoint_update(existing, ifindex, mac) else { return Ok(()) };
        self.endpoints.insert(key, value, 0).map_err(map_err(MAP_ENDPOINTS))
    }

    /// Makes super-packets from the tunnel for endpoint `ip` be stripped in eBPF (`strip`) or
    /// left to `vxlan0`. Never creates the entry (a detach may have removed it meanwhile);
    /// whether it changed anything.
    pub fn set_strip_gso(&mut self, ip: Ipv4Addr, strip: bool) -> Result<bool, BpfError> {
        let key = ip_key(ip);
        let Some(existing) = optional(self.endpoints.get(&key, 0)).map_err(map_err(MAP_ENDPOINTS))? else {
            return Ok(false);
        };
        let Some(value) = strip_gso_update(existing, strip) else { return Ok(false) };
        // Removed between the read and the write: nothing to change.
        let written = optional(self.endpoints.insert(key, value, BPF_EXIST)).map_err(map_err(MAP_ENDPOINTS))?;
        Ok(written.is_some())
    }

    /// Removes the endpoint `ip`; a missing one is fine.
    pub fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), BpfError> {
        optional(self.endpoints.remove(&ip_key(ip))).map(drop).map_err(map_err(MAP_ENDPOINTS))
    }

    /// Adds or changes the remote subnet `subnet` (host bits are ignored), tunnelled to
    /// `node_ip`; keeps its counters if it exists already.
    pub fn upsert_remote(&mut self, subnet: Ipv4Network, node_ip: Ipv4Addr, path: Transport) -> Result<(), BpfError> {
        let key = remote_key(subnet);
        let existing = self.remote_exact(&key)?;
        let Some(value) = remote_update(existing, node_ip, path) else { return Ok(()) };
        self.remotes.insert(&key, value, 0).map_err(map_err(MAP_REMOTES))
    }

    /// Removes the remote subnet `subnet`; a missing one is fine.
    pub fn remove_remote(&mut self, subnet: Ipv4Network) -> Result<(), BpfError> {
        optional(self.remotes.remove(&remote_key(subnet))).map(drop).map_err(map_err(MAP_REMOTES))
    }

    /// Makes `ip` a tunnel sender that speaks for `subnet`.
    pub fn upsert_node(&mut self, ip: Ipv4Addr, subnet: Ipv4Network) -> Result<(), BpfError> {
        self.nodes.insert(ip_key(ip), peer_node(subnet), 0).map_err(map_err(MAP_NODES))
    }

    /// Removes the tunnel sender `ip`; a missing one is fine.
    pub fn remove_node(&mut self, ip: Ipv4Addr) -> Result<(), BpfError> {
        optional(self.nodes.remove(&ip_key(ip))).map(drop).map_err(map_err(MAP_NODES))
    }

    /// Every tunnel sender and its subnet, sorted by address.
    pub fn nodes(&self) -> Result<Vec<(Ipv4Addr, Ipv4Network)>, BpfError> {
        let mut all = Vec::new();
        for entry in self.nodes.iter() {
            let (key, value) = entry.map_err(map_err(MAP_NODES))?;
            let subnet = entries::peer_subnet(value).ok_or_else(|| BpfError::InvalidEntry {
                map: MAP_NODES,
                detail: format!("mask {:#x}", u32::from_be(value.mask)),
            })?;
            all.push((key_ip(key), subnet));
        }
        all.sort();
        Ok(all)
    }

    /// Every endpoint, sorted by address.
    pub fn endpoints(&self) -> Result<Vec<(Ipv4Addr, Endpoint)>, BpfError> {
        let mut all = Vec::new();
        for entry in self.endpoints.iter() {
            let (key, value) = entry.map_err(map_err(MAP_ENDPOINTS))?;
            all.push((key_ip(key), value));
        }
        all.sort_by_key(|(ip, _)| *ip);
        Ok(all)
    }

    /// Every remote subnet, sorted by address then prefix length.
    pub fn remotes(&self) -> Result<Vec<(Ipv4Network, Remote)>, BpfError> {
        let mut all = Vec::new();
        for entry in self.remotes.iter() {
            let (key, value) = entry.map_err(map_err(MAP_REMOTES))?;
            let subnet = key_network(&key).ok_or_else(|| BpfError::InvalidEntry {
                map: MAP_REMOTES,
                detail: format!("prefix length {}", key.prefix_len()),
            })?;
            all.push((subnet, value));
        }
        all.sort_by_key(|(subnet, _)| (subnet.network(), subnet.prefix()));
        Ok(all)
    }

    /// The per-decision counters, summed over CPUs, indexed by [`Decision`].
    pub fn counters(&self) -> Result<[Counter; Decision::COUNT], BpfError> {
        let mut sums = [Counter::default(); Decision::COUNT];
        for (decision, sum) in Decision::ALL.iter().zip(sums.iter_mut()) {
            let per_cpu = self.counters.get(&decision.index(), 0).map_err(map_err(MAP_COUNTERS))?;
            for counter in per_cpu.iter() {
                sum.packets = sum.packets.wrapping_add(counter.packets);
                sum.bytes = sum.bytes.wrapping_add(counter.bytes);
            }
        }
        Ok(sums)
    }

    /// The flow tables as `ovs-ofctl dump-flows` would show them (see [`render_flows`]), with
    /// interfaces named as the node's namespace knows them. The calling thread must be in that
    /// namespace: the maps hold interface indexes, which another namespace would name wrongly.
    pub fn flows(&self) -> Result<String, BpfError> {
        let own = crate::net::layout::TUN0_BR;
        if self.pin_dir.join("links").join(own).exists() && interface_index(own).is_none() {
            return Err(BpfError::OtherNamespace { pin_dir: self.pin_dir.clone() });
        }
        let named = |ifindex| interface_name(ifindex).unwrap_or_else(|| format!("ifindex{ifindex}"));
        let tunnel_out = match self.tunnel()?.underlay_ifindex {
            0 => crate::net::layout::VXLAN0.to_owned(),
            ifindex => named(ifindex),
        };
        let direct_out = named(self.config()?.underlay_ifindex);
        let mut frontends = Vec::new();
        for (key, entry) in self.service_entries()? {
            let backends = self.backends(entry.id, entry.count)?;
            frontends.push(flows::FrontendFlows { key, entry, backends });
        }
        frontends.sort_by_key(|f| services::key_parts(&f.key));
        let table = render_flows(
            &self.endpoints()?,
            &self.remotes()?,
            &self.nodes()?,
            &self.counters()?,
            &flows::Outputs { tunnel: &tunnel_out, direct: &direct_out },
            interface_name,
        );
        Ok(table + &flows::render_services(&frontends))
    }

    /// The entry of exactly `key`. A lookup in an LPM trie is a longest-prefix match (it would
    /// find a covering shorter prefix), so only an exact key among the entries counts.
    fn remote_exact(&self, key: &Key<u32>) -> Result<Option<Remote>, BpfError> {
        if optional(self.remotes.get(key, 0)).map_err(map_err(MAP_REMOTES))?.is_none() {
            return Ok(None);
        }
        for entry in self.remotes.iter() {
            let (found, value) = entry.map_err(map_err(MAP_REMOTES))?;
            if (found.prefix_len(), found.data()) == (key.prefix_len(), key.data()) {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    fn link_pin(&self, iface: &str) -> Result<PathBuf, BpfError> {
        if !valid_ifname(iface) {
            return Err(BpfError::InvalidInterface(iface.to_owned()));
        }
        Ok(self.pin_dir.join("links").join(iface))
    }
}

/// The index of interface `name` in the calling thread's namespace.
fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The name of interface `ifindex` in the calling thread's namespace.
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as the call requires; it writes a C string.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if name.is_null() {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..len].to_vec()).ok()
}

fn classifier(ebpf: &mut Ebpf, program: Program) -> Result<&mut SchedClassifier, BpfError> {
    let prog = ebpf.program_mut(program.name()).ok_or(BpfError::Missing { kind: "program", name: program.name() })?;
    prog.try_into().map_err(|source| BpfError::Program { program: program.name(), source })
}

fn take_map<M>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<M, MapError>,
) -> Result<M, BpfError> {
    let map = ebpf.take_map(name).ok_or(BpfError::Missing { kind: "map", name })?;
    convert(map).map_err(map_err(name))
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> BpfError {
    move |source| BpfError::Map { map, source }
}

/// `Ok(None)` for a missing key, so "absent" is not an error.
/// `bpf_map_update_elem`'s flag: only replace an existing entry.
const BPF_EXIST: u64 = 2;

fn optional<T>(result: Result<T, MapError>) -> Result<Option<T>, MapError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(MapError::SyscallError(SyscallError { io_error, .. })) if io_error.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

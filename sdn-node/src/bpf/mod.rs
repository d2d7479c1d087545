//! The eBPF dataplane adapter: loads the TC programs of `ebpf/sdn-ebpf` (built by `build.rs` and
//! embedded here), keeps their maps and links pinned on a bpffs, and reads and writes the flow
//! tables. The design is `docs/dataplane.md`.
//!
//! Pin layout under the node's pin directory (which must be on a bpffs):
//!
//! ```text
//! <pin_dir>/maps/SDN_ENDPOINTS, SDN_REMOTES, SDN_CONFIG, SDN_COUNTERS, SDN_TUNNEL   the maps
//! <pin_dir>/links/<iface>            one TCX ingress link per device (vxlan0, tun0-br, underlay)
//! ```
//!
//! A new [`Dataplane`] reuses pinned maps (so a restarted agent finds its tables filled) and
//! replaces the program of a pinned link atomically, so traffic never stops across a restart.
//!
//! The pure parts (address/key conversions, [`render_flows`]) are unit-tested here; loading and
//! attaching are tested as root in `tests/bpf_load.rs`.

mod filter;

use std::{
    fmt::Write as _,
    fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, MapInfo, MapType, PerCpuArray, lpm_trie::Key},
    pin::PinError,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType,
        links::{FdLink, LinkError, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
    },
    sys::SyscallError,
};
use ipnetwork::Ipv4Network;
pub use sdn_ebpf_common::{Counter, Decision, Endpoint, NodeConfig, Remote, Tunnel};
use sdn_ebpf_common::{MAP_CONFIG, MAP_COUNTERS, MAP_ENDPOINTS, MAP_REMOTES, MAP_TUNNEL, MAX_ENDPOINTS, MAX_REMOTES};

/// The eBPF object built by `build.rs` from `ebpf/`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sdn-ebpf"));

/// What went wrong talking to the kernel's BPF side.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The pin directory is not on a bpffs, so nothing could be pinned there.
    #[error("{} is not on a bpffs; mount one there first (`mount -t bpf bpf <dir>`)", path.display())]
    NotBpffs {
        /// The directory checked.
        path: PathBuf,
    },
    /// A file system operation on the pin directory failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The object (or its pinned maps) could not be loaded.
    #[error("loading the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    /// The object lacks a map or program this adapter expects (a build mismatch).
    #[error("the eBPF object has no {kind} {name}")]
    Missing {
        /// "map" or "program".
        kind: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A map pinned by an earlier agent has another shape than this build's.
    #[error(
        "the pinned map {} does not match this build ({detail}); remove the node's pins \
         (`sdn-node cleanup`) and start again",
        path.display()
    )]
    IncompatiblePin {
        /// The pinned map.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The error.
        #[source]
        source: MapError,
    },
    /// Loading (verifying) a program failed; the message carries the verifier log.
    #[error("program {program}: {source}")]
    Program {
        /// The program's name.
        program: &'static str,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// Attaching a program to an interface failed.
    #[error("attaching {program} to {iface}: {source}")]
    Attach {
        /// The program's name.
        program: &'static str,
        /// The interface.
        iface: String,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// A pinned link could not be opened or used.
    #[error("link {}: {source}", path.display())]
    Link {
        /// The link's pin.
        path: PathBuf,
        /// The error.
        #[source]
        source: LinkError,
    },
    /// A new link could not be pinned.
    #[error("pinning link {}: {source}", path.display())]
    Pin {
        /// The link's pin.
        path: PathBuf,
        /// The error.
        #[source]
        source: PinError,
    },
    /// An interface name that cannot be a Linux interface (nor a pin file name).
    #[error("invalid interface name {0:?}")]
    InvalidInterface(String),
    /// An entry read back from a map that this adapter cannot have written.
    #[error("map {map} holds an invalid entry: {detail}")]
    InvalidEntry {
        /// The map's name.
        map: &'static str,
        /// What is wrong.
        detail: String,
    },
}

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
        Ok(Self { ebpf, pin_dir: pin_dir.to_owned(), endpoints, remotes, config, counters, tunnel })
    }

    /// Attaches `program` to the ingress of `iface` as a TCX link pinned at
    /// `<pin_dir>/links/<iface>`. If that pin exists (an earlier agent's link), the link's
    /// program is replaced atomically instead; a pinned link whose interface is gone is
    /// replaced by a new one.
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
                (prog.attach_with_options(iface, TcAttachType::Ingress, options).map_err(attach_err)?, true)
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

    /// Removes the endpoint `ip`; a missing one is fine.
    pub fn remove_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), BpfError> {
        optional(self.endpoints.remove(&ip_key(ip))).map(drop).map_err(map_err(MAP_ENDPOINTS))
    }

    /// Adds or changes the remote subnet `subnet` (host bits are ignored), tunnelled to
    /// `node_ip`; keeps its counters if it exists already.
    pub fn upsert_remote(&mut self, subnet: Ipv4Network, node_ip: Ipv4Addr) -> Result<(), BpfError> {
        let key = remote_key(subnet);
        let existing = self.remote_exact(&key)?;
        let Some(value) = remote_update(existing, node_ip) else { return Ok(()) };
        self.remotes.insert(&key, value, 0).map_err(map_err(MAP_REMOTES))
    }

    /// Removes the remote subnet `subnet`; a missing one is fine.
    pub fn remove_remote(&mut self, subnet: Ipv4Network) -> Result<(), BpfError> {
        optional(self.remotes.remove(&remote_key(subnet))).map(drop).map_err(map_err(MAP_REMOTES))
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

    /// The flow tables as `ovs-ofctl dump-flows` would show them (see [`render_flows`]). Names
    /// the underlay interface as the calling thread's namespace knows it.
    pub fn flows(&self) -> Result<String, BpfError> {
        let tunnel_out = match self.tunnel()?.underlay_ifindex {
            0 => crate::net::layout::VXLAN0.to_owned(),
            ifindex => interface_name(ifindex).unwrap_or_else(|| format!("ifindex{ifindex}")),
        };
        Ok(render_flows(&self.endpoints()?, &self.remotes()?, &self.counters()?, &tunnel_out))
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

/// Removes every pin under `pin_dir` (maps and links) and the directory itself. Links whose pin
/// goes detach; maps go once no program uses them. A missing directory is fine.
pub fn remove_pins(pin_dir: &Path) -> Result<(), BpfError> {
    for dir in [pin_dir.join("links"), pin_dir.join("maps")] {
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(BpfError::Io { action: "removing", path: dir, source }),
        }
    }
    match fs::remove_dir(pin_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BpfError::Io { action: "removing", path: pin_dir.to_owned(), source }),
    }
}

/// Builds the node configuration the programs read, converting addresses to network order.
pub fn node_config(
    gateway_ip: Ipv4Addr,
    cluster: Ipv4Network,
    vxlan_ifindex: u32,
    tun_br_ifindex: u32,
    gateway_mac: [u8; 6],
) -> NodeConfig {
    NodeConfig {
        gateway_ip: ip_key(gateway_ip),
        cluster_net: ip_key(cluster.network()),
        cluster_mask: ip_key(cluster.mask()),
        vxlan_ifindex,
        tun_br_ifindex,
        gateway_mac,
        _pad: [0; 2],
    }
}

/// An address as the maps store it: a `u32` whose memory holds the octets in network order.
pub fn ip_key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// The inverse of [`ip_key`].
pub fn key_ip(key: u32) -> Ipv4Addr {
    Ipv4Addr::from(key.to_ne_bytes())
}

/// The LPM key of a subnet (its network address, so host bits never reach the map).
pub fn remote_key(subnet: Ipv4Network) -> Key<u32> {
    Key::new(u32::from(subnet.prefix()), ip_key(subnet.network()))
}

/// The subnet of an LPM key, if its prefix length is one of IPv4.
pub fn key_network(key: &Key<u32>) -> Option<Ipv4Network> {
    let prefix = u8::try_from(key.prefix_len()).ok()?;
    Ipv4Network::new(key_ip(key.data()), prefix).ok()
}

/// The value to write for an endpoint, or `None` when the existing one already says this. Keeps
/// the counters of an existing entry.
fn endpoint_update(existing: Option<Endpoint>, ifindex: u32, mac: [u8; 6]) -> Option<Endpoint> {
    let current = existing.unwrap_or_default();
    if existing.is_some() && current.ifindex == ifindex && current.mac == mac {
        return None;
    }
    Some(Endpoint { ifindex, mac, _pad: [0; 6], ..current })
}

/// The value to write for a remote subnet, or `None` when the existing one already says this.
/// Keeps the counters of an existing entry.
fn remote_update(existing: Option<Remote>, node_ip: Ipv4Addr) -> Option<Remote> {
    let current = existing.unwrap_or_default();
    let node_ip = ip_key(node_ip);
    if existing.is_some() && current.node_ip == node_ip {
        return None;
    }
    Some(Remote { node_ip, _pad: 0, ..current })
}

/// Renders the flow tables like `ovs-ofctl dump-flows`: one line per local endpoint
/// (`table=local`), per remote subnet (`table=remote`), then the decisions that have no entry:
/// traffic to the host (`table=default`), tunnel misses and spoofed packets (both dropped).
/// Tunnelled packets leave through `tunnel_out`: `vxlan0`, or the underlay interface when the
/// programs wrap them themselves.
pub fn render_flows(
    endpoints: &[(Ipv4Addr, Endpoint)],
    remotes: &[(Ipv4Network, Remote)],
    counters: &[Counter; Decision::COUNT],
    tunnel_out: &str,
) -> String {
    let mut out = String::new();
    for (ip, endpoint) in endpoints {
        let _ = writeln!(
            out,
            " table=local, n_packets={}, n_bytes={}, ip,nw_dst={ip} actions=mod_dl_dst:{},output:{}",
            endpoint.packets,
            endpoint.bytes,
            mac_string(&endpoint.mac),
            endpoint.ifindex
        );
    }
    for (subnet, remote) in remotes {
        let _ = writeln!(
            out,
            " table=remote, n_packets={}, n_bytes={}, ip,nw_dst={subnet} actions=set_field:{}->tun_dst,output:{tunnel_out}",
            remote.packets,
            remote.bytes,
            key_ip(remote.node_ip)
        );
    }
    let rows = [
        ("default", Decision::ToHost, "ip", "output:tun0"),
        ("tunnel", Decision::TunnelMiss, "in_port=vxlan0", "drop"),
        ("spoof", Decision::SpoofDrop, "in_port=pod", "drop"),
    ];
    for (table, decision, matches, actions) in rows {
        let counter = counters[decision.index() as usize];
        let _ = writeln!(
            out,
            " table={table}, n_packets={}, n_bytes={}, {matches} actions={actions}",
            counter.packets, counter.bytes
        );
    }
    out
}

fn mac_string(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// The name of interface `ifindex` in the calling thread's namespace.
fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as the call requires; it writes a C string.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if name.is_null() {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..len].to_vec()).ok()
}

/// Whether `name` can be a Linux interface name (and so a file name under `links/`).
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':')
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

fn remove_if_exists(path: &Path) -> Result<(), BpfError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BpfError::Io { action: "removing", path: path.to_owned(), source }),
    }
}

/// The shape a pinned map must have to be reused by this build.
struct ExpectedMap {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

fn expected_maps() -> [ExpectedMap; 5] {
    use std::mem::size_of;
    let u32_size = size_of::<u32>() as u32;
    [
        ExpectedMap {
            name: MAP_ENDPOINTS,
            map_type: MapType::Hash,
            key_size: u32_size,
            value_size: size_of::<Endpoint>() as u32,
            max_entries: MAX_ENDPOINTS,
        },
        ExpectedMap {
            name: MAP_REMOTES,
            map_type: MapType::LpmTrie,
            key_size: size_of::<Key<u32>>() as u32,
            value_size: size_of::<Remote>() as u32,
            max_entries: MAX_REMOTES,
        },
        ExpectedMap {
            name: MAP_CONFIG,
            map_type: MapType::Array,
            key_size: u32_size,
            value_size: size_of::<NodeConfig>() as u32,
            max_entries: 1,
        },
        ExpectedMap {
            name: MAP_COUNTERS,
            map_type: MapType::PerCpuArray,
            key_size: u32_size,
            value_size: size_of::<Counter>() as u32,
            max_entries: Decision::COUNT as u32,
        },
        ExpectedMap {
            name: MAP_TUNNEL,
            map_type: MapType::Array,
            key_size: u32_size,
            value_size: size_of::<Tunnel>() as u32,
            max_entries: 1,
        },
    ]
}

/// aya reuses a pinned map of the right name whatever its shape; a map left by an older build
/// with another value layout would be misread by the programs, so check it first.
fn check_pinned_map(maps_dir: &Path, expected: &ExpectedMap) -> Result<(), BpfError> {
    let path = maps_dir.join(expected.name);
    if !path.exists() {
        return Ok(());
    }
    let info = MapInfo::from_pin(&path).map_err(|source| BpfError::Map { map: expected.name, source })?;
    let map_type = info.map_type().map_err(|source| BpfError::Map { map: expected.name, source })?;
    let found = (map_type, info.key_size(), info.value_size(), info.max_entries());
    let wanted = (expected.map_type, expected.key_size, expected.value_size, expected.max_entries);
    if found == wanted {
        Ok(())
    } else {
        Err(BpfError::IncompatiblePin {
            path,
            detail: format!("type, key size, value size, max entries: found {found:?}, this build wants {wanted:?}"),
        })
    }
}

fn check_bpffs(path: &Path) -> Result<(), BpfError> {
    if crate::bpffs::is_bpffs(path) { Ok(()) } else { Err(BpfError::NotBpffs { path: path.to_owned() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().expect("test network")
    }

    #[test]
    fn addresses_are_stored_in_network_order() {
        let ip = Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(ip_key(ip).to_ne_bytes(), [10, 1, 0, 2]);
        assert_eq!(key_ip(ip_key(ip)), ip);
    }

    #[test]
    fn remote_keys_drop_host_bits_and_round_trip() {
        let key = remote_key(net("10.1.1.7/24"));
        assert_eq!(key.prefix_len(), 24);
        assert_eq!(key.data().to_ne_bytes(), [10, 1, 1, 0]);
        assert_eq!(key_network(&key), Some(net("10.1.1.0/24")));
        assert_eq!(key_network(&Key::new(33, 0)), None);
    }

    #[test]
    fn node_config_is_in_network_order() {
        let config = node_config(Ipv4Addr::new(10, 1, 0, 1), net("10.1.0.0/16"), 7, 8, [2, 0, 0, 0, 0, 1]);
        assert_eq!(config.gateway_ip.to_ne_bytes(), [10, 1, 0, 1]);
        assert_eq!(config.cluster_net.to_ne_bytes(), [10, 1, 0, 0]);
        assert_eq!(config.cluster_mask.to_ne_bytes(), [255, 255, 0, 0]);
        assert_eq!((config.vxlan_ifindex, config.tun_br_ifindex), (7, 8));
    }

    #[test]
    fn updates_keep_counters_and_skip_no_ops() {
        let mac = [2, 0, 0, 0, 0, 2];
        let fresh = endpoint_update(None, 5, mac).expect("a new entry is written");
        assert_eq!((fresh.ifindex, fresh.mac, fresh.packets), (5, mac, 0));
        let counted = Endpoint { packets: 3, bytes: 300, ..fresh };
        assert_eq!(endpoint_update(Some(counted), 5, mac), None);
        let moved = endpoint_update(Some(counted), 6, mac).expect("a changed entry is written");
        assert_eq!((moved.ifindex, moved.packets, moved.bytes), (6, 3, 300));

        let node = Ipv4Addr::new(192, 0, 2, 12);
        let remote = Remote { packets: 4, bytes: 400, ..remote_update(None, node).expect("new") };
        assert_eq!(remote_update(Some(remote), node), None);
        let moved = remote_update(Some(remote), Ipv4Addr::new(192, 0, 2, 13)).expect("changed");
        assert_eq!((key_ip(moved.node_ip), moved.packets, moved.bytes), (Ipv4Addr::new(192, 0, 2, 13), 4, 400));
    }

    #[test]
    fn flows_render_like_ovs_dump_flows() {
        let endpoints = [(
            Ipv4Addr::new(10, 1, 0, 2),
            Endpoint { ifindex: 5, mac: [0xaa, 0xbb, 0xcc, 0, 1, 2], _pad: [0; 6], packets: 12, bytes: 1176 },
        )];
        let remotes = [(
            net("10.1.1.0/24"),
            Remote { node_ip: ip_key(Ipv4Addr::new(192, 0, 2, 12)), _pad: 0, packets: 3, bytes: 294 },
        )];
        let mut counters = [Counter::default(); Decision::COUNT];
        counters[Decision::ToHost as usize] = Counter { packets: 7, bytes: 700 };
        counters[Decision::SpoofDrop as usize] = Counter { packets: 1, bytes: 42 };
        let expected = [
            " table=local, n_packets=12, n_bytes=1176, ip,nw_dst=10.1.0.2 \
             actions=mod_dl_dst:aa:bb:cc:00:01:02,output:5",
            " table=remote, n_packets=3, n_bytes=294, ip,nw_dst=10.1.1.0/24 \
             actions=set_field:192.0.2.12->tun_dst,output:eth0",
            " table=default, n_packets=7, n_bytes=700, ip actions=output:tun0",
            " table=tunnel, n_packets=0, n_bytes=0, in_port=vxlan0 actions=drop",
            " table=spoof, n_packets=1, n_bytes=42, in_port=pod actions=drop",
            "",
        ]
        .join("\n");
        assert_eq!(render_flows(&endpoints, &remotes, &counters, "eth0"), expected);
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(valid_ifname("veth0a1b2c3d"));
        assert!(valid_ifname("tun0-br"));
        for bad in ["", ".", "..", "a/b", "a b", "sixteen-chars-xx", "eth0:1"] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
    }
}

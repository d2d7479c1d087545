//! The eBPF dataplane against the real kernel: two "nodes" and three "pods" as network
//! namespaces wired as in docs/dataplane.md, the programs loaded, attached and fed through
//! `sdn_node::bpf`, and pings that can only succeed if the programs forward them: the node
//! namespaces do not route between their ports (IPv4 forwarding is off, `br0` only switches).
//!
//! ```text
//!  pa 10.1.0.2 ─ vpa ┐                                                   ┌ vpc ─ pc 10.1.1.2
//!  pb 10.1.0.3 ─ vpb ┼ br0 ┬ tun0-br│tun0 10.1.0.1      10.1.1.1 tun0│tun0-br ┬ br0 ┘
//!                          └ vxlan-t ── n1 u1 192.0.2.1 ══ 192.0.2.2 u2 n2 ── vxlan-t ┘
//! ```
//!
//! Needs root (network namespaces, BPF). It fails, never skips, when it cannot run. Cleanup (the
//! namespaces, the pins) happens in a guard's `Drop`, also on failure.

use std::{
    ffi::CString,
    fs,
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use ipnetwork::Ipv4Network;
use sdn_node::bpf::{self, Dataplane, Decision, Program};
use sdn_node::net::layout::NodeLayout;

const GW1: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const GW2: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0x00, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0x00, 0x0b];
const MAC_C: [u8; 6] = [0x02, 0, 0, 0, 0x00, 0x0c];
const POD_A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const POD_C: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
const GATEWAY1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const GATEWAY2: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
const NODE1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NODE2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// Everything the test created; removed on drop, in reverse order, ignoring what is gone.
struct Env {
    prefix: String,
    namespaces: Vec<String>,
    pin_root: PathBuf,
}

impl Env {
    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn pins(&self, node: &str) -> PathBuf {
        self.pin_root.join(node)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for node in ["n1", "n2"] {
            if let Err(e) = bpf::remove_pins(&self.pins(node)) {
                eprintln!("cleanup: {e}");
            }
        }
        let _ = fs::remove_dir(&self.pin_root);
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(args: &[&str]) {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (is iproute2 installed?)"));
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
}

fn succeeds(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).output().map(|o| o.status.success()).unwrap_or(false)
}

fn ping(env: &Env, from: &str, to: Ipv4Addr, source: Option<Ipv4Addr>) -> bool {
    let ns = env.ns(from);
    let to = to.to_string();
    let source = source.map(|s| s.to_string());
    let mut args = vec!["ip", "netns", "exec", &ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-q"];
    if let Some(source) = &source {
        args.extend(["-I", source]);
    }
    args.push(&to);
    succeeds(&args)
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The pin root: under `/sys/fs/bpf`, mounted as the agent mounts it when it is not a bpffs.
fn pin_root(pid: u32) -> PathBuf {
    let sys = Path::new("/sys/fs/bpf");
    sdn_node::bpffs::ensure(sys).unwrap_or_else(|e| panic!("{e}"));
    sys.join(format!("sdn-test-{pid}"))
}

/// Moves the calling thread into network namespace `ns` (only this thread).
fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    // SAFETY: a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns into {ns}: {}", std::io::Error::last_os_error());
}

/// The ifindex of `name` in the calling thread's network namespace.
fn ifindex(name: &str) -> u32 {
    let c_name = CString::new(name).expect("no NUL in an interface name");
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    assert_ne!(index, 0, "no interface {name}: {}", std::io::Error::last_os_error());
    index
}

fn net(s: &str) -> Ipv4Network {
    s.parse().expect("test network")
}

/// A pod: namespace `pod` with `eth0` (MAC `mac`, `ip/24`, default via `gateway`) whose peer is
/// `host_if`, a port of `br0` in namespace `node`. IPv6 is off in the pod, so the only packets it
/// sends are the test's (the programs drop every other ethertype, as spoofed).
fn add_pod(env: &Env, node: &str, pod: &str, host_if: &str, mac: [u8; 6], ip: Ipv4Addr, gateway: Ipv4Addr) {
    let (node, pod) = (env.ns(node), env.ns(pod));
    let mac = mac_string(mac);
    let addr = format!("{ip}/24");
    run(&["ip", "netns", "exec", &pod, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
    run(&["ip", "netns", "exec", &pod, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
    run(&["ip", "-n", &node, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &pod]);
    run(&["ip", "-n", &pod, "link", "set", "eth0", "address", &mac]);
    run(&["ip", "-n", &pod, "addr", "add", &addr, "dev", "eth0"]);
    run(&["ip", "-n", &pod, "link", "set", "eth0", "up"]);
    run(&["ip", "-n", &node, "link", "set", host_if, "master", "br0", "up"]);
    run(&["ip", "-n", &pod, "route", "add", "default", "via", &gateway.to_string()]);
}

/// A node's devices as in docs/dataplane.md: `br0` with `tun0-br` and `vxlan-t` (collect
/// metadata, VNI 0) as ports, `tun0` with the gateway address and MAC and the cluster route.
fn add_node(env: &Env, node: &str, underlay: &str, address: Ipv4Addr, gateway: Ipv4Addr, gw_mac: [u8; 6]) {
    let ns = env.ns(node);
    let (address, gateway, gw_mac) = (format!("{address}/24"), format!("{gateway}/24"), mac_string(gw_mac));
    run(&["ip", "-n", &ns, "addr", "add", &address, "dev", underlay]);
    run(&["ip", "-n", &ns, "link", "set", underlay, "up"]);
    run(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "-n", &ns, "link", "set", "br0", "up"]);
    run(&["ip", "-n", &ns, "link", "add", "vxlan-t", "type", "vxlan", "external", "dstport", "4789"]);
    run(&["ip", "-n", &ns, "link", "set", "vxlan-t", "master", "br0", "up"]);
    run(&["ip", "-n", &ns, "link", "add", "tun0", "type", "veth", "peer", "name", "tun0-br"]);
    run(&["ip", "-n", &ns, "link", "set", "tun0", "address", &gw_mac]);
    run(&["ip", "-n", &ns, "addr", "add", &gateway, "dev", "tun0"]);
    run(&["ip", "-n", &ns, "link", "set", "tun0", "up"]);
    run(&["ip", "-n", &ns, "link", "set", "tun0-br", "master", "br0", "up"]);
    run(&["ip", "-n", &ns, "route", "add", "10.1.0.0/16", "dev", "tun0"]);
}

fn setup() -> Env {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "tests/bpf_load.rs needs root (network namespaces, BPF); run it as root");
    let pid = std::process::id();
    let mut env = Env { prefix: format!("sdn-bpftest-{pid}"), namespaces: Vec::new(), pin_root: pin_root(pid) };
    for short in ["n1", "n2", "pa", "pb", "pc"] {
        let ns = env.ns(short);
        run(&["ip", "netns", "add", &ns]);
        env.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    }
    let (n1, n2) = (env.ns("n1"), env.ns("n2"));
    // The underlay between the nodes.
    run(&["ip", "-n", &n1, "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", &n2]);
    add_node(&env, "n1", "u1", NODE1, GATEWAY1, GW1);
    add_node(&env, "n2", "u2", NODE2, GATEWAY2, GW2);
    add_pod(&env, "n1", "pa", "vpa", MAC_A, POD_A, GATEWAY1);
    add_pod(&env, "n1", "pb", "vpb", MAC_B, POD_B, GATEWAY1);
    add_pod(&env, "n2", "pc", "vpc", MAC_C, POD_C, GATEWAY2);
    env
}

/// Loads a node's dataplane (in the calling thread's namespace, the node's), configures it and
/// attaches the three programs.
fn bring_up(env: &Env, node: &str, gateway: Ipv4Addr, gw_mac: [u8; 6], pods: &[&str]) -> Dataplane {
    let mut dp = Dataplane::load(&env.pins(node)).unwrap_or_else(|e| panic!("loading the dataplane of {node}: {e}"));
    let node_ip = if node == "n1" { NODE1 } else { NODE2 };
    let network = sdn_cluster::ClusterNetwork::default();
    let subnet = Ipv4Network::new(gateway, 24).and_then(|s| Ipv4Network::new(s.network(), 24)).expect("a /24");
    let host = sdn_cluster::HostSubnet { host: node.into(), host_ip: node_ip.into(), subnet };
    let layout = NodeLayout::new(&network, &host, 1500).expect("layout");
    let ports = bpf::Ports { vxlan0: ifindex("vxlan-t"), tun0_br: ifindex("tun0-br"), underlay: 0 };
    let config = bpf::node_config(&layout, ports, gw_mac, node_ip);
    dp.set_config(config).expect("set_config");
    assert_eq!(dp.config().expect("config"), config);
    for pod in pods {
        dp.attach(Program::FromPod, pod).unwrap_or_else(|e| panic!("{e}"));
    }
    dp.attach(Program::FromTunnel, "vxlan-t").unwrap_or_else(|e| panic!("{e}"));
    dp.attach(Program::FromHost, "tun0-br").unwrap_or_else(|e| panic!("{e}"));
    dp
}

fn endpoint_packets(dp: &Dataplane, ip: Ipv4Addr) -> u64 {
    let endpoints = dp.endpoints().expect("endpoints");
    endpoints.iter().find(|(a, _)| *a == ip).map(|(_, e)| e.packets).unwrap_or_else(|| panic!("no endpoint {ip}"))
}

fn remote_packets(dp: &Dataplane, subnet: Ipv4Network) -> u64 {
    let remotes = dp.remotes().expect("remotes");
    remotes.iter().find(|(s, _)| *s == subnet).map(|(_, r)| r.packets).unwrap_or_else(|| panic!("no remote {subnet}"))
}

fn decision_packets(dp: &Dataplane, decision: Decision) -> u64 {
    dp.counters().expect("counters")[decision as usize].packets
}

/// The scenario, on a thread of its own that moves between the node namespaces.
fn scenario(env: &Env) {
    let (n1, n2) = (env.ns("n1"), env.ns("n2"));
    let subnet1 = net("10.1.0.0/24");
    let subnet2 = net("10.1.1.0/24");

    // Node 2 first, so node 1 can be restarted below while node 2 keeps running.
    enter(&n2);
    let mut dp2 = bring_up(env, "n2", GATEWAY2, GW2, &["vpc"]);
    dp2.upsert_endpoint(POD_C, ifindex("vpc"), MAC_C).expect("endpoint");
    dp2.upsert_remote(subnet1, NODE1, bpf::Transport::Tunnel).expect("remote");
    dp2.upsert_node(NODE1, subnet1).expect("tunnel sender");

    enter(&n1);
    let mut dp1 = bring_up(env, "n1", GATEWAY1, GW1, &["vpa", "vpb"]);
    let (vpa, vpb) = (ifindex("vpa"), ifindex("vpb"));
    dp1.upsert_endpoint(POD_A, vpa, MAC_A).expect("endpoint");
    dp1.upsert_endpoint(POD_B, vpb, MAC_B).expect("endpoint");
    // Host bits are dropped; a covering /16 must not be mistaken for the /24 by the upsert.
    dp1.upsert_remote(net("10.1.0.0/16"), Ipv4Addr::new(198, 51, 100, 1), bpf::Transport::Tunnel).expect("remote");
    dp1.upsert_remote(net("10.1.1.77/24"), NODE2, bpf::Transport::Tunnel).expect("remote");
    dp1.remove_remote(net("10.1.0.0/16")).expect("remove remote");
    dp1.remove_remote(net("10.9.0.0/16")).expect("removing a missing remote is fine");
    dp1.remove_endpoint(Ipv4Addr::new(10, 1, 0, 99)).expect("removing a missing endpoint is fine");
    dp1.upsert_node(NODE2, subnet2).expect("tunnel sender");
    dp1.remove_node(Ipv4Addr::new(192, 0, 2, 99)).expect("removing a missing sender is fine");
    assert_eq!(dp1.nodes().expect("senders"), [(NODE2, subnet2)]);

    // Read back.
    let endpoints = dp1.endpoints().expect("endpoints");
    let summary: Vec<_> = endpoints.iter().map(|(ip, e)| (*ip, e.ifindex, e.mac, e.packets)).collect();
    assert_eq!(summary, vec![(POD_A, vpa, MAC_A, 0), (POD_B, vpb, MAC_B, 0)]);
    let remotes = dp1.remotes().expect("remotes");
    let summary: Vec<_> = remotes.iter().map(|(s, r)| (*s, bpf::key_ip(r.node_ip))).collect();
    assert_eq!(summary, vec![(subnet2, NODE2)]);
    assert_eq!(dp1.linked_interfaces().expect("links"), ["tun0-br", "vpa", "vpb", "vxlan-t"]);

    // Pod to pod on the same node: sdn_from_pod redirects to the peer (LocalDeliver).
    assert!(ping(env, "pa", POD_B, None), "pa cannot ping pb on the same node through sdn_from_pod");
    assert!(endpoint_packets(&dp1, POD_B) >= 2, "{}", dp1.flows().expect("flows"));
    assert!(endpoint_packets(&dp1, POD_A) >= 2, "replies counted on pa's entry");
    assert!(decision_packets(&dp1, Decision::LocalDeliver) >= 4);

    // Pod to pod across nodes: VXLAN out of node 1 (ToRemote), in at node 2 (FromTunnel), back.
    assert!(ping(env, "pa", POD_C, None), "pa cannot ping pc on the other node through VXLAN");
    assert!(remote_packets(&dp1, subnet2) >= 2);
    assert!(decision_packets(&dp2, Decision::FromTunnel) >= 2);
    assert!(remote_packets(&dp2, subnet1) >= 2, "pc's replies tunnelled back");
    assert!(decision_packets(&dp1, Decision::FromTunnel) >= 2);
    assert!(endpoint_packets(&dp2, POD_C) >= 2);

    // Pod to its gateway: sdn_from_pod passes it to the bridge and so to tun0 (ToHost); the
    // answer from tun0 enters tun0-br, where sdn_from_host delivers it (LocalDeliver).
    let (to_host, local) = (decision_packets(&dp1, Decision::ToHost), decision_packets(&dp1, Decision::LocalDeliver));
    assert!(ping(env, "pa", GATEWAY1, None), "pa cannot ping its gateway");
    assert!(decision_packets(&dp1, Decision::ToHost) >= to_host + 2);
    assert!(decision_packets(&dp1, Decision::LocalDeliver) >= local + 2);

    // A remote pod to this node's gateway: in through the tunnel, sdn_from_tunnel hands it to
    // tun0-br's egress (ToHost); the answer enters tun0-br and sdn_from_host tunnels it back
    // (ToRemote). The host resolves a remote pod's address on tun0 like any other; nothing in
    // the design answers that ARP request (it floods br0 and no port owns the address), so the
    // test gives the host a neighbour entry, as the agent will have to.
    let c = POD_C.to_string();
    run(&["ip", "-n", &n1, "neigh", "replace", &c, "lladdr", &mac_string(GW1), "dev", "tun0", "nud", "permanent"]);
    let (to_host, to_remote) = (decision_packets(&dp1, Decision::ToHost), remote_packets(&dp1, subnet2));
    assert!(ping(env, "pc", GATEWAY1, None), "pc cannot ping the gateway of the other node");
    assert!(decision_packets(&dp1, Decision::ToHost) >= to_host + 2);
    assert!(remote_packets(&dp1, subnet2) >= to_remote + 2);

    // Through the tunnel to an address that is no pod here: dropped (TunnelMiss).
    let miss = decision_packets(&dp1, Decision::TunnelMiss);
    assert!(!ping(env, "pc", Ipv4Addr::new(10, 1, 0, 77), None), "an unknown pod answered");
    assert!(decision_packets(&dp1, Decision::TunnelMiss) > miss);

    // Through vxlan0 from a node that is not registered, or one speaking for another subnet:
    // dropped, each under its reason.
    dp1.remove_node(NODE2).expect("remove sender");
    let unknown = decision_packets(&dp1, Decision::TunnelUnknownNode);
    assert!(!ping(env, "pc", POD_A, None), "VXLAN from an unregistered node got through");
    assert!(decision_packets(&dp1, Decision::TunnelUnknownNode) > unknown);
    dp1.upsert_node(NODE2, net("10.1.5.0/24")).expect("sender of another subnet");
    let foreign = decision_packets(&dp1, Decision::TunnelForeignSource);
    assert!(!ping(env, "pc", POD_A, None), "VXLAN with a source outside the sender's subnet got through");
    assert!(decision_packets(&dp1, Decision::TunnelForeignSource) > foreign);
    dp1.upsert_node(NODE2, subnet2).expect("tunnel sender");
    assert!(ping(env, "pc", POD_A, None), "the registered sender is accepted again");

    // A spoofed source address is dropped: its ARP request (SpoofedArp), or its IPv4 packets
    // (SpoofedIp).
    let spoofed = Ipv4Addr::new(10, 1, 0, 9);
    run(&["ip", "-n", &env.ns("pa"), "addr", "add", &format!("{spoofed}/24"), "dev", "eth0"]);
    let spoofs =
        |dp: &Dataplane| decision_packets(dp, Decision::SpoofedIp) + decision_packets(dp, Decision::SpoofedArp);
    let spoof = spoofs(&dp1);
    assert!(!ping(env, "pa", POD_B, Some(spoofed)), "a spoofed source got through");
    assert!(spoofs(&dp1) > spoof);
    run(&["ip", "-n", &env.ns("pa"), "addr", "del", &format!("{spoofed}/24"), "dev", "eth0"]);

    let flows = dp1.flows().expect("flows");
    eprintln!("flows of n1:\n{flows}");
    assert!(flows.contains(&format!("ip,nw_dst=10.1.0.3 actions=mod_dl_dst:{},output:vpb", mac_string(MAC_B))));
    assert!(flows.contains("ip,nw_dst=10.1.1.0/24 actions=set_field:192.0.2.2->tun_dst,output:vxlan0"));

    // Restart of node 1's agent: the old one goes away (its programs stay attached through the
    // pinned links, and traffic keeps flowing), a new one loads with the pinned maps and
    // replaces each link's program atomically.
    let old_id = dp1.program_id(Program::FromPod).expect("program id");
    assert_eq!(Dataplane::tcx_ingress_programs("vpa").expect("query"), [old_id]);
    let before = endpoint_packets(&dp1, POD_B);
    drop(dp1);
    assert!(ping(env, "pa", POD_C, None), "traffic stopped while no agent ran");
    assert!(ping(env, "pa", POD_B, None), "traffic stopped while no agent ran");

    let mut dp1 = Dataplane::load(&env.pins("n1")).unwrap_or_else(|e| panic!("reloading: {e}"));
    let kept = dp1.endpoints().expect("endpoints");
    assert_eq!(kept.len(), 2, "pinned endpoints survive the restart");
    assert!(endpoint_packets(&dp1, POD_B) > before, "counters kept counting while no agent ran");
    assert_eq!(dp1.remotes().expect("remotes").len(), 1, "pinned remotes survive the restart");
    assert_eq!(dp1.config().expect("config").gateway_mac, GW1, "pinned config survives the restart");
    // The same upsert keeps the counters.
    let counted = endpoint_packets(&dp1, POD_B);
    dp1.upsert_endpoint(POD_B, vpb, MAC_B).expect("endpoint");
    assert_eq!(endpoint_packets(&dp1, POD_B), counted);

    for pod in ["vpa", "vpb"] {
        dp1.attach(Program::FromPod, pod).unwrap_or_else(|e| panic!("{e}"));
    }
    dp1.attach(Program::FromTunnel, "vxlan-t").unwrap_or_else(|e| panic!("{e}"));
    dp1.attach(Program::FromHost, "tun0-br").unwrap_or_else(|e| panic!("{e}"));
    let new_id = dp1.program_id(Program::FromPod).expect("program id");
    assert_ne!(new_id, old_id);
    assert_eq!(Dataplane::tcx_ingress_programs("vpa").expect("query"), [new_id], "replaced, not added");
    let tunnel_id = dp1.program_id(Program::FromTunnel).expect("program id");
    assert_eq!(Dataplane::tcx_ingress_programs("vxlan-t").expect("query"), [tunnel_id]);
    let counted = endpoint_packets(&dp1, POD_B);
    assert!(ping(env, "pa", POD_C, None), "pa cannot reach pc after the restart");
    assert!(ping(env, "pa", POD_B, None), "pa cannot reach pb after the restart");
    assert!(endpoint_packets(&dp1, POD_B) > counted, "the new programs count in the pinned maps");

    // A pod's veth made again under the same name: its pinned link is stale and is replaced.
    run(&["ip", "-n", &n1, "link", "del", "vpb"]);
    run(&["ip", "netns", "del", &env.ns("pb")]);
    run(&["ip", "netns", "add", &env.ns("pb")]);
    run(&["ip", "-n", &env.ns("pb"), "link", "set", "lo", "up"]);
    add_pod(env, "n1", "pb", "vpb", MAC_B, POD_B, GATEWAY1);
    let vpb_new = ifindex("vpb");
    dp1.attach(Program::FromPod, "vpb").unwrap_or_else(|e| panic!("re-attaching to a new vpb: {e}"));
    dp1.upsert_endpoint(POD_B, vpb_new, MAC_B).expect("endpoint");
    assert!(ping(env, "pa", POD_B, None), "pa cannot reach pb on its new veth");
    assert_eq!(Dataplane::tcx_ingress_programs("vpb").expect("query"), [new_id]);

    // Detach: the pin goes, and with it the program on the interface.
    let unpinned = Instant::now();
    dp1.detach("vpa").expect("detach");
    dp1.detach("vpa").expect("detaching twice is fine");
    // The kernel releases an unpinned link from a work queue, so the program goes shortly after.
    let deadline = unpinned + Duration::from_secs(5);
    while !Dataplane::tcx_ingress_programs("vpa").expect("query").is_empty() {
        assert!(Instant::now() < deadline, "vpa still has a program 5 s after its link was unpinned");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("vpa detached {:?} after its link was unpinned", unpinned.elapsed());
    // pa still reaches pb through the bridge, but nothing tunnels its packets any more.
    assert!(!ping(env, "pa", POD_C, None), "without sdn_from_pod nothing should tunnel pa's packets");
    assert!(dp1.attach(Program::FromPod, "bad/name").is_err());

    // Pod ports as the agent attaches them: a cls_bpf filter instead of the TCX link.
    dp1.detach("vpb").expect("detach vpb's link");
    while !Dataplane::tcx_ingress_programs("vpb").expect("query").is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    dp1.attach_filter(Program::FromPod, "vpb").unwrap_or_else(|e| panic!("filter on vpb: {e}"));
    assert_eq!(Dataplane::filter_programs("vpb").expect("filters"), [new_id]);
    assert!(ping(env, "pb", POD_C, None), "pb reaches pc through its filter");
    // Another agent's load replaces the filter's program in place.
    let mut dp2 = Dataplane::load(&env.pins("n1")).unwrap_or_else(|e| panic!("third load: {e}"));
    dp2.attach_filter(Program::FromPod, "vpb").unwrap_or_else(|e| panic!("filter again: {e}"));
    let newest = dp2.program_id(Program::FromPod).expect("program id");
    assert_ne!(newest, new_id);
    assert_eq!(Dataplane::filter_programs("vpb").expect("filters"), [newest], "replaced, not added");
    assert!(ping(env, "pb", POD_C, None), "pb still reaches pc");

    dp1.remove_endpoint(POD_A).expect("remove endpoint");
    dp1.remove_remote(subnet2).expect("remove remote");
    assert_eq!(dp1.endpoints().expect("endpoints").len(), 1);
    assert!(dp1.remotes().expect("remotes").is_empty());
}

#[test]
fn dataplane_loads_attaches_forwards_and_survives_a_restart() {
    let env = setup();
    // setns affects one thread only, so the namespaces are entered on a thread of the test's own.
    let result = std::thread::scope(|scope| scope.spawn(|| scenario(&env)).join());
    drop(env);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A pinned map of another shape (an older build's): the settings maps, which the agent writes on
/// every start, are replaced; a map of state (here the endpoints) is refused, naming it.
#[test]
fn pins_of_another_layout_are_replaced_when_they_hold_settings_and_refused_otherwise() {
    // SAFETY: no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "tests/bpf_load.rs needs root (BPF); run it as root");
    let root = pin_root(std::process::id());
    let pins = root.join("layouts");
    /// Removes the pins also when the test fails.
    struct Cleanup(PathBuf, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = bpf::remove_pins(&self.1);
            let _ = fs::remove_dir(&self.0);
        }
    }
    let _cleanup = Cleanup(root, pins.clone());
    let maps = pins.join("maps");
    fs::create_dir_all(&maps).expect("pin directory");
    let create = |name: &str, kind: &str, value: &str| {
        let path = maps.join(name).display().to_string();
        run(&[
            "bpftool", "map", "create", &path, "type", kind, "key", "4", "value", value, "entries", "1", "name", name,
        ]);
    };
    // The node configuration as the build before it was 24 bytes long.
    create("SDN_CONFIG", "array", "24");
    create("SDN_ENDPOINTS", "hash", "8");
    let Err(refused) = Dataplane::load(&pins) else { panic!("an endpoint map of another layout was taken") };
    let message = refused.to_string();
    assert!(message.contains("SDN_ENDPOINTS"), "{message}");
    fs::remove_file(maps.join("SDN_ENDPOINTS")).expect("remove the odd endpoint map");
    let dp = Dataplane::load(&pins).unwrap_or_else(|e| panic!("an old settings map is replaced: {e}"));
    let shown = Command::new("bpftool").args(["map", "show", "pinned"]).arg(maps.join("SDN_CONFIG")).output();
    let shown = String::from_utf8_lossy(&shown.expect("bpftool").stdout).into_owned();
    let wanted = format!("value {}B", std::mem::size_of::<sdn_ebpf_common::NodeConfig>());
    assert!(shown.contains(&wanted), "the replaced map has this build's layout: {shown}");
    drop(dp);
}

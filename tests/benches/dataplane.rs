//! `make bench-dataplane`: pod-to-pod TCP throughput and latency through the
//! sdn dataplane, against kernel-only references built in the same run.
//!
//! - sdn: a 2-node cluster of the harness (agents, eBPF, VXLAN), pods `a1`
//!   and `a2` on the first node and `b1` on the second ("sdn cross", "sdn
//!   same"); and one with direct routing on, pods `c1` and `d1` ("sdn
//!   direct": no encapsulation between two nodes on one segment).
//! - bridge+vxlan: flannel's VXLAN backend as flannel builds it, a `cni0`
//!   bridge and a `flannel.1` VTEP per node with static routes, neighbours
//!   and FDB entries for the other node.
//! - host-gw: flannel's host-gw shape, routed veths and a route per remote
//!   subnet via the remote node's underlay address, no encapsulation.
//! - linux bridge: two pods on one plain bridge (the same-node reference).
//! - one switch: two pods plugged straight into a switch, no node between
//!   them: the test bed's own cost (two veths and a bridge) with nothing on
//!   the path, close to a ceiling for one stream here (host-gw's extra hops
//!   can still win with 8 streams, where queueing spreads the work).
//!
//! Every setup has namespaces of its own (names with the bench's pid); the
//! cross-node ones two "node" namespaces on a switch namespace and a "pod"
//! namespace behind each, as the harness builds sdn's (but one switch: its
//! two pods are on the switch itself). Throughput is `iperf3`
//! with one stream and with 8 in parallel (the receiver's rate, summed over
//! the streams), latency a TCP ping-pong of 14-byte messages
//! in the style of `sockperf ping-pong` (full round trips), and the CPU cost
//! is the whole machine's busy CPU time per GB an iperf3 run moved. The
//! setups take turns within each round, in a rotating order, so a noisy
//! moment of the machine does not land on one of them only; each figure is
//! the median over the rounds, and every run is printed with the share of
//! CPU time the hypervisor stole during it.
//!
//! `SDN_BENCH_ROUNDS` (default 5) and `SDN_BENCH_SECONDS` (default 2) change
//! the number of rounds and the length of each run.
//!
//! The setups are the table `paths` in `run`, the targets [`TARGETS`];
//! `dataplane/report.rs` computes and prints the figures from them.

// A bench target is a crate root: a plain `mod` would look for
// `benches/report.rs`, which cargo would take for a bench of its own.
#[path = "dataplane/report.rs"]
mod report;

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sdn_tests::bins;
use sdn_tests::cpu::CpuTimes;
use sdn_tests::netns::{Netns, Underlay};
use sdn_tests::node::Cluster;
use sdn_tests::process::Process;
use sdn_tests::rundir::RunDir;

use report::Placement::{CrossNode, SameNode};
use report::{Latency, Placement, Rtt, STREAMS, Samples, Setup, Stream, Target};

const IPERF_PORT: u16 = 5201;
const PING_PONG_PORT: u16 = 11111;
/// Bytes of one ping-pong request (and answer), sockperf's default.
const MESSAGE: usize = 14;
/// Round trips in the first part of a ping-pong run are not counted.
const PING_PONG_WARMUP: Duration = Duration::from_millis(300);
/// Pod MTU behind VXLAN (underlay 1500 - 50), as sdn and flannel set it.
const VXLAN_MTU: &str = "1450";
const HOST_GW_MTU: &str = "1500";

/// The setups' labels, by which the report and [`TARGETS`] find them.
const SDN_CROSS: &str = "sdn cross";
const SDN_DIRECT: &str = "sdn direct";
const VXLAN: &str = "bridge+vxlan";
const HOST_GW: &str = "host-gw";
const SDN_SAME: &str = "sdn same";
const BRIDGE: &str = "linux bridge";
const ONE_SWITCH: &str = "one switch";

/// Throughput targets, in multiples of a reference's. Cross-node against
/// flannel's VXLAN backend, which sdn replaces.
const TARGET_VS_VXLAN: f64 = 1.15;
/// Cross-node against host-gw: at least its throughput, as sdn's
/// encapsulation is to cost pods nothing against plain routing.
const TARGET_VS_HOST_GW: f64 = 1.0;
/// Over VXLAN, CPU per GB no more than host-gw's.
const TARGET_CPU_VS_HOST_GW: f64 = 1.0;
/// Same-node against a plain bridge: at least its throughput.
const TARGET_SAME_VS_BRIDGE: f64 = 1.0;
/// Direct routing (no encapsulation at all) against host-gw: throughput and RTT p50.
const TARGET_DIRECT_VS_HOST_GW: f64 = 1.10;
const TARGET_DIRECT_RTT_VS_HOST_GW: f64 = 0.9;

/// sdn's targets, latency (RTT p50) ones beside the throughput ones; each
/// throughput target holds with every stream count of [`STREAMS`].
const TARGETS: [Target; 4] = [
    Target { setup: SDN_CROSS, reference: VXLAN, throughput: TARGET_VS_VXLAN, rtt_p50: None, cpu_per_gb: None },
    Target {
        setup: SDN_CROSS,
        reference: HOST_GW,
        throughput: TARGET_VS_HOST_GW,
        rtt_p50: Some(Rtt::AtMost(1.0)),
        cpu_per_gb: Some(TARGET_CPU_VS_HOST_GW),
    },
    Target {
        setup: SDN_DIRECT,
        reference: HOST_GW,
        throughput: TARGET_DIRECT_VS_HOST_GW,
        rtt_p50: Some(Rtt::AtMost(TARGET_DIRECT_RTT_VS_HOST_GW)),
        cpu_per_gb: None,
    },
    Target {
        setup: SDN_SAME,
        reference: BRIDGE,
        throughput: TARGET_SAME_VS_BRIDGE,
        rtt_p50: Some(Rtt::Below(1.0)),
        cpu_per_gb: None,
    },
];

/// A command's stdout, or an error with its stderr.
fn exec(ns: &Netns, args: &[&str]) -> anyhow::Result<String> {
    let out = ns.exec(args);
    if !out.status.success() {
        bail!(
            "`ip netns exec {} {}` failed: {}{}",
            ns.name(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(ns: &Netns, args: &[&str]) -> anyhow::Result<()> {
    ns.ip(args)?;
    Ok(())
}

fn forwarding(ns: &Netns) -> anyhow::Result<()> {
    exec(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).map(drop)
}

/// A veth `host` in `node` whose peer is `eth0` in `pod`, both up with `mtu`.
fn pod_veth(node: &Netns, host: &str, pod: &Netns, mtu: &str) -> anyhow::Result<()> {
    ip(node, &["link", "add", host, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", pod.name()])?;
    ip(pod, &["link", "set", "eth0", "mtu", mtu, "up"])?;
    ip(node, &["link", "set", host, "up"])
}

/// The pod's address and default route.
fn pod_address(pod: &Netns, addr: Ipv4Addr, gateway: Ipv4Addr) -> anyhow::Result<()> {
    ip(pod, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
    ip(pod, &["route", "add", "default", "via", &gateway.to_string()])
}

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 11 + i as u8)
}

/// `10.244.<i>.<host>`: node `i`'s pod subnet, as flannel numbers them.
fn pod_net(i: usize, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, i as u8, host)
}

/// Two nodes on a switch, one pod behind each (pod `i` is `10.244.i.2`).
struct TwoNodes {
    _underlay: Underlay,
    nodes: Vec<Netns>,
    pods: Vec<Netns>,
}

impl TwoNodes {
    fn new(dir: &Arc<RunDir>, prefix: &str) -> anyhow::Result<Self> {
        let underlay = Underlay::new(dir.clone(), &format!("{prefix}-sw"))?;
        let (mut nodes, mut pods) = (Vec::new(), Vec::new());
        for i in 0..2 {
            let node = Netns::create(dir.clone(), &format!("{prefix}-n{i}"))?;
            underlay.plug(&node, node_ip(i))?;
            forwarding(&node)?;
            nodes.push(node);
            pods.push(Netns::create(dir.clone(), &format!("{prefix}-p{i}"))?);
        }
        Ok(Self { _underlay: underlay, nodes, pods })
    }

    /// flannel's VXLAN backend: `cni0` with the pod, `flannel.1` with the
    /// other node's VTEP as static route, neighbour and FDB entries.
    fn flannel_vxlan(dir: &Arc<RunDir>, prefix: &str) -> anyhow::Result<Self> {
        let this = Self::new(dir, prefix)?;
        let vtep_mac = |i: usize| format!("02:f1:00:00:00:{:02x}", i + 1);
        for (i, (node, pod)) in this.nodes.iter().zip(&this.pods).enumerate() {
            ip(node, &["link", "add", "cni0", "mtu", VXLAN_MTU, "type", "bridge"])?;
            ip(node, &["addr", "add", &format!("{}/24", pod_net(i, 1)), "dev", "cni0"])?;
            ip(node, &["link", "set", "cni0", "up"])?;
            pod_veth(node, "veth0", pod, VXLAN_MTU)?;
            ip(node, &["link", "set", "veth0", "master", "cni0"])?;
            pod_address(pod, pod_net(i, 2), pod_net(i, 1))?;
            let local = node_ip(i).to_string();
            #[rustfmt::skip]
            ip(node, &["link", "add", "flannel.1", "address", &vtep_mac(i), "mtu", VXLAN_MTU, "type", "vxlan",
                "id", "1", "dstport", "4789", "nolearning", "local", &local, "dev", "ul0"])?;
            ip(node, &["addr", "add", &format!("{}/32", pod_net(i, 0)), "dev", "flannel.1"])?;
            ip(node, &["link", "set", "flannel.1", "up"])?;
        }
        for (i, node) in this.nodes.iter().enumerate() {
            let j = 1 - i;
            let (subnet, vtep) = (format!("{}/24", pod_net(j, 0)), pod_net(j, 0).to_string());
            ip(node, &["route", "add", &subnet, "via", &vtep, "dev", "flannel.1", "onlink"])?;
            ip(node, &["neigh", "add", &vtep, "lladdr", &vtep_mac(j), "dev", "flannel.1", "nud", "permanent"])?;
            let remote = node_ip(j).to_string();
            exec(node, &["bridge", "fdb", "append", &vtep_mac(j), "dev", "flannel.1", "dst", &remote])?;
        }
        Ok(this)
    }

    /// flannel's host-gw shape: each pod on a routed veth, the other node's
    /// pod subnet via that node's underlay address.
    fn host_gw(dir: &Arc<RunDir>, prefix: &str) -> anyhow::Result<Self> {
        let this = Self::new(dir, prefix)?;
        for (i, (node, pod)) in this.nodes.iter().zip(&this.pods).enumerate() {
            pod_veth(node, "veth0", pod, HOST_GW_MTU)?;
            ip(node, &["addr", "add", &format!("{}/32", pod_net(i, 1)), "dev", "veth0"])?;
            ip(node, &["route", "add", &format!("{}/32", pod_net(i, 2)), "dev", "veth0"])?;
            pod_address(pod, pod_net(i, 2), pod_net(i, 1))?;
            let j = 1 - i;
            ip(
                node,
                &["route", "add", &format!("{}/24", pod_net(j, 0)), "via", &node_ip(j).to_string(), "dev", "ul0"],
            )?;
        }
        Ok(this)
    }
}

/// Two pods on one plain Linux bridge (`10.244.9.2` and `.3`).
struct SameBridge {
    _bridge: Netns,
    pods: Vec<Netns>,
}

impl SameBridge {
    fn new(dir: &Arc<RunDir>, prefix: &str) -> anyhow::Result<Self> {
        let bridge = Netns::create(dir.clone(), &format!("{prefix}-br"))?;
        ip(&bridge, &["link", "add", "br0", "mtu", VXLAN_MTU, "type", "bridge"])?;
        ip(&bridge, &["link", "set", "br0", "up"])?;
        let mut pods = Vec::new();
        for i in 0..2u8 {
            let pod = Netns::create(dir.clone(), &format!("{prefix}-p{i}"))?;
            let port = format!("veth{i}");
            pod_veth(&bridge, &port, &pod, VXLAN_MTU)?;
            ip(&bridge, &["link", "set", &port, "master", "br0"])?;
            ip(&pod, &["addr", "add", &format!("{}/24", Ipv4Addr::new(10, 244, 9, 2 + i)), "dev", "eth0"])?;
            pods.push(pod);
        }
        Ok(Self { _bridge: bridge, pods })
    }
}

/// Two pods on a switch of their own, no node namespace between them
/// (`192.0.2.21` and `.22`).
struct OneSwitch {
    _underlay: Underlay,
    pods: Vec<Netns>,
}

impl OneSwitch {
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 22);

    fn new(dir: &Arc<RunDir>, prefix: &str) -> anyhow::Result<Self> {
        let underlay = Underlay::new(dir.clone(), &format!("{prefix}-sw"))?;
        let mut pods = Vec::new();
        for i in 0..2u8 {
            let pod = Netns::create(dir.clone(), &format!("{prefix}-p{i}"))?;
            underlay.plug(&pod, Ipv4Addr::new(192, 0, 2, 21 + i))?;
            pods.push(pod);
        }
        Ok(Self { _underlay: underlay, pods })
    }
}

/// One setup to measure: a client namespace and a server address.
struct Path<'a> {
    setup: Setup,
    client: &'a Netns,
    server: &'a Netns,
    server_ip: Ipv4Addr,
}

/// `program` to be run inside `ns` (entered between fork and exec, which
/// is cheaper than `ip netns exec`'s remounting of /sys).
fn command_in(ns: &Netns, program: &str) -> anyhow::Result<Command> {
    let file = std::fs::File::open(ns.path()).with_context(|| format!("opening {}", ns.path().display()))?;
    let mut command = Command::new(program);
    // SAFETY: setns is async-signal-safe; the file stays open in the closure.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    Ok(command)
}

/// Moves the calling thread into `ns`.
fn enter(ns: &Netns) -> anyhow::Result<()> {
    let file = std::fs::File::open(ns.path()).with_context(|| format!("opening {}", ns.path().display()))?;
    // SAFETY: setns on an open namespace file; it changes only this thread's namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("entering {}: {}", ns.name(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// An iperf3 server in the path's server namespace, killed when dropped.
fn start_server(dir: &RunDir, path: &Path) -> anyhow::Result<Process> {
    let mut iperf = command_in(path.server, "iperf3")?;
    iperf.args(["-s", "-p", &IPERF_PORT.to_string()]);
    Ok(Process::spawn(&format!("{}-iperf3", path.server.name()), iperf, dir)?)
}

/// Waits until the server listens, then checks the client reaches it.
fn check_path(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listening = exec(path.server, &["ss", "-Hltn"])?;
        if listening.contains(&format!(":{IPERF_PORT} ")) {
            break;
        }
        if Instant::now() > deadline {
            bail!("{}: the iperf3 server is not listening in {}:\n{listening}", path.setup.label, path.server.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !path.client.ping(path.server_ip, 2, 56, false) {
        bail!("{}: {} cannot ping {}", path.setup.label, path.client.name(), path.server_ip);
    }
    Ok(())
}

/// One iperf3 run with `streams` parallel streams; iperf3's `sum_received`
/// and `sum_sent` add up the streams.
fn throughput(path: &Path, seconds: u32, streams: u32) -> anyhow::Result<Stream> {
    let (ip, port, t, p) =
        (path.server_ip.to_string(), IPERF_PORT.to_string(), seconds.to_string(), streams.to_string());
    let mut last = String::new();
    // The server takes one test at a time and may still be finishing the last.
    for _ in 0..3 {
        let ofo_before = out_of_order(path.server)?;
        let before = CpuTimes::now();
        let out = command_in(path.client, "iperf3")?
            .args(["-c", &ip, "-p", &port, "-t", &t, "-P", &p, "-J"])
            .output()
            .context("running iperf3")?;
        let (busy, steal) = before.since();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let end = &report["end"];
        if let (true, Some(bps), Some(bytes)) = (
            out.status.success(),
            end["sum_received"]["bits_per_second"].as_f64(),
            end["sum_received"]["bytes"].as_f64(),
        ) {
            let retransmits = end["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
            let out_of_order = out_of_order(path.server)?.saturating_sub(ofo_before);
            let cpu_per_gb = busy / (bytes / 1e9).max(1e-9);
            return Ok(Stream { bps, cpu_per_gb, steal, retransmits, out_of_order });
        }
        last =
            format!("{}{}", report["error"].as_str().unwrap_or_default(), String::from_utf8_lossy(&out.stderr).trim());
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("{}: iperf3 -P {streams} from {} to {ip} failed: {last}", path.setup.label, path.client.name())
}

/// Waits until both nodes of the direct-routing cluster route to each other directly.
async fn wait_direct(cluster: &Cluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    for node in &cluster.nodes {
        loop {
            let flows = node.command("flows")?;
            if flows.contains("->next_hop,") {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} does not route directly:\n{flows}", node.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Segments the receiving namespace's TCP queued out of order so far (`nstat`'s
/// `TcpExtTCPOFOQueue`): reordering on the path, which TCP takes for loss.
fn out_of_order(ns: &Netns) -> anyhow::Result<u64> {
    let out = command_in(ns, "nstat")?.args(["-az", "TcpExtTCPOFOQueue"]).output().context("running nstat")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value =
        text.lines().find_map(|l| l.strip_prefix("TcpExtTCPOFOQueue")).and_then(|v| v.split_whitespace().next());
    value.and_then(|v| v.parse().ok()).with_context(|| format!("nstat in {}: {text}", ns.name()))
}

/// TCP ping-pong, `sockperf ping-pong` style: one connection with
/// `TCP_NODELAY`, a [`MESSAGE`]-byte request echoed back, the next sent when
/// the answer is in. The echo runs on its own thread, as a server process
/// would; both sockets are made inside their namespaces (a socket stays in
/// the namespace it was created in) by a thread of their own.
fn latency(path: &Path, seconds: u32) -> anyhow::Result<Latency> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    let label = path.setup.label;
    let (server_ns, client_ns, server_ip) = (path.server, path.client, path.server_ip);
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> anyhow::Result<Latency> {
                enter(server_ns)?;
                let listener = TcpListener::bind((server_ip, PING_PONG_PORT)).context("binding the echo server")?;
                enter(client_ns)?;
                let mut client = TcpStream::connect((server_ip, PING_PONG_PORT))
                    .with_context(|| format!("{label}: connecting to {server_ip}:{PING_PONG_PORT}"))?;
                let (mut server, _) = listener.accept().context("accepting")?;
                client.set_nodelay(true)?;
                server.set_nodelay(true)?;
                let echo = std::thread::spawn(move || {
                    let mut buf = [0u8; MESSAGE];
                    while server.read_exact(&mut buf).is_ok() && server.write_all(&buf).is_ok() {}
                });
                let (mut rtts, mut buf) = (Vec::with_capacity(1 << 20), [7u8; MESSAGE]);
                let before = CpuTimes::now();
                let start = Instant::now();
                let (warmup, end) =
                    (start + PING_PONG_WARMUP, start + PING_PONG_WARMUP + Duration::from_secs(seconds.into()));
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    client.write_all(&buf).context("ping")?;
                    client.read_exact(&mut buf).context("pong")?;
                    if sent >= warmup {
                        rtts.push(sent.elapsed().as_nanos() as f64 / 1e3);
                    }
                }
                let (_, steal) = before.since();
                drop(client);
                let _ = echo.join();
                if rtts.is_empty() {
                    bail!("{label}: no round trip completed");
                }
                let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
                rtts.sort_by(f64::total_cmp);
                let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
                Ok(Latency { avg, p50: at(0.50), p99: at(0.99), steal })
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("{label}: the ping-pong thread panicked")))
    })
}

/// Runs every path of `group` (positions in `paths` and `samples`) once
/// for each stream count of [`STREAMS`] and once for latency, starting at
/// `first` and going round.
fn round(paths: &[Path], group: &[usize], samples: &mut [Samples], first: usize, seconds: u32) -> anyhow::Result<()> {
    let order: Vec<usize> = (0..group.len()).map(|k| group[(first + k) % group.len()]).collect();
    for (s, &streams) in STREAMS.iter().enumerate() {
        for &k in &order {
            samples[k].streams[s].push(throughput(&paths[k], seconds, streams)?);
        }
    }
    for &k in &order {
        samples[k].rtts.push(latency(&paths[k], seconds)?);
    }
    Ok(())
}

fn env_number(name: &str, default: u32) -> anyhow::Result<u32> {
    match std::env::var(name) {
        Ok(value) => value.parse().with_context(|| format!("{name}={value} is not a number")),
        Err(_) => Ok(default),
    }
}

async fn run() -> anyhow::Result<()> {
    for (tool, hint) in [
        ("iperf3", "Debian package iperf3 (`make setup` installs it)"),
        ("ip", "Debian package iproute2"),
        ("bridge", "Debian package iproute2"),
        ("ss", "Debian package iproute2"),
        ("sysctl", "Debian package procps"),
        ("ping", "Debian package iputils-ping"),
    ] {
        bins::tool(tool, hint)?;
    }
    let rounds = env_number("SDN_BENCH_ROUNDS", 5)?.max(1);
    let seconds = env_number("SDN_BENCH_SECONDS", 2)?.max(1);
    let started = Instant::now();

    let cluster = Cluster::start("bench-dp", 2).await.context("starting the sdn cluster")?;
    let a1 = cluster.nodes[0].attach_pod("a1").await.context("attaching pod a1")?;
    let a2 = cluster.nodes[0].attach_pod("a2").await.context("attaching pod a2")?;
    let b1 = cluster.nodes[1].attach_pod("b1").await.context("attaching pod b1")?;
    // The same cluster with direct routing on: both nodes on one segment, no VXLAN between them.
    let network = sdn_cluster::ClusterNetwork { direct_routing: true, ..Default::default() };
    let direct = Cluster::start_with_network("bench-dr", 2, network).await.context("starting the direct cluster")?;
    let c1 = direct.nodes[0].attach_pod("c1").await.context("attaching pod c1")?;
    let d1 = direct.nodes[1].attach_pod("d1").await.context("attaching pod d1")?;
    wait_direct(&direct).await?;

    let dir = Arc::new(RunDir::new("bench-dp-ref")?);
    let prefix = format!("bdp-{}", std::process::id());
    let vxlan =
        TwoNodes::flannel_vxlan(&dir, &format!("{prefix}-vx")).context("building the bridge+vxlan reference")?;
    let host_gw = TwoNodes::host_gw(&dir, &format!("{prefix}-gw")).context("building the host-gw reference")?;
    let bridge = SameBridge::new(&dir, &format!("{prefix}-lb")).context("building the linux bridge reference")?;
    let switch = OneSwitch::new(&dir, &format!("{prefix}-os")).context("building the one-switch reference")?;

    // The setups, each compared with the references of its placement; a
    // setup more is an entry here (and a target in `TARGETS`).
    let paths = [
        Path { setup: Setup::sdn(SDN_CROSS, CrossNode), client: &a1.ns, server: &b1.ns, server_ip: b1.ip },
        Path { setup: Setup::sdn(SDN_DIRECT, CrossNode), client: &c1.ns, server: &d1.ns, server_ip: d1.ip },
        Path {
            setup: Setup::reference(VXLAN, CrossNode),
            client: &vxlan.pods[0],
            server: &vxlan.pods[1],
            server_ip: pod_net(1, 2),
        },
        Path {
            setup: Setup::reference(HOST_GW, CrossNode),
            client: &host_gw.pods[0],
            server: &host_gw.pods[1],
            server_ip: pod_net(1, 2),
        },
        Path {
            setup: Setup::reference(ONE_SWITCH, CrossNode),
            client: &switch.pods[0],
            server: &switch.pods[1],
            server_ip: OneSwitch::SERVER,
        },
        Path { setup: Setup::sdn(SDN_SAME, SameNode), client: &a1.ns, server: &a2.ns, server_ip: a2.ip },
        Path {
            setup: Setup::reference(BRIDGE, SameNode),
            client: &bridge.pods[0],
            server: &bridge.pods[1],
            server_ip: Ipv4Addr::new(10, 244, 9, 3),
        },
    ];
    let setups: Vec<Setup> = paths.iter().map(|path| path.setup).collect();
    let targets = report::resolve(&setups, &TARGETS)?;
    // Declared after the namespaces: dropped (killed) before they are deleted.
    let servers = paths.iter().map(|path| start_server(&dir, path)).collect::<Result<Vec<_>, _>>()?;
    for path in &paths {
        check_path(path)?;
    }
    println!(
        "set up in {:.1} s: sdn pods {} {} (node 0) and {} (node 1); {rounds} rounds of {} runs of {seconds} s follow",
        started.elapsed().as_secs_f64(),
        a1.ip,
        a2.ip,
        b1.ip,
        (STREAMS.len() + 1) * paths.len()
    );

    // The cross-node setups take turns, then the same-node ones.
    let groups: Vec<Vec<usize>> = Placement::ALL
        .iter()
        .map(|&placement| (0..paths.len()).filter(|&k| paths[k].setup.placement == placement).collect())
        .collect();
    let mut samples: Vec<Samples> = paths.iter().map(|_| Samples::default()).collect();
    for r in 0..rounds as usize {
        for group in &groups {
            round(&paths, group, &mut samples, r, seconds)?;
        }
        println!("  round {}/{rounds} done ({:.0} s)", r + 1, started.elapsed().as_secs_f64());
    }
    report::report(seconds, rounds, &setups, &samples, &targets);
    drop(servers);
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bench-dataplane: starting the async runtime: {err}");
            std::process::exit(1);
        }
    };
    // Everything the run made (servers, namespaces, agents, etcd) is
    // dropped inside `run`, on success and on failure alike.
    let result = runtime.block_on(run());
    drop(runtime);
    if let Err(err) = result {
        eprintln!("bench-dataplane FAILED: {err:#}");
        std::process::exit(1);
    }
}

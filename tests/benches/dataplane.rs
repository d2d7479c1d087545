//! `make bench-dataplane`: pod-to-pod TCP throughput and latency through the
//! sdn dataplane, against kernel-only references built in the same run.
//!
//! - sdn: a 2-node cluster of the harness (agents, eBPF, VXLAN), pods `a1`
//!   and `a2` on the first node and `b1` on the second.
//! - bridge+vxlan: flannel's VXLAN backend as flannel builds it, a `cni0`
//!   bridge and a `flannel.1` VTEP per node with static routes, neighbours
//!   and FDB entries for the other node.
//! - host-gw: flannel's host-gw shape, routed veths and a route per remote
//!   subnet via the remote node's underlay address, no encapsulation.
//! - linux bridge: two pods on one plain bridge (the same-node reference).
//!
//! Every setup has namespaces of its own (names with the bench's pid); the
//! cross-node ones two "node" namespaces on a switch namespace and a "pod"
//! namespace behind each, as the harness builds sdn's. Throughput is `iperf3` (one
//! stream, the receiver's rate), latency a TCP ping-pong of 14-byte messages
//! in the style of `sockperf ping-pong` (full round trips), and the CPU cost
//! is the whole machine's busy CPU time per GB an iperf3 run moved. The
//! setups take turns within each round, in a rotating order, so a noisy
//! moment of the machine does not land on one of them only; each figure is
//! the median over the rounds, and every run is printed with the share of
//! CPU time the hypervisor stole during it.
//!
//! `SDN_BENCH_ROUNDS` (default 5) and `SDN_BENCH_SECONDS` (default 2) change
//! the number of rounds and the length of each run.

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

const IPERF_PORT: u16 = 5201;
const PING_PONG_PORT: u16 = 11111;
/// Bytes of one ping-pong request (and answer), sockperf's default.
const MESSAGE: usize = 14;
/// Round trips in the first part of a ping-pong run are not counted.
const PING_PONG_WARMUP: Duration = Duration::from_millis(300);
/// Pod MTU behind VXLAN (underlay 1500 - 50), as sdn and flannel set it.
const VXLAN_MTU: &str = "1450";
const HOST_GW_MTU: &str = "1500";

/// Targets: cross-node throughput against the two references, latency against host-gw.
const TARGET_VS_VXLAN: f64 = 1.15;
/// "About 1.0x host-gw": no more than 5 % below it.
const TARGET_VS_HOST_GW: f64 = 0.95;
/// Above this median share of stolen CPU time the report warns that Gbit/s are unreliable.
const STEAL_WARNING: f64 = 0.10;
/// Runs with less stolen CPU time than this are "quiet"; their throughput is shown apart.
const QUIET: f64 = 0.20;

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

/// One path to measure: a client namespace and a server address.
struct Path<'a> {
    label: &'static str,
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
            bail!("{}: the iperf3 server is not listening in {}:\n{listening}", path.label, path.server.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !path.client.ping(path.server_ip, 2, 56, false) {
        bail!("{}: {} cannot ping {}", path.label, path.client.name(), path.server_ip);
    }
    Ok(())
}

/// One iperf3 run.
#[derive(Debug, Clone, Copy)]
struct Stream {
    /// Receiver bits/s.
    bps: f64,
    /// Busy CPU seconds of the whole machine (both ends, softirqs, all) per GB received.
    cpu_per_gb: f64,
    /// Share of the run's CPU time stolen by the hypervisor.
    steal: f64,
    retransmits: u64,
}

fn throughput(path: &Path, seconds: u32) -> anyhow::Result<Stream> {
    let (ip, port, t) = (path.server_ip.to_string(), IPERF_PORT.to_string(), seconds.to_string());
    let mut last = String::new();
    // The server takes one test at a time and may still be finishing the last.
    for _ in 0..3 {
        let before = CpuTimes::now();
        let out = command_in(path.client, "iperf3")?
            .args(["-c", &ip, "-p", &port, "-t", &t, "-J"])
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
            return Ok(Stream { bps, cpu_per_gb: busy / (bytes / 1e9).max(1e-9), steal, retransmits });
        }
        last =
            format!("{}{}", report["error"].as_str().unwrap_or_default(), String::from_utf8_lossy(&out.stderr).trim());
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("{}: iperf3 from {} to {ip} failed: {last}", path.label, path.client.name())
}

/// Round-trip times of one ping-pong run in microseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    avg: f64,
    p50: f64,
    p99: f64,
    steal: f64,
}

/// TCP ping-pong, `sockperf ping-pong` style: one connection with
/// `TCP_NODELAY`, a [`MESSAGE`]-byte request echoed back, the next sent when
/// the answer is in. The echo runs on its own thread, as a server process
/// would; both sockets are made inside their namespaces (a socket stays in
/// the namespace it was created in) by a thread of their own.
fn latency(path: &Path, seconds: u32) -> anyhow::Result<Latency> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    let label = path.label;
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

/// Every round's figures of one path. The figures reported are medians
/// over the rounds: the setups take turns, so each meets the machine's
/// noisy moments about as often as the others. (The best run is no fairer
/// here: the hypervisor's rare generous moments decide which setup wins.)
#[derive(Default)]
struct Samples {
    streams: Vec<Stream>,
    rtts: Vec<Latency>,
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl Samples {
    fn gbps(&self) -> f64 {
        median(self.streams.iter().map(|s| s.bps / 1e9))
    }

    fn cpu_per_gb(&self) -> f64 {
        median(self.streams.iter().map(|s| s.cpu_per_gb))
    }

    fn rtt(&self, f: fn(&Latency) -> f64) -> f64 {
        median(self.rtts.iter().map(f))
    }

    /// Median Gbit/s of the runs during which the hypervisor stole less than [`QUIET`].
    fn quiet_gbps(&self) -> Option<f64> {
        let quiet: Vec<f64> = self.streams.iter().filter(|s| s.steal < QUIET).map(|s| s.bps / 1e9).collect();
        (!quiet.is_empty()).then(|| median(quiet.into_iter()))
    }

    /// Every run's stolen share.
    fn steals(&self) -> impl Iterator<Item = f64> + '_ {
        self.streams.iter().map(|s| s.steal).chain(self.rtts.iter().map(|l| l.steal))
    }
}

/// Runs every path of `group` once for throughput and once for latency,
/// starting at `first` and going round.
fn round(group: &[Path], samples: &mut [Samples], first: usize, seconds: u32) -> anyhow::Result<()> {
    let order: Vec<usize> = (0..group.len()).map(|k| (first + k) % group.len()).collect();
    for &k in &order {
        samples[k].streams.push(throughput(&group[k], seconds)?);
    }
    for &k in &order {
        samples[k].rtts.push(latency(&group[k], seconds)?);
    }
    Ok(())
}

fn env_number(name: &str, default: u32) -> anyhow::Result<u32> {
    match std::env::var(name) {
        Ok(value) => value.parse().with_context(|| format!("{name}={value} is not a number")),
        Err(_) => Ok(default),
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// One line: sdn's figure, then each reference's with sdn's ratio to it.
fn row(title: &str, unit: &str, decimals: usize, sdn: f64, references: &[(&str, f64)]) {
    let mut line = format!("  {title:<26} sdn {sdn:>7.decimals$} {unit:<6}");
    for (name, value) in references {
        line += &format!("   {name} {value:>7.decimals$} {unit:<6} ({:.2}x)", sdn / value);
    }
    println!("{line}");
}

/// The latency figures printed, by name.
type Figure = (&'static str, fn(&Latency) -> f64);

const FIGURES: [Figure; 3] = [("p50", |l| l.p50), ("avg", |l| l.avg), ("p99", |l| l.p99)];

fn report(seconds: u32, rounds: u32, cross: &[Samples], same: &[Samples]) {
    println!(
        "\ndataplane benchmark (iperf3 1 stream {seconds} s, TCP ping-pong {MESSAGE} B {seconds} s; \
         medians of {rounds} rounds with the setups taking turns)"
    );
    let (sdn, vx, gw) = (&cross[0], &cross[1], &cross[2]);
    let refs = |f: &dyn Fn(&Samples) -> f64| [("bridge+vxlan", f(vx)), ("host-gw", f(gw))];
    row("cross-node throughput", "Gbit/s", 2, sdn.gbps(), &refs(&Samples::gbps));
    for (name, f) in FIGURES {
        row(&format!("cross-node latency RTT {name}"), "us", 1, sdn.rtt(f), &refs(&|s| s.rtt(f)));
    }
    row("cross-node CPU per GB", "s", 2, sdn.cpu_per_gb(), &refs(&Samples::cpu_per_gb));
    let (sdn1, br) = (&same[0], &same[1]);
    row("same-node throughput", "Gbit/s", 2, sdn1.gbps(), &[("linux bridge", br.gbps())]);
    for (name, f) in FIGURES {
        row(&format!("same-node latency RTT {name}"), "us", 1, sdn1.rtt(f), &[("linux bridge", br.rtt(f))]);
    }
    row("same-node CPU per GB", "s", 2, sdn1.cpu_per_gb(), &[("linux bridge", br.cpu_per_gb())]);

    println!("  every run: Gbit/s, CPU s per GB, TCP retransmits, CPU stolen | RTT p50 us, CPU stolen");
    let labels = ["sdn cross", "bridge+vxlan", "host-gw", "sdn same", "linux bridge"];
    for (label, s) in labels.iter().zip(cross.iter().chain(same)) {
        let streams: Vec<String> = s
            .streams
            .iter()
            .map(|r| format!("{:.2} {:.2} {} {:.0}%", r.bps / 1e9, r.cpu_per_gb, r.retransmits, r.steal * 100.0))
            .collect();
        let rtts: Vec<String> = s.rtts.iter().map(|l| format!("{:.1} {:.0}%", l.p50, l.steal * 100.0)).collect();
        println!("    {label:<13} {} | {}", streams.join(", "), rtts.join(", "));
    }
    for (group, labels) in [(cross, &labels[..3]), (same, &labels[3..])] {
        let title = format!("throughput of quiet runs (< {:.0} % stolen)", QUIET * 100.0);
        match group.iter().map(Samples::quiet_gbps).collect::<Option<Vec<f64>>>() {
            Some(quiet) => {
                let refs: Vec<(&str, f64)> = labels[1..].iter().copied().zip(quiet[1..].iter().copied()).collect();
                row(&title, "Gbit/s", 2, quiet[0], &refs);
            }
            None => println!("  {title}: not every setup of {} had one", labels.join(", ")),
        }
    }
    let steals: Vec<f64> = cross.iter().chain(same).flat_map(Samples::steals).collect();
    let steal = median(steals.iter().copied());
    println!(
        "  CPU time stolen by the hypervisor during the runs: median {:.0} %, max {:.0} %",
        steal * 100.0,
        steals.iter().copied().fold(0.0, f64::max) * 100.0
    );
    if steal > STEAL_WARNING {
        println!(
            "  warning: this VM did not get its CPUs for much of the run; Gbit/s follow the hypervisor more than \
             the dataplane. CPU per GB (busy CPU time of the whole machine per GB received) and RTT p50 are steadier."
        );
    }

    let vs_vx = sdn.gbps() / vx.gbps();
    let vs_gw = sdn.gbps() / gw.gbps();
    let (lat, lat_gw) = (sdn.rtt(|l| l.p50), gw.rtt(|l| l.p50));
    println!(
        "targets: cross-node throughput >= {TARGET_VS_VXLAN:.2}x bridge+vxlan and ~1.0x host-gw (>= {TARGET_VS_HOST_GW:.2}x); \
         latency (RTT p50) <= host-gw"
    );
    if steal > STEAL_WARNING {
        println!("  (with {:.0} % of the CPU stolen these verdicts are as noisy as the figures above)", steal * 100.0);
    }
    println!("  throughput vs bridge+vxlan  {vs_vx:.2}x  {}", met(vs_vx >= TARGET_VS_VXLAN));
    println!("  throughput vs host-gw       {vs_gw:.2}x  {}", met(vs_gw >= TARGET_VS_HOST_GW));
    println!("  latency vs host-gw          {lat:.1} us vs {lat_gw:.1} us  {}", met(lat <= lat_gw));
    println!(
        "  (CPU per GB vs bridge+vxlan {:.2}x, vs host-gw {:.2}x; lower is cheaper)",
        sdn.cpu_per_gb() / vx.cpu_per_gb(),
        sdn.cpu_per_gb() / gw.cpu_per_gb()
    );
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

    let dir = Arc::new(RunDir::new("bench-dp-ref")?);
    let prefix = format!("bdp-{}", std::process::id());
    let vxlan =
        TwoNodes::flannel_vxlan(&dir, &format!("{prefix}-vx")).context("building the bridge+vxlan reference")?;
    let host_gw = TwoNodes::host_gw(&dir, &format!("{prefix}-gw")).context("building the host-gw reference")?;
    let bridge = SameBridge::new(&dir, &format!("{prefix}-lb")).context("building the linux bridge reference")?;

    let cross = [
        Path { label: "sdn cross-node", client: &a1.ns, server: &b1.ns, server_ip: b1.ip },
        Path { label: "bridge+vxlan", client: &vxlan.pods[0], server: &vxlan.pods[1], server_ip: pod_net(1, 2) },
        Path { label: "host-gw", client: &host_gw.pods[0], server: &host_gw.pods[1], server_ip: pod_net(1, 2) },
    ];
    let same = [
        Path { label: "sdn same-node", client: &a1.ns, server: &a2.ns, server_ip: a2.ip },
        Path {
            label: "linux bridge",
            client: &bridge.pods[0],
            server: &bridge.pods[1],
            server_ip: Ipv4Addr::new(10, 244, 9, 3),
        },
    ];
    // Declared after the namespaces: dropped (killed) before they are deleted.
    let servers = cross.iter().chain(&same).map(|path| start_server(&dir, path)).collect::<Result<Vec<_>, _>>()?;
    for path in cross.iter().chain(&same) {
        check_path(path)?;
    }
    println!(
        "set up in {:.1} s: sdn pods {} {} (node 0) and {} (node 1); {rounds} rounds of {} runs of {seconds} s follow",
        started.elapsed().as_secs_f64(),
        a1.ip,
        a2.ip,
        b1.ip,
        2 * (cross.len() + same.len())
    );

    let mut cross_samples: Vec<Samples> = cross.iter().map(|_| Samples::default()).collect();
    let mut same_samples: Vec<Samples> = same.iter().map(|_| Samples::default()).collect();
    for r in 0..rounds as usize {
        round(&cross, &mut cross_samples, r, seconds)?;
        round(&same, &mut same_samples, r, seconds)?;
        println!("  round {}/{rounds} done ({:.0} s)", r + 1, started.elapsed().as_secs_f64());
    }
    report(seconds, rounds, &cross_samples, &same_samples);
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

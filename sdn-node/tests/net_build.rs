//! `net::build` in a real network namespace: it creates every device,
//! address and route of docs/dataplane.md, and a second run (an agent
//! restarted on a built node) changes nothing.

use std::path::PathBuf;
use std::process::Command;

use sdn_cluster::{ClusterNetwork, HostSubnet};
use sdn_node::net::layout::NodeLayout;
use sdn_node::net::netlink::Netlink;
use sdn_node::net::{self};
use sdn_node::netns;

/// A network namespace for one test, deleted when dropped.
struct Namespace(String);

impl Namespace {
    fn new(tag: &str) -> Self {
        let name = format!("sdn-t-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let status = Command::new("ip").args(["netns", "add", &name]).status().expect("run ip (iproute2)");
        assert!(status.success(), "ip netns add {name} failed: this test needs root");
        Self(name)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }

    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip").arg("-n").arg(&self.0).args(args).output().expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Waits for `future` on this (test) thread: `netns::run_in` only awaits a thread of its own.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(err) => panic!("a tokio runtime for the test: {err}"),
    }
}

fn layout() -> NodeLayout {
    let subnet = HostSubnet {
        host: "node-1".into(),
        host_ip: "192.0.2.11".parse().expect("ip"),
        subnet: "10.1.3.0/24".parse().expect("cidr"),
    };
    NodeLayout::new(&ClusterNetwork::default(), &subnet, 1500).expect("layout")
}

/// Runs `work` on a thread inside the test's namespace, as the agent runs its node work.
fn run_in<T, F, Fut>(ns: &Namespace, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let node = netns::NodeNamespace::start(Some(ns.path())).expect("a thread in the namespace");
    block_on(node.run(work)).expect("the namespace thread")
}

fn mac(bytes: [u8; 6]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn build(ns: &Namespace) -> Result<net::NodeDevices, net::netlink::NetError> {
    let layout = layout();
    run_in(ns, move || async move {
        let nl = Netlink::connect()?;
        net::build(&nl, &layout).await
    })
}

#[test]
fn builds_the_node_devices_and_adopts_them_on_a_second_run() {
    let ns = Namespace::new("build");
    let first = build(&ns).expect("first build");
    // "index: name@peer" of every link: a recreated link gets a new index.
    let identities = || -> Vec<String> {
        ns.ip(&["-o", "link", "show"]).lines().map(|l| l.split(':').take(2).collect::<Vec<_>>().join(":")).collect()
    };
    let links_before = identities();
    let second = build(&ns).expect("second build adopts");
    assert_eq!(first.tun0.index, second.tun0.index, "tun0 was kept, not recreated");
    assert_eq!(first.vxlan0.index, second.vxlan0.index);
    assert_eq!(identities(), links_before, "a second run recreates no link");

    let links = ns.ip(&["-d", "link", "show"]);
    for expected in ["br0:", "tun0@tun0-br", "tun0-br@tun0", "vxlan0:", "lbr0:", "vlinuxbr@vovsbr", "vovsbr@vlinuxbr"] {
        assert!(links.contains(expected), "{expected} missing:\n{links}");
    }
    let vxlan = ns.ip(&["-d", "link", "show", "vxlan0"]);
    assert!(vxlan.contains("external") && vxlan.contains("dstport 4789") && vxlan.contains("master br0"), "{vxlan}");
    assert!(ns.ip(&["link", "show", "tun0-br"]).contains("master br0"));
    assert!(ns.ip(&["link", "show", "vovsbr"]).contains("master br0"));
    assert!(ns.ip(&["link", "show", "vlinuxbr"]).contains("master lbr0"));
    assert!(ns.ip(&["link", "show", "tun0"]).contains("mtu 1450"));
    assert!(ns.ip(&["addr", "show", "tun0"]).contains("inet 10.1.3.1/24"));
    assert!(ns.ip(&["addr", "show", "lbr0"]).contains("noprefixroute"));
    let routes = ns.ip(&["route", "show"]);
    assert!(routes.contains("10.1.0.0/16 via 10.1.3.0 dev tun0"), "{routes}");
    let neighbours = ns.ip(&["neigh", "show", "dev", "tun0"]);
    assert!(neighbours.contains(&format!("10.1.3.0 lladdr {}", mac(second.tun0_br.mac))), "{neighbours}");
    assert!(neighbours.contains("PERMANENT"), "{neighbours}");
    assert!(routes.contains("10.1.3.0/24 dev tun0"), "{routes}");
    assert!(!routes.contains("dev lbr0"), "lbr0 adds no route:\n{routes}");
    let forward = Command::new("ip")
        .args(["netns", "exec", &ns.0, "cat", "/proc/sys/net/ipv4/ip_forward"])
        .output()
        .expect("read sysctl");
    assert_eq!(String::from_utf8_lossy(&forward.stdout).trim(), "1");

    // The veths' MACs are the layout's and marked as set by their creator (addr_assign_type 3,
    // NET_ADDR_SET), which systemd-udevd's MACAddressPolicy=persistent leaves alone: a random
    // one (0) it replaces after the agent has read it, and pods then reach no gateway.
    let [tun0_mac, tun0_br_mac] = layout().tun0_macs();
    assert_eq!((second.tun0.mac, second.tun0_br.mac), (tun0_mac, tun0_br_mac));
    for device in ["tun0", "tun0-br", "vlinuxbr", "vovsbr"] {
        let path = format!("/sys/class/net/{device}/addr_assign_type");
        let out = Command::new("ip").args(["netns", "exec", &ns.0, "cat", &path]).output().expect("read sysfs");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3", "{device}'s MAC is not marked as set");
    }
}

#[test]
fn a_foreign_device_with_our_name_is_not_touched() {
    let ns = Namespace::new("foreign");
    let status = Command::new("ip").args(["-n", &ns.0, "link", "add", "br0", "type", "veth", "peer", "x0"]).status();
    assert!(status.expect("ip").success());
    let err = build(&ns).expect_err("br0 is someone else's veth");
    assert!(err.to_string().contains("br0 exists but is a veth device, not a bridge"), "{err}");
    assert!(ns.ip(&["link", "show", "br0"]).contains("br0@x0"), "left as it was");
}

#[test]
fn nat_table_is_ours_alone_and_replaced_whole() {
    let ns = Namespace::new("nat");
    let nft = |args: &[&str]| Command::new("ip").args(["netns", "exec", &ns.0, "nft"]).args(args).status();
    for args in [
        &["add", "table", "ip", "other"][..],
        &["add chain ip other c { type nat hook postrouting priority 100 ; }"],
        &["add", "rule", "ip", "other", "c", "masquerade"],
    ] {
        assert!(nft(args).expect("nft").success(), "a table of someone else: nft {args:?}");
    }
    let apply = |port: u16| {
        let nodes = ["192.0.2.2".parse().expect("ip")];
        run_in(&ns, move || async move { sdn_node::nat::apply("10.1.0.0/16".parse().expect("cidr"), port, &nodes) })
    };
    let ruleset = || {
        let list = Command::new("ip").args(["netns", "exec", &ns.0, "nft", "list", "ruleset"]).output().expect("nft");
        String::from_utf8_lossy(&list.stdout).into_owned()
    };
    apply(4789).expect("first apply");
    apply(4790).expect("second apply replaces");
    let ruleset_now = ruleset();
    assert!(ruleset_now.contains("table ip other"), "other tables stay:\n{ruleset_now}");
    assert!(
        ruleset_now.contains("udp dport 4790 ip saddr @nodes accept") && !ruleset_now.contains("4789"),
        "replaced whole:\n{ruleset_now}"
    );
    assert!(ruleset_now.contains("elements = { 192.0.2.2 }"), "{ruleset_now}");
    let nodes = ["192.0.2.3".parse().expect("ip"), "192.0.2.4".parse().expect("ip")];
    run_in(&ns, move || async move { sdn_node::nat::set_nodes(&nodes) }).expect("set nodes");
    let ruleset_now = ruleset();
    assert!(ruleset_now.contains("elements = { 192.0.2.3, 192.0.2.4 }"), "the set follows: {ruleset_now}");
    run_in(&ns, || async { sdn_node::nat::set_nodes(&[]) }).expect("no nodes");
    assert!(!ruleset().contains("elements"), "an empty set");
    let ruleset = ruleset();
    assert!(ruleset.contains("ip saddr 10.1.0.0/16 ip daddr != 10.1.0.0/16 masquerade"), "{ruleset}");
    run_in(&ns, || async { sdn_node::nat::remove() }).expect("remove");
    run_in(&ns, || async { sdn_node::nat::remove() }).expect("remove twice");
    let list = Command::new("ip").args(["netns", "exec", &ns.0, "nft", "list", "ruleset"]).output().expect("nft");
    let ruleset = String::from_utf8_lossy(&list.stdout);
    assert!(!ruleset.contains("inet sdn") && ruleset.contains("table ip other"), "{ruleset}");
}

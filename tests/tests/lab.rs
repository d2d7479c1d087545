//! The README's lab command: `sdn-lab up` leaves a running control plane
//! with allocated subnets, `sdn-lab down` removes every trace of it.

use std::path::Path;
use std::process::Command;

use sdn_tests::bins;
use sdn_tests::rundir::RunDir;

fn lab(dir: &Path, verb: &str) -> (bool, String) {
    let out = Command::new(bins::project("sdn-lab").expect("sdn-lab built"))
        .env("SDN_LAB_DIR", dir)
        .env("SDN_LAB_PREFIX", prefix())
        .arg(verb)
        .output()
        .expect("run sdn-lab");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Names of its own, so a developer's lab and this test do not meet.
fn prefix() -> String {
    format!("labtest{}", std::process::id())
}

#[test]
fn lab_up_then_down() {
    let dir = std::env::temp_dir().join(format!("sdn-lab-test-{}", std::process::id()));
    let (ok, out) = lab(&dir, "up");
    let pids = RunDir::pids(&dir);
    let cleanup = || lab(&dir, "down");
    if !ok {
        cleanup();
        panic!("lab up failed:\n{out}");
    }
    let p = prefix();
    for expected in [
        &format!("{p}-n0"),
        "10.1.0.0/24",
        &format!("{p}-n1"),
        "10.1.1.0/24",
        "10.1.1.2",
        "sdnctl nodes list",
        "etcd     https://127.0.0.1:",
        "a role that writes only its own keys",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    assert_eq!(pids.len(), 6, "etcd, the master, two agents and two web servers run");
    let pod = format!("{p}-n0-pod-a");
    let ping = Command::new("ip").args(["netns", "exec", &pod, "ping", "-c", "1", "-W", "2", "10.1.1.2"]).status();
    assert!(ping.is_ok_and(|s| s.success()), "the printed ping across nodes works");
    // Each pod has the resolv.conf its CNI result gives, and finds the lab's service by name.
    let resolv = std::fs::read_to_string(format!("/etc/netns/{pod}/resolv.conf")).unwrap_or_default();
    assert!(resolv.contains("nameserver 10.1.0.1") && resolv.contains("search default.svc.cluster.local"), "{resolv}");
    let looked_up =
        Command::new("ip").args(["netns", "exec", &pod, "getent", "hosts", "web"]).output().expect("getent");
    let looked_up = String::from_utf8_lossy(&looked_up.stdout);
    assert!(looked_up.contains("172.30.0.") && looked_up.contains("web.default.svc.cluster.local"), "{looked_up}");
    // The printed curl: the service by its short name, answered by a backend on either node.
    let client = format!("{p}-n0-pod-b");
    let curl = || {
        let out = Command::new("ip").args(["netns", "exec", &client, "curl", "-s", "-m", "2", "http://web/"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    };
    let answered = (0..20).map(|_| curl()).find(|text| {
        let found = text.contains("hello from");
        if !found {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        found
    });
    assert!(answered.is_some(), "curl http://web/ from {client} got no answer");
    let env = std::fs::read_to_string(dir.join("env")).expect("env file");
    assert!(env.contains("SDN_SERVER=http://127.0.0.1:") && env.contains("SDN_TOKEN_FILE="), "{env}");

    let (ok, out) = cleanup();
    assert!(ok, "{out}");
    assert!(!dir.exists(), "lab down removes its directory");
    let namespaces = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list").stdout;
    assert!(!String::from_utf8_lossy(&namespaces).contains(&p), "lab down removes its namespaces");
    assert!(!std::path::Path::new(&format!("/sys/fs/bpf/sdn/{p}-n0")).exists(), "and its pins");
    assert!(!std::path::Path::new(&format!("/etc/netns/{pod}")).exists(), "and the pods' resolv.conf");
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(status.is_empty() || status.contains("State:\tZ"), "pid {pid} still runs");
    }
}

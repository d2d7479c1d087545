//! Network namespaces of a test: the underlay switch, nodes, pods and the
//! external host. Nothing changes in the machine's own namespace but their
//! creation and removal; veths are created directly inside them.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::HarnessError;
use crate::rundir::RunDir;

/// A network namespace, deleted when dropped (unless the run dir is the lab's).
pub struct Netns {
    name: String,
    dir: Arc<RunDir>,
}

fn run(command: &mut Command, what: &str) -> Result<Output, HarnessError> {
    let out = command.output().map_err(HarnessError::io(format!("{what}: running ip (iproute2)")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(HarnessError::Io {
            what: what.to_owned(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        })
    }
}

impl Netns {
    /// Creates `name` (removing a leftover of that name first). Needs root.
    pub fn create(dir: Arc<RunDir>, name: &str) -> Result<Self, HarnessError> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        dir.record_resource("netns", name);
        run(Command::new("ip").args(["netns", "add", name]), &format!("creating namespace {name} (needs root)"))?;
        let ns = Self { name: name.to_owned(), dir };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> <args>`, failing with its stderr.
    pub fn ip(&self, args: &[&str]) -> Result<Output, HarnessError> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args), &format!("ip -n {} {}", self.name, args.join(" ")))
    }

    /// A command run inside the namespace (`ip netns exec`); its output, whatever its exit.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().unwrap_or_else(|e| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(1),
            stdout: Vec::new(),
            stderr: e.to_string().into_bytes(),
        })
    }

    /// Whether `count` pings to `to` all get an answer.
    pub fn ping(&self, to: Ipv4Addr, count: u32, size: u32, dont_fragment: bool) -> bool {
        let (count, size) = (count.to_string(), size.to_string());
        let mut args = vec!["ping", "-q", "-c", &count, "-i", "0.2", "-W", "2", "-s", &size];
        if dont_fragment {
            args.extend(["-M", "do"]);
        }
        let to = to.to_string();
        args.push(&to);
        let out = self.exec(&args);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(" 0% packet loss")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.dir.persistent_processes() {
            let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        }
    }
}

/// The underlay: a bridge in a switch namespace that nodes and the external
/// host plug into, on 192.0.2.0/24.
pub struct Underlay {
    pub switch: Netns,
    ports: AtomicU32,
}

impl Underlay {
    pub fn new(dir: Arc<RunDir>, name: &str) -> Result<Self, HarnessError> {
        let switch = Netns::create(dir, name)?;
        switch.ip(&["link", "add", "name", "sw", "type", "bridge"])?;
        switch.ip(&["link", "set", "dev", "sw", "up"])?;
        // The switch stands for the physical network, which runs no host's netfilter; with
        // `br_netfilter` a new namespace's bridges call it for every frame (its default), which
        // would charge every test and benchmark for a hop no cluster has. Without
        // `br_netfilter` the settings do not exist and there is nothing to turn off.
        for table in ["iptables", "ip6tables", "arptables"] {
            let _ = switch.exec(&["sysctl", "-qw", &format!("net.bridge.bridge-nf-call-{table}=0")]);
        }
        Ok(Self { switch, ports: AtomicU32::new(0) })
    }

    /// Plugs `ns` in through a veth `ul0` with `ip/24`.
    pub fn plug(&self, ns: &Netns, ip: Ipv4Addr) -> Result<(), HarnessError> {
        self.plug_as(ns, ip, "ul0")
    }

    /// Plugs `ns` in through a veth `ifname` with `ip/24` (a router plugs into two underlays).
    pub fn plug_as(&self, ns: &Netns, ip: Ipv4Addr, ifname: &str) -> Result<(), HarnessError> {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        let out = Command::new("ip")
            .args(["link", "add", ifname, "netns", ns.name(), "type", "veth", "peer", "name", &port, "netns"])
            .arg(self.switch.name())
            .output()
            .map_err(HarnessError::io("creating an underlay veth"))?;
        if !out.status.success() {
            return Err(HarnessError::Io {
                what: format!("plugging {} into the underlay", ns.name()),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            });
        }
        self.switch.ip(&["link", "set", "dev", &port, "master", "sw", "up"])?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", ifname])?;
        ns.ip(&["link", "set", "dev", ifname, "up"])?;
        Ok(())
    }
}

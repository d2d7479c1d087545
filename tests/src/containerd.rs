//! containerd (Debian 12's 1.6) on one node, driven with `ctr run --cni`.
//! The daemon runs in the node's network namespace with its root, state and
//! socket under the run directory, and without its CRI plugin. `ctr` reads
//! the CNI configuration from `/etc/cni/net.d` and plugins from
//! `/opt/cni/bin`, as on a node where the agent installed itself with its
//! defaults: each `ctr` call runs in a mount namespace of its own with the
//! node's directories bound over those paths (and a scratch libcni cache),
//! so the machine's own are never written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::node::NodeAgent;
use crate::podman::{Podman, output};
use crate::process::Process;
use crate::rundir::{RunDir, kill_under, unmount_under};
use crate::{HarnessError, bins, image, wait};

/// Mounts the node's CNI directories over the default paths, then runs ctr in the node's
/// namespace. `$1` the conflist directory, `$2` the plugin directory, `$3` the namespace,
/// `$4` the daemon's socket; the rest are ctr's arguments.
const CTR: &str = r#"set -e
[ -d /etc/cni ] || { echo "/etc/cni is missing (the podman package makes it)" >&2; exit 1; }
mount -t tmpfs sdn-test /etc/cni && mkdir /etc/cni/net.d && mount --bind "$1" /etc/cni/net.d
mount -t tmpfs sdn-test /opt && mkdir -p /opt/cni/bin && mount --bind "$2" /opt/cni/bin
if [ -d /var/lib/cni ]; then mount -t tmpfs sdn-test /var/lib/cni; fi
netns=$3 socket=$4
shift 4
exec nsenter --net="/run/netns/$netns" ctr --address "$socket" "$@"
"#;

pub struct Containerd {
    home: PathBuf,
    node_ns: String,
    net_d: PathBuf,
    /// What `/opt/cni/bin` holds on such a node: the agent's `sdn-cni` and the reference
    /// `loopback`, which `ctr run --cni` sets up first.
    cni_bin: PathBuf,
    daemon: Option<Process>,
}

impl Containerd {
    /// Starts the daemon for `node` and imports the test image from `podman`.
    pub async fn start(dir: &Arc<RunDir>, node: &NodeAgent, podman: &Podman) -> Result<Self, HarnessError> {
        for tool in ["containerd", "ctr"] {
            bins::tool(tool, "apt-get install containerd")?;
        }
        bins::tool("unshare", "apt-get install util-linux")?;
        let home = dir.path().join(format!("containerd-{}", node.name));
        for kind in ["processes", "mounts"] {
            dir.record_resource(kind, &home.display().to_string());
        }
        let cni_bin = home.join("cni-bin");
        let io = |what: &'static str| HarnessError::io(format!("{what} in {}", home.display()));
        std::fs::create_dir_all(&cni_bin).map_err(io("creating the plugin directory"))?;
        std::os::unix::fs::symlink(node.cni_bin_dir.join("sdn-cni"), cni_bin.join("sdn-cni"))
            .and_then(|()| std::os::unix::fs::symlink("/usr/lib/cni/loopback", cni_bin.join("loopback")))
            .map_err(io("linking the plugins"))?;
        let config = format!(
            "version = 2\nroot = \"{home}/root\"\nstate = \"{home}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{home}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{home}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            home = home.display()
        );
        std::fs::write(home.join("config.toml"), config).map_err(io("writing config.toml"))?;
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", node.ns.name()))
            .arg("containerd")
            .arg("--config")
            .arg(home.join("config.toml"));
        let daemon = Process::spawn(&format!("containerd-{}", node.name), command, dir)?;
        let containerd = Self {
            net_d: node.cni_conflist.parent().unwrap_or(Path::new("/")).to_owned(),
            node_ns: node.ns.name().to_owned(),
            cni_bin,
            home,
            daemon: Some(daemon),
        };
        let up = wait::until(Duration::from_secs(10), || async { containerd.ctr(&["version"]) }).await;
        if let Err(last) = up {
            return Err(HarnessError::NotReady {
                what: "containerd".into(),
                seconds: 10,
                log: format!("{last}\n{}", containerd.daemon.as_ref().map(Process::log).unwrap_or_default()),
            });
        }
        let archive = containerd.home.join("image.tar");
        let imported = podman
            .save_image(&archive)
            .and_then(|()| containerd.ctr(&["image", "import", &archive.display().to_string()]));
        imported.map_err(|e| HarnessError::Io {
            what: "exporting the image to containerd".into(),
            source: std::io::Error::other(e),
        })?;
        Ok(containerd)
    }

    /// `ctr <args>` as a user on the node runs it.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-c", CTR, "ctr"])
            .arg(&self.net_d)
            .arg(&self.cni_bin)
            .arg(&self.node_ns)
            .arg(self.home.join("containerd.sock"))
            .args(args);
        output(command)
    }

    /// `ctr run --detach --cni IMAGE <id> <cmd>`.
    pub fn run(&self, id: &str, cmd: &[&str]) -> Result<String, String> {
        self.ctr(&[&["run", "--detach", "--cni", image::IMAGE, id], cmd].concat())
    }

    /// `ctr task exec` of `cmd`, a command that prints something, in container `id`.
    ///
    /// containerd 1.6's `ctr` can return before it copied the output of a process that ended at
    /// once (CI saw `ip addr` print nothing under load), so an empty output is asked again.
    pub fn exec(&self, id: &str, cmd: &[&str]) -> Result<String, String> {
        let mut out = String::new();
        for _ in 0..3 {
            let exec_id = format!("exec-{}", std::time::SystemTime::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
            out = self.ctr(&[&["task", "exec", "--exec-id", &exec_id, id], cmd].concat())?;
            if !out.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// What a user does to end a container: `ctr task kill`, `task delete`, `container delete`.
    pub async fn remove(&self, id: &str) -> Result<(), String> {
        self.ctr(&["task", "kill", "--signal", "SIGKILL", id])?;
        // The task must have stopped before it can be deleted.
        wait::until(Duration::from_secs(10), || async {
            let tasks = self.ctr(&["task", "ls"])?;
            match tasks.lines().find(|l| l.split_whitespace().next() == Some(id)) {
                Some(line) if line.contains("RUNNING") => Err(line.to_owned()),
                _ => Ok(()),
            }
        })
        .await?;
        self.ctr(&["task", "delete", id])?;
        self.ctr(&["container", "delete", id]).map(drop)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let tasks = self.ctr(&["task", "ls", "--quiet"]).unwrap_or_default();
        for id in tasks.lines() {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
        }
        std::thread::sleep(Duration::from_millis(200));
        for id in tasks.lines() {
            let _ = self.ctr(&["task", "delete", "--force", id]);
        }
        self.daemon.take();
        kill_under(&self.home);
        unmount_under(&self.home);
    }
}

//! podman (Debian 12's 4.3, CNI backend, runc) on one node, as a user on
//! that node runs it: in the node's network namespace (`nsenter --net`, so
//! it shares the agent's mount namespace and the agent sees the namespaces
//! it makes), reading the networks the agent installed and its plugins from
//! the node's CNI directories. Its store, state and configuration live under
//! the run directory, so nothing of the machine's own podman is touched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::node::NodeAgent;
use crate::rundir::{RunDir, kill_under, unmount_under};
use crate::{HarnessError, bins, image};

/// The reference plugins, which podman may chain (and which `loopback` comes from).
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

pub struct Podman {
    home: PathBuf,
    node_ns: String,
}

/// Runs `command`; its stdout (trimmed) on success, else what it said.
pub fn output(mut command: Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let out = command.output().map_err(|e| format!("{shown}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{shown} failed ({}): {stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn configuration(home: &Path) -> [(&'static str, PathBuf); 2] {
    [("CONTAINERS_CONF", home.join("containers.conf")), ("CONTAINERS_STORAGE_CONF", home.join("storage.conf"))]
}

/// Removes every container of the podman whose home is `home` (a run that died left them).
pub fn remove_all(home: &Path) {
    if home.join("containers.conf").exists() {
        let mut command = Command::new("podman");
        command.envs(configuration(home)).args(["rm", "--all", "--force", "--time", "0"]);
        let _ = command.output();
    }
}

impl Podman {
    /// podman for `node`, with the test image imported.
    pub fn new(dir: &Arc<RunDir>, node: &NodeAgent) -> Result<Self, HarnessError> {
        bins::tool("podman", "apt-get install podman runc")?;
        bins::tool("runc", "apt-get install runc")?;
        bins::tool("nsenter", "apt-get install util-linux")?;
        let home = dir.path().join(format!("podman-{}", node.name));
        for kind in ["podman", "processes", "mounts"] {
            dir.record_resource(kind, &home.display().to_string());
        }
        std::fs::create_dir_all(home.join("tmp")).map_err(HarnessError::io(format!("creating {}", home.display())))?;
        let network_dir = node.cni_conflist.parent().unwrap_or(Path::new("/")).display().to_string();
        let containers_conf = format!(
            "# The defaults but for where things live, and two settings this machine needs.\n\
             [containers]\n\
             # podman raises the containers' open-file and process limits, which needs\n\
             # CAP_SYS_RESOURCE; this machine's root does not have it.\n\
             default_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
             [engine]\n\
             # crun refuses this machine's cgroup layout; no systemd runs here.\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{home}/events.log\"\n\
             tmp_dir = \"{home}/tmp\"\n\
             [network]\n\
             network_backend = \"cni\"\n\
             network_config_dir = \"{network_dir}\"\n\
             cni_plugin_dirs = [\"{bin}\", \"{REFERENCE_PLUGINS}\"]\n",
            home = home.display(),
            bin = node.cni_bin_dir.display(),
        );
        let storage_conf = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{home}/storage\"\nrunroot = \"{home}/run\"\n",
            home = home.display()
        );
        for (name, text) in [("containers.conf", containers_conf), ("storage.conf", storage_conf)] {
            std::fs::write(home.join(name), text).map_err(HarnessError::io(format!("writing {name}")))?;
        }
        let podman = Self { home, node_ns: node.ns.name().to_owned() };
        let tar = image::rootfs_tar(dir.path())?;
        let imported = podman.podman(&["import", &tar.display().to_string(), image::IMAGE]);
        imported.map_err(|e| HarnessError::Io { what: "podman import".into(), source: std::io::Error::other(e) })?;
        Ok(podman)
    }

    fn command(&self) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.node_ns))
            .arg("podman")
            .envs(configuration(&self.home))
            .current_dir(&self.home);
        command
    }

    /// `podman <args>` in the node's namespace.
    pub fn podman(&self, args: &[&str]) -> Result<String, String> {
        let mut command = self.command();
        command.args(args);
        output(command)
    }

    /// `podman run -d --network sdn <options> IMAGE <cmd>`: the new container's ID.
    pub fn run(&self, options: &[&str], cmd: &[&str]) -> Result<String, String> {
        let args = [&["run", "--detach", "--network", "sdn"], options, &[image::IMAGE], cmd].concat();
        self.podman(&args)
    }

    /// `podman exec <container> <cmd>`.
    pub fn exec(&self, container: &str, cmd: &[&str]) -> Result<String, String> {
        self.podman(&[&["exec", container], cmd].concat())
    }

    /// The image as a docker archive, for other runtimes to import.
    pub fn save_image(&self, path: &Path) -> Result<(), String> {
        let path = path.display().to_string();
        self.podman(&["save", "--format", "docker-archive", "--output", &path, image::IMAGE]).map(drop)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--all", "--force", "--time", "0"]);
        kill_under(&self.home);
        unmount_under(&self.home);
    }
}

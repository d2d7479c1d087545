//! A container runtime's side of CNI, as `libcni` drives plugins: each
//! plugin of a configuration list gets the list's `name` and `cniVersion`,
//! the `runtimeConfig` for the capabilities it declares, and the previous
//! result as `prevResult`; ADD and CHECK run the list in order, DEL in
//! reverse. Plugins are started straight into the node's network namespace
//! (spawned from a thread that entered it), as a runtime on that node
//! would start them, so what chained plugins change (portmap's iptables rules) stays
//! there and no `ip netns exec` adds to their start-up time.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::node::NodeAgent;

/// One plugin run: exit status and output.
#[derive(Debug, Clone)]
pub struct Call {
    pub plugin: String,
    pub command: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Call {
    /// stdout as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }

    /// The CNI error code of a failed call.
    pub fn code(&self) -> Option<u64> {
        self.json()["code"].as_u64()
    }

    /// The error message of a failed call.
    pub fn msg(&self) -> String {
        self.json()["msg"].as_str().unwrap_or_default().to_owned()
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} (success {}): {}{}", self.plugin, self.command, self.success, self.stdout, self.stderr)
    }
}

/// One attachment: what a runtime passes in `CNI_*` variables.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS`, e.g. `K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0`.
    pub args: String,
}

/// Runs plugins in one node's namespace with its CNI bin directory first on `CNI_PATH`.
#[derive(Debug, Clone)]
pub struct Runtime {
    node_ns: String,
    path: Vec<PathBuf>,
}

/// Debian's reference plugins (package containernetworking-plugins).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

impl Runtime {
    pub fn for_node(node: &NodeAgent) -> Self {
        Self { node_ns: node.ns.name().to_owned(), path: vec![node.cni_bin_dir.clone(), REFERENCE_PLUGINS.into()] }
    }

    /// A runtime in namespace `node_ns` finding plugins in `path`.
    pub fn new(node_ns: &str, path: Vec<PathBuf>) -> Self {
        Self { node_ns: node_ns.to_owned(), path }
    }

    fn cni_path(&self) -> String {
        self.path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")
    }

    fn find(&self, plugin: &str) -> PathBuf {
        self.path.iter().map(|dir| dir.join(plugin)).find(|p| p.exists()).unwrap_or_else(|| PathBuf::from(plugin))
    }

    /// Runs `plugin` with exactly `env` (plus `PATH` and `CNI_PATH`) and `stdin`.
    pub fn raw(&self, plugin: &str, env: &[(&str, &str)], stdin: &str) -> Call {
        let binary = self.find(plugin);
        let command_name = env.iter().find(|(k, _)| *k == "CNI_COMMAND").map_or("", |(_, v)| v).to_owned();
        let failed = |e: std::io::Error| Call {
            plugin: plugin.to_owned(),
            command: command_name.clone(),
            success: false,
            stdout: String::new(),
            stderr: format!("running {}: {e}", binary.display()),
        };
        let netns = match std::fs::File::open(format!("/run/netns/{}", self.node_ns)) {
            Ok(file) => file,
            Err(e) => return failed(e),
        };
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_PATH", self.cni_path())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Spawned from a thread that entered the node's namespace, so the child starts there and
        // std can use posix_spawn (vfork-style, as Go's os/exec in a runtime does) rather than
        // fork this whole process to call setns before exec.
        let spawned = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a descriptor we own; it moves only this short-lived thread.
                    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    command.spawn()
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
        });
        drop(netns);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return failed(e),
        };
        if let Some(mut input) = child.stdin.take() {
            use std::io::Write;
            let _ = input.write_all(stdin.as_bytes());
        }
        let output = child.wait_with_output();
        match output {
            Ok(out) => Call {
                plugin: plugin.to_owned(),
                command: command_name.clone(),
                success: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(e) => failed(e),
        }
    }

    /// Runs one plugin configuration for `command` on `attachment`.
    pub fn call(&self, command: &str, attachment: &Attachment, conf: &Value) -> Call {
        let plugin = conf["type"].as_str().unwrap_or_default().to_owned();
        let netns = attachment.netns.display().to_string();
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", attachment.container_id.as_str()),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", attachment.ifname.as_str()),
            ("CNI_ARGS", attachment.args.as_str()),
        ];
        self.raw(&plugin, &env, &conf.to_string())
    }
}

/// A network configuration list.
#[derive(Debug, Clone)]
pub struct ConfList {
    pub value: Value,
}

impl ConfList {
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self { value })
    }

    pub fn new(value: Value) -> Self {
        Self { value }
    }

    fn plugins(&self) -> Vec<Value> {
        self.value["plugins"].as_array().cloned().unwrap_or_default()
    }

    /// A plugin's configuration as a runtime hands it over.
    fn conf(&self, plugin: &Value, prev: Option<&Value>, runtime_config: &Value) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = self.value["name"].clone();
        conf["cniVersion"] = self.value["cniVersion"].clone();
        if let Some(capabilities) = plugin["capabilities"].as_object() {
            let granted: serde_json::Map<String, Value> = capabilities
                .iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .filter_map(|(name, _)| runtime_config.get(name).map(|v| (name.clone(), v.clone())))
                .collect();
            if !granted.is_empty() {
                conf["runtimeConfig"] = Value::Object(granted);
            }
        }
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    /// ADD through every plugin; the last result, or the failed call.
    pub fn add(&self, rt: &Runtime, attachment: &Attachment, runtime_config: &Value) -> Result<Value, Call> {
        let mut prev: Option<Value> = None;
        for plugin in self.plugins() {
            let call = rt.call("ADD", attachment, &self.conf(&plugin, prev.as_ref(), runtime_config));
            if !call.success {
                return Err(call);
            }
            prev = Some(call.json());
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// CHECK through every plugin with the result of ADD.
    pub fn check(&self, rt: &Runtime, attachment: &Attachment, result: &Value, rc: &Value) -> Result<(), Call> {
        for plugin in self.plugins() {
            let call = rt.call("CHECK", attachment, &self.conf(&plugin, Some(result), rc));
            if !call.success {
                return Err(call);
            }
        }
        Ok(())
    }

    /// DEL through every plugin in reverse, with the result of ADD if there was one.
    pub fn del(&self, rt: &Runtime, attachment: &Attachment, result: Option<&Value>, rc: &Value) -> Result<(), Call> {
        for plugin in self.plugins().iter().rev() {
            let call = rt.call("DEL", attachment, &self.conf(plugin, result, rc));
            if !call.success {
                return Err(call);
            }
        }
        Ok(())
    }

    /// GC through every plugin, keeping `valid` (container ID, ifname) attachments.
    pub fn gc(&self, rt: &Runtime, valid: &[(&str, &str)]) -> Result<(), Call> {
        let valid: Vec<Value> =
            valid.iter().map(|(id, ifname)| json!({ "containerID": id, "ifname": ifname })).collect();
        for plugin in self.plugins() {
            let mut conf = self.conf(&plugin, None, &Value::Null);
            conf["cni.dev/valid-attachments"] = Value::Array(valid.clone());
            let call = rt.raw(conf["type"].as_str().unwrap_or_default(), &[("CNI_COMMAND", "GC")], &conf.to_string());
            if !call.success {
                return Err(call);
            }
        }
        Ok(())
    }
}

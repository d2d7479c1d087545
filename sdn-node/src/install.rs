//! Installs what container runtimes need to attach pods through the agent:
//! the `sdn-cni` binary in the CNI bin directory and a network
//! configuration list in the CNI config directory. Both are written to a
//! synced temporary file and renamed into place ([`crate::durable`]), so a
//! runtime never reads half a file, not even after a power cut, and left alone when already up to date, so a runtime watching the
//! directory sees no change on an agent restart.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The plugin binary's name, also the `type` in the configuration.
pub const PLUGIN: &str = "sdn-cni";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the sdn-cni binary is expected next to sdn-node, at {path}: {source}")]
    Plugin { path: PathBuf, source: std::io::Error },
    #[error("installing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What goes into the configuration list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflist {
    pub network: String,
    pub cni_version: String,
    pub socket: PathBuf,
    /// Plugins chained after sdn-cni, e.g. `portmap`, `tuning`, `bandwidth`.
    pub chain: Vec<String>,
}

impl Conflist {
    /// The JSON of the list. Chained plugins that runtimes feed through
    /// capabilities get them declared (port mappings for `portmap`, traffic
    /// shaping for `bandwidth`), as flannel's and Cilium's lists do.
    pub fn render(&self) -> String {
        let mut plugins = vec![json!({ "type": PLUGIN, "socket": self.socket })];
        plugins.extend(self.chain.iter().map(|name| match name.as_str() {
            "portmap" => json!({ "type": "portmap", "capabilities": { "portMappings": true } }),
            "bandwidth" => json!({ "type": "bandwidth", "capabilities": { "bandwidth": true } }),
            other => json!({ "type": other }),
        }));
        let list: Value = json!({ "cniVersion": self.cni_version, "name": self.network, "plugins": plugins });
        // A `Value` always serializes.
        serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
    }
}

/// Writes `contents` to `path` unless it already holds them; returns whether it wrote.
fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<bool, InstallError> {
    if std::fs::read(path).is_ok_and(|found| found == contents) {
        return Ok(false);
    }
    let failed = |source| InstallError::Write { path: path.to_owned(), source };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(failed)?;
    crate::durable::replace(path, contents, mode).map_err(failed)?;
    Ok(true)
}

/// Installs the plugin from `plugin` into `bin_dir` and the list at `conflist_path`.
pub fn install(plugin: &Path, bin_dir: &Path, conflist_path: &Path, conflist: &Conflist) -> Result<(), InstallError> {
    let binary = std::fs::read(plugin).map_err(|source| InstallError::Plugin { path: plugin.to_owned(), source })?;
    let target = bin_dir.join(PLUGIN);
    if replace(&target, &binary, 0o755)? {
        tracing::info!("installed {}", target.display());
    }
    if replace(conflist_path, conflist.render().as_bytes(), 0o644)? {
        tracing::info!("installed {}", conflist_path.display());
    }
    Ok(())
}

/// The `sdn-cni` binary shipped beside the running agent.
pub fn bundled_plugin() -> PathBuf {
    std::env::current_exe().map(|exe| exe.with_file_name(PLUGIN)).unwrap_or_else(|_| PathBuf::from(PLUGIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflist(chain: &[&str]) -> Conflist {
        Conflist {
            network: "sdn".into(),
            cni_version: "1.0.0".into(),
            socket: "/run/sdn/sdn-node.sock".into(),
            chain: chain.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn the_list_starts_with_sdn_cni_and_declares_capabilities() {
        let list: Value = serde_json::from_str(&conflist(&["portmap", "tuning"]).render()).expect("json");
        assert_eq!(list["cniVersion"], "1.0.0");
        assert_eq!(list["name"], "sdn");
        assert_eq!(list["plugins"][0], json!({ "type": "sdn-cni", "socket": "/run/sdn/sdn-node.sock" }));
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);
        assert_eq!(list["plugins"][2], json!({ "type": "tuning" }));
    }

    #[test]
    fn files_are_replaced_whole_and_only_when_different() {
        let dir = std::env::temp_dir().join(format!("sdn-install-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let plugin = dir.join("build").join(PLUGIN);
        std::fs::create_dir_all(plugin.parent().expect("dir")).expect("mkdir");
        std::fs::write(&plugin, b"binary").expect("plugin");
        let (bin, list) = (dir.join("bin"), dir.join("net.d").join("10-sdn.conflist"));
        install(&plugin, &bin, &list, &conflist(&[])).expect("install");
        assert_eq!(std::fs::read(bin.join(PLUGIN)).expect("installed"), b"binary");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(bin.join(PLUGIN)).expect("meta").permissions());
        assert_eq!(mode & 0o777, 0o755);
        assert!(!replace(&list, conflist(&[]).render().as_bytes(), 0o644).expect("same"), "unchanged");
        assert!(replace(&list, b"{}", 0o644).expect("differs"));
        let err = install(&dir.join("missing"), &bin, &list, &conflist(&[])).expect_err("no plugin");
        assert!(err.to_string().contains("expected next to sdn-node"), "{err}");
        assert_eq!(std::fs::read_dir(bin).expect("bin").count(), 1, "no temporary file left");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The container image of the runtime tests, made locally without a
//! registry: a root file system of Debian's static busybox (package
//! busybox-static) with the applets the tests call, as a tar for
//! `podman import`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

/// The image's name in a runtime's store.
pub const IMAGE: &str = "localhost/sdn-busybox:latest";

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 10] = ["sh", "sleep", "ping", "nslookup", "wget", "ip", "cat", "nc", "httpd", "hostname"];

/// Writes the root file system as `<dir>/busybox-rootfs.tar` (once) and returns its path.
pub fn rootfs_tar(dir: &Path) -> Result<PathBuf, HarnessError> {
    let tar = dir.join("busybox-rootfs.tar");
    if tar.exists() {
        return Ok(tar);
    }
    if !Path::new(BUSYBOX).is_file() {
        return Err(HarnessError::MissingTool { what: "busybox", hint: "apt-get install busybox-static" });
    }
    let root = dir.join("busybox-rootfs");
    let io = |what: &str| HarnessError::io(format!("{what} in {}", root.display()));
    for sub in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(sub)).map_err(io("creating the image's directories"))?;
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).map_err(io("copying busybox"))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).map_err(io("linking the applets"))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").map_err(io("writing /etc/passwd"))?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n").map_err(io("writing /etc/group"))?;
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .map_err(HarnessError::io("running tar"))?;
    if !out.status.success() {
        return Err(HarnessError::Io {
            what: format!("packing {}", tar.display()),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        });
    }
    Ok(tar)
}

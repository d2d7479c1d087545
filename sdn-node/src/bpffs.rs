//! The bpffs that holds the agent's pins. Pins outlive the agent only on a
//! bpffs, and `/sys/fs/bpf` is not always mounted (containers, minimal
//! hosts), so the agent mounts one where it was told to keep them, as
//! systemd does at boot.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `f_type` of a bpffs in `statfs` (`BPF_FS_MAGIC` of `linux/magic.h`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("bpffs at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BpffsError {
    let path = path.to_owned();
    move |source| BpffsError::Io { path, source }
}

/// Whether `path` lies on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs writes into a zeroed struct we own; the path is a valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type == BPF_FS_MAGIC
}

/// Makes sure `mountpoint` is a bpffs, mounting one there if not.
pub fn ensure(mountpoint: &Path) -> Result<(), BpffsError> {
    if is_bpffs(mountpoint) {
        return Ok(());
    }
    std::fs::create_dir_all(mountpoint).map_err(io(mountpoint))?;
    let c_path = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|e| io(mountpoint)(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: mount(2) with valid C strings; it changes the mount table only.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), c_path.as_ptr(), c"bpf".as_ptr(), 0, c"mode=0700".as_ptr().cast()) };
    if rc != 0 {
        return Err(io(mountpoint)(std::io::Error::last_os_error()));
    }
    tracing::info!("mounted a bpffs at {}", mountpoint.display());
    Ok(())
}

//! Per-test run directories under `/tmp/sdn-tests`, and the removal of what
//! interrupted runs left behind.
//!
//! Each directory records the test process that owns it and the pids of the
//! processes started in it. A directory whose owner is gone is stale: its
//! processes are killed and it is removed, once per test process.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::HarnessError;

const ROOT: &str = "/tmp/sdn-tests";

/// A directory for one test's files, removed when dropped; or, for the lab,
/// a directory that outlives the command that made it.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    persistent: bool,
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills the recorded processes of runs whose test process has exited.
pub fn remove_stale() {
    let Ok(entries) = fs::read_dir(ROOT) else { return };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = fs::read_to_string(dir.join("owner")).ok().and_then(|s| s.trim().parse::<i32>().ok());
        if owner.is_some_and(alive) {
            continue;
        }
        kill_recorded(&dir);
        remove_recorded(&dir);
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Removes what `dir` records, in an order that lets each step work: a container runtime's
/// containers (`podman <home>`, through the runtime itself, which also deletes their
/// namespaces), then processes started under a directory (`processes <dir>`: conmon and
/// containerd shims, which outlive the test process), mounts under one (`mounts <dir>`:
/// container storage), network namespaces (`netns <name>`) and directories (`path <dir>`).
pub fn remove_recorded(dir: &Path) {
    let recorded = fs::read_to_string(dir.join("resources")).unwrap_or_default();
    let of = |kind: &str| -> Vec<String> {
        recorded
            .lines()
            .filter_map(|line| line.split_once(' '))
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v.to_owned())
            .collect()
    };
    for home in of("podman") {
        crate::podman::remove_all(Path::new(&home));
    }
    for under in of("processes") {
        kill_under(Path::new(&under));
    }
    for under in of("mounts") {
        unmount_under(Path::new(&under));
    }
    for name in of("netns") {
        let _ = std::process::Command::new("ip").args(["netns", "del", &name]).status();
    }
    for path in of("path") {
        let _ = fs::remove_dir_all(path);
    }
}

/// Kills every process whose command line names a path under `dir`, and waits (up to 5 s)
/// until they are gone.
pub fn kill_under(dir: &Path) {
    let needle = dir.display().to_string();
    let mut killed = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == std::process::id() as i32 {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: kill(2) of a process that names our run directory; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.push(pid);
        }
    }
    wait_gone(&killed);
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in points {
        let Ok(c_point) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c_point.as_ptr(), libc::MNT_DETACH) };
    }
}

fn wait_gone(pids: &[i32]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pids.iter().any(|&pid| running(pid)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether `pid` still runs (a zombie has ended; only its parent's wait is missing).
fn running(pid: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !status.is_empty() && !status.contains("State:\tZ")
}

/// Kills the processes recorded in `dir` that are still ours, and waits
/// (up to 5 s) until they are gone.
pub fn kill_recorded(dir: &Path) {
    let mut killed = Vec::new();
    for pid in RunDir::pids(dir) {
        // Only our own kinds of process: a pid may have been reused.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("etcd") || cmdline.contains("sdn-") {
            // SAFETY: kill(2) with a pid read from our own record; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.push(pid);
        }
    }
    wait_gone(&killed);
}

impl RunDir {
    pub fn new(name: &str) -> Result<Self, HarnessError> {
        static STALE: Once = Once::new();
        STALE.call_once(remove_stale);
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(ROOT).join(format!("{name}-{}-{n}", std::process::id()));
        fs::create_dir_all(&path).map_err(HarnessError::io(format!("creating {}", path.display())))?;
        fs::write(path.join("owner"), std::process::id().to_string())
            .map_err(HarnessError::io(format!("writing {}/owner", path.display())))?;
        Ok(Self { path, persistent: false })
    }

    /// A directory that is kept, with processes that outlive this one (the
    /// lab). Whatever it held before is removed first.
    pub fn persistent(path: PathBuf) -> Result<Self, HarnessError> {
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(HarnessError::io(format!("creating {}", path.display())))?;
        Ok(Self { path, persistent: true })
    }

    /// Whether processes started here are left running when dropped.
    pub fn persistent_processes(&self) -> bool {
        self.persistent
    }

    /// Pids recorded by [`RunDir::record_pid`].
    pub fn pids(path: &Path) -> Vec<i32> {
        fs::read_to_string(path.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records what a later run must remove if this one dies (see [`remove_recorded`]).
    pub fn record_resource(&self, kind: &str, name: &str) {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(self.path.join("resources")) {
            let _ = writeln!(f, "{kind} {name}");
        }
    }

    /// Records a started process so a later run can kill it if this one dies.
    pub fn record_pid(&self, pid: u32) {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(self.path.join("pids")) {
            let _ = writeln!(f, "{pid}");
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.persistent {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

//! Network namespaces. A netlink socket belongs to the namespace of the
//! thread that opened it, and tokio moves tasks between threads, so work in
//! another namespace runs on a thread of its own that enters it first.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("entering network namespace {path}: {source}")]
    Enter { path: PathBuf, source: std::io::Error },
    #[error("a thread for network namespace {0} panicked")]
    Panicked(PathBuf),
}

/// Moves the calling thread into the namespace at `path` (e.g.
/// `/run/netns/node1` or `/proc/<pid>/ns/net`). Threads it spawns later
/// start in that namespace too.
pub fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open { path: path.to_owned(), source })?;
    // SAFETY: setns on a file descriptor we own; it changes only this
    // thread's namespace and touches no memory.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(NetnsError::Enter { path: path.to_owned(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// Runs `work` on a new thread inside the namespace at `path`, with a
/// single-threaded tokio runtime of its own, and returns its result.
pub fn run_in<T, F, Fut>(path: &Path, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let owned = path.to_owned();
    let thread = std::thread::spawn(move || -> Result<T, NetnsError> {
        enter(&owned)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NetnsError::Enter { path: owned.clone(), source })?;
        Ok(runtime.block_on(work()))
    });
    thread.join().map_err(|_| NetnsError::Panicked(path.to_owned()))?
}

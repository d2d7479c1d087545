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
    setns(&file).map_err(|source| NetnsError::Enter { path: path.to_owned(), source })
}

/// Runs `make` with the calling thread inside the namespace at `path`, then moves the thread
/// back where it was. For making sockets, which stay in the namespace they were made in: a
/// netlink socket made here serves the pod from any thread, without a thread of its own per
/// pod. `make` must not block or yield (the thread belongs to a runtime).
pub fn made_in<T>(path: &Path, make: impl FnOnce() -> T) -> Result<T, NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open { path: path.to_owned(), source })?;
    made_in_file(&file, make).map_err(|source| NetnsError::Enter { path: path.to_owned(), source })
}

/// [`made_in`] for a namespace already open as `netns`.
pub fn made_in_file<T>(netns: &File, make: impl FnOnce() -> T) -> std::io::Result<T> {
    let home = File::open("/proc/thread-self/ns/net")?;
    setns(netns)?;
    // Back home also when `make` panics: the runtime catches the panic and reuses the thread.
    let _home = ReturnHome(home);
    Ok(make())
}

/// Moves the thread back into the namespace it holds when dropped.
struct ReturnHome(File);

impl Drop for ReturnHome {
    fn drop(&mut self) {
        if let Err(err) = setns(&self.0) {
            // The thread would go on serving other work in the pod's namespace; no error a
            // caller could handle makes that safe. Pinned programs keep traffic flowing over a
            // restart.
            tracing::error!("returning a thread to its network namespace: {err}");
            std::process::abort();
        }
    }
}

fn setns(file: &File) -> std::io::Result<()> {
    // SAFETY: setns on a file descriptor we own; it changes only this thread's namespace and
    // touches no memory.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

type Job = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send>;

/// A thread that lives in the node's network namespace and runs the jobs
/// sent to it, one at a time, on a runtime of its own. The agent keeps its
/// etcd client and endpoints where it started (so a lab or test reaches them
/// on loopback) and does its netlink, nftables and TC work here, or, where a
/// hop to that thread would cost more than the work (a pod's attach), with
/// sockets made in the namespace ([`NodeNamespace::made_in`]).
#[derive(Clone)]
pub struct NodeNamespace {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    path: Option<PathBuf>,
    /// The namespace, open, when it is not the agent's own.
    file: Option<std::sync::Arc<File>>,
}

impl NodeNamespace {
    /// Starts the thread, entering `path` first (or staying in the current
    /// namespace when `None`).
    pub fn start(path: Option<PathBuf>) -> Result<Self, NetnsError> {
        let file = match &path {
            Some(path) => Some(std::sync::Arc::new(
                File::open(path).map_err(|source| NetnsError::Open { path: path.clone(), source })?,
            )),
            None => None,
        };
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let display = path.clone().unwrap_or_default();
        let (thread_file, thread_path) = (file.clone(), display.clone());
        let display_in_thread = display.clone();
        std::thread::spawn(move || {
            let setup = (|| {
                if let Some(file) = &thread_file {
                    setns(file).map_err(|source| NetnsError::Enter { path: thread_path.clone(), source })?;
                }
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| NetnsError::Enter { path: thread_path, source })
            })();
            let runtime = match setup {
                Ok(runtime) => {
                    let _ = ready_tx.send(Ok(()));
                    runtime
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            while let Some(job) = queue.blocking_recv() {
                // A panicking job loses its own answer (its caller sees `Panicked`), not the
                // thread that every later job in the namespace needs.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(job())));
                if ran.is_err() {
                    tracing::error!("a job in network namespace {} panicked", display_in_thread.display());
                }
            }
        });
        ready_rx.recv().map_err(|_| NetnsError::Panicked(display))??;
        Ok(Self { jobs, path, file })
    }

    /// Runs `make` on the calling thread inside the namespace (see [`made_in`]): for sockets
    /// that then serve from any thread, and for short synchronous work such as a TC filter
    /// attach. `make` must not block for long or yield.
    pub fn made_in<T>(&self, make: impl FnOnce() -> T) -> Result<T, NetnsError> {
        match (&self.file, &self.path) {
            (Some(file), Some(path)) => {
                made_in_file(file, make).map_err(|source| NetnsError::Enter { path: path.clone(), source })
            }
            _ => Ok(make()),
        }
    }

    /// The namespace's path, or `None` for the agent's own.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Queues `work` inside the namespace without waiting for it; jobs run
    /// in the order they were queued.
    pub fn spawn<F, Fut>(&self, work: F) -> Result<(), NetnsError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let job: Job = Box::new(move || Box::pin(work()));
        self.jobs.send(job).map_err(|_| NetnsError::Panicked(self.path.clone().unwrap_or_default()))
    }

    /// Runs `work` inside the namespace and returns its result.
    pub async fn run<T, F, Fut>(&self, work: F) -> Result<T, NetnsError>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(work().await);
            })
        });
        let gone = || NetnsError::Panicked(self.path.clone().unwrap_or_default());
        self.jobs.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_leaves_the_thread_serving() {
        let ns = NodeNamespace::start(None).expect("a thread in this namespace");
        let failed: Result<(), NetnsError> = ns.run(|| async { panic!("a job that panics") }).await;
        assert!(matches!(failed, Err(NetnsError::Panicked(_))), "{failed:?}");
        assert_eq!(ns.run(|| async { 7 }).await.expect("the next job"), 7);
    }
}

//! A child process of a test: its output goes to a log file, it dies with
//! the test (`PR_SET_PDEATHSIG`) and is killed when dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::rundir::RunDir;

#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// Left running when dropped (the lab's processes).
    detached: bool,
}

impl Process {
    /// Starts `command`, appending its stdout and stderr to `<run dir>/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, dir: &RunDir) -> Result<Self, HarnessError> {
        let log = dir.path().join(format!("{name}.log"));
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(HarnessError::io(format!("opening {}", log.display())))
        };
        command.stdin(Stdio::null()).stdout(open()?).stderr(open()?);
        let detached = dir.persistent_processes();
        // SAFETY: prctl and setsid are async-signal-safe and touch no memory
        // of the parent.
        unsafe {
            command.pre_exec(move || {
                if detached {
                    // Out of the terminal's process group: Ctrl-C in the
                    // shell that ran `make lab` leaves the lab running.
                    libc::setsid();
                } else {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(HarnessError::io(format!("starting {name}")))?;
        dir.record_pid(child.id());
        Ok(Self { name: name.to_owned(), child: Some(child), log, detached })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`, `libc::SIGSTOP`).
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.as_mut()?.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => return None,
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.detached {
            self.kill();
        }
    }
}

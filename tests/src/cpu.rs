//! The machine's CPU time from `/proc/stat`, for benchmarks: what a run cost, and how much of
//! the time the hypervisor gave to other guests (on a shared VM, figures follow that share).

/// The machine's CPU time so far (`/proc/stat`, all CPUs), in ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// user, nice, system, irq and softirq: what the programs and the kernel's packet paths used.
    busy: u64,
    /// Time the hypervisor gave to someone else while this VM wanted to run.
    steal: u64,
    total: u64,
}

impl CpuTimes {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .map(|l| l.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        Self {
            busy: field(0) + field(1) + field(2) + field(5) + field(6),
            steal: field(7),
            total: (0..8).map(field).sum(),
        }
    }

    /// Busy CPU seconds and the stolen share of the time since `self`.
    pub fn since(self) -> (f64, f64) {
        let now = Self::now();
        // SAFETY: sysconf reads a constant of the C library.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let total = now.total.saturating_sub(self.total).max(1) as f64;
        (now.busy.saturating_sub(self.busy) as f64 / hz, now.steal.saturating_sub(self.steal) as f64 / total)
    }
}

//! The figures of `bench-dataplane`: every run's results, their medians over
//! the rounds, and the report printed from them with each target met or
//! missed. Setups are found by label in tables, never by position, so a
//! setup or a target more is a line in `dataplane.rs`' tables.

use anyhow::bail;

use super::MESSAGE;

/// iperf3's parallel streams in the throughput runs: one connection, and
/// more connections than the machine has CPUs, where a dataplane that does
/// per-packet work on one CPU or in one shared map shows it.
pub const STREAMS: [u32; 2] = [1, 8];
/// Above this median share of stolen CPU time the report warns that Gbit/s are unreliable.
const STEAL_WARNING: f64 = 0.10;
/// Runs with less stolen CPU time than this are "quiet"; their throughput is shown apart.
const QUIET: f64 = 0.20;

/// Where a setup's two pods are; setups are compared within one placement only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    CrossNode,
    SameNode,
}

impl Placement {
    pub const ALL: [Placement; 2] = [Placement::CrossNode, Placement::SameNode];

    fn title(self) -> &'static str {
        match self {
            Placement::CrossNode => "cross-node",
            Placement::SameNode => "same-node",
        }
    }
}

/// What the report knows of a setup.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Its name in the report and in the [`Target`]s.
    pub label: &'static str,
    pub placement: Placement,
    /// One of sdn's: measured against every reference of its placement.
    pub sdn: bool,
}

impl Setup {
    pub const fn sdn(label: &'static str, placement: Placement) -> Self {
        Self { label, placement, sdn: true }
    }

    pub const fn reference(label: &'static str, placement: Placement) -> Self {
        Self { label, placement, sdn: false }
    }
}

/// A target of an sdn setup against a reference of its placement, both by label.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub setup: &'static str,
    pub reference: &'static str,
    /// The least ratio of the throughputs, with every stream count of [`STREAMS`].
    pub throughput: f64,
    /// The bound of the RTT p50 ratio, where latency is a target too.
    pub rtt_p50: Option<Rtt>,
    /// The most CPU per GB may be, in multiples of the reference's, where it is a target.
    pub cpu_per_gb: Option<f64>,
}

/// A bound of sdn's RTT p50 in multiples of the reference's.
#[derive(Debug, Clone, Copy)]
pub enum Rtt {
    AtMost(f64),
    /// Strictly below: a tie is not good enough.
    Below(f64),
}

impl Rtt {
    fn met(self, sdn: f64, reference: f64) -> bool {
        match self {
            Rtt::AtMost(ratio) => sdn <= ratio * reference,
            Rtt::Below(ratio) => sdn < ratio * reference,
        }
    }

    fn describe(self) -> String {
        match self {
            Rtt::AtMost(ratio) => format!("<= {}x", times(ratio)),
            Rtt::Below(ratio) => format!("< {}x", times(ratio)),
        }
    }
}

/// A target with its setups' positions in the report's tables.
pub struct Resolved {
    target: Target,
    setup: usize,
    reference: usize,
}

/// Finds the setups of every target, before the runs: a misspelt label
/// fails in a second rather than after minutes of measuring.
pub fn resolve(setups: &[Setup], targets: &[Target]) -> anyhow::Result<Vec<Resolved>> {
    let find = |label: &str| setups.iter().position(|s| s.label == label);
    let mut resolved = Vec::new();
    for &target in targets {
        let (Some(setup), Some(reference)) = (find(target.setup), find(target.reference)) else {
            bail!("target {} vs {}: no setup of that label", target.setup, target.reference);
        };
        let (s, r) = (&setups[setup], &setups[reference]);
        if !s.sdn || r.sdn || s.placement != r.placement {
            bail!("target {} vs {}: not an sdn setup against a reference of its placement", s.label, r.label);
        }
        resolved.push(Resolved { target, setup, reference });
    }
    Ok(resolved)
}

/// One iperf3 run.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    /// Receiver bits/s, summed over the parallel streams.
    pub bps: f64,
    /// Busy CPU seconds of the whole machine (both ends, softirqs, all) per GB received.
    pub cpu_per_gb: f64,
    /// Share of the run's CPU time stolen by the hypervisor.
    pub steal: f64,
    pub retransmits: u64,
    /// Segments the receiver queued out of order.
    pub out_of_order: u64,
}

/// Round-trip times of one ping-pong run in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub avg: f64,
    pub p50: f64,
    pub p99: f64,
    pub steal: f64,
}

/// Every round's figures of one setup. The figures reported are medians
/// over the rounds: the setups take turns, so each meets the machine's
/// noisy moments about as often as the others. (The best run is no fairer
/// here: the hypervisor's rare generous moments decide which setup wins.)
#[derive(Default)]
pub struct Samples {
    /// The throughput runs by stream count, as in [`STREAMS`].
    pub streams: [Vec<Stream>; STREAMS.len()],
    pub rtts: Vec<Latency>,
}

pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl Samples {
    /// `s` is the index of a stream count in [`STREAMS`].
    fn gbps(&self, s: usize) -> f64 {
        median(self.streams[s].iter().map(|r| r.bps / 1e9))
    }

    fn cpu_per_gb(&self, s: usize) -> f64 {
        median(self.streams[s].iter().map(|r| r.cpu_per_gb))
    }

    fn rtt(&self, f: fn(&Latency) -> f64) -> f64 {
        median(self.rtts.iter().map(f))
    }

    /// Median Gbit/s of the runs during which the hypervisor stole less than [`QUIET`].
    fn quiet_gbps(&self, s: usize) -> Option<f64> {
        let quiet: Vec<f64> = self.streams[s].iter().filter(|r| r.steal < QUIET).map(|r| r.bps / 1e9).collect();
        (!quiet.is_empty()).then(|| median(quiet.into_iter()))
    }

    /// Every run's stolen share.
    fn steals(&self) -> impl Iterator<Item = f64> + '_ {
        self.streams.iter().flatten().map(|r| r.steal).chain(self.rtts.iter().map(|l| l.steal))
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// A ratio as the targets are written: 1.15x, 1.0x, 0.9x.
fn times(ratio: f64) -> String {
    let fixed = format!("{ratio:.2}");
    let trimmed = fixed.trim_end_matches('0');
    if trimmed.ends_with('.') { format!("{trimmed}0") } else { trimmed.to_string() }
}

/// `""` for one stream, `" -P 8"` for eight: the suffix of a figure's title.
fn parallel(s: usize) -> String {
    match STREAMS[s] {
        1 => String::new(),
        n => format!(" -P {n}"),
    }
}

/// One line: an sdn setup's figure, then each reference's with sdn's ratio to it.
fn row(title: &str, name: &str, unit: &str, decimals: usize, sdn: f64, references: &[(&str, f64)]) {
    let mut line = format!("  {title:<26} {name:<10} {sdn:>7.decimals$} {unit:<6}");
    for (name, value) in references {
        line += &format!("   {name} {value:>7.decimals$} {unit:<6} ({:.2}x)", sdn / value);
    }
    println!("{line}");
}

/// A target's line: what is compared, the figures, the verdict.
fn verdict(what: &str, figures: &str, ok: bool) {
    println!("  {what:<42} {figures}  {}", met(ok));
}

/// The latency figures printed, by name.
type Figure = (&'static str, fn(&Latency) -> f64);

const FIGURES: [Figure; 3] = [("p50", |l| l.p50), ("avg", |l| l.avg), ("p99", |l| l.p99)];

/// The positions of `placement`'s sdn setups (with `sdn`) or of its references.
fn of(setups: &[Setup], placement: Placement, sdn: bool) -> Vec<usize> {
    (0..setups.len()).filter(|&k| setups[k].placement == placement && setups[k].sdn == sdn).collect()
}

/// Prints the figures of `setups` (with `samples` in the same order) and the `targets`' verdicts.
pub fn report(seconds: u32, rounds: u32, setups: &[Setup], samples: &[Samples], targets: &[Resolved]) {
    let streams: Vec<String> = STREAMS.iter().map(u32::to_string).collect();
    println!(
        "\ndataplane benchmark (iperf3 {} streams {seconds} s, TCP ping-pong {MESSAGE} B {seconds} s; \
         medians of {rounds} rounds with the setups taking turns)",
        streams.join(" and ")
    );
    medians(setups, samples);
    every_run(setups, samples);
    quiet_runs(setups, samples);
    let steals: Vec<f64> = samples.iter().flat_map(Samples::steals).collect();
    let steal = median(steals.iter().copied());
    println!(
        "  CPU time stolen by the hypervisor during the runs: median {:.0} %, max {:.0} %",
        steal * 100.0,
        steals.iter().copied().fold(0.0, f64::max) * 100.0
    );
    if steal > STEAL_WARNING {
        println!(
            "  warning: this VM did not get its CPUs for much of the run; Gbit/s follow the hypervisor more than \
             the dataplane. CPU per GB (busy CPU time of the whole machine per GB received) and RTT p50 are steadier."
        );
    }
    println!("targets: {}; throughput with {} streams alike", summary(setups, targets), streams.join(" and "));
    if steal > STEAL_WARNING {
        println!("  (with {:.0} % of the CPU stolen these verdicts are as noisy as the figures above)", steal * 100.0);
    }
    verdicts(setups, samples, targets);
}

/// Each sdn setup's medians against the references of its placement.
fn medians(setups: &[Setup], samples: &[Samples]) {
    for placement in Placement::ALL {
        let (title, references) = (placement.title(), of(setups, placement, false));
        for k in of(setups, placement, true) {
            let line = |figure: &str, unit: &str, decimals: usize, f: &dyn Fn(&Samples) -> f64| {
                let refs: Vec<(&str, f64)> = references.iter().map(|&r| (setups[r].label, f(&samples[r]))).collect();
                row(&format!("{title} {figure}"), setups[k].label, unit, decimals, f(&samples[k]), &refs);
            };
            for s in 0..STREAMS.len() {
                line(&format!("throughput{}", parallel(s)), "Gbit/s", 2, &|x| x.gbps(s));
            }
            for (name, f) in FIGURES {
                line(&format!("latency RTT {name}"), "us", 1, &|x| x.rtt(f));
            }
            for s in 0..STREAMS.len() {
                line(&format!("CPU per GB{}", parallel(s)), "s", 2, &|x| x.cpu_per_gb(s));
            }
        }
    }
}

/// Every run, a line per setup and stream count.
fn every_run(setups: &[Setup], samples: &[Samples]) {
    println!(
        "  every run: Gbit/s, CPU s per GB, TCP retransmits, segments the receiver queued out of order, CPU stolen | RTT p50 us, CPU stolen"
    );
    for (setup, sample) in setups.iter().zip(samples) {
        for (s, runs) in sample.streams.iter().enumerate() {
            let runs: Vec<String> = runs
                .iter()
                .map(|r| {
                    let (gbps, steal) = (r.bps / 1e9, r.steal * 100.0);
                    format!("{gbps:.2} {:.2} {} {} {steal:.0}%", r.cpu_per_gb, r.retransmits, r.out_of_order)
                })
                .collect();
            let mut line = format!("    {:<18} {}", format!("{}{}", setup.label, parallel(s)), runs.join(", "));
            // A setup's ping-pong runs once, on its first line.
            if s == 0 {
                let rtts: Vec<String> =
                    sample.rtts.iter().map(|l| format!("{:.1} {:.0}%", l.p50, l.steal * 100.0)).collect();
                line += &format!(" | {}", rtts.join(", "));
            }
            println!("{line}");
        }
    }
}

/// The throughput medians again, of the runs the hypervisor let be.
fn quiet_runs(setups: &[Setup], samples: &[Samples]) {
    println!("  throughput of the quiet runs (< {:.0} % stolen):", QUIET * 100.0);
    for placement in Placement::ALL {
        let references = of(setups, placement, false);
        for k in of(setups, placement, true) {
            let group: Vec<usize> = std::iter::once(k).chain(references.iter().copied()).collect();
            for s in 0..STREAMS.len() {
                let title = format!("{} throughput{}", placement.title(), parallel(s));
                match group.iter().map(|&g| samples[g].quiet_gbps(s)).collect::<Option<Vec<f64>>>() {
                    Some(quiet) => {
                        let refs: Vec<(&str, f64)> =
                            group[1..].iter().map(|&r| setups[r].label).zip(quiet[1..].iter().copied()).collect();
                        row(&title, setups[k].label, "Gbit/s", 2, quiet[0], &refs);
                    }
                    None => {
                        let labels: Vec<&str> = group.iter().map(|&g| setups[g].label).collect();
                        println!("  {title:<26} not every setup of {} had one", labels.join(", "));
                    }
                }
            }
        }
    }
}

/// The targets in a sentence, a clause per sdn setup in the order of the setups.
fn summary(setups: &[Setup], targets: &[Resolved]) -> String {
    let mut clauses = Vec::new();
    for (k, setup) in setups.iter().enumerate() {
        let mine: Vec<&Resolved> = targets.iter().filter(|t| t.setup == k).collect();
        if mine.is_empty() {
            continue;
        }
        let reference = |t: &Resolved| setups[t.reference].label;
        let throughput: Vec<String> =
            mine.iter().map(|t| format!(">= {}x {}", times(t.target.throughput), reference(t))).collect();
        let mut clause = format!("{} throughput {}", setup.label, throughput.join(" and "));
        let latency: Vec<String> = mine
            .iter()
            .filter_map(|t| t.target.rtt_p50.map(|bound| format!("{} {}", bound.describe(), reference(t))))
            .collect();
        if !latency.is_empty() {
            clause += &format!(", latency (RTT p50) {}", latency.join(" and "));
        }
        let cpu: Vec<String> = mine
            .iter()
            .filter_map(|t| t.target.cpu_per_gb.map(|most| format!("<= {}x {}", times(most), reference(t))))
            .collect();
        if !cpu.is_empty() {
            clause += &format!(", CPU per GB {}", cpu.join(" and "));
        }
        clauses.push(clause);
    }
    clauses.join("; ")
}

/// A line per target and stream count, met or missed, and the CPU cost beside.
fn verdicts(setups: &[Setup], samples: &[Samples], targets: &[Resolved]) {
    for t in targets {
        let (name, reference) = (setups[t.setup].label, setups[t.reference].label);
        let (sdn, other) = (&samples[t.setup], &samples[t.reference]);
        for s in 0..STREAMS.len() {
            let ratio = sdn.gbps(s) / other.gbps(s);
            let (what, figures) = (
                format!("{name} throughput{} vs {reference}", parallel(s)),
                format!("{ratio:.2}x (>= {}x)", times(t.target.throughput)),
            );
            verdict(&what, &figures, ratio >= t.target.throughput);
        }
        if let Some(bound) = t.target.rtt_p50 {
            let (lat, lat_ref) = (sdn.rtt(|l| l.p50), other.rtt(|l| l.p50));
            let figures = format!("{lat:.1} us vs {lat_ref:.1} us ({:.2}x, {})", lat / lat_ref, bound.describe());
            verdict(&format!("{name} latency vs {reference}"), &figures, bound.met(lat, lat_ref));
        }
        match t.target.cpu_per_gb {
            Some(most) => {
                for s in 0..STREAMS.len() {
                    let ratio = sdn.cpu_per_gb(s) / other.cpu_per_gb(s);
                    let what = format!("{name} CPU per GB{} vs {reference}", parallel(s));
                    verdict(&what, &format!("{ratio:.2}x (<= {}x)", times(most)), ratio <= most);
                }
            }
            None => {
                let cpu: Vec<String> = (0..STREAMS.len())
                    .map(|s| format!("{:.2}x{}", sdn.cpu_per_gb(s) / other.cpu_per_gb(s), parallel(s)))
                    .collect();
                println!("  ({name} CPU per GB vs {reference} {}; lower is cheaper)", cpu.join(", "));
            }
        }
    }
}

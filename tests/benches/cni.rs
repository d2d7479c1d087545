//! `make bench-cni`: how long a container runtime waits for `sdn-cni` to
//! ADD and DEL a pod, against the reference plugins `bridge` + `host-local`
//! (Debian's containernetworking-plugins) driven the same way in the same
//! run.
//!
//! Both are started as a runtime starts them: the binary exec'd straight
//! into the node's network namespace with the CNI variables and the
//! configuration on stdin, timed from spawn to exit. The sdn node is one
//! node of the harness (etcd, master, agent); the reference node is a bare
//! namespace where `bridge` makes `cni0` and `host-local` keeps its leases
//! in the run directory. The two take turns pod by pod, so a noisy moment
//! of the machine hits both.
//!
//! A round is 100 pods in a row per setup, ADD then DEL. A p99 of 100 samples
//! is their second-highest, so one stall of the machine decides it; the run
//! therefore has several rounds and reports the median of each figure over
//! them, beside every round's own figures and the CPU time the hypervisor
//! stole during it. `SDN_BENCH_PODS` (default 100) and `SDN_BENCH_ROUNDS`
//! (default 3) change the pods per round and the number of rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sdn_tests::cni::{Attachment, REFERENCE_PLUGINS, Runtime};
use sdn_tests::cpu::CpuTimes;
use sdn_tests::netns::Netns;
use sdn_tests::node::Cluster;
use sdn_tests::rundir::RunDir;
use serde_json::{Value, json};

/// At least this many times faster than the reference, at p50 and at p99.
const TARGET: f64 = 3.0;

struct Setup {
    name: &'static str,
    runtime: Runtime,
    conf: Value,
    pods: Vec<Attachment>,
    add: Vec<Duration>,
    del: Vec<Duration>,
}

impl Setup {
    fn run(&mut self, command: &str, pod: usize) -> anyhow::Result<()> {
        let start = Instant::now();
        let call = self.runtime.call(command, &self.pods[pod], &self.conf);
        let took = start.elapsed();
        if !call.success {
            bail!("{} {command} of pod {pod}: {call}", self.name);
        }
        match command {
            "ADD" => self.add.push(took),
            _ => self.del.push(took),
        }
        Ok(())
    }

    /// Names this round's pods apart from earlier rounds', as a runtime names new sandboxes.
    fn new_round(&mut self, round: usize) {
        for pod in &mut self.pods {
            let base = pod.container_id.rsplit_once("-round").map_or(pod.container_id.as_str(), |(base, _)| base);
            pod.container_id = format!("{base}-round{round}");
        }
        self.add.clear();
        self.del.clear();
    }
}

/// One round's figures: (ADD p50, ADD p99, DEL p50, DEL p99) per setup, and the stolen share.
struct Round {
    figures: [[Duration; 4]; 2],
    steal: f64,
}

fn figures(setup: &Setup) -> [Duration; 4] {
    [
        percentile(&setup.add, 0.50),
        percentile(&setup.add, 0.99),
        percentile(&setup.del, 0.50),
        percentile(&setup.del, 0.99),
    ]
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pods(dir: &Arc<RunDir>, prefix: &str, count: usize) -> anyhow::Result<(Vec<Netns>, Vec<Attachment>)> {
    let mut namespaces = Vec::new();
    let mut attachments = Vec::new();
    for i in 0..count {
        let ns = Netns::create(dir.clone(), &format!("{prefix}-p{i}"))?;
        attachments.push(Attachment {
            container_id: format!("{prefix}-{i:03}"),
            netns: ns.path(),
            ifname: "eth0".into(),
            args: format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{i}"),
        });
        namespaces.push(ns);
    }
    Ok((namespaces, attachments))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::var("SDN_BENCH_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let rounds_wanted: usize = std::env::var("SDN_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let tag = format!("bcni-{}", std::process::id());
    let cluster = Cluster::start("bcni", 1).await.context("starting the sdn node")?;
    let node = &cluster.nodes[0];
    let dir = cluster.cp.dir.clone();
    let (_sdn_ns, sdn_pods) = pods(&dir, &format!("{tag}-s"), count)?;
    let reference_node = Netns::create(dir.clone(), &format!("{tag}-ref"))?;
    let (_ref_ns, ref_pods) = pods(&dir, &format!("{tag}-r"), count)?;

    let mut setups = [
        Setup {
            name: "sdn-cni",
            runtime: Runtime::for_node(node),
            conf: json!({ "cniVersion": "1.0.0", "name": "sdn", "type": "sdn-cni", "socket": node.socket }),
            pods: sdn_pods,
            add: Vec::new(),
            del: Vec::new(),
        },
        Setup {
            name: "bridge+host-local",
            runtime: Runtime::new(reference_node.name(), vec![REFERENCE_PLUGINS.into()]),
            conf: json!({
                "cniVersion": "1.0.0", "name": "ref", "type": "bridge", "bridge": "cni0",
                "isGateway": true, "mtu": 1450,
                "ipam": {
                    "type": "host-local", "subnet": "10.99.0.0/16", "gateway": "10.99.0.1",
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.path().join("host-local").display().to_string()
                }
            }),
            pods: ref_pods,
            add: Vec::new(),
            del: Vec::new(),
        },
    ];
    // One untimed ADD/DEL each: the reference makes cni0 then, and both binaries get paged in.
    for setup in &mut setups {
        setup.run("ADD", 0)?;
        setup.run("DEL", 0)?;
    }
    let mut rounds = Vec::new();
    for round in 0..rounds_wanted {
        for setup in &mut setups {
            setup.new_round(round);
        }
        let before = CpuTimes::now();
        for command in ["ADD", "DEL"] {
            for pod in 0..count {
                for setup in &mut setups {
                    setup.run(command, pod)?;
                }
            }
        }
        rounds.push(Round { figures: [figures(&setups[0]), figures(&setups[1])], steal: before.since().1 });
        eprintln!("  round {}/{rounds_wanted} done", round + 1);
    }

    println!(
        "\nCNI benchmark: {count} pods in a row per setup, ADD then DEL, taking turns pod by pod; medians of {} rounds",
        rounds.len()
    );
    let labels = ["ADD p50", "ADD p99", "DEL p50", "DEL p99"];
    let mut verdicts = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let ours = median(rounds.iter().map(|r| r.figures[0][i]).collect());
        let theirs = median(rounds.iter().map(|r| r.figures[1][i]).collect());
        let speedup = theirs.as_secs_f64() / ours.as_secs_f64().max(1e-9);
        println!(
            "  {label}   sdn-cni {:7.2} ms   bridge+host-local {:7.2} ms   ({speedup:.2}x faster)",
            ms(ours),
            ms(theirs)
        );
        verdicts.push((label, speedup));
    }
    println!("  every round: ADD p50, ADD p99, DEL p50, DEL p99 in ms (sdn-cni / bridge+host-local), CPU stolen");
    for (n, round) in rounds.iter().enumerate() {
        let pairs: Vec<String> =
            (0..4).map(|i| format!("{:.2}/{:.2}", ms(round.figures[0][i]), ms(round.figures[1][i]))).collect();
        println!("    round {}: {}, {:.0} %", n + 1, pairs.join(", "), round.steal * 100.0);
    }
    println!("target: at least {TARGET}x faster than bridge+host-local at p50 and p99");
    for (what, speedup) in verdicts {
        println!("  {what:8} {speedup:.2}x  {}", if speedup >= TARGET { "met" } else { "MISSED" });
    }
    Ok(())
}

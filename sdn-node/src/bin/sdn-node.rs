//! `sdn-node`: the node agent.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sdn_node::config::NodeArgs;
use sdn_node::net::layout::OWNED_DEVICES;
use sdn_node::net::netlink::{Netlink, set_sysctl};
use sdn_node::netns::NodeNamespace;
use sdn_node::status::Status;
use sdn_node::{agent, bpf, nat, pods};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The sdn node agent: devices, eBPF flow tables, VXLAN and NAT of one node.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent.
    Run(NodeArgs),
    /// Remove every device, rule, route, program, pin and state file the agent made.
    Cleanup(NodeArgs),
    /// Print the flow table with counters, like `ovs-ofctl dump-flows`.
    Flows(NodeArgs),
    /// Follow the packets the dataplane drops, one line each, with the reason (like `cilium
    /// monitor --type drop`).
    Drops(DropsArgs),
}

#[derive(Debug, clap::Args)]
struct DropsArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Stop after this many drops.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// Show only drops for this reason (as `sdn-node flows` names them: spoofed-ip,
    /// pod-to-tunnel-port, ...); repeatable.
    #[arg(long = "reason", value_parser = parse_reason)]
    reasons: Vec<bpf::Decision>,
}

fn parse_reason(name: &str) -> Result<bpf::Decision, String> {
    let drops = || bpf::Decision::ALL.into_iter().filter(|d| d.is_drop());
    drops().find(|d| d.name() == name).ok_or_else(|| {
        let names: Vec<&str> = drops().map(bpf::Decision::name).collect();
        format!("no drop reason {name:?}; the reasons are {}", names.join(", "))
    })
}

/// Enters the node's namespace (where the maps' interface indexes mean something) and
/// resolves the node's configuration.
fn in_node(args: NodeArgs) -> anyhow::Result<sdn_node::config::NodeConfig> {
    if let Some(path) = &args.netns {
        sdn_node::netns::enter(path)?;
    }
    let config = args.resolve()?;
    if !config.pin_dir.join("maps").is_dir() {
        anyhow::bail!("no flow tables under {}: is the agent running on this node?", config.pin_dir.display());
    }
    Ok(config)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
}

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Run(args) => {
            let ns = NodeNamespace::start(args.netns.clone())?;
            let config = args.resolve()?;
            runtime()?.block_on(run(config, ns))
        }
        Command::Cleanup(args) => {
            let ns = NodeNamespace::start(args.netns.clone())?;
            let config = args.resolve()?;
            runtime()?.block_on(cleanup(config, ns))
        }
        Command::Drops(args) => drops(args),
        Command::Flows(args) => {
            let config = in_node(args)?;
            let dataplane = bpf::Dataplane::load(&config.pin_dir)
                .with_context(|| format!("reading the flow maps under {}", config.pin_dir.display()))?;
            print!("{}", dataplane.flows()?);
            Ok(())
        }
    }
}

/// glibc's malloc gives threads that allocate at the same time arenas of their own, up to eight
/// per core, and an arena keeps the memory freed in it for later allocations. The agent's
/// runtime workers, DNS threads and namespace thread each left their share of the records' loads
/// in arenas of their own: two arenas hold 10,000 services with their endpoints in 2.5 MiB less
/// (`make bench-dns`), and the few threads that allocate rarely contend for them.
#[cfg(target_env = "gnu")]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes malloc's settings, and no other thread exists yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

#[cfg(not(target_env = "gnu"))]
fn limit_malloc_arenas() {}

fn drops(args: DropsArgs) -> anyhow::Result<()> {
    let config = in_node(args.node)?;
    let mut reader = bpf::drops::DropReader::open(&config.pin_dir)?;
    let deadline = args.seconds.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        if left.is_some_and(|l| l.is_zero()) || args.count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        let wait = left.unwrap_or(std::time::Duration::from_secs(1)).min(std::time::Duration::from_secs(1));
        let shown = |event: &sdn_node::bpf::DropEvent| {
            args.reasons.is_empty() || args.reasons.iter().any(|r| r.index() == event.reason)
        };
        for event in reader.wait(wait)?.into_iter().filter(shown) {
            use std::io::Write as _;
            writeln!(out, "{}", bpf::drops::describe(&event, bpf::interface_name)).context("writing to stdout")?;
            out.flush().context("writing to stdout")?;
            seen += 1;
            if args.count.is_some_and(|c| seen >= c) {
                return Ok(());
            }
        }
    }
}

async fn run(config: sdn_node::config::NodeConfig, ns: NodeNamespace) -> anyhow::Result<()> {
    let (stop, shutdown) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("stopping; the node keeps forwarding until the next agent adopts it");
        let _ = stop.send(true);
    });
    let status = Arc::new(Status::default());
    let serve = sdn_node::status::serve(config.metrics_listen, status.clone(), shutdown.clone());
    let listen = config.metrics_listen;
    let agent = agent::run(config, ns, status, shutdown.clone());
    tokio::pin!(serve, agent);
    tokio::select! {
        served = &mut serve => {
            served.with_context(|| format!("status endpoint on {listen}"))?;
            // Stopping: the agent finishes its pod requests before the process exits.
            agent.await.map_err(anyhow::Error::from)
        }
        ran = &mut agent => ran.map_err(anyhow::Error::from),
    }
}

async fn cleanup(config: sdn_node::config::NodeConfig, ns: NodeNamespace) -> anyhow::Result<()> {
    let forwarding = std::fs::read_to_string(agent::forwarding_record(&config.state_dir)).ok();
    // Pods' host veths are named after the attachments their addresses are recorded for.
    let pod_veths: Vec<String> = std::fs::read_dir(pods::ipam_dir(&config.state_dir))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<std::net::Ipv4Addr>().is_ok()))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|record| pods::record::host_veth(&pods::record::key(&pods::record::decode(record.trim()))))
                .collect()
        })
        .unwrap_or_default();
    let deleted = ns
        .run(move || async move {
            if let Some(value) = forwarding {
                set_sysctl("net.ipv4.ip_forward", value.trim())?;
            }
            let nl = Netlink::connect()?;
            let mut deleted = Vec::new();
            for device in pod_veths.iter().map(String::as_str).chain(OWNED_DEVICES) {
                if nl.delete(device).await? {
                    deleted.push(device.to_owned());
                }
            }
            nat::remove()?;
            anyhow::Ok(deleted)
        })
        .await??;
    for device in deleted {
        println!("deleted {device}");
    }
    println!("removed nftables table inet {}", nat::TABLE);
    if let Some(cni) = &config.cni {
        for file in [cni.cni_conflist.clone(), cni.cni_bin_dir.join(sdn_node::install::PLUGIN)] {
            match std::fs::remove_file(&file) {
                Ok(()) => println!("removed {}", file.display()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(anyhow::Error::from(err).context(format!("removing {}", file.display()))),
            }
        }
    }
    bpf::remove_pins(&config.pin_dir)?;
    println!("removed pins under {}", config.pin_dir.display());
    match std::fs::remove_dir_all(&config.state_dir) {
        Ok(()) => println!("removed {}", config.state_dir.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("removing {}", config.state_dir.display())),
    }
    Ok(())
}

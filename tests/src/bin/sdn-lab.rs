//! `sdn-lab`: the local lab, built on the test harness. `up` starts etcd
//! and a master that outlive the command, registers two demo nodes and
//! prints what to try; `down` removes it all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sdn_cluster::ClusterNetwork;
use sdn_master::api::types::{NodeView, RegisterNode};
use sdn_tests::etcd::Etcd;
use sdn_tests::master::{Master, MasterOptions};
use sdn_tests::rundir::{RunDir, kill_recorded};

#[derive(Debug, Parser)]
#[command(about = "The sdn local lab")]
struct Cli {
    /// Where the lab keeps its state, logs and token.
    #[arg(long, env = "SDN_LAB_DIR", default_value = "/tmp/sdn-lab", global = true)]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the lab (replacing a running one).
    Up,
    /// Stop the lab and remove its state.
    Down,
}

const DEMO_NODES: [(&str, [u8; 4]); 2] = [("node-1", [192, 0, 2, 11]), ("node-2", [192, 0, 2, 12])];

/// 32 random bytes from the kernel, hex-encoded.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn down(dir: &Path) {
    kill_recorded(dir);
    let _ = std::fs::remove_dir_all(dir);
}

async fn up(dir: &Path) -> anyhow::Result<()> {
    down(dir);
    let run = Arc::new(RunDir::persistent(dir.to_owned())?);
    let etcd = Etcd::start(run.clone()).await.context("starting etcd")?;
    let mut options = MasterOptions::new("lab-master", &etcd.endpoint());
    options.network = ClusterNetwork::default();
    options.lease_ttl_secs = 5;
    options.token = random_token()?;
    let master = Master::start(run.clone(), options).await.context("starting the master")?;
    let client = master.client();
    for (name, ip) in DEMO_NODES {
        let body = RegisterNode { name: name.into(), ip: ip.into() };
        client.post::<_, NodeView>("/api/v1/nodes", &body).await.with_context(|| format!("registering {name}"))?;
    }
    let token_file = run.path().join("token");
    let env = format!("export SDN_SERVER={}\nexport SDN_TOKEN_FILE={}\n", master.url(), token_file.display());
    std::fs::write(run.path().join("env"), &env).context("writing the lab's env file")?;
    let nodes = sdn_tests::wait::until(std::time::Duration::from_secs(20), || async {
        let nodes: Vec<NodeView> = client.get("/api/v1/nodes").await.map_err(|e| e.to_string())?;
        if nodes.iter().all(|n| n.subnet.is_some()) { Ok(nodes) } else { Err(format!("{nodes:?}")) }
    })
    .await
    .map_err(|e| anyhow::anyhow!("the demo nodes did not get subnets: {e}"))?;

    println!("sdn lab is up ({})", run.path().display());
    println!("  etcd     {}", etcd.endpoint());
    println!("  master   {}   (token in {})", master.url(), token_file.display());
    println!("  logs     {}/*.log\n", run.path().display());
    println!("nodes and their subnets:");
    for n in &nodes {
        let subnet = n.subnet.map_or_else(|| "<pending>".into(), |s| s.to_string());
        println!("  {:<8} {:<12} {subnet}", n.name, n.ip.to_string());
    }
    println!("\ntry:");
    println!("  source {}/env", run.path().display());
    println!("  target/debug/sdnctl nodes list");
    println!("  target/debug/sdnctl nodes add node-3 --ip 192.0.2.13");
    println!("  target/debug/sdnctl subnets list");
    println!("  target/debug/sdnctl network show -o json");
    println!("  target/debug/sdnctl nodes delete node-1");
    println!("\nthe node agents (VXLAN, eBPF flows, pods) come with the node issue; `make lab-down` stops the lab.");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up => up(&cli.dir).await,
        Command::Down => {
            down(&cli.dir);
            println!("sdn lab is down");
            Ok(())
        }
    }
}

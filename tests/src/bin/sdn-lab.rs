//! `sdn-lab`: the local lab, built on the test harness. `up` starts etcd,
//! a master and two nodes (each in a network namespace on an underlay
//! switch) with two pods on each, all outliving the command, and prints
//! what to try; `down` removes it all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sdn_master::api::types::NodeView;
use sdn_tests::node::Cluster;
use sdn_tests::rundir::{RunDir, kill_recorded, remove_recorded};

#[derive(Debug, Parser)]
#[command(about = "The sdn local lab")]
struct Cli {
    /// Where the lab keeps its state, logs and token.
    #[arg(long, env = "SDN_LAB_DIR", default_value = "/tmp/sdn-lab", global = true)]
    dir: PathBuf,
    /// Prefix of the lab's node names and network namespaces.
    #[arg(long, env = "SDN_LAB_PREFIX", default_value = "lab", global = true)]
    prefix: String,
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

fn down(dir: &Path) {
    kill_recorded(dir);
    remove_recorded(dir);
    let _ = std::fs::remove_dir_all(dir);
}

async fn up(dir: &Path, prefix: &str) -> anyhow::Result<()> {
    down(dir);
    let run = Arc::new(RunDir::persistent(dir.to_owned())?);
    // etcd as in production: TLS, client certificates, auth on, a role per node.
    let cluster = Cluster::start_secure_in(run.clone(), prefix, 2).await.context("starting the lab cluster")?;
    let mut pods = Vec::new();
    for node in &cluster.nodes {
        for pod in ["pod-a", "pod-b"] {
            pods.push((
                node.name.clone(),
                node.attach_pod(pod).await.with_context(|| format!("pod {pod} on {}", node.name))?,
            ));
        }
    }
    for (_, pod) in &pods {
        write_resolv_conf(&run, pod)?;
    }
    let master = &cluster.cp.masters[0];
    // A service with a backend on each node (pod-a, a web server answering with its name), for
    // the pods to reach by its short name.
    for (_, pod) in [&pods[0], &pods[2]] {
        serve_name(&run, pod)?;
    }
    let web = serde_json::json!({ "namespace": "default", "name": "web", "ports": [{ "name": "http", "port": 80 }] });
    let created: serde_json::Value = master.client().post("/api/v1/services", &web).await?;
    let backends: Vec<serde_json::Value> =
        [&pods[0].1, &pods[2].1].iter().map(|pod| serde_json::json!({ "ip": pod.ip })).collect();
    let endpoints = serde_json::json!({ "addresses": backends, "ports": [{ "name": "http", "port": 8080 }] });
    let _: serde_json::Value = master.client().put("/api/v1/endpoints/default/web", &endpoints).await?;
    let token_file = run.path().join("token");
    let env = format!("export SDN_SERVER={}\nexport SDN_TOKEN_FILE={}\n", master.url(), token_file.display());
    std::fs::write(run.path().join("env"), &env).context("writing the lab's env file")?;
    let nodes: Vec<NodeView> = master.client().get("/api/v1/nodes").await?;

    println!("sdn lab is up ({})", run.path().display());
    println!(
        "  etcd     {}   (TLS, client certificates in {}/pki, auth on: each node is the etcd user its \
         certificate names, with a role that writes only its own keys)",
        cluster.cp.etcd.endpoint(),
        run.path().display()
    );
    println!("  master   {}   (token in {})", master.url(), token_file.display());
    println!("  logs     {}/*.log\n", run.path().display());
    println!("nodes (network namespaces <node>-ns, underlay 192.0.2.0/24):");
    for n in &nodes {
        let subnet = n.subnet.map_or_else(|| "<pending>".into(), |s| s.to_string());
        println!("  {:<10} {:<12} {subnet}", n.name, n.ip.to_string());
    }
    println!("\npods (network namespaces <node>-<pod>):");
    for (node, pod) in &pods {
        println!("  {:<16} {:<10} {}", pod.ns.name(), node, pod.ip);
    }
    let (a, b) = (&pods[0].1, &pods[2].1);
    println!("\ntry:");
    println!("  ip netns exec {} ping -c 3 {}        # across nodes, through VXLAN", a.ns.name(), b.ip);
    println!("  ip netns exec {} ping -c 3 {}        # same node", a.ns.name(), pods[1].1.ip);
    println!(
        "  ip netns exec {} ping -c 3 {}       # the external host, masqueraded",
        a.ns.name(),
        Cluster::EXTERNAL_IP
    );
    println!(
        "  ip netns exec {} curl -s http://web/     # the service default/web ({}), a backend on each node",
        pods[1].1.ns.name(),
        created["clusterIP"].as_str().unwrap_or("?")
    );
    println!(
        "  target/debug/sdn-node flows --node-name {} --netns {}",
        cluster.nodes[0].name,
        cluster.nodes[0].ns.path().display()
    );
    println!("  curl -s 127.0.0.1:{}/metrics", cluster.nodes[0].metrics_port);
    println!("  source {}/env; target/debug/sdnctl nodes list", run.path().display());
    println!("\n`make lab-down` stops the lab.");
    Ok(())
}

/// busybox's httpd on port 8080 of `pod`, serving `hello from <pod>`; it stops with the lab.
fn serve_name(run: &Arc<RunDir>, pod: &sdn_tests::node::Pod) -> anyhow::Result<()> {
    let root = run.path().join(format!("www-{}", pod.ns.name()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    std::fs::write(root.join("index.html"), format!("hello from {}\n", pod.ns.name()))?;
    let mut command = std::process::Command::new("ip");
    command.args(["netns", "exec", pod.ns.name(), "busybox", "httpd", "-f", "-p", "8080", "-h"]).arg(&root);
    // A lab process: it outlives this command, recorded so that `make lab-down` stops it.
    sdn_tests::process::Process::spawn(&format!("httpd-{}", pod.ns.name()), command, run)?;
    Ok(())
}

/// The resolv.conf a runtime would write from the pod's CNI result (its node's cluster DNS, the
/// `default` namespace's search list), where `ip netns exec` puts it over `/etc/resolv.conf`.
fn write_resolv_conf(run: &RunDir, pod: &sdn_tests::node::Pod) -> anyhow::Result<()> {
    let [a, b, c, _] = pod.ip.octets();
    let dir = Path::new("/etc/netns").join(pod.ns.name());
    run.record_resource("path", &dir.display().to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = format!(
        "nameserver {a}.{b}.{c}.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    );
    std::fs::write(dir.join("resolv.conf"), text).with_context(|| format!("writing {}/resolv.conf", dir.display()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up => up(&cli.dir, &cli.prefix).await,
        Command::Down => {
            down(&cli.dir);
            println!("sdn lab is down");
            Ok(())
        }
    }
}

//! `sdn-master`: the cluster's subnet allocator and admin API.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;
use sdn_cluster::store::Store;
use sdn_master::api::{self, AppState};
use sdn_master::bootstrap::ensure_network_with_retry;
use sdn_master::config::{MasterArgs, MasterConfig, read_token};
use sdn_master::controller::Controller;
use sdn_master::leader::Elector;
use sdn_master::metrics::Metrics;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The sdn master: node registry, HostSubnet allocation and admin API.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    args: MasterArgs,
}

fn on_shutdown_signal(stop: Arc<watch::Sender<bool>>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = MasterConfig::load(Cli::parse().args)?;
    let token = read_token(&config.api.token_file)?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    let (stop, shutdown) = watch::channel(false);
    let stop = Arc::new(stop);
    on_shutdown_signal(stop.clone())?;

    tracing::info!("master {} using etcd at {}", config.name, config.etcd.endpoints_display());
    let store = Store::open(&config.etcd).await?;
    let informer = store.informer();
    let metrics = Arc::new(Metrics::default());
    let (elector, leadership) = Elector::new(store.clone(), config.name.clone(), config.lease_ttl);
    let bootstrapped = Arc::new(AtomicBool::new(false));
    let quorum = Arc::new(sdn_master::quorum::Quorum::default());
    tokio::spawn(sdn_master::quorum::run(store.clone(), quorum.clone(), shutdown.clone()));

    // The API serves probes from the start; allocation begins once the
    // cluster network is settled in etcd.
    let startup = {
        let (store, informer, metrics, leadership, bootstrapped) =
            (store.clone(), informer.clone(), metrics.clone(), leadership.clone(), bootstrapped.clone());
        let (network, shutdown) = (config.network.clone(), shutdown.clone());
        async move {
            ensure_network_with_retry(&store, &network).await?;
            bootstrapped.store(true, Ordering::Relaxed);
            let election = tokio::spawn(elector.run(shutdown));
            let controller = tokio::spawn(Controller { store, informer, leadership, metrics }.run());
            anyhow::Ok((election, controller))
        }
    };
    let state = AppState { store, informer, metrics, leadership, token: token.into(), bootstrapped, quorum };
    let serve = api::serve(&config.api, state, shutdown.clone());
    tokio::pin!(serve);
    let (mut election, controller) = tokio::select! {
        tasks = startup => tasks?,
        served = &mut serve => return served.context("admin API stopped"),
    };
    // The tasks run until shutdown; one that ends early is a bug, and a
    // master that cannot allocate must not keep the leadership.
    let failure = tokio::select! {
        served = &mut serve => served.err().map(anyhow::Error::from),
        ended = controller => Some(anyhow::anyhow!("the allocation controller stopped: {ended:?}")),
        ended = &mut election => {
            if *shutdown.borrow() {
                // Shut down as asked; the API drains on its own.
                return serve.await.context("admin API stopped");
            }
            return Err(anyhow::anyhow!("the leader election stopped: {ended:?}"));
        }
    };
    stop.send_replace(true);
    // Resigning (in the election task) lets a standby take over at once.
    let _ = election.await;
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

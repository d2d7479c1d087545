//! `sdn-master`: the cluster's subnet allocator and admin API.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sdn_cluster::store::Store;
use sdn_master::api::{self, AppState};
use sdn_master::bootstrap::ensure_network;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let config = MasterConfig::load(cli.args)?;
    let token = read_token(&config.api.token_file)?;
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;

    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });

    tracing::info!(
        "master {} connecting to etcd at {}",
        config.name,
        config.etcd.endpoints_display()
    );
    let mut interrupted = shutdown.clone();
    let store = tokio::select! {
        store = Store::connect(&config.etcd) => store?,
        _ = interrupted.wait_for(|s| *s) => return Ok(()),
    };
    ensure_network(&store, &config.network).await?;

    let informer = store.informer();
    let metrics = Arc::new(Metrics::default());
    let (elector, leadership) = Elector::new(store.clone(), config.name.clone(), config.lease_ttl);
    let election = tokio::spawn(elector.run(shutdown.clone()));
    let controller = Controller {
        store: store.clone(),
        informer: informer.clone(),
        leadership: leadership.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(controller.run());

    let state = AppState {
        store,
        informer,
        metrics,
        leadership,
        token: token.into(),
    };
    api::serve(&config.api, state, shutdown)
        .await
        .context("admin API stopped")?;
    // Resigning lets a standby take over without waiting for the lease.
    election.await.context("leader election task")?;
    Ok(())
}

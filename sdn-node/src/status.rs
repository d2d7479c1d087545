//! `/healthz`, `/readyz` and `/metrics` of the agent, on a local port.
//! Counters of the dataplane are read from the BPF maps at scrape time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sdn_ebpf_common::Decision;
use tokio::sync::watch;

use crate::bpf::Dataplane;

/// What the agent reports about itself.
#[derive(Default)]
pub struct Status {
    ready: AtomicBool,
    remotes: AtomicU64,
    tunnel_senders: AtomicU64,
    refused_subnets: AtomicU64,
    services: AtomicU64,
    backends: AtomicU64,
    reconcile_errors: AtomicU64,
    dataplane: OnceLock<Arc<Mutex<Dataplane>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl Status {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The tunnel routes and senders in the maps, and the `HostSubnet`s refused.
    pub fn set_peers(&self, remotes: usize, senders: usize, refused: usize) {
        self.remotes.store(remotes as u64, Ordering::Relaxed);
        self.tunnel_senders.store(senders as u64, Ordering::Relaxed);
        self.refused_subnets.store(refused as u64, Ordering::Relaxed);
    }

    /// The frontends in the service maps and the backends behind them.
    pub fn set_services(&self, frontends: usize, backends: usize) {
        self.services.store(frontends as u64, Ordering::Relaxed);
        self.backends.store(backends as u64, Ordering::Relaxed);
    }

    pub fn reconcile_error(&self) {
        self.reconcile_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_dataplane(&self, dataplane: Arc<Mutex<Dataplane>>) {
        let _ = self.dataplane.set(dataplane);
    }

    fn render(&self) -> String {
        let mut registry = Registry::with_prefix("sdn_node");
        let gauge = |v: u64| {
            let g: Gauge = Gauge::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g
        };
        registry.register(
            "remote_subnets",
            "Remote subnets in the tunnel map",
            gauge(self.remotes.load(Ordering::Relaxed)),
        );
        registry.register(
            "tunnel_senders",
            "Registered nodes whose VXLAN this node accepts",
            gauge(self.tunnel_senders.load(Ordering::Relaxed)),
        );
        registry.register(
            "refused_subnets",
            "HostSubnets in etcd this node refuses to believe (see the log for why)",
            gauge(self.refused_subnets.load(Ordering::Relaxed)),
        );
        registry.register(
            "services",
            "Service frontends (cluster IP, protocol, port) in the service map",
            gauge(self.services.load(Ordering::Relaxed)),
        );
        registry.register(
            "service_backends",
            "Backends of the service frontends",
            gauge(self.backends.load(Ordering::Relaxed)),
        );
        registry.register(
            "reconcile_errors",
            "Failed updates of the dataplane",
            ConstCounter::new(self.reconcile_errors.load(Ordering::Relaxed)),
        );
        if let Some(dataplane) = self.dataplane.get() {
            let dp = crate::locked(dataplane);
            registry.register(
                "pods",
                "Local endpoints in the flow table",
                gauge(dp.endpoints().map_or(0, |e| e.len() as u64)),
            );
            if let Ok(counters) = dp.counters() {
                let packets = Family::<DecisionLabel, Gauge>::default();
                let bytes = Family::<DecisionLabel, Gauge>::default();
                let drops = Family::<ReasonLabel, Gauge>::default();
                for (decision, counter) in Decision::ALL.iter().zip(counters.iter()) {
                    let label = DecisionLabel { decision: format!("{decision:?}") };
                    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    packets.get_or_create(&label).set(count(counter.packets));
                    bytes.get_or_create(&label).set(count(counter.bytes));
                    if decision.is_drop() {
                        drops.get_or_create(&ReasonLabel { reason: decision.name() }).set(count(counter.packets));
                    }
                }
                registry.register("decision_packets", "Packets per dataplane decision", packets);
                registry.register("decision_bytes", "Bytes per dataplane decision", bytes);
                registry.register("dropped_packets", "Packets the dataplane dropped, per reason", drops);
            }
        }
        let mut out = String::new();
        let _ = encode(&mut out, &registry);
        out
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(status): State<Arc<Status>>) -> (StatusCode, &'static str) {
    if status.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: the node is not built or etcd is unreachable\n")
    }
}

async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], status.render())
}

/// Serves the status endpoints until `shutdown` fires.
pub async fn serve(addr: SocketAddr, status: Arc<Status>, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(status);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("status on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

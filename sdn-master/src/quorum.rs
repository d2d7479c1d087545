//! Whether etcd can commit. A member cut off from its quorum keeps its watches open and
//! answers nothing new, so neither the informer nor the connection shows it; a linearizable
//! read every [`PROBE_EVERY`] does (it needs the leader to confirm it is still the leader).
//! `/readyz` reports the last answer, and the log each change.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sdn_cluster::store::Store;
use tokio::sync::watch;

/// How often etcd is asked.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long an answer may take before etcd counts as unable to commit.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The last probe's verdict: `None` while etcd answers, else why not.
#[derive(Debug, Default)]
pub struct Quorum {
    lost: Mutex<Option<String>>,
}

impl Quorum {
    /// Why etcd cannot commit now, if it cannot.
    pub fn lost(&self) -> Option<String> {
        self.verdict().clone()
    }

    // A panic while holding the lock cannot leave the text half-written.
    fn verdict(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a probe's outcome; whether the verdict changed.
    fn record(&self, outcome: Option<String>) -> bool {
        let mut lost = self.verdict();
        let changed = lost.is_some() != outcome.is_some();
        *lost = outcome;
        changed
    }
}

/// Asks etcd every [`PROBE_EVERY`] until `shutdown` fires.
pub async fn run(store: Store, quorum: Arc<Quorum>, mut shutdown: watch::Receiver<bool>) {
    let key = store.keys().network();
    loop {
        let mut kv = store.client().kv_client();
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, kv.get(key.as_str(), None)).await {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(format!("a linearizable read failed: {err}")),
            Err(_) => Some(format!("a linearizable read got no answer within {PROBE_TIMEOUT:?}")),
        };
        if quorum.record(outcome.clone()) {
            match outcome {
                Some(why) => tracing::error!("etcd cannot commit (has it lost its quorum?): {why}; allocation waits"),
                None => tracing::info!("etcd commits again"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_of_the_verdict_are_reported() {
        let quorum = Quorum::default();
        assert!(!quorum.record(None), "answering, as at start");
        assert!(quorum.record(Some("timeout".into())));
        assert!(!quorum.record(Some("timeout again".into())));
        assert_eq!(quorum.lost().as_deref(), Some("timeout again"));
        assert!(quorum.record(None));
        assert_eq!(quorum.lost(), None);
    }
}

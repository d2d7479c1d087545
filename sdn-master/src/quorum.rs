//! Whether etcd can commit. A member cut off from its quorum keeps its watches open and
//! answers nothing new, so neither the informer nor the connection shows it; a linearizable
//! read every [`PROBE_EVERY`] does (it needs the leader to confirm it is still the leader).
//! `/readyz` reports the last answer, and the log each change.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sdn_cluster::etcd::{EtcdError, never_sent};
use sdn_cluster::store::{Store, StoreError};
use tokio::sync::watch;

/// How often etcd is asked.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long an answer may take before etcd counts as unable to commit.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the last probe got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// No member could be reached at all.
    Unreachable(String),
    /// A member answered, but nothing it could commit: no quorum.
    CannotCommit(String),
}

/// The last probe's verdict: `None` while etcd answers.
#[derive(Debug, Default)]
pub struct Quorum {
    lost: Mutex<Option<Lost>>,
}

impl Quorum {
    /// Why etcd does not answer now, if it does not.
    pub fn lost(&self) -> Option<Lost> {
        self.verdict().clone()
    }

    // A panic while holding the lock cannot leave the verdict half-written.
    fn verdict(&self) -> std::sync::MutexGuard<'_, Option<Lost>> {
        self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a probe's outcome; whether the verdict changed (answering or not).
    fn record(&self, outcome: Option<Lost>) -> bool {
        let mut lost = self.verdict();
        let changed = lost.is_some() != outcome.is_some();
        *lost = outcome;
        changed
    }
}

/// Why a probe failed, from its error.
fn verdict(err: &StoreError) -> Lost {
    let why = format!("a linearizable read failed: {err}");
    match err {
        StoreError::Etcd(EtcdError::Client { source, .. }) if never_sent(source) => Lost::Unreachable(why),
        _ => Lost::CannotCommit(why),
    }
}

/// Asks etcd every [`PROBE_EVERY`] until `shutdown` fires. A member that is down is skipped
/// (the store sends the read to another), so what is left is an etcd that answers nothing new:
/// no quorum, or no member at all.
pub async fn run(store: Store, quorum: Arc<Quorum>, mut shutdown: watch::Receiver<bool>) {
    let key = store.keys().network();
    loop {
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, store.get(&key, None)).await {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(verdict(&err)),
            Err(_) => Some(Lost::CannotCommit(format!("a linearizable read got no answer within {PROBE_TIMEOUT:?}"))),
        };
        if quorum.record(outcome.clone()) {
            match outcome {
                Some(Lost::CannotCommit(why)) => {
                    tracing::error!("etcd cannot commit (has it lost its quorum?): {why}; allocation waits")
                }
                Some(Lost::Unreachable(why)) => tracing::error!("etcd is unreachable: {why}; allocation waits"),
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
        assert!(quorum.record(Some(Lost::CannotCommit("timeout".into()))));
        assert!(!quorum.record(Some(Lost::Unreachable("refused".into()))));
        assert_eq!(quorum.lost(), Some(Lost::Unreachable("refused".into())));
        assert!(quorum.record(None));
        assert_eq!(quorum.lost(), None);
    }

    #[test]
    fn a_record_error_is_no_outage_of_the_network() {
        let err = StoreError::Contention { what: "x".into() };
        assert!(matches!(verdict(&err), Lost::CannotCommit(_)));
    }
}

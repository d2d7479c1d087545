//! Leader election among masters.
//!
//! Every master holds an etcd lease and tries, once a tick, to create the
//! leader key bound to it. Whoever creates it leads until its lease expires
//! (crash, partition) or is revoked (clean shutdown); a standby then creates
//! the key on its next tick. The key's create revision identifies one term of
//! leadership, and every allocating transaction compares it, so a master that
//! lost the lease can never write even if it has not noticed yet.

use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use sdn_cluster::store::{Store, StoreError};
use tokio::sync::watch;

/// One term of leadership: the create revision of the leader key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub create_revision: i64,
}

/// The lease of this master and when it was last renewed.
struct Lease {
    id: i64,
    renewed: Instant,
}

pub struct Elector {
    store: Store,
    id: String,
    ttl: Duration,
    state: watch::Sender<Option<Leadership>>,
}

impl Elector {
    /// `id` names this master in the leader key; `ttl` is how long a dead
    /// leader blocks the others.
    pub fn new(store: Store, id: String, ttl: Duration) -> (Self, watch::Receiver<Option<Leadership>>) {
        let (state, rx) = watch::channel(None);
        (Self { store, id, ttl: ttl.max(Duration::from_secs(2)), state }, rx)
    }

    fn tick(&self) -> Duration {
        self.ttl / 4
    }

    /// Campaigns until `shutdown` fires, then resigns so a standby takes over
    /// at once.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut lease: Option<Lease> = None;
        let mut ticker = tokio::time::interval(self.tick());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            // A round never outlives half the TTL, so a stalled etcd cannot
            // keep this master believing it leads past its lease.
            match tokio::time::timeout(self.ttl / 2, self.round(&mut lease)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!("leader election: {err}"),
                Err(_) => tracing::warn!("leader election: etcd did not answer within {:?}", self.ttl / 2),
            }
            // Without a renewal inside the TTL, etcd may already have handed
            // leadership to another master: stop acting as leader.
            let expired = lease.as_ref().is_none_or(|l| l.renewed.elapsed() >= self.ttl - self.tick());
            if expired {
                if self.state.borrow().is_some() {
                    tracing::warn!("lost leadership: lease not renewed within {:?}", self.ttl);
                }
                self.set(None);
                if lease.as_ref().is_some_and(|l| l.renewed.elapsed() >= self.ttl) {
                    lease = None;
                }
            }
        }
        self.set(None);
        if let Some(lease) = lease {
            match self.store.client().lease_revoke(lease.id).await {
                Ok(_) => tracing::info!("resigned: lease revoked"),
                Err(err) => tracing::warn!("resigning: could not revoke lease ({err}); it expires in {:?}", self.ttl),
            }
        }
    }

    fn set(&self, leadership: Option<Leadership>) {
        self.state.send_if_modified(|current| {
            let changed = *current != leadership;
            *current = leadership;
            changed
        });
    }

    async fn round(&self, lease: &mut Option<Lease>) -> Result<(), StoreError> {
        let mut client = self.store.client();
        let current = match lease {
            Some(current) => current,
            None => {
                let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
                let grant = client.lease_grant(ttl_secs, None).await.map_err(|e| self.store.etcd_error(e))?;
                lease.insert(Lease { id: grant.id(), renewed: Instant::now() })
            }
        };
        // Each round renews over a stream of its own: opening it sends the
        // renewal and reads etcd's answer, so no answer left in a stream from
        // an earlier round or from before an etcd restart is taken as fresh.
        let sent = Instant::now();
        match client.lease_keep_alive(current.id).await {
            Ok(_) => current.renewed = sent,
            Err(etcd_client::Error::LeaseKeepAliveError(reason)) => {
                // etcd no longer knows the lease ("lease not found"): it expired.
                tracing::warn!("lease {:x} is gone ({reason}); taking a new one", current.id);
                *lease = None;
                self.set(None);
                return Ok(());
            }
            Err(err) => return Err(self.store.etcd_error(err)),
        }
        let Some(current) = lease.as_ref() else { return Ok(()) };
        let key = self.store.keys().leader();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), self.id.as_str(), Some(PutOptions::new().with_lease(current.id)))])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.store.txn(txn).await?;
        let leadership = if resp.succeeded() {
            Some(Leadership { create_revision: resp.header().map_or(0, |h| h.revision()) })
        } else {
            match resp.op_responses().first() {
                Some(TxnOpResponse::Get(get)) => get
                    .kvs()
                    .first()
                    .filter(|kv| kv.lease() == current.id)
                    .map(|kv| Leadership { create_revision: kv.create_revision() }),
                _ => None,
            }
        };
        let was = *self.state.borrow();
        match (was, leadership) {
            (None, Some(_)) => tracing::info!("became leader ({})", self.id),
            (Some(_), None) => tracing::warn!("lost leadership: another master holds {key}"),
            _ => {}
        }
        self.set(leadership);
        Ok(())
    }
}

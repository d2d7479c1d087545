//! What one client may hold of the server, so that one pod cannot starve the others: TCP
//! connections and forwards in flight per client address ([`PerClient`]), and the UDP response
//! rate limiting accounts of `sdn_dns::rrl` behind locks the UDP threads share ([`Rrl`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sdn_dns::rrl::{RateLimiter, ResponseKeys, RrlConfig, RrlError, Verdict};

use crate::locked;

/// How many of something each client address holds at once, at most `max`. Addresses are kept
/// only while they hold one, so the table is no larger than what the server's own totals let
/// all clients hold together.
#[derive(Debug)]
pub struct PerClient {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One of a client's slots; given back when dropped.
#[derive(Debug)]
pub struct ClientPermit {
    limits: Arc<PerClient>,
    client: IpAddr,
}

impl PerClient {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, held: Mutex::new(HashMap::new()) })
    }

    /// A slot for `client`, or `None` when it holds `max` already. An IPv4 client seen on a
    /// dual-stack socket counts as its IPv4 address.
    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Option<ClientPermit> {
        let client = client.to_canonical();
        let mut held = locked(&self.held);
        let count = held.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientPermit { limits: self.clone(), client })
    }

    /// Slots `client` holds now.
    pub fn held(&self, client: IpAddr) -> usize {
        locked(&self.held).get(&client.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut held = locked(&self.limits.held);
        if let Some(count) = held.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// Lock shards of the rate limiter: every UDP thread charges every response, and one lock
/// would have them queue on each other.
const RRL_SHARDS: usize = 16;

/// The UDP response rate limiter of the server, shared by its threads.
#[derive(Debug)]
pub struct Rrl {
    keys: ResponseKeys,
    shards: Box<[Mutex<RateLimiter>]>,
    /// Clients never limited: pods, whose sources the programs check, so no reply can be
    /// reflected through them, while a node's pods share one /24 and would share its accounts.
    exempt: ipnetwork::IpNetwork,
}

impl Rrl {
    /// `None` when `config` turns it off; clients in `exempt` (the cluster network) are never
    /// limited.
    pub fn new(config: &RrlConfig, exempt: ipnetwork::IpNetwork) -> Result<Option<Self>, RrlError> {
        config.validate()?;
        if !config.enabled() {
            return Ok(None);
        }
        let per_shard = config.max_accounts.div_ceil(RRL_SHARDS);
        let shards = (0..RRL_SHARDS).map(|_| Mutex::new(RateLimiter::new(config, per_shard))).collect();
        Ok(Some(Self { keys: ResponseKeys::new(config), shards, exempt }))
    }

    /// Whether to send `reply` to `client` now, send it slipped, or drop it.
    pub fn verdict(&self, client: IpAddr, reply: &[u8]) -> Verdict {
        if self.exempt.contains(client.to_canonical()) {
            return Verdict::Send;
        }
        let key = self.keys.key(client, reply);
        let shard = &self.shards[key.shard(self.shards.len())];
        locked(shard).check(key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn each_client_gets_its_own_slots_back_when_dropped() {
        let limits = PerClient::new(2);
        let a = [limits.try_acquire(ip("10.1.0.5")), limits.try_acquire(ip("::ffff:10.1.0.5"))];
        assert!(a.iter().all(Option::is_some));
        assert!(limits.try_acquire(ip("10.1.0.5")).is_none(), "over its limit");
        let b = limits.try_acquire(ip("10.1.0.6"));
        assert!(b.is_some(), "another client is not charged");
        drop(a);
        assert_eq!(limits.held(ip("10.1.0.5")), 0);
        assert!(locked(&limits.held).len() == 1, "an address holding nothing is forgotten");
        assert!(limits.try_acquire(ip("10.1.0.5")).is_some());
    }

    #[test]
    fn the_shared_limiter_charges_each_response_spares_pods_and_can_be_off() {
        let config = RrlConfig { responses_per_second: 5, slip: 1, ..RrlConfig::default() };
        let pods: ipnetwork::IpNetwork = "10.1.0.0/16".parse().expect("cluster network");
        let rrl = Rrl::new(&config, pods).expect("valid").expect("on");
        let reply = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        let verdicts: Vec<Verdict> = (0..8).map(|_| rrl.verdict(ip("192.0.2.5"), &reply)).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Send).count(), 5);
        assert_eq!(verdicts[5..], [Verdict::Slip; 3]);
        assert_eq!(rrl.verdict(ip("192.0.3.5"), &reply), Verdict::Send, "another /24");
        let pod = (0..50).map(|_| rrl.verdict(ip("::ffff:10.1.0.5"), &reply));
        assert!(pod.into_iter().all(|v| v == Verdict::Send), "pods cannot forge sources: never limited");
        let off = RrlConfig { responses_per_second: 0, ..RrlConfig::default() };
        assert!(Rrl::new(&off, pods).expect("valid").is_none());
        assert!(Rrl::new(&RrlConfig { slip: 11, ..RrlConfig::default() }, pods).is_err());
    }
}

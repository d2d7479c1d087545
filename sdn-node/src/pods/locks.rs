//! One lock per attachment. Requests for different pods interleave wherever one waits (on
//! netlink, on the namespace's thread), which keeps the pod API fast under load; requests for
//! the same pod must not, or a DEL or GC landing inside an ADD would free the address the ADD
//! is about to write into the flow map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::podapi::AttachmentKey;

#[derive(Default)]
pub struct AttachmentLocks {
    held: Mutex<HashMap<AttachmentKey, Arc<AsyncMutex<()>>>>,
}

/// Holds an attachment's lock; the entry goes when nobody holds or waits for it.
pub struct AttachmentGuard<'a> {
    locks: &'a AttachmentLocks,
    key: AttachmentKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl AttachmentLocks {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<AttachmentKey, Arc<AsyncMutex<()>>>> {
        crate::locked(&self.held)
    }

    /// Waits until no other request works on `key`, then holds it until the guard drops.
    pub async fn lock(&self, key: &AttachmentKey) -> AttachmentGuard<'_> {
        let lock = self.held().entry(key.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        AttachmentGuard { locks: self, key: key.clone(), guard: Some(guard) }
    }
}

impl Drop for AttachmentGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut held = self.locks.held();
        // Only the map's own reference left: nobody holds or waits for this lock.
        if held.get(&self.key).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> AttachmentKey {
        AttachmentKey { id: id.into(), ifname: "eth0".into() }
    }

    #[tokio::test]
    async fn one_request_per_attachment_at_a_time() {
        let locks = AttachmentLocks::default();
        let first = locks.lock(&key("a")).await;
        // Another pod is not held up.
        let other = locks.lock(&key("b")).await;
        drop(other);
        let a = key("a");
        let mut second = std::pin::pin!(locks.lock(&a));
        assert!(futures::poll!(second.as_mut()).is_pending(), "a second request for the same pod went ahead");
        drop(first);
        let second = second.await;
        assert_eq!(locks.held().len(), 1);
        drop(second);
        assert_eq!(locks.held().len(), 0, "a released lock stays in the map");
    }
}

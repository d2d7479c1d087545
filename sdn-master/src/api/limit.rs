//! A bound on the admin API's open connections.
//!
//! axum-server awaits the make-service future of each accepted connection
//! before it accepts the next, so waiting for a permit there stops accepting:
//! connections beyond the limit wait in the kernel's listen backlog instead of
//! each holding a task, a descriptor and a TLS handshake. The permit travels
//! with the connection's service and is returned when hyper drops it, that is
//! when the connection closes (for a slow client, at the header timeout).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a make-service (one service per connection) so that at most
/// `max` connections are served at once.
#[derive(Clone)]
pub struct ConnectionLimit<M> {
    inner: M,
    permits: Arc<Semaphore>,
}

impl<M> ConnectionLimit<M> {
    pub fn new(inner: M, max: usize) -> Self {
        Self { inner, permits: Arc::new(Semaphore::new(max)) }
    }
}

impl<M, T> Service<T> for ConnectionLimit<M>
where
    M: Service<T>,
    M::Error: Into<BoxError>,
    M::Future: Send + 'static,
{
    type Response = Held<M::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: T) -> Self::Future {
        let permits = self.permits.clone();
        let made = self.inner.call(target);
        Box::pin(async move {
            // The semaphore is never closed; if it were, the connection is
            // dropped (axum-server skips a connection whose service fails).
            let permit = permits.acquire_owned().await?;
            let service = made.await.map_err(Into::into)?;
            Ok(Held { service, _permit: Arc::new(permit) })
        })
    }
}

/// A connection's service with its permit. hyper clones the service for each
/// request, so the permit is shared and returned with the last clone.
#[derive(Clone)]
pub struct Held<S> {
    service: S,
    _permit: Arc<OwnedSemaphorePermit>,
}

impl<S, R> Service<R> for Held<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.service.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::{Ready, ready};
    use std::time::Duration;

    use super::*;

    /// A make-service whose per-connection service is a unit.
    #[derive(Clone)]
    struct Units;

    impl Service<u32> for Units {
        type Response = ();
        type Error = Infallible;
        type Future = Ready<Result<(), Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: u32) -> Self::Future {
            ready(Ok(()))
        }
    }

    async fn connect(limit: &mut ConnectionLimit<Units>) -> Option<Held<()>> {
        tokio::time::timeout(Duration::from_millis(50), limit.call(0)).await.ok().and_then(Result::ok)
    }

    #[tokio::test]
    async fn a_connection_past_the_limit_waits_until_one_closes() {
        let mut limit = ConnectionLimit::new(Units, 2);
        let first = connect(&mut limit).await.expect("first served");
        let second = connect(&mut limit).await.expect("second served");
        assert!(connect(&mut limit).await.is_none(), "a third waits");

        // A request's clone keeps the permit; only the last one returns it.
        let request = first.clone();
        drop(first);
        assert!(connect(&mut limit).await.is_none(), "still held by the request");
        drop(request);
        let third = connect(&mut limit).await.expect("served once a connection closed");
        drop((second, third));
        assert_eq!(limit.permits.available_permits(), 2);
    }
}

//! The DNS listeners: UDP and TCP on each address, answering from the shared index (the answers
//! themselves are `sdn-dns`'s), forwarding the rest upstream.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use sdn_dns::rrl::Verdict;
use sdn_dns::{AccessList, Index, Outcome, Request, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::cache::ReplyCache;
use super::limits::{ClientPermit, PerClient, Rrl};
use super::upstream::{Upstreams, in_namespace};

/// A TCP client that sends nothing for this long is hung up on (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// A TCP client that takes no reply for this long is hung up on: one that never reads would
/// otherwise hold its connection, and its task, for good (the idle timeout only runs while
/// the server waits for a query).
pub const TCP_WRITE: Duration = Duration::from_secs(5);
/// How often a UDP worker blocked in a receive looks whether it should stop.
const UDP_POLL: Duration = Duration::from_millis(250);
/// TCP connections served at once; more are closed at accept, so no client can exhaust memory.
pub const TCP_CONNECTIONS: usize = 256;
/// TCP connections of clients that are not served (each gets one REFUSED).
const OUTSIDER_CONNECTIONS: usize = 32;
/// Queries forwarded upstream at once; more are answered SERVFAIL at once, so a flood of
/// outside names cannot exhaust the agent's tasks and file descriptors.
pub const FORWARDS: usize = 512;
/// How long the acceptor waits after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("DNS on {proto} {addr}: {source}")]
pub struct BindError {
    proto: &'static str,
    addr: SocketAddr,
    source: std::io::Error,
}

/// What every listener task shares.
pub struct Shared {
    pub index: RwLock<Index>,
    /// Bumped on every change of the index, so cached replies of the old one are not served.
    pub generation: AtomicU64,
    pub allow: AccessList,
    pub upstreams: Upstreams,
    /// The largest UDP reply (and what our OPT advertises).
    pub udp_max: u16,
    /// Permits for queries in flight upstream ([`FORWARDS`]).
    pub forwards: Arc<Semaphore>,
    /// Forwards in flight per client (`--dns-forwards-per-client`), taken before one of
    /// [`Self::forwards`], so a client over its own limit takes nothing from the others.
    pub client_forwards: Arc<PerClient>,
    /// TCP connections per client (`--dns-tcp-connections-per-client`).
    pub client_connections: Arc<PerClient>,
    /// UDP response rate limiting; `None` when off.
    pub rrl: Option<Rrl>,
}

/// The slots a query holds while it is upstream: its client's and one of the server's.
pub struct ForwardSlot {
    _client: ClientPermit,
    _server: OwnedSemaphorePermit,
}

impl Shared {
    fn decide(&self, query: &[u8], client: IpAddr, transport: Transport) -> Outcome {
        if !self.allow.allows(client) {
            return sdn_dns::refuse(query, transport);
        }
        self.answer(query, transport)
    }

    /// The answer from the index, for a client that is allowed.
    fn answer(&self, query: &[u8], transport: Transport) -> Outcome {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        sdn_dns::respond(&index, query, transport)
    }

    /// The slots for forwarding `client`'s query, or the reply to send at once instead:
    /// REFUSED when there is no upstream (the server is nobody's resolver then), SERVFAIL when
    /// the client or the server has as many queries upstream as it may. SERVFAIL, not REFUSED
    /// (which CoreDNS's `max_concurrent` answers): the condition passes in a second or two,
    /// SERVFAIL is the answer for "failed this time", and REFUSED here already means "never
    /// from this server" (outsiders, no upstream).
    fn forward_slot(&self, request: &Request, client: IpAddr) -> Result<ForwardSlot, Vec<u8>> {
        if self.upstreams.servers.is_empty() {
            return Err(request.error_reply(ResponseCode::Refused));
        }
        let busy = || request.error_reply(ResponseCode::ServFail);
        let client = self.client_forwards.try_acquire(client).ok_or_else(busy)?;
        let server = self.forwards.clone().try_acquire_owned().map_err(|_| busy())?;
        Ok(ForwardSlot { _client: client, _server: server })
    }

    /// The upstream's answer to a query for a name outside the cluster, SERVFAIL when none
    /// answers.
    async fn forward(&self, query: &[u8], request: &Request, tcp: bool, _slot: ForwardSlot) -> Vec<u8> {
        match self.upstreams.forward(query, tcp).await {
            Some(reply) => reply,
            None => request.error_reply(ResponseCode::ServFail),
        }
    }

    /// Sends a UDP reply, or its slipped form, or nothing, as the rate limiter says.
    fn send_udp(&self, socket: &std::net::UdpSocket, reply: &[u8], client: SocketAddr) {
        let sent = match self.rrl.as_ref().map_or(Verdict::Send, |rrl| rrl.verdict(client.ip(), reply)) {
            Verdict::Send => socket.send_to(reply, client),
            Verdict::Slip => match sdn_dns::rrl::slipped(reply) {
                Some(cut) => socket.send_to(&cut, client),
                None => return,
            },
            Verdict::Drop => return,
        };
        if let Err(err) = sent {
            tracing::debug!("DNS reply to {client}: {err}");
        }
    }
}

/// Permits for the forwards of the server: [`FORWARDS`] at once.
pub fn forward_permits() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(FORWARDS))
}

/// The listeners of the server: UDP worker threads and TCP tasks (each acceptor owns its
/// connections), stopped when this is dropped, also when opening them failed half-way.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    _tcp: JoinSet<()>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        // The UDP threads notice within one receive timeout; nobody waits for them.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Opens UDP and TCP listeners on every address of `listen` inside `netns` (the node's).
///
/// UDP is served by one thread per core, each on its own socket of the address
/// (`SO_REUSEPORT`, so the kernel spreads the queries) with blocking receives and a reply cache
/// of its own: a query costs two system calls and, on a hit, a copy. TCP, rarer and slower,
/// runs on the agent's runtime.
pub fn start(shared: Arc<Shared>, listen: &[SocketAddr], netns: Option<&Path>) -> Result<Listeners, BindError> {
    let mut listeners = Listeners { stop: Arc::new(AtomicBool::new(false)), _tcp: JoinSet::new() };
    let stop = listeners.stop.clone();
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let limit = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    let runtime = tokio::runtime::Handle::current();
    for &addr in listen {
        let bind_err = |proto| move |source| BindError { proto, addr, source };
        for _ in 0..workers {
            let socket = in_namespace(netns, || reuse_port_udp(addr)).map_err(bind_err("UDP"))?;
            socket.set_read_timeout(Some(UDP_POLL)).map_err(bind_err("UDP"))?;
            let (shared, runtime, stop) = (shared.clone(), runtime.clone(), stop.clone());
            std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || udp_worker(&socket, &shared, &runtime, &stop))
                .map_err(bind_err("UDP"))?;
        }
        let tcp = in_namespace(netns, || std::net::TcpListener::bind(addr)).map_err(bind_err("TCP"))?;
        tcp.set_nonblocking(true).map_err(bind_err("TCP"))?;
        let tcp = TcpListener::from_std(tcp).map_err(bind_err("TCP"))?;
        listeners._tcp.spawn(tcp_acceptor(tcp, shared.clone(), limit.clone()));
        tracing::info!("cluster DNS on {addr} (UDP and TCP)");
    }
    Ok(listeners)
}

/// A UDP socket bound to `addr` that other sockets may bind too (`SO_REUSEPORT`).
fn reuse_port_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn udp_worker(socket: &std::net::UdpSocket, shared: &Arc<Shared>, runtime: &tokio::runtime::Handle, stop: &AtomicBool) {
    let (mut buf, mut out) = (vec![0u8; 65535], Vec::with_capacity(4096));
    let mut cache = ReplyCache::default();
    let transport = Transport::Udp { max_size: shared.udp_max };
    while !stop.load(Ordering::Relaxed) {
        let (len, client) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(err) => {
                tracing::debug!("DNS receive: {err}");
                continue;
            }
        };
        let query = &buf[..len];
        let allowed = shared.allow.allows(client.ip());
        let generation = shared.generation.load(Ordering::Acquire);
        if allowed && cache.get(query, generation, &mut out) {
            shared.send_udp(socket, &out, client);
            continue;
        }
        let outcome = if allowed { shared.answer(query, transport) } else { sdn_dns::refuse(query, transport) };
        let reply = match outcome {
            Outcome::Reply(bytes) => {
                if allowed {
                    cache.put(query, generation, &bytes);
                }
                bytes
            }
            Outcome::Refuse(bytes) => bytes,
            Outcome::Forward(request) => {
                let slot = match shared.forward_slot(&request, client.ip()) {
                    Ok(slot) => slot,
                    Err(reply) => {
                        shared.send_udp(socket, &reply, client);
                        continue;
                    }
                };
                // Off this thread: an upstream may take seconds.
                let Ok(reply_socket) = socket.try_clone() else { continue };
                let (shared, query) = (shared.clone(), query.to_vec());
                runtime.spawn(async move {
                    let reply = shared.forward(&query, &request, false, slot).await;
                    shared.send_udp(&reply_socket, &reply, client);
                });
                continue;
            }
            Outcome::Drop => continue,
        };
        shared.send_udp(socket, &reply, client);
    }
}

async fn tcp_acceptor(listener: TcpListener, shared: Arc<Shared>, limit: Arc<Semaphore>) {
    // The connections go with the acceptor (and so with the server).
    let mut connections = JoinSet::new();
    let outsiders = Arc::new(Semaphore::new(OUTSIDER_CONNECTIONS));
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::debug!("DNS accept: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Outsiders get one REFUSED per connection from a small pool of their own, so they can
        // never hold the slots of the clients that are served. A client over its own limit is
        // closed at once, before it takes one of the pool's: one pod opening connections as
        // fast as it can then holds its share, not the node's.
        let allowed = shared.allow.allows(client.ip());
        let Some(own) = shared.client_connections.try_acquire(client.ip()) else { continue };
        let pool = if allowed { &limit } else { &outsiders };
        let Ok(permit) = pool.clone().try_acquire_owned() else { continue };
        while connections.try_join_next().is_some() {}
        connections.spawn(tcp_connection(stream, client.ip(), shared.clone(), (own, permit), allowed));
    }
}

/// Serves length-prefixed queries on one connection until the client stops, idles, takes no
/// reply for [`TCP_WRITE`] or sends something that gets no answer; an outsider's connection
/// ends after its first reply.
async fn tcp_connection(
    mut stream: TcpStream,
    client: IpAddr,
    shared: Arc<Shared>,
    _permits: (ClientPermit, OwnedSemaphorePermit),
    allowed: bool,
) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else { return };
        let mut query = vec![0u8; usize::from(len)];
        let Ok(Ok(_)) = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await else { return };
        let reply = match shared.decide(&query, client, Transport::Tcp) {
            Outcome::Reply(bytes) | Outcome::Refuse(bytes) => bytes,
            Outcome::Forward(request) => match shared.forward_slot(&request, client) {
                Ok(slot) => shared.forward(&query, &request, true, slot).await,
                Err(reply) => reply,
            },
            Outcome::Drop => return,
        };
        let Ok(len) = u16::try_from(reply.len()) else { return };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        let written = tokio::time::timeout(TCP_WRITE, stream.write_all(&framed)).await;
        if !matches!(written, Ok(Ok(()))) || !allowed {
            return;
        }
    }
}

//! Forwarding names outside the cluster to the upstream resolvers, as CoreDNS's `forward`
//! does: the client's query as it came, to each upstream in turn until one answers; UDP for
//! UDP clients (the upstream honours their EDNS size and sets TC itself), TCP for TCP clients.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one upstream gets to answer before the next is asked.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The upstream resolvers and the namespace their sockets are made in (the node's: that is
/// where the routes to them are).
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub servers: Vec<SocketAddr>,
    pub netns: Option<std::path::PathBuf>,
}

impl Upstreams {
    /// The answer of the first upstream that gives one, or `None` if none does.
    pub async fn forward(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        for server in &self.servers {
            let answered = if tcp { self.over_tcp(*server, query).await } else { self.over_udp(*server, query).await };
            match answered {
                Ok(reply) => return Some(reply),
                Err(err) => tracing::debug!("upstream {server}: {err}"),
            }
        }
        None
    }

    async fn over_udp(&self, server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
        let any: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = in_namespace(self.netns.as_deref(), || std::net::UdpSocket::bind(any))?;
        socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        // Connected: the kernel drops datagrams from anyone but the upstream.
        socket.connect(server).await?;
        socket.send(query).await?;
        let mut buf = vec![0u8; 65535];
        loop {
            let len = tokio::time::timeout(TIMEOUT, socket.recv(&mut buf)).await??;
            // Only a reply to this query (same ID, QR set) is taken; anything else is waited past.
            if len >= 12 && buf[..2] == query[..2] && buf[2] & 0x80 != 0 {
                buf.truncate(len);
                return Ok(buf);
            }
        }
    }

    async fn over_tcp(&self, server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
        let exchange = async {
            let socket = in_namespace(self.netns.as_deref(), || {
                if server.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            })?;
            let mut stream = socket.connect(server).await?;
            let len = u16::try_from(query.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
            stream.write_all(&len.to_be_bytes()).await?;
            stream.write_all(query).await?;
            let len = stream.read_u16().await?;
            let mut reply = vec![0u8; usize::from(len)];
            stream.read_exact(&mut reply).await?;
            Ok::<_, std::io::Error>(reply)
        };
        tokio::time::timeout(TIMEOUT, exchange).await?
    }
}

/// Runs `make` inside `netns` (or right here without one), for sockets.
pub fn in_namespace<T>(netns: Option<&Path>, make: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    match netns {
        Some(path) => crate::netns::made_in(path, make).map_err(std::io::Error::other)?,
        None => make(),
    }
}

/// The nameservers of a `resolv.conf`, port 53.
pub fn from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| line.split('#').next())
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        // A scoped IPv6 address (fe80::1%eth0) names an interface of the host's namespace.
        .filter_map(|addr| addr.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53 # v6\n\
                    nameserver fe80::1%eth0\noptions ndots:2\n  nameserver 198.51.100.1\nnameserverx 1.1.1.1\n";
        let found: Vec<String> = from_resolv_conf(text).iter().map(ToString::to_string).collect();
        assert_eq!(found, ["192.0.2.53:53", "[2001:db8::53]:53", "198.51.100.1:53"]);
        assert!(from_resolv_conf("").is_empty());
    }
}

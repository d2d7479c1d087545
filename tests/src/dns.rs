//! DNS from the test's side: `dig` run inside a namespace with its answer parsed, a fake
//! upstream resolver that answers every question with one address (at once, or late for some
//! names), and floods: UDP queries sent faster than any stub resolver would, TCP connections
//! held open, TCP clients that never read.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::backend::in_netns;
use crate::netns::Netns;

/// One resource record as `dig` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub kind: String,
    pub data: String,
}

/// What `dig` printed: the header's status and flags, and the three sections.
#[derive(Debug, Clone, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
    pub raw: String,
}

impl Dig {
    /// The data of the answer records of `kind`, sorted.
    pub fn data(&self, kind: &str) -> Vec<String> {
        let mut found: Vec<String> = self.answer.iter().filter(|r| r.kind == kind).map(|r| r.data.clone()).collect();
        found.sort();
        found
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Runs `dig <args>` inside `ns` (one try, two seconds) and parses what it prints.
pub fn dig(ns: &Netns, args: &[&str]) -> Dig {
    let mut command = vec!["dig", "+tries=1", "+time=2"];
    command.extend_from_slice(args);
    let out = ns.exec(&command);
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(text: &str) -> Dig {
    let mut dig = Dig { raw: text.to_owned(), ..Dig::default() };
    let mut section = None;
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            dig.status = rest.split(',').next().unwrap_or_default().to_owned();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            dig.flags = rest.split(';').next().unwrap_or_default().split_whitespace().map(String::from).collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = Some(0);
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = Some(1);
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = Some(2);
        } else if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = None;
            }
        } else if let Some(section) = section {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() >= 5 {
                let rr = Rr {
                    name: words[0].to_owned(),
                    ttl: words[1].parse().unwrap_or(u32::MAX),
                    kind: words[3].to_owned(),
                    data: words[4..].join(" "),
                };
                [&mut dig.answer, &mut dig.authority, &mut dig.additional][section].push(rr);
            }
        }
    }
    dig
}

/// A resolver in a namespace of the test's that answers every question with an A record of
/// [`FakeUpstream::ADDRESS`] and counts the questions (as they arrive). Stops when dropped.
pub struct FakeUpstream {
    stop: Arc<AtomicBool>,
    pub queries: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);

    /// The label prefix of the names [`FakeUpstream::start_slow`] answers late.
    pub const SLOW: &'static str = "slow";

    pub fn start(ns: &Netns, listen: SocketAddr) -> std::io::Result<Self> {
        Self::start_slow(ns, listen, Duration::ZERO)
    }

    /// As [`FakeUpstream::start`], but names whose first label starts with
    /// [`FakeUpstream::SLOW`] are answered `delay` late (an upstream that struggles with them).
    pub fn start_slow(ns: &Netns, listen: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        let netns = std::fs::File::open(ns.path())?;
        let (stop, queries) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (thread_stop, thread_queries) = (stop.clone(), queries.clone());
        let thread = std::thread::spawn(move || {
            // SAFETY: setns on a descriptor this thread owns; it moves only this thread.
            let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
            let socket = if entered {
                // Short receive timeouts: late answers go out within that much of their time.
                UdpSocket::bind(listen).and_then(|s| s.set_read_timeout(Some(Duration::from_millis(10))).map(|()| s))
            } else {
                Err(std::io::Error::last_os_error())
            };
            let socket = match socket {
                Ok(socket) => {
                    let _ = ready_tx.send(Ok(()));
                    socket
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            let mut buf = [0u8; 512];
            // Late answers by due time; one delay for all, so in arrival order.
            let mut late: VecDeque<(Instant, Vec<u8>, SocketAddr)> = VecDeque::new();
            while !thread_stop.load(Ordering::Relaxed) {
                while late.front().is_some_and(|(due, _, _)| *due <= Instant::now()) {
                    if let Some((_, reply, to)) = late.pop_front() {
                        let _ = socket.send_to(&reply, to);
                    }
                }
                let Ok((len, from)) = socket.recv_from(&mut buf) else { continue };
                if let Some(reply) = answer(&buf[..len]) {
                    thread_queries.fetch_add(1, Ordering::Relaxed);
                    let first_label = buf.get(13..13 + usize::from(buf[12])).unwrap_or_default();
                    if !delay.is_zero() && first_label.starts_with(Self::SLOW.as_bytes()) {
                        late.push_back((Instant::now() + delay, reply, from));
                    } else {
                        let _ = socket.send_to(&reply, from);
                    }
                }
            }
        });
        ready_rx.recv().map_err(|_| std::io::Error::other("fake upstream thread died"))??;
        Ok(Self { stop, queries, thread: Some(thread) })
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A query for `name` (dotted, type A, class IN, RD set, no EDNS) with `id`, by hand.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        out.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

/// What came back to a [`udp_flood`], by the replies' headers, each query counted once.
#[derive(Debug, Clone, Default)]
pub struct Flood {
    pub sent: usize,
    /// NOERROR with records, TC clear.
    pub answered: usize,
    /// TC set (rate limiting's slip sends these with no records at all).
    pub truncated: usize,
    pub servfail: usize,
    /// Any other reply.
    pub other: usize,
    /// From the first query to the last.
    pub sending: Duration,
}

impl Flood {
    /// Queries that got no reply.
    pub fn missing(&self) -> usize {
        self.sent.saturating_sub(self.answered + self.truncated + self.servfail + self.other)
    }
}

/// Sends a query for each of `names` from one UDP socket inside `ns` to `server`, `per_second`
/// of them, and counts the replies until `linger` after the last query.
pub fn udp_flood(
    ns: &Netns,
    server: SocketAddr,
    names: &[String],
    per_second: u32,
    linger: Duration,
) -> Result<Flood, String> {
    let ids = u16::try_from(names.len()).map_err(|_| "at most 65535 queries, one ID each".to_owned())?;
    in_netns(ns, || {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).and_then(|s| s.set_nonblocking(true).map(|()| s));
        let socket = socket.map_err(|e| format!("a UDP socket: {e}"))?;
        let mut flood = Flood { sent: usize::from(ids), ..Flood::default() };
        let mut seen = vec![false; usize::from(ids)];
        let mut buf = [0u8; 4096];
        let mut take = |socket: &UdpSocket, flood: &mut Flood| {
            while let Ok(len) = socket.recv(&mut buf) {
                let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if len < 12 || id >= seen.len() || seen[id] {
                    continue;
                }
                seen[id] = true;
                let answers = u16::from_be_bytes([buf[6], buf[7]]);
                match (buf[2] & 0x02 != 0, buf[3] & 0x0f) {
                    (true, _) => flood.truncated += 1,
                    (false, 0) if answers > 0 => flood.answered += 1,
                    (false, 2) => flood.servfail += 1,
                    _ => flood.other += 1,
                }
            }
        };
        let start = Instant::now();
        let gap = Duration::from_secs(1) / per_second.max(1);
        for (id, name) in (0..ids).zip(names) {
            // Paced by the clock, not by sleeps, which overshoot at these rates.
            while start.elapsed() < gap * u32::from(id) {
                take(&socket, &mut flood);
                std::hint::spin_loop();
            }
            let _ = socket.send_to(&query(id, name), server);
            take(&socket, &mut flood);
        }
        flood.sending = start.elapsed();
        let until = Instant::now() + linger;
        while Instant::now() < until {
            take(&socket, &mut flood);
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(flood)
    })?
}

/// `count` TCP connections from inside `ns` to `server`, held open and silent.
pub fn hold_tcp(ns: &Netns, server: SocketAddr, count: usize) -> Result<Vec<TcpStream>, String> {
    in_netns(ns, || {
        (0..count)
            .map(|i| {
                TcpStream::connect_timeout(&server, Duration::from_secs(5))
                    .map_err(|e| format!("connection {i} to {server}: {e}"))
            })
            .collect()
    })?
}

/// How many of `streams` the server has not closed: a read that would block.
pub fn still_open(streams: &[TcpStream]) -> usize {
    let mut byte = [0u8; 1];
    streams
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).is_ok()
                && matches!((&**stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count()
}

/// A TCP connection from inside `ns` to `server` that sends `count` queries for `name` and
/// never reads a reply.
pub fn never_reading(ns: &Netns, server: SocketAddr, name: &str, count: u16) -> Result<TcpStream, String> {
    in_netns(ns, || {
        let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))
            .map_err(|e| format!("connecting to {server}: {e}"))?;
        let mut framed = Vec::new();
        for id in 0..count {
            let query = query(id, name);
            framed.extend_from_slice(&u16::try_from(query.len()).unwrap_or(u16::MAX).to_be_bytes());
            framed.extend_from_slice(&query);
        }
        stream.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        stream.write_all(&framed).map_err(|e| format!("sending {count} queries: {e}"))?;
        Ok(stream)
    })?
}

/// The reply to a one-question query: the question echoed and one A record, by hand, so the
/// harness needs no DNS library. `None` for what is not a plain query.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    // The question ends after the name's zero label and four bytes of type and class.
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += usize::from(query[at]) + 1;
    }
    let end = at + 5;
    let mut reply = query.get(..end)?.to_vec();
    reply[2] = 0x81; // QR, RD
    reply[3] = 0x80; // RA, NOERROR
    reply[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    reply.extend_from_slice(&FakeUpstream::ADDRESS.octets());
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dig_output_is_parsed() {
        let text = "\
; <<>> DiG 9.18 <<>> web.default.svc.cluster.local
;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1
;; flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 1, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; QUESTION SECTION:
;web.default.svc.cluster.local.	IN	A

;; ANSWER SECTION:
web.default.svc.cluster.local. 30 IN	A	172.30.0.10

;; AUTHORITY SECTION:
cluster.local.		5	IN	SOA	ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5

;; Query time: 0 msec
";
        let dig = parse(text);
        assert_eq!(dig.status, "NXDOMAIN");
        assert!(dig.has_flag("aa") && !dig.has_flag("tc"));
        assert_eq!(dig.data("A"), ["172.30.0.10"]);
        assert_eq!(dig.answer[0].ttl, 30);
        assert_eq!(dig.authority[0].kind, "SOA");
        assert!(dig.authority[0].data.ends_with(" 5"));
    }

    #[test]
    fn the_fake_upstream_answers_a_query() {
        let query = [0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
        let reply = answer(&query).expect("reply");
        assert_eq!(&reply[..2], &[0xab, 0xcd]);
        assert!(reply.ends_with(&FakeUpstream::ADDRESS.octets()));
        assert_eq!(answer(&query[..10]), None);
        assert_eq!(super::query(0xabcd, "a."), [0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1]);
    }
}

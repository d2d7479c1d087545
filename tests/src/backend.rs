//! Service backends and clients inside pod namespaces, on threads of the test that entered
//! them: a server that answers every TCP connection and UDP datagram with its name (and then
//! echoes what a TCP client sends), and clients that report the answer and the peer the
//! client's socket saw, which for a service must be the cluster IP.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::Netns;

/// Runs `work` on a thread that entered `ns`.
pub fn in_netns<T: Send>(ns: &Netns, work: impl FnOnce() -> T + Send) -> Result<T, String> {
    let file = std::fs::File::open(ns.path()).map_err(|e| format!("{}: {e}", ns.path().display()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on a descriptor we own; it moves only this thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(format!("entering {}: {}", ns.name(), std::io::Error::last_os_error()));
                }
                Ok(work())
            })
            .join()
            .unwrap_or_else(|_| Err("the thread in the namespace panicked".into()))
    })
}

/// Answers on a TCP and a UDP port of a pod with its name, until dropped; on TCP `port + 1` it
/// sends the name and closes, without a thread per connection (for connection-rate runs).
pub struct NameServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl NameServer {
    /// Serves `name` on TCP and UDP `port` of `ns` (all its addresses).
    pub fn start(ns: &Netns, port: u16, name: &str) -> Result<Self, String> {
        let (tcp, quick, udp) = in_netns(ns, || {
            let tcp = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("TCP {port}: {e}"))?;
            let quick = TcpListener::bind(("0.0.0.0", port + 1)).map_err(|e| format!("TCP {}: {e}", port + 1))?;
            let udp = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| format!("UDP {port}: {e}"))?;
            Ok::<_, String>((tcp, quick, udp))
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
        udp.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
        let (tcp_stop, udp_stop, tcp_name, udp_name) = (stop.clone(), stop.clone(), name.to_owned(), name.to_owned());
        let tcp_thread = std::thread::spawn(move || {
            while !tcp_stop.load(Ordering::Relaxed) {
                if !readable(&tcp) {
                    continue;
                }
                if let Ok((mut stream, _)) = tcp.accept() {
                    // The name at once, before a thread is made for the echo: a connection-rate
                    // run measures the network, not thread creation.
                    if stream.write_all(format!("{tcp_name}\n").as_bytes()).is_ok() {
                        let stop = tcp_stop.clone();
                        std::thread::spawn(move || echo(stream, &stop));
                    }
                }
            }
        });
        let (quick_stop, quick_name) = (stop.clone(), format!("{name}\n"));
        let quick_thread = std::thread::spawn(move || {
            while !quick_stop.load(Ordering::Relaxed) {
                if readable(&quick)
                    && let Ok((mut stream, _)) = quick.accept()
                {
                    let _ = stream.write_all(quick_name.as_bytes());
                }
            }
        });
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !udp_stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(udp_name.as_bytes(), from);
                }
            }
        });
        Ok(Self { stop, threads: vec![tcp_thread, quick_thread, udp_thread] })
    }
}

/// Whether `listener` has a connection to accept, waiting at most 50 ms (so a stop is seen).
fn readable(listener: &TcpListener) -> bool {
    let mut ready = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd that lives for the call.
    unsafe { libc::poll(&mut ready, 1, 50) > 0 }
}

/// Echoes until the client closes or the server stops.
fn echo(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A TCP connection made from inside a pod: the server's name and the peer the socket saw.
pub struct Connection {
    pub stream: TcpStream,
    pub name: String,
    pub peer: SocketAddr,
}

impl Connection {
    /// Connects from `ns` to `to` (within `timeout`) and reads the server's name.
    pub fn open(ns: &Netns, to: SocketAddrV4, timeout: Duration) -> Result<Self, std::io::Error> {
        let stream =
            in_netns(ns, || TcpStream::connect_timeout(&to.into(), timeout)).map_err(std::io::Error::other)??;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        let peer = stream.peer_addr()?;
        let mut name = Vec::new();
        let mut byte = [0u8; 1];
        while (&stream).read(&mut byte)? == 1 && byte[0] != b'\n' {
            name.push(byte[0]);
        }
        Ok(Self { stream, name: String::from_utf8_lossy(&name).into_owned(), peer })
    }

    /// Sends `data` and reads it back.
    pub fn echo(&mut self, data: &[u8]) -> Result<(), std::io::Error> {
        self.stream.write_all(data)?;
        let mut back = vec![0u8; data.len()];
        self.stream.read_exact(&mut back)?;
        if back == data { Ok(()) } else { Err(std::io::Error::other("the echo differs")) }
    }
}

/// One UDP question from inside a pod: the answer and where it came from; an ICMP refusal is an
/// error naming "refused".
pub fn udp_ask(ns: &Netns, to: SocketAddrV4) -> Result<(String, SocketAddr), String> {
    udp_ask_from(ns, 0, to)
}

/// [`udp_ask`] from source port `port` (0: any), so that questions can share one flow.
pub fn udp_ask_from(ns: &Netns, port: u16, to: SocketAddrV4) -> Result<(String, SocketAddr), String> {
    in_netns(ns, || {
        let socket = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| e.to_string())?;
        socket.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        // Connected, so an ICMP port unreachable comes back as ECONNREFUSED, as for a client.
        socket.connect(to).map_err(|e| e.to_string())?;
        socket.send(b"who").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let (n, from) = socket.recv_from(&mut buf).map_err(|e| format!("no UDP answer from {to}: {e}"))?;
        Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
    })?
}

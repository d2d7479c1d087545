//! Forged traffic, as an attacker in a pod or on the underlay would send it: a VXLAN datagram
//! (an ordinary UDP payload to a node's VXLAN port) whose inner frame claims any source.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use crate::backend::in_netns;
use crate::netns::Netns;

/// The UDP port the forged inner datagrams are for.
pub const INNER_PORT: u16 = 7777;

/// A VXLAN payload (VNI 0) carrying an Ethernet frame with an IPv4/UDP datagram from `source` to
/// `destination`:[`INNER_PORT`] holding `payload`.
pub fn vxlan_payload(source: Ipv4Addr, destination: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x08, 0, 0, 0, 0, 0, 0, 0];
    frame.extend([0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend(source.octets());
    ip.extend(destination.octets());
    let sum = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let check = !(((folded & 0xffff) + (folded >> 16)) as u16);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    frame.extend(ip);
    frame.extend(40000u16.to_be_bytes());
    frame.extend(INNER_PORT.to_be_bytes());
    frame.extend(((8 + payload.len()) as u16).to_be_bytes());
    // UDP checksum 0: none, which IPv4 allows.
    frame.extend([0, 0]);
    frame.extend(payload);
    frame
}

/// Sends `payload` from `from` to `to` over UDP.
pub fn send_udp(from: &Netns, to: SocketAddrV4, payload: &[u8]) -> Result<(), String> {
    in_netns(from, || {
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        socket.send_to(payload, to).map(drop).map_err(|e| format!("sending to {to}: {e}"))
    })?
}

/// Sends `payload` from `from` to `to` over UDP, from its local address `source`.
pub fn send_udp_from(from: &Netns, source: Ipv4Addr, to: SocketAddrV4, payload: &[u8]) -> Result<(), String> {
    in_netns(from, || {
        let socket = UdpSocket::bind((source, 0)).map_err(|e| format!("binding {source}: {e}"))?;
        socket.send_to(payload, to).map(drop).map_err(|e| format!("sending to {to}: {e}"))
    })?
}

/// Listens on [`INNER_PORT`] in `ns`, runs `send`, and returns what arrived within a second.
pub fn arrives(ns: &Netns, send: impl FnOnce() -> Result<(), String>) -> Result<Option<Vec<u8>>, String> {
    let socket = in_netns(ns, || UdpSocket::bind(("0.0.0.0", INNER_PORT)).map_err(|e| e.to_string()))??;
    socket.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    send()?;
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Ok(Some(buf[..n].to_vec())),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inner_header_checksum_verifies() {
        let payload = vxlan_payload(Ipv4Addr::new(10, 1, 1, 66), Ipv4Addr::new(10, 1, 0, 2), b"forged");
        let ip = &payload[8 + 14..8 + 14 + 20];
        let sum: u32 = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
        assert_eq!(&payload[payload.len() - 6..], b"forged");
    }
}

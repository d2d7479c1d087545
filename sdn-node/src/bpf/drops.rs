//! `sdn-node drops`: the packets the programs drop, as they drop them (as `cilium monitor --type
//! drop` shows them). The programs write a [`DropEvent`] per drop into the pinned ring buffer
//! `SDN_DROPS`; this reads it. Reading consumes: two readers at once share the events.
//!
//! [`describe`] is the pure part: one line per event, with the reason, the interface and what
//! the packet's first bytes say (a VXLAN frame's inner packet too).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use aya::maps::{Map, MapData, RingBuf};
use sdn_ebpf_common::{DROP_CAPTURE, Decision, DropEvent, MAP_DROPS};

use super::BpfError;

/// The drop ring buffer of a node, opened from its pin.
pub struct DropReader {
    ring: RingBuf<MapData>,
}

impl DropReader {
    /// Opens `<pin_dir>/maps/SDN_DROPS`.
    pub fn open(pin_dir: &Path) -> Result<Self, BpfError> {
        let path = pin_dir.join("maps").join(MAP_DROPS);
        if !path.exists() {
            return Err(BpfError::NoPin { path });
        }
        let data = MapData::from_pin(&path).map_err(|source| BpfError::Map { map: MAP_DROPS, source })?;
        let ring = RingBuf::try_from(Map::RingBuf(data)).map_err(|source| BpfError::Map { map: MAP_DROPS, source })?;
        Ok(Self { ring })
    }

    /// The events written since the last call, waiting up to `timeout` for the first.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<DropEvent>, BpfError> {
        let mut events = self.drain();
        if events.is_empty() {
            let mut ready = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one pollfd that lives for the call.
            if unsafe { libc::poll(&mut ready, 1, millis) } < 0 {
                let source = std::io::Error::last_os_error();
                if source.kind() != std::io::ErrorKind::Interrupted {
                    return Err(BpfError::Io { action: "polling", path: MAP_DROPS.into(), source });
                }
            }
            events = self.drain();
        }
        Ok(events)
    }

    fn drain(&mut self) -> Vec<DropEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(event) = decode(&item) {
                events.push(event);
            }
        }
        events
    }
}

/// A ring buffer record as a [`DropEvent`]; `None` if it has another size (another build's).
pub fn decode(record: &[u8]) -> Option<DropEvent> {
    if record.len() < size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: at least `size_of::<DropEvent>()` bytes, read unaligned; every bit pattern is a
    // valid `DropEvent` (integers and bytes only).
    Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<DropEvent>()) })
}

/// One line for `event`: reason, interface (named by `ifname`, else its index), length, and the
/// packet as far as its captured bytes tell.
pub fn describe(event: &DropEvent, ifname: impl Fn(u32) -> Option<String>) -> String {
    let reason =
        Decision::from_index(event.reason).map_or_else(|| format!("reason{}", event.reason), |d| d.name().into());
    let iface = ifname(event.ifindex).unwrap_or_else(|| format!("ifindex{}", event.ifindex));
    let captured = usize::try_from(event.captured).unwrap_or(0).min(DROP_CAPTURE);
    format!("{reason} in={iface} len={} {}", event.len, frame(&event.bytes[..captured]))
}

/// What an Ethernet frame's first bytes say.
fn frame(bytes: &[u8]) -> String {
    let Some(ethertype) = bytes.get(12..14) else { return "(too short to read)".into() };
    let src = bytes[6..12].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    match u16::from_be_bytes([ethertype[0], ethertype[1]]) {
        0x0800 => format!("{src} {}", ipv4(&bytes[14..])),
        0x0806 => format!("{src} {}", arp(&bytes[14..])),
        0x86dd => format!("{src} ipv6"),
        other => format!("{src} ethertype {other:#06x}"),
    }
}

fn ipv4(bytes: &[u8]) -> String {
    if bytes.len() < 20 || bytes[0] >> 4 != 4 {
        return "ipv4 (too short to read)".into();
    }
    let header = usize::from(bytes[0] & 0x0f) * 4;
    let (src, dst) = (addr(&bytes[12..16]), addr(&bytes[16..20]));
    let later_fragment = (u16::from_be_bytes([bytes[6], bytes[7]]) & 0x1fff) != 0;
    let l4 = bytes.get(header..).filter(|_| !later_fragment).unwrap_or(&[]);
    let ports = |l4: &[u8]| l4.get(..4).map(|p| (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])));
    match (bytes[9], ports(l4)) {
        (6, Some((sport, dport))) => format!("{src}:{sport} > {dst}:{dport} tcp"),
        (17, Some((sport, dport))) => {
            let udp = format!("{src}:{sport} > {dst}:{dport} udp");
            // VXLAN: the outer UDP header, 8 bytes of VXLAN, then the inner frame.
            match l4.get(16..).filter(|_| l4.get(8).is_some_and(|flags| flags & 0x08 != 0)) {
                Some(inner) if inner.len() >= 14 => format!("{udp} vxlan [{}]", frame(inner)),
                _ => udp,
            }
        }
        (1, _) => format!("{src} > {dst} icmp"),
        (protocol, _) => format!("{src} > {dst} protocol {protocol}"),
    }
}

fn arp(bytes: &[u8]) -> String {
    match (bytes.get(14..18), bytes.get(24..28)) {
        (Some(sender), Some(target)) => format!("arp {} asks for {}", addr(sender), addr(target)),
        _ => "arp (too short to read)".into(),
    }
}

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: Decision, bytes: &[u8]) -> DropEvent {
        let mut event = DropEvent {
            reason: reason.index(),
            ifindex: 7,
            len: bytes.len() as u32,
            captured: bytes.len().min(DROP_CAPTURE) as u32,
            bytes: [0; DROP_CAPTURE],
        };
        let n = bytes.len().min(DROP_CAPTURE);
        event.bytes[..n].copy_from_slice(&bytes[..n]);
        event
    }

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, 9]);
        f.extend(ethertype.to_be_bytes());
        f
    }

    fn ipv4(protocol: u8, src: [u8; 4], dst: [u8; 4], ports: (u16, u16)) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, protocol, 0, 0];
        p.extend(src);
        p.extend(dst);
        p.extend(ports.0.to_be_bytes());
        p.extend(ports.1.to_be_bytes());
        p.extend([0, 0, 0, 0]);
        p
    }

    #[test]
    fn a_vxlan_datagram_shows_its_inner_packet() {
        let mut frame = eth(0x0800);
        frame.extend(ipv4(17, [10, 1, 0, 9], [192, 0, 2, 1], (40000, 4789)));
        frame.extend([0x08, 0, 0, 0, 0, 0, 0, 0]);
        frame.extend(eth(0x0800));
        frame.extend(ipv4(17, [10, 1, 1, 66], [10, 1, 0, 2], (53, 5353)));
        let name = |i: u32| (i == 7).then(|| "veth0".to_owned());
        assert_eq!(
            describe(&event(Decision::PodToTunnel, &frame), name),
            "pod-to-tunnel-port in=veth0 len=92 02:00:00:00:00:09 10.1.0.9:40000 > 192.0.2.1:4789 udp vxlan \
             [02:00:00:00:00:09 10.1.1.66:53 > 10.1.0.2:5353 udp]"
        );
    }

    #[test]
    fn arp_ipv6_short_and_unknown_events_read_as_what_they_are() {
        let mut arp = eth(0x0806);
        arp.extend([0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 9, 10, 1, 0, 66, 0, 0, 0, 0, 0, 0, 10, 1, 0, 1]);
        let none = |_| None;
        assert_eq!(
            describe(&event(Decision::SpoofedArp, &arp), none),
            "spoofed-arp in=ifindex7 len=42 02:00:00:00:00:09 arp 10.1.0.66 asks for 10.1.0.1"
        );
        assert!(describe(&event(Decision::Ipv6, &eth(0x86dd)), none).ends_with("02:00:00:00:00:09 ipv6"));
        assert!(describe(&event(Decision::Malformed, &[1, 2, 3]), none).ends_with("(too short to read)"));
        let unknown = DropEvent { reason: 99, ..event(Decision::NotIpv4, &eth(0x88cc)) };
        assert_eq!(describe(&unknown, none), "reason99 in=ifindex7 len=14 02:00:00:00:00:09 ethertype 0x88cc");
    }

    #[test]
    fn records_of_another_size_are_skipped() {
        assert!(decode(&[0; 16]).is_none());
        let bytes = [0u8; size_of::<DropEvent>()];
        assert_eq!(decode(&bytes).map(|e| e.reason), Some(0));
    }
}

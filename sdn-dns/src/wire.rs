//! Reading a query off the wire, and what every reply to it shares: the header and the OPT
//! record.
//!
//! The header is read by hand before hickory parses the rest: a reply needs the id even when
//! the rest is garbage, and responses (QR set) must be dropped before any work is spent on them.

use hickory_proto::op::{Message, Query, ResponseCode};

use crate::config::DEFAULT_UDP_MAX;

pub(crate) const HEADER_LEN: usize = 12;
const QR: u16 = 1 << 15;
const OPCODE: u16 = 0xf << 11;
const AA: u16 = 1 << 10;
const TC: u16 = 1 << 9;
const RD: u16 = 1 << 8;
const RA: u16 = 1 << 7;
const CD: u16 = 1 << 4;
/// The OPT record's type (RFC 6891).
const OPT_TYPE: u16 = 41;
/// EDNS's DNSSEC OK flag, in the OPT TTL.
const DO: u32 = 1 << 15;
/// The largest reply without EDNS (RFC 1035 §4.2.1).
pub const UDP_MIN: u16 = 512;
/// The largest message TCP's two-byte length can frame.
pub const TCP_MAX: usize = 65535;

/// How a query arrived: it bounds the reply's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `max_size`: the largest UDP reply this server sends (e.g. [`DEFAULT_UDP_MAX`]), also what
    /// its OPT record advertises. The client's own limit (512 without EDNS) may be lower.
    Udp { max_size: u16 },
    /// Up to 65535 bytes.
    Tcp,
}

/// The EDNS part of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEdns {
    /// The client's UDP payload size (at least 512).
    pub max_payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A query that parsed: what the shell needs to forward it, or to answer it with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u16,
    /// The question, with the name in the case it was asked.
    pub query: Query,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub edns: Option<ClientEdns>,
    /// The largest reply the client takes on this transport.
    pub reply_limit: usize,
    /// The payload size our OPT record advertises.
    pub(crate) advertised: u16,
}

impl Request {
    /// A reply with this error code and the question, e.g. REFUSED when the shell does not
    /// forward, SERVFAIL when the upstream failed.
    pub fn error_reply(&self, rcode: ResponseCode) -> Vec<u8> {
        crate::truncate::encode(self, &crate::truncate::Reply::error(rcode))
    }

    /// The header flags of a reply to this request.
    pub(crate) fn reply_flags(&self, rcode: ResponseCode, authoritative: bool, recursion: bool, cut: bool) -> u16 {
        let mut flags = QR | u16::from(rcode.low());
        for (set, bit) in [
            (authoritative, AA),
            (cut, TC),
            (self.recursion_desired, RD),
            (recursion, RA),
            (self.checking_disabled, CD),
        ] {
            if set {
                flags |= bit;
            }
        }
        flags
    }

    /// The OPT record of a reply: present when the query had one (RFC 6891 §6.1.1), carrying
    /// the high bits of `rcode`, version 0 and the query's DO bit (RFC 3225 §3).
    pub(crate) fn opt(&self, rcode: ResponseCode) -> Option<[u8; 11]> {
        let edns = self.edns?;
        let mut ttl = u32::from(rcode.high()) << 24;
        if edns.dnssec_ok {
            ttl |= DO;
        }
        let mut record = [0u8; 11];
        // Owner: the root (one zero byte), then type, class (= payload size), TTL, RDLENGTH 0.
        record[1..3].copy_from_slice(&OPT_TYPE.to_be_bytes());
        record[3..5].copy_from_slice(&self.advertised.to_be_bytes());
        record[5..9].copy_from_slice(&ttl.to_be_bytes());
        Some(record)
    }
}

/// A message header as read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub id: u16,
    pub flags: u16,
    /// QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT.
    pub counts: [u16; 4],
}

impl Header {
    fn read(bytes: &[u8]) -> Option<Self> {
        let header = bytes.get(..HEADER_LEN)?;
        let word = |i: usize| u16::from_be_bytes([header[2 * i], header[2 * i + 1]]);
        Some(Self { id: word(0), flags: word(1), counts: [word(2), word(3), word(4), word(5)] })
    }

    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        let words = [self.id, self.flags, self.counts[0], self.counts[1], self.counts[2], self.counts[3]];
        for (chunk, word) in out.chunks_exact_mut(2).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }

    /// A reply of only a header, for a query too broken to echo: the opcode and RD copied.
    fn bare_reply(&self, rcode: ResponseCode) -> Vec<u8> {
        let flags = QR | (self.flags & (OPCODE | RD)) | u16::from(rcode.low());
        let mut out = [0u8; HEADER_LEN];
        Header { id: self.id, flags, counts: [0; 4] }.write(&mut out);
        out.to_vec()
    }
}

/// What a datagram or TCP message turned out to be.
#[derive(Debug)]
pub(crate) enum Parsed {
    Request(Request),
    /// An error reply ready to send (FORMERR, NOTIMP, BADVERS).
    Reply(Vec<u8>),
    /// No reply: not even a header, or a response.
    Drop,
}

pub(crate) fn parse(bytes: &[u8], transport: Transport) -> Parsed {
    let Some(header) = Header::read(bytes) else { return Parsed::Drop };
    if header.flags & QR != 0 {
        // Answering responses invites loops and reflection.
        return Parsed::Drop;
    }
    if header.flags & OPCODE != 0 {
        return Parsed::Reply(header.bare_reply(ResponseCode::NotImp));
    }
    if header.counts[0] != 1 {
        return Parsed::Reply(header.bare_reply(ResponseCode::FormErr));
    }
    let Ok(message) = Message::from_vec(bytes) else { return Parsed::Reply(header.bare_reply(ResponseCode::FormErr)) };
    let Some(query) = message.queries.into_iter().next() else {
        return Parsed::Reply(header.bare_reply(ResponseCode::FormErr));
    };
    let edns = message.edns.as_ref().map(|e| ClientEdns {
        max_payload: e.max_payload().max(UDP_MIN),
        version: e.version(),
        dnssec_ok: e.flags().dnssec_ok,
    });
    let (reply_limit, advertised) = match transport {
        Transport::Udp { max_size } => {
            let server = max_size.max(UDP_MIN);
            let client = edns.map_or(UDP_MIN, |e| e.max_payload);
            (usize::from(client.min(server)), server)
        }
        Transport::Tcp => (TCP_MAX, DEFAULT_UDP_MAX),
    };
    let request = Request {
        id: header.id,
        query,
        recursion_desired: header.flags & RD != 0,
        checking_disabled: header.flags & CD != 0,
        edns,
        reply_limit,
        advertised,
    };
    if edns.is_some_and(|e| e.version != 0) {
        return Parsed::Reply(request.error_reply(ResponseCode::BADVERS));
    }
    Parsed::Request(request)
}

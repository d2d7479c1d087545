//! The cluster DNS core (Kubernetes DNS schema 1.1.0): services and endpoints in, DNS messages
//! out. No sockets, no etcd, no clock: the node agent wraps it in UDP and TCP listeners, an etcd
//! watch that feeds the [`Index`], and upstream forwarding. `docs/dns.md` lists the records.
//!
//! ```text
//! access::AccessList::allows(client)?  -- no -->  refuse(bytes)
//!        | yes
//! respond(&index, bytes, transport) -> Reply(bytes) | Forward(request) | Refuse(bytes) | Drop
//! ```
//!
//! - `index`: one entry per service, PTRs by address; incremental updates.
//! - `names`, `reverse`: where a question's name stands (zone labels, reverse zones).
//! - `answer`: the records of a name, NXDOMAIN/NODATA with the SOA, or "not ours".
//! - `wire`: reading queries (FORMERR, NOTIMP, drop), header flags, OPT.
//! - `truncate`: encoding within the client's size.
//! - [`rrl`]: response rate limiting for UDP (the accounts; the caller passes the time in).

#![forbid(unsafe_code)]

mod access;
mod answer;
mod config;
mod index;
mod names;
mod reverse;
pub mod rrl;
mod truncate;
mod wire;

#[cfg(test)]
mod tests;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::DNSClass;

pub use access::AccessList;
pub use config::{
    Config, ConfigError, DEFAULT_NEGATIVE_TTL, DEFAULT_TTL, DEFAULT_UDP_MAX, DEFAULT_ZONE, MAX_TTL, SCHEMA_VERSION,
};
pub use index::{Index, IndexError};
pub use wire::{ClientEdns, Request, TCP_MAX, Transport, UDP_MIN};

use answer::Decision;
use truncate::Reply;
use wire::Parsed;

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back: an answer, or FORMERR/NOTIMP/BADVERS.
    Reply(Vec<u8>),
    /// A name outside the cluster zone and the reverse zones of its networks: forward the
    /// query upstream, or, without upstreams, send `request.error_reply(ResponseCode::Refused)`.
    Forward(Request),
    /// Send these bytes back: REFUSED (zone transfers, classes other than IN).
    Refuse(Vec<u8>),
    /// Send nothing: not a query (QR set) or not even a header.
    Drop,
}

/// Answers one DNS message from `index`.
pub fn respond(index: &Index, message: &[u8], transport: Transport) -> Outcome {
    let request = match wire::parse(message, transport) {
        Parsed::Request(request) => request,
        Parsed::Reply(bytes) => return Outcome::Reply(bytes),
        Parsed::Drop => return Outcome::Drop,
    };
    if !matches!(request.query.query_class(), DNSClass::IN | DNSClass::ANY) {
        // CHAOS `version.bind` and the like: this server has nothing to say in other classes.
        return Outcome::Refuse(request.error_reply(ResponseCode::Refused));
    }
    match answer::decide(index, &request.query) {
        Decision::Answer(answer) => {
            let reply = Reply {
                rcode: if answer.nxdomain { ResponseCode::NXDomain } else { ResponseCode::NoError },
                authoritative: true,
                recursion_available: index.config().recursion_available,
                answers: &answer.answers,
                authority: &answer.authority,
                additional: &answer.additional,
            };
            Outcome::Reply(truncate::encode(&request, &reply))
        }
        Decision::Forward => Outcome::Forward(request),
        Decision::Refuse => Outcome::Refuse(request.error_reply(ResponseCode::Refused)),
    }
}

/// The reply to a client the [`AccessList`] does not allow: REFUSED with the question, or the
/// same FORMERR/NOTIMP/drop as [`respond`] when the message is no proper query.
pub fn refuse(message: &[u8], transport: Transport) -> Outcome {
    match wire::parse(message, transport) {
        Parsed::Request(request) => Outcome::Refuse(request.error_reply(ResponseCode::Refused)),
        Parsed::Reply(bytes) => Outcome::Reply(bytes),
        Parsed::Drop => Outcome::Drop,
    }
}

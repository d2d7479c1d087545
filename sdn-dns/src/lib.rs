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

#![forbid(unsafe_code)]

mod answer;
mod config;
mod index;
mod names;
mod reverse;

#[cfg(test)]
mod tests;

pub use config::{
    Config, ConfigError, DEFAULT_NEGATIVE_TTL, DEFAULT_TTL, DEFAULT_UDP_MAX, DEFAULT_ZONE, MAX_TTL, SCHEMA_VERSION,
};
pub use index::{Index, IndexError};

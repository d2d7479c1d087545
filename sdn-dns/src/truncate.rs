//! Putting a reply on the wire within the size the client takes.
//!
//! Records are written in order (answer, authority, additional) with name compression, which
//! only points backwards, so every prefix of the records is a well-formed message once the
//! header counts say so. When the whole does not fit, the reply keeps the longest prefix of
//! whole records that fits with the OPT record: the additional section goes first.
//!
//! TC is set only when an answer or authority record was left out; a shortened additional
//! section is no truncation (RFC 2181 §9), the client looks the targets up itself. A cut answer
//! keeps the records that fit, as CoreDNS does, rather than dropping its RRset whole: resolvers
//! that honour TC retry over TCP either way, and those that do not (musl before 1.2.4 has no
//! TCP) are better served by some addresses than by none.
//!
//! hickory-proto compresses at most 120 names per message, so a TCP answer of thousands of
//! records carries later owner names in full: about 1,600 A records of one name fit in 64 KiB.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::wire::{HEADER_LEN, Header, Request};

/// A reply before encoding.
#[derive(Debug)]
pub(crate) struct Reply<'a> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub recursion_available: bool,
    pub answers: &'a [Record],
    pub authority: &'a [Record],
    pub additional: &'a [Record],
}

impl Reply<'static> {
    /// An error with the question and nothing else.
    pub fn error(rcode: ResponseCode) -> Self {
        Self { rcode, authoritative: false, recursion_available: false, answers: &[], authority: &[], additional: &[] }
    }
}

pub(crate) fn encode(request: &Request, reply: &Reply<'_>) -> Vec<u8> {
    let opt = request.opt(reply.rcode);
    let budget = request.reply_limit.saturating_sub(opt.map_or(0, |o| o.len()));
    let sections = [reply.answers, reply.authority, reply.additional];

    let mut buf = Vec::with_capacity(request.reply_limit.min(4096));
    // The end of the question, then the end of each record that fit.
    let mut ends = Vec::with_capacity(sections.iter().map(|s| s.len()).sum::<usize>() + 1);
    {
        let mut encoder = BinEncoder::new(&mut buf);
        if encoder.emit_vec(&[0; HEADER_LEN]).is_err() || request.query.emit(&mut encoder).is_err() {
            return servfail(request);
        }
        ends.push(encoder.offset());
        for record in sections.iter().flat_map(|s| s.iter()) {
            // Any error (the encoder's 64 KiB bound included) cuts here like the budget.
            if record.emit(&mut encoder).is_err() || encoder.offset() > budget {
                break;
            }
            ends.push(encoder.offset());
        }
    }
    let mut left = ends.len() - 1;
    buf.truncate(ends[left]);

    let mut counts = [1u16, 0, 0, 0];
    for (count, section) in counts[1..].iter_mut().zip(sections) {
        let kept = left.min(section.len());
        left -= kept;
        *count = u16::try_from(kept).unwrap_or(u16::MAX);
    }
    let cut = usize::from(counts[1]) < reply.answers.len() || usize::from(counts[2]) < reply.authority.len();
    if let Some(opt) = opt {
        buf.extend_from_slice(&opt);
        counts[3] = counts[3].saturating_add(1);
    }
    let flags = request.reply_flags(reply.rcode, reply.authoritative, reply.recursion_available, cut);
    write_header(&mut buf, Header { id: request.id, flags, counts });
    buf
}

fn write_header(buf: &mut [u8], header: Header) {
    if let Some(out) = buf.first_chunk_mut::<HEADER_LEN>() {
        header.write(out);
    }
}

/// A question that was parsed but cannot be written again (it cannot happen with hickory's
/// names, which are at most 255 bytes): SERVFAIL with no question.
fn servfail(request: &Request) -> Vec<u8> {
    let mut buf = vec![0; HEADER_LEN];
    let flags = request.reply_flags(ResponseCode::ServFail, false, false, false);
    write_header(&mut buf, Header { id: request.id, flags, counts: [0; 4] });
    buf
}

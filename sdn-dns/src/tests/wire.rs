//! Sizes, truncation, EDNS, and messages that are no proper query.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use super::{ID, UDP, endpoints, query, reply, service};
use crate::{Index, Outcome, Transport, respond};

/// `data/big`: headless with `n` ready endpoints 10.1.x.y, hostnames `host-<i>`, port mysql.
fn big(n: usize) -> Index {
    let mut index = Index::new(super::config()).expect("config");
    let mut svc = service("data", "big", None);
    svc.ports = vec![];
    index.upsert_service(&svc).expect("service");
    let ips: Vec<String> = (0..n).map(|i| format!("10.1.{}.{}", i / 250, i % 250 + 1)).collect();
    let hosts: Vec<String> = (0..n).map(|i| format!("host-{i}")).collect();
    let addresses: Vec<(&str, Option<&str>, bool)> =
        ips.iter().zip(&hosts).map(|(ip, host)| (ip.as_str(), Some(host.as_str()), true)).collect();
    index.set_endpoints(&endpoints("data", "big", &addresses)).expect("endpoints");
    index
}

const BIG_A: &str = "big.data.svc.cluster.local.";
const BIG_SRV: &str = "_http._tcp.big.data.svc.cluster.local.";

fn sized(index: &Index, name: &str, qtype: RecordType, edns: Option<u16>, transport: Transport) -> (usize, Message) {
    match respond(index, &query(name, qtype, edns), transport) {
        Outcome::Reply(bytes) => (bytes.len(), Message::from_vec(&bytes).expect("reply parses")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn udp_without_edns_is_cut_at_512() {
    let (len, reply) = sized(&big(40), BIG_A, RecordType::A, None, UDP);
    assert!(len <= 512, "{len}");
    assert!(reply.metadata.truncation, "TC");
    // Header and question 44 bytes, then 16 bytes per compressed A record.
    assert_eq!(reply.answers.len(), (512 - 44) / 16, "whole records, as many as fit");
    assert_eq!(reply.queries.len(), 1);
    assert!(reply.edns.is_none());
}

#[test]
fn udp_with_edns_takes_the_clients_size_up_to_ours() {
    let index = big(40);
    let (len, reply) = sized(&index, BIG_A, RecordType::A, Some(1232), UDP);
    assert!(!reply.metadata.truncation && reply.answers.len() == 40, "{len} bytes fit in 1232");
    let opt = reply.edns.expect("OPT echoed");
    assert_eq!(opt.max_payload(), 1232);

    let (len, reply) = sized(&big(100), BIG_A, RecordType::A, Some(4096), UDP);
    assert!(len <= 1232 && reply.metadata.truncation, "never more than our maximum: {len}");
    assert!(reply.edns.is_some(), "OPT kept in a cut reply");

    let (len, reply) = sized(&big(100), BIG_A, RecordType::A, Some(4096), Transport::Udp { max_size: 4096 });
    assert!(len <= 4096 && !reply.metadata.truncation && reply.answers.len() == 100, "{len}");

    let (len, reply) = sized(&index, BIG_A, RecordType::A, Some(100), UDP);
    assert!(len <= 512 && reply.metadata.truncation, "below 512 counts as 512: {len}");
}

#[test]
fn the_additional_section_goes_first_and_alone_is_no_truncation() {
    // SRV targets are never compressed (RFC 2782), so 7 SRV records take 426 bytes.
    let index = big(7);
    let (len, full) = sized(&index, BIG_SRV, RecordType::SRV, None, Transport::Tcp);
    assert!(len > 512, "the test needs a reply over 512: {len}");
    assert_eq!((full.answers.len(), full.additionals.len()), (7, 7));

    let (len, cut) = sized(&index, BIG_SRV, RecordType::SRV, None, UDP);
    assert!(len <= 512, "{len}");
    assert_eq!(cut.answers.len(), 7, "the answer is whole");
    assert!(cut.additionals.len() < 7, "glue was dropped");
    assert!(!cut.metadata.truncation, "RFC 2181 §9: missing glue is no truncation");
}

#[test]
fn tcp_gives_the_whole_answer_up_to_64k() {
    let (len, reply) = sized(&big(1500), BIG_A, RecordType::A, None, Transport::Tcp);
    assert!(len > 1232 && !reply.metadata.truncation && reply.answers.len() == 1500, "{len}");
    let (len, reply) = sized(&big(3000), BIG_A, RecordType::A, None, Transport::Tcp);
    assert!(len <= 65535 && reply.metadata.truncation && !reply.answers.is_empty(), "{len}");
}

#[test]
fn edns_flags_and_version() {
    let index = super::cluster();
    let mut message =
        Message::from_vec(&query("web.default.svc.cluster.local.", RecordType::A, Some(1232))).expect("q");
    if let Some(edns) = message.edns.as_mut() {
        edns.set_dnssec_ok(true);
    }
    let answered = reply(respond(&index, &message.to_vec().expect("encodes"), UDP));
    assert!(answered.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok), "DO copied");
    assert_eq!(answered.answers.len(), 1);

    if let Some(edns) = message.edns.as_mut() {
        edns.set_version(1);
    }
    let bad = reply(respond(&index, &message.to_vec().expect("encodes"), UDP));
    // hickory reads extended code 16 as BADSIG, which shares the number with BADVERS.
    assert_eq!(u16::from(bad.metadata.response_code), u16::from(ResponseCode::BADVERS));
    assert!(bad.answers.is_empty());
    assert_eq!(bad.edns.map(|e| e.version()), Some(0));
}

/// The header of a reply: (id, flags, counts).
fn header(outcome: Outcome) -> (u16, u16, [u16; 4]) {
    let Outcome::Reply(bytes) = outcome else { panic!("{outcome:?}") };
    let word = |i: usize| u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
    (word(0), word(1), [word(2), word(3), word(4), word(5)])
}

#[test]
fn broken_queries_get_formerr_or_notimp_or_nothing() {
    let index = super::cluster();
    let good = query("web.default.svc.cluster.local.", RecordType::A, None);
    let respond = |bytes: &[u8]| respond(&index, bytes, UDP);

    let formerr = |bytes: &[u8], what: &str| {
        let (id, flags, counts) = header(respond(bytes));
        assert_eq!((id, flags & 0x800f, counts), (ID, 0x8001, [0; 4]), "{what}");
    };
    formerr(&good[..good.len() - 3], "cut short");
    formerr(&good[..12], "header only");
    let mut two = good.clone();
    two[5] = 2;
    formerr(&two, "QDCOUNT 2");
    let mut none = good.clone();
    none[5] = 0;
    formerr(&none, "QDCOUNT 0");
    let mut bad_label = good.clone();
    bad_label[12] = 0xc0; // a compression pointer to itself
    bad_label[13] = 12;
    formerr(&bad_label, "pointer loop");

    let mut two_opts = query("web.default.svc.cluster.local.", RecordType::A, Some(1232));
    let opt = two_opts[two_opts.len() - 11..].to_vec();
    two_opts.extend_from_slice(&opt);
    two_opts[11] = 2;
    formerr(&two_opts, "two OPT records (RFC 6891 §6.1.1)");

    for opcode in [1u8, 2, 4, 5, 15] {
        let mut other = good.clone();
        other[2] = (other[2] & 0x87) | (opcode << 3);
        let (id, flags, _) = header(respond(&other));
        assert_eq!((id, flags & 0x800f, (flags >> 11) & 0xf), (ID, 0x8004, u16::from(opcode)), "opcode {opcode}");
    }

    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(respond(&response), Outcome::Drop, "QR set");
    assert_eq!(respond(&good[..11]), Outcome::Drop, "no header");
    assert_eq!(respond(&[]), Outcome::Drop);
}

#[test]
fn flags_of_an_answer() {
    let index = super::cluster();
    let mut bytes = query("web.default.svc.cluster.local.", RecordType::A, None);
    bytes[3] |= 0x10; // CD
    let (_, flags, counts) = header(respond(&index, &bytes, UDP));
    // QR, AA, RD, RA, CD; opcode 0; NOERROR.
    assert_eq!(flags, 0x8000 | 0x0400 | 0x0100 | 0x0080 | 0x0010);
    assert_eq!(counts, [1, 1, 0, 0]);

    let config = crate::Config { recursion_available: false, ..super::config() };
    let quiet = Index::new(config).expect("config");
    bytes[2] &= !0x01; // RD off
    let (_, flags, _) = header(respond(&quiet, &bytes, UDP));
    assert_eq!(flags & 0x0180, 0, "neither RD nor RA");
}

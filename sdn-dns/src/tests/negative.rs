//! NXDOMAIN, NODATA, and the questions the core does not answer itself.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};

use super::{ID, UDP, ask, cluster, query, reply};
use crate::reverse::name_of;
use crate::{Outcome, respond};

/// The reply is negative with the SOA of `apex` (TTL and minimum 5 s) and no answer.
fn assert_negative(reply: &Message, rcode: ResponseCode, apex: &str, what: &str) {
    assert_eq!(reply.metadata.response_code, rcode, "{what}");
    assert!(reply.metadata.authoritative, "{what}");
    assert!(reply.answers.is_empty(), "{what}: {:?}", reply.answers);
    assert_eq!(reply.authorities.len(), 1, "{what}");
    let soa = &reply.authorities[0];
    assert_eq!((soa.name.to_string().as_str(), soa.ttl), (apex, 5), "{what}");
    let RData::SOA(data) = &soa.data else { panic!("{what}: {soa:?}") };
    assert_eq!(data.minimum, 5, "{what}");
}

#[test]
fn names_that_do_not_exist_are_nxdomain() {
    let index = cluster();
    for name in [
        "nope.default.svc.cluster.local.",
        "empty.data.svc.cluster.local.",
        "_http._tcp.empty.data.svc.cluster.local.",
        "empty.data.endpoints.cluster.local.",
        "nope.default.endpoints.cluster.local.",
        "db-2.db.data.svc.cluster.local.",
        "10-1-0-2.db.data.svc.cluster.local.",
        "web-0.web.default.svc.cluster.local.",
        "10-1-0-9.db.data.svc.cluster.local.",
        "nons.svc.cluster.local.",
        "nons.cluster.local.",
        "x.default.cluster.local.",
        "a.b.web.default.svc.cluster.local.",
        "x.dns-version.cluster.local.",
        "_8000._tcp.plain.default.svc.cluster.local.",
        "_http._udp.web.default.svc.cluster.local.",
        "_udp.web.default.svc.cluster.local.",
        "http._tcp.web.default.svc.cluster.local.",
        "_._tcp.web.default.svc.cluster.local.",
    ] {
        assert_negative(&ask(&index, name, RecordType::A), ResponseCode::NXDomain, "cluster.local.", name);
    }
}

#[test]
fn names_without_the_asked_type_are_nodata() {
    let index = cluster();
    for (name, qtype) in [
        ("cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::NS),
        ("svc.cluster.local.", RecordType::A),
        ("default.svc.cluster.local.", RecordType::A),
        ("default.cluster.local.", RecordType::A),
        ("endpoints.cluster.local.", RecordType::A),
        ("default.endpoints.cluster.local.", RecordType::A),
        ("_tcp.web.default.svc.cluster.local.", RecordType::SRV),
        ("web.default.svc.cluster.local.", RecordType::MX),
        ("web.default.svc.cluster.local.", RecordType::TXT),
        ("web.default.svc.cluster.local.", RecordType::SRV),
        ("_http._tcp.web.default.svc.cluster.local.", RecordType::A),
        ("dns-version.cluster.local.", RecordType::A),
    ] {
        let what = format!("{name} {qtype}");
        assert_negative(&ask(&index, name, qtype), ResponseCode::NoError, "cluster.local.", &what);
    }
}

#[test]
fn reverse_names_of_our_networks() {
    let index = cluster();
    let of = |ip: &str| name_of(ip.parse().expect("ip")).to_string();
    let (v4, services, v6) =
        ("1.10.in-addr.arpa.", "30.172.in-addr.arpa.", "0.0.0.0.0.0.0.0.0.3.0.0.0.0.d.f.ip6.arpa.");
    let cases = [
        (of("10.1.9.9"), RecordType::PTR, ResponseCode::NXDomain, v4, "unknown pod address"),
        (of("10.1.0.4"), RecordType::PTR, ResponseCode::NXDomain, v4, "endpoint not ready"),
        (of("172.30.9.9"), RecordType::PTR, ResponseCode::NXDomain, services, "unknown service IP"),
        ("0.1.10.in-addr.arpa.".into(), RecordType::PTR, ResponseCode::NoError, v4, "empty non-terminal"),
        ("1.10.in-addr.arpa.".into(), RecordType::PTR, ResponseCode::NoError, v4, "apex"),
        ("9.1.10.in-addr.arpa.".into(), RecordType::PTR, ResponseCode::NXDomain, v4, "nothing below"),
        ("x.0.1.10.in-addr.arpa.".into(), RecordType::PTR, ResponseCode::NXDomain, v4, "no address"),
        (of("fd00:30::99"), RecordType::PTR, ResponseCode::NXDomain, v6, "unknown IPv6 service IP"),
        (of("172.30.0.10"), RecordType::A, ResponseCode::NoError, services, "A of a reverse name"),
    ];
    for (name, qtype, rcode, apex, what) in cases {
        assert_negative(&ask(&index, &name, qtype), rcode, apex, what);
    }
}

#[test]
fn other_names_are_forwarded() {
    let index = cluster();
    for name in
        ["example.com.", "local.", ".", "cluster.local.example.", "4.3.2.1.in-addr.arpa.", "2.0.1.in-addr.arpa."]
    {
        match respond(&index, &query(name, RecordType::A, Some(1400)), UDP) {
            Outcome::Forward(request) => {
                assert_eq!(request.id, ID);
                assert_eq!(request.query.name().to_string(), name);
                assert!(request.recursion_desired);
                assert_eq!(request.edns.map(|e| e.max_payload), Some(1400));
                assert_eq!(request.reply_limit, 1232, "the smaller of the client's and ours");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let Outcome::Forward(request) = respond(&index, &query("example.com.", RecordType::A, None), UDP) else {
        panic!("not forwarded")
    };
    let refused = reply(Outcome::Reply(request.error_reply(ResponseCode::Refused)));
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_eq!(refused.queries[0].name().to_string(), "example.com.", "the question is echoed");
}

#[test]
fn zone_transfers_and_other_classes_are_refused() {
    let index = cluster();
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let outcome = respond(&index, &query("cluster.local.", qtype, None), UDP);
        assert!(matches!(outcome, Outcome::Refuse(_)), "{qtype}");
        assert_eq!(reply(outcome).metadata.response_code, ResponseCode::Refused);
    }
    let mut chaos = Message::from_vec(&query("version.bind.", RecordType::TXT, None)).expect("query");
    chaos.queries[0].set_query_class(DNSClass::CH);
    let outcome = respond(&index, &chaos.to_vec().expect("encodes"), UDP);
    assert!(matches!(outcome, Outcome::Refuse(_)), "{outcome:?}");
    let mut any_class = Message::from_vec(&query("web.default.svc.cluster.local.", RecordType::A, None)).expect("q");
    any_class.queries[0].set_query_class(DNSClass::ANY);
    let answered = reply(respond(&index, &any_class.to_vec().expect("encodes"), UDP));
    assert_eq!(answered.answers.len(), 1, "class ANY is read as IN");
}

#[test]
fn clients_outside_the_access_list_get_refused() {
    let bytes = query("web.default.svc.cluster.local.", RecordType::A, Some(1232));
    let refused = reply(crate::refuse(&bytes, UDP));
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(refused.answers.is_empty() && refused.edns.is_some());
    assert_eq!(refused.queries.len(), 1);
    assert_eq!(crate::refuse(&bytes[..5], UDP), Outcome::Drop);
}

//! Every kind of positive answer.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use super::{ask, cluster, data};
use crate::reverse::name_of;

#[test]
fn a_for_a_cluster_ip_service() {
    let reply = ask(&cluster(), "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative && reply.metadata.recursion_available && reply.metadata.recursion_desired);
    assert_eq!(data(&reply.answers), ["A 172.30.0.10"]);
    assert_eq!(reply.answers[0].ttl, 30);
    assert_eq!(reply.answers[0].name.to_string(), "web.default.svc.cluster.local.");
    assert!(reply.authorities.is_empty() && reply.additionals.is_empty() && reply.edns.is_none());
}

#[test]
fn aaaa_for_an_ipv6_service() {
    let index = cluster();
    let reply = ask(&index, "web6.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(data(&reply.answers), ["AAAA fd00:30::10"]);
    assert!(ask(&index, "web.default.svc.cluster.local.", RecordType::AAAA).answers.is_empty(), "IPv4 only");
}

#[test]
fn a_headless_service_has_its_ready_endpoints() {
    let reply = ask(&cluster(), "db.data.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&reply.answers), ["A 10.1.0.2", "A 10.1.0.3"], "10.1.0.4 is not ready");
}

#[test]
fn endpoints_have_names_under_their_service() {
    let index = cluster();
    let a = |name: &str| data(&ask(&index, name, RecordType::A).answers);
    assert_eq!(a("db-0.db.data.svc.cluster.local."), ["A 10.1.0.2"], "hostname in a headless service");
    assert_eq!(a("10-1-0-3.db.data.svc.cluster.local."), ["A 10.1.0.3"], "no hostname: the dashed address");
    assert_eq!(a("10-1-0-5.web.default.svc.cluster.local."), ["A 10.1.0.5"], "cluster IP service: dashed");
}

#[test]
fn srv_of_a_cluster_ip_service_points_at_the_service() {
    let reply = ask(&cluster(), "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(data(&reply.answers), ["SRV 0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(data(&reply.additionals), ["A 172.30.0.10"]);
    assert_eq!(reply.additionals[0].name.to_string(), "web.default.svc.cluster.local.");
}

#[test]
fn srv_of_a_headless_service_points_at_each_ready_endpoint() {
    let reply = ask(&cluster(), "_mysql._tcp.db.data.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        data(&reply.answers),
        ["SRV 0 50 3306 db-0.db.data.svc.cluster.local.", "SRV 0 50 3306 10-1-0-3.db.data.svc.cluster.local."]
    );
    let glue: Vec<String> = reply.additionals.iter().map(|r| format!("{} {}", r.name, r.data)).collect();
    assert_eq!(glue, ["db-0.db.data.svc.cluster.local. 10.1.0.2", "10-1-0-3.db.data.svc.cluster.local. 10.1.0.3"]);
}

#[test]
fn ptr_for_service_and_endpoint_addresses() {
    let index = cluster();
    let ptr = |ip: &str| {
        let name = name_of(ip.parse().expect("ip")).to_string();
        let reply = ask(&index, &name, RecordType::PTR);
        assert!(reply.metadata.authoritative);
        data(&reply.answers)
    };
    assert_eq!(ptr("172.30.0.10"), ["PTR web.default.svc.cluster.local."]);
    assert_eq!(ptr("fd00:30::10"), ["PTR web6.default.svc.cluster.local."]);
    assert_eq!(ptr("10.1.0.2"), ["PTR db-0.db.data.svc.cluster.local."]);
    assert_eq!(ptr("10.1.0.3"), ["PTR 10-1-0-3.db.data.svc.cluster.local."]);
    assert_eq!(ptr("10.1.0.5"), ["PTR 10-1-0-5.web.default.svc.cluster.local."], "not headless: dashed");
}

#[test]
fn every_ptr_target_resolves_back() {
    let index = cluster();
    for ip in ["172.30.0.10", "172.30.0.11", "10.1.0.2", "10.1.0.3", "10.1.0.5"] {
        let reply = ask(&index, &name_of(ip.parse().expect("ip")).to_string(), RecordType::PTR);
        let Some(RData::PTR(target)) = reply.answers.first().map(|r| &r.data) else { panic!("{ip}: no PTR") };
        let back = ask(&index, &target.0.to_string(), RecordType::A);
        assert!(data(&back.answers).contains(&format!("A {ip}")), "{ip} -> {} -> {:?}", target.0, back.answers);
    }
}

#[test]
fn the_endpoints_zone_lists_ready_addresses() {
    let index = cluster();
    let a = |name: &str| data(&ask(&index, name, RecordType::A).answers);
    assert_eq!(a("db.data.endpoints.cluster.local."), ["A 10.1.0.2", "A 10.1.0.3"]);
    assert_eq!(a("web.default.endpoints.cluster.local."), ["A 10.1.0.5"], "of a cluster IP service too");
}

#[test]
fn dns_version() {
    let reply = ask(&cluster(), "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(data(&reply.answers), ["TXT 1.1.0"]);
}

#[test]
fn soa_at_the_apexes() {
    let index = cluster();
    let reply = ask(&index, "cluster.local.", RecordType::SOA);
    assert_eq!(
        data(&reply.answers),
        [format!("SOA ns.dns.cluster.local. hostmaster.cluster.local. {} 7200 1800 86400 5", index.serial())]
    );
    let reverse = ask(&index, "1.10.in-addr.arpa.", RecordType::SOA);
    assert_eq!(reverse.answers[0].name.to_string(), "1.10.in-addr.arpa.");
    assert_eq!(reverse.answers[0].record_type(), RecordType::SOA);
}

#[test]
fn names_match_in_any_case_and_the_question_keeps_its_case() {
    let reply = ask(&cluster(), "WeB.DeFaUlT.SvC.ClUsTeR.LoCaL.", RecordType::A);
    assert_eq!(data(&reply.answers), ["A 172.30.0.10"]);
    assert_eq!(reply.queries[0].name().to_string(), "WeB.DeFaUlT.SvC.ClUsTeR.LoCaL.", "0x20 echoed");
    let srv = ask(&cluster(), "_HTTP._Tcp.WEB.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(srv.answers.len(), 1);
    let host = ask(&cluster(), "DB-0.db.DATA.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&host.answers), ["A 10.1.0.2"]);
}

#[test]
fn any_answers_what_exists() {
    let index = cluster();
    assert_eq!(data(&ask(&index, "web.default.svc.cluster.local.", RecordType::ANY).answers), ["A 172.30.0.10"]);
    let srv = ask(&index, "_http._tcp.web.default.svc.cluster.local.", RecordType::ANY);
    assert_eq!((srv.answers.len(), srv.additionals.len()), (1, 1));
    assert_eq!(ask(&index, "cluster.local.", RecordType::ANY).answers[0].record_type(), RecordType::SOA);
    assert_eq!(data(&ask(&index, "dns-version.cluster.local.", RecordType::ANY).answers), ["TXT 1.1.0"]);
}

#[test]
fn ttls_follow_the_config() {
    let mut config = super::config();
    config.ttl = 60;
    config.negative_ttl = 2;
    let mut index = crate::Index::new(config).expect("config");
    index.upsert_service(&super::service("default", "web", Some("172.30.0.10"))).expect("service");
    assert_eq!(ask(&index, "web.default.svc.cluster.local.", RecordType::A).answers[0].ttl, 60);
    let negative = ask(&index, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(negative.authorities[0].ttl, 2);
    let Some(RData::SOA(soa)) = negative.authorities.first().map(|r| &r.data) else { panic!("no SOA") };
    assert_eq!(soa.minimum, 2);
}

#[test]
fn the_zone_is_configurable() {
    let config = crate::Config { zone: "Example.Internal".into(), ..super::config() };
    let mut index = crate::Index::new(config).expect("config");
    index.upsert_service(&super::service("default", "web", Some("172.30.0.10"))).expect("service");
    assert_eq!(data(&ask(&index, "web.default.svc.example.internal.", RecordType::A).answers), ["A 172.30.0.10"]);
    let ptr = ask(&index, "10.0.30.172.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&ptr.answers), ["PTR web.default.svc.example.internal."]);
}

#[test]
fn a_wildcard_service_or_namespace_answers_every_match_under_the_question_name() {
    let index = cluster();
    let a = |name: &str| ask(&index, name, RecordType::A);
    let all_default = a("*.default.svc.cluster.local.");
    assert_eq!(data(&all_default.answers), ["A 172.30.0.11", "A 172.30.0.10"], "plain, web; web6 has no A");
    assert!(all_default.answers.iter().all(|r| r.name.to_string() == "*.default.svc.cluster.local."));
    assert_eq!(data(&ask(&index, "*.default.svc.cluster.local.", RecordType::AAAA).answers), ["AAAA fd00:30::10"]);
    assert_eq!(data(&a("db.*.svc.cluster.local.").answers), ["A 10.1.0.2", "A 10.1.0.3"]);
    assert_eq!(
        data(&a("*.*.svc.cluster.local.").answers),
        ["A 10.1.0.2", "A 10.1.0.3", "A 172.30.0.11", "A 172.30.0.10"],
        "every visible service of every namespace"
    );
    assert_eq!(data(&a("*.data.endpoints.cluster.local.").answers), ["A 10.1.0.2", "A 10.1.0.3"]);
    let srv = ask(&index, "_http._tcp.*.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        data(&srv.answers),
        ["SRV 0 50 80 web.default.svc.cluster.local.", "SRV 0 50 80 web6.default.svc.cluster.local."],
        "plain's port has no name"
    );
    assert_eq!(data(&srv.additionals), ["A 172.30.0.10", "AAAA fd00:30::10"]);
    let srv_all = ask(&index, "_mysql._tcp.*.*.svc.cluster.local.", RecordType::SRV);
    assert_eq!(srv_all.answers.len(), 2, "db's two ready endpoints");
    for nothing in ["*.nowhere.svc.cluster.local.", "nope.*.svc.cluster.local."] {
        let reply = a(nothing);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "{nothing}");
        assert!(reply.answers.is_empty() && !reply.authorities.is_empty(), "{nothing}: NXDOMAIN with the SOA");
    }
}

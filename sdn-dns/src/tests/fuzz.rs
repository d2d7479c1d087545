//! Random and mutated messages: `respond` never panics, and every reply it sends parses, keeps
//! the id and fits the transport. (`sdn-dns/fuzz` does the same under libFuzzer.)

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::{cluster, query};
use crate::{Outcome, Transport, UDP_MIN, respond};

/// xorshift64: enough randomness for inputs, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            2 => bytes.truncate(rng.below(bytes.len() + 1)),
            3 => {
                let i = rng.below(bytes.len() + 1);
                bytes.insert(i, rng.next() as u8);
            }
            _ => {
                // A compression pointer somewhere: the classic parser trap.
                let i = rng.below(bytes.len() + 1);
                bytes.splice(i..i, [0xc0, rng.next() as u8]);
            }
        }
    }
    bytes
}

fn check(outcome: &Outcome, input: &[u8], limit: usize) {
    match outcome {
        Outcome::Reply(bytes) | Outcome::Refuse(bytes) => {
            assert!(bytes.len() <= limit, "{} > {limit} for {input:?}", bytes.len());
            assert_eq!(bytes.get(..2), input.get(..2), "id echoed for {input:?}");
            assert!(Message::from_vec(bytes).is_ok(), "reply does not parse for {input:?}: {bytes:?}");
        }
        Outcome::Forward(request) => assert!(request.reply_limit <= limit),
        Outcome::Drop => {}
    }
}

#[test]
fn random_and_mutated_messages_never_panic() {
    let index = cluster();
    let names = [
        "web.default.svc.cluster.local.",
        "_mysql._tcp.db.data.svc.cluster.local.",
        "db-0.db.data.svc.cluster.local.",
        "2.0.1.10.in-addr.arpa.",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.0.0.d.f.ip6.arpa.",
        "example.com.",
        "cluster.local.",
    ];
    let types = [RecordType::A, RecordType::AAAA, RecordType::SRV, RecordType::PTR, RecordType::ANY, RecordType::SOA];
    let seeds: Vec<Vec<u8>> = names
        .iter()
        .flat_map(|n| types.iter().flat_map(move |t| [query(n, *t, None), query(n, *t, Some(4096))]))
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let transports = [
        (Transport::Udp { max_size: 1232 }, 1232),
        (Transport::Udp { max_size: 100 }, usize::from(UDP_MIN)),
        (Transport::Tcp, 65535),
    ];
    for round in 0..6000 {
        let input = if round % 4 == 0 {
            (0..rng.below(300)).map(|_| rng.next() as u8).collect()
        } else {
            let seed = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, seed)
        };
        for (transport, limit) in transports {
            check(&respond(&index, &input, transport), &input, limit);
            check(&crate::refuse(&input, transport), &input, limit);
        }
    }
}

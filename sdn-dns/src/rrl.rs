//! Response rate limiting (RRL) for UDP, as BIND, Knot and CoreDNS's `rrl` plugin do it: UDP
//! sources can be forged, so a server that answers every datagram lends its bandwidth to
//! whoever wants to flood the forged address. Each response is charged to an account of the
//! client's network (/24, /56) and the response; an account earns `responses_per_second`
//! credits a second and may save at most one second's worth; a response it cannot pay for is
//! dropped, or every `slip`-th one sent truncated, so a real client behind the address retries
//! over TCP (which cannot be forged) and is still served.
//!
//! Accounts follow the rrl plugin of CoreDNS: positive answers, NODATA and NXDOMAIN are counted
//! per question name and type, errors per client network alone. BIND counts NXDOMAIN and
//! NODATA per zone instead; here nearly every NXDOMAIN is a pod's search-list expansion
//! (`example.com.<ns>.svc.cluster.local`, ndots:5) and every pod of a node shares one /24, so
//! counting them per zone would limit a busy node's ordinary lookups of outside names.
//!
//! Pure: the caller passes the time in and does the sending.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::wire::HEADER_LEN;

/// 100 identical responses a second to one /24 (one node's pods, as the cluster network is cut
/// by default) is far above what the stub resolvers of a node's pods ask of one name.
pub const DEFAULT_RESPONSES_PER_SECOND: u32 = 100;
/// BIND's default: a client that flooded is limited for up to this long after it stopped.
pub const DEFAULT_WINDOW_SECONDS: u32 = 15;
/// BIND's default: every second response over the rate is sent truncated, the others dropped.
pub const DEFAULT_SLIP: u32 = 2;
/// Client networks, as BIND counts them.
pub const DEFAULT_IPV4_PREFIX: u8 = 24;
pub const DEFAULT_IPV6_PREFIX: u8 = 56;
/// Accounts held at most, whatever the clients ask: 65,536 take about 6 MiB.
pub const DEFAULT_MAX_ACCOUNTS: usize = 65536;
/// Bounds that keep the arithmetic in `i64` (and past which nothing is limited anyway).
pub const MAX_RESPONSES_PER_SECOND: u32 = 1_000_000;
/// BIND's bounds for `window` and `slip`.
pub const MAX_WINDOW_SECONDS: u32 = 3600;
pub const MAX_SLIP: u32 = 10;

/// One response, in millionths: balances are kept in these so that credit accrues by the
/// microsecond without floats.
const COST: i64 = 1_000_000;

/// The settings of [`RateLimiter`] and [`ResponseKeys`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses a second each account may get; 0 turns rate limiting off.
    pub responses_per_second: u32,
    /// How far into debt an account can go, in seconds of its rate (1 to 3600).
    pub window_seconds: u32,
    /// Every `slip`-th response over the rate is sent truncated, the rest dropped; 0 drops
    /// them all, 1 truncates them all (0 to 10).
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub max_accounts: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            responses_per_second: DEFAULT_RESPONSES_PER_SECOND,
            window_seconds: DEFAULT_WINDOW_SECONDS,
            slip: DEFAULT_SLIP,
            ipv4_prefix: DEFAULT_IPV4_PREFIX,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            max_accounts: DEFAULT_MAX_ACCOUNTS,
        }
    }
}

/// A setting of [`RrlConfig`] out of its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RrlError {
    #[error("responses per second: {0} is more than {MAX_RESPONSES_PER_SECOND}")]
    Rate(u32),
    #[error("window: {0} s is not within 1..={MAX_WINDOW_SECONDS}")]
    Window(u32),
    #[error("slip: {0} is more than {MAX_SLIP}")]
    Slip(u32),
    #[error("client network: /{0} is longer than the address")]
    Prefix(u8),
    #[error("accounts: the table must hold at least one")]
    Accounts,
}

impl RrlConfig {
    pub fn validate(&self) -> Result<(), RrlError> {
        if self.responses_per_second > MAX_RESPONSES_PER_SECOND {
            return Err(RrlError::Rate(self.responses_per_second));
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&self.window_seconds) {
            return Err(RrlError::Window(self.window_seconds));
        }
        if self.slip > MAX_SLIP {
            return Err(RrlError::Slip(self.slip));
        }
        if self.ipv4_prefix > 32 {
            return Err(RrlError::Prefix(self.ipv4_prefix));
        }
        if self.ipv6_prefix > 128 {
            return Err(RrlError::Prefix(self.ipv6_prefix));
        }
        if self.max_accounts == 0 {
            return Err(RrlError::Accounts);
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.responses_per_second > 0
    }
}

/// What a response is, for its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NOERROR with records in the answer section.
    Answer,
    /// NOERROR without any.
    NoData,
    NxDomain,
    /// Every other rcode (REFUSED, SERVFAIL, FORMERR, ...), and what is no reply at all.
    Error,
}

impl Kind {
    /// From the reply's header.
    pub fn of(reply: &[u8]) -> Self {
        let Some(header) = reply.get(..HEADER_LEN) else { return Self::Error };
        let answers = u16::from_be_bytes([header[6], header[7]]);
        // The OPT record's extended rcode bits are left out: with them it is an error anyway.
        match header[3] & 0x0f {
            0 if answers > 0 => Self::Answer,
            0 => Self::NoData,
            3 => Self::NxDomain,
            _ => Self::Error,
        }
    }
}

/// The account a response is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseKey(u64);

impl ResponseKey {
    /// Which of `shards` tables holds this account (for callers that spread the accounts
    /// over several locks).
    pub fn shard(self, shards: usize) -> usize {
        // The high bits: the table's own hash of the key works on all of them anyway.
        ((self.0 >> 32) % shards.max(1) as u64) as usize
    }
}

/// Makes the [`ResponseKey`] of a reply to a client. The hash is keyed at random, so nobody can
/// choose names that share an account with someone else's.
#[derive(Debug, Clone)]
pub struct ResponseKeys {
    hasher: RandomState,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

impl ResponseKeys {
    pub fn new(config: &RrlConfig) -> Self {
        Self { hasher: RandomState::new(), ipv4_prefix: config.ipv4_prefix, ipv6_prefix: config.ipv6_prefix }
    }

    /// The client's network, the kind of `reply` and, but for errors, its question's name (in
    /// any case) and type.
    pub fn key(&self, client: IpAddr, reply: &[u8]) -> ResponseKey {
        let mut hasher = self.hasher.build_hasher();
        match client.to_canonical() {
            IpAddr::V4(ip) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.ipv4_prefix.min(32))).unwrap_or(0);
                hasher.write_u8(4);
                hasher.write_u32(u32::from(ip) & mask);
            }
            IpAddr::V6(ip) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.ipv6_prefix.min(128))).unwrap_or(0);
                hasher.write_u8(6);
                hasher.write_u128(u128::from(ip) & mask);
            }
        }
        let kind = Kind::of(reply);
        hasher.write_u8(kind as u8);
        if kind != Kind::Error
            && let Some(end) = question_end(reply)
        {
            // Names match in any case, and clients randomize it (0x20): one account per name.
            for byte in &reply[HEADER_LEN..end] {
                hasher.write_u8(byte.to_ascii_lowercase());
            }
        }
        ResponseKey(hasher.finish())
    }
}

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send [`slipped`] instead.
    Slip,
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    /// In millionths of a response; at most one second's credit, at least `-window` seconds'.
    balance: i64,
    last: Instant,
    /// Responses over the rate since the last slipped one.
    over: u32,
}

/// The accounts: a token bucket per [`ResponseKey`], at most `max_accounts` of them.
#[derive(Debug)]
pub struct RateLimiter {
    /// Credit a second (and the most an account holds), in millionths.
    rate: i64,
    /// The deepest debt.
    floor: i64,
    /// Past this much idle time every account is whole again.
    recovery: Duration,
    slip: u32,
    max_accounts: usize,
    accounts: HashMap<ResponseKey, Account>,
}

impl RateLimiter {
    /// A table of at most `max_accounts` accounts (callers that shard give each its part).
    pub fn new(config: &RrlConfig, max_accounts: usize) -> Self {
        let rate = i64::from(config.responses_per_second) * COST;
        let window = i64::from(config.window_seconds);
        Self {
            rate,
            floor: -window * rate,
            recovery: Duration::from_secs(u64::from(config.window_seconds) + 1),
            slip: config.slip,
            max_accounts: max_accounts.max(1),
            accounts: HashMap::new(),
        }
    }

    /// Charges one response to `key` at `now`. Responses over the rate are charged too (as in
    /// BIND): a flood keeps its account in debt until it has been quiet for a while.
    pub fn check(&mut self, key: ResponseKey, now: Instant) -> Verdict {
        if self.rate == 0 {
            return Verdict::Send;
        }
        if !self.accounts.contains_key(&key) && self.accounts.len() >= self.max_accounts {
            self.make_room(now);
        }
        let (rate, floor, recovery) = (self.rate, self.floor, self.recovery);
        let account = self.accounts.entry(key).or_insert(Account { balance: rate, last: now, over: 0 });
        account.balance = (account.balance + earned(rate, recovery, account.last, now)).min(rate);
        account.last = account.last.max(now);
        account.balance = (account.balance - COST).max(floor);
        if account.balance >= 0 {
            return Verdict::Send;
        }
        if self.slip == 0 {
            return Verdict::Drop;
        }
        account.over += 1;
        if account.over >= self.slip {
            account.over = 0;
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Accounts held.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Forgets the accounts that are whole again (as good as new ones); if every account is
    /// still in use, the older half goes, which forgives their debts: the table stays bounded
    /// whatever the clients ask.
    fn make_room(&mut self, now: Instant) {
        let (rate, recovery) = (self.rate, self.recovery);
        self.accounts.retain(|_, account| account.balance + earned(rate, recovery, account.last, now) < rate);
        if self.accounts.len() < self.max_accounts {
            return;
        }
        let mut by_age: Vec<(Instant, ResponseKey)> = self.accounts.iter().map(|(k, a)| (a.last, *k)).collect();
        let half = by_age.len() / 2;
        by_age.select_nth_unstable_by_key(half, |(last, _)| *last);
        for (_, key) in &by_age[..=half] {
            self.accounts.remove(key);
        }
    }
}

/// What an account of `rate` earned between `last` and `now`, in millionths.
fn earned(rate: i64, recovery: Duration, last: Instant, now: Instant) -> i64 {
    // Capped where every account is whole again, so the product stays far inside i64.
    let idle = now.saturating_duration_since(last).min(recovery);
    let micros = i64::try_from(idle.as_micros()).unwrap_or(i64::MAX);
    rate.saturating_mul(micros) / COST
}

/// The slipped form of `reply`: its header with TC set and its question, no records (so it
/// is no larger than the query was). `None` for what has no header.
pub fn slipped(reply: &[u8]) -> Option<Vec<u8>> {
    let header = reply.get(..HEADER_LEN)?;
    let end = question_end(reply);
    let mut out = Vec::with_capacity(end.unwrap_or(HEADER_LEN));
    out.extend_from_slice(header);
    // TC; the counts: the question if it could be found, nothing else (OPT included).
    out[2] |= 0x02;
    out[4..12].copy_from_slice(&[0, u8::from(end.is_some()), 0, 0, 0, 0, 0, 0]);
    if let Some(end) = end {
        out.extend_from_slice(&reply[HEADER_LEN..end]);
    }
    Some(out)
}

/// Where the single question of a message ends: after its name (which, coming first, has no
/// compression pointer), type and class.
fn question_end(message: &[u8]) -> Option<usize> {
    if message.get(4..6)? != [0, 1] {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = *message.get(at)?;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + usize::from(len);
    }
    let end = at + 1 + 4;
    (end <= message.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::ip;

    /// A reply to `name` (dotted) with `rcode` and `answers` records claimed in its header.
    fn reply(name: &str, rcode: u8, answers: u16) -> Vec<u8> {
        let mut out = vec![0x12, 0x34, 0x81, 0x80 | rcode, 0, 1];
        out.extend_from_slice(&answers.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 1]);
        for label in name.split('.') {
            out.push(u8::try_from(label.len()).expect("short label"));
            out.extend_from_slice(label.as_bytes());
        }
        out.extend_from_slice(&[0, 0, 1, 0, 1]);
        // An answer and an OPT record the slipped form leaves out.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 1, 0, 9]);
        out.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        out
    }

    fn config(rate: u32, window: u32, slip: u32) -> RrlConfig {
        RrlConfig { responses_per_second: rate, window_seconds: window, slip, ..RrlConfig::default() }
    }

    /// The verdicts of `count` responses to `key`, `gap` apart from `start` on.
    fn run(rrl: &mut RateLimiter, key: ResponseKey, start: Instant, gap: Duration, count: u32) -> [usize; 3] {
        let mut seen = [0; 3];
        for i in 0..count {
            match rrl.check(key, start + gap * i) {
                Verdict::Send => seen[0] += 1,
                Verdict::Slip => seen[1] += 1,
                Verdict::Drop => seen[2] += 1,
            }
        }
        seen
    }

    #[test]
    fn a_burst_of_one_seconds_rate_then_every_second_response_slips() {
        let mut rrl = RateLimiter::new(&config(10, 15, 2), 100);
        let start = Instant::now();
        let key = ResponseKey(1);
        // 40 at once: 10 paid for, then drop, slip, drop, slip...
        assert_eq!(run(&mut rrl, key, start, Duration::ZERO, 40), [10, 15, 15]);
        let other = ResponseKey(2);
        assert_eq!(rrl.check(other, start), Verdict::Send, "another account is not charged");
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_always_answered() {
        let mut rrl = RateLimiter::new(&config(100, 15, 2), 100);
        // 100 a second for a minute, evenly spaced: never over.
        let seen = run(&mut rrl, ResponseKey(7), Instant::now(), Duration::from_millis(10), 6000);
        assert_eq!(seen, [6000, 0, 0]);
        // Twice the rate for ten seconds: what is over the rate is charged too (as in BIND), so
        // once the second's saving is spent the account stays in debt and only slips get out.
        let mut rrl = RateLimiter::new(&config(100, 15, 2), 100);
        let [sent, slipped, dropped] = run(&mut rrl, ResponseKey(7), Instant::now(), Duration::from_millis(5), 2000);
        assert!((195..=205).contains(&sent), "{sent} sent");
        assert!(slipped.abs_diff(dropped) <= 1, "{slipped} slipped, {dropped} dropped");
    }

    #[test]
    fn debt_lasts_about_the_window_after_a_flood() {
        let mut rrl = RateLimiter::new(&config(10, 5, 0), 100);
        let start = Instant::now();
        let key = ResponseKey(3);
        // A flood far past the window's worth: the debt stops at 5 s of credit (50).
        assert_eq!(run(&mut rrl, key, start, Duration::ZERO, 1000), [10, 0, 990]);
        let quiet = |secs: f64| start + Duration::from_secs_f64(secs);
        assert_eq!(rrl.check(key, quiet(4.9)), Verdict::Drop, "still paying 5 s of debt");
        // That check cost one more response; 0.3 s later (three responses' credit) it is paid.
        assert_eq!(rrl.check(key, quiet(5.2)), Verdict::Send);
        // Slip 0 never truncates; slip 1 always does.
        let mut all = RateLimiter::new(&config(10, 5, 1), 100);
        assert_eq!(run(&mut all, key, start, Duration::ZERO, 30), [10, 20, 0]);
    }

    #[test]
    fn a_time_going_backwards_earns_nothing() {
        let mut rrl = RateLimiter::new(&config(1, 1, 0), 100);
        let start = Instant::now() + Duration::from_secs(10);
        assert_eq!(rrl.check(ResponseKey(1), start), Verdict::Send);
        // Another thread's clock reading may be a little older than the last one seen.
        assert_eq!(rrl.check(ResponseKey(1), start - Duration::from_millis(1)), Verdict::Drop);
        assert_eq!(rrl.check(ResponseKey(1), start + Duration::from_secs(3)), Verdict::Send);
    }

    #[test]
    fn off_sends_everything() {
        let mut rrl = RateLimiter::new(&config(0, 15, 2), 100);
        assert_eq!(run(&mut rrl, ResponseKey(1), Instant::now(), Duration::ZERO, 1000), [1000, 0, 0]);
        assert!(rrl.is_empty(), "nothing kept");
        assert!(!config(0, 15, 2).enabled() && RrlConfig::default().enabled());
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut rrl = RateLimiter::new(&config(10, 15, 2), 64);
        let start = Instant::now();
        // Whole accounts are forgotten first: a thousand one-off keys over a second.
        for i in 0..1000u32 {
            rrl.check(ResponseKey(u64::from(i)), start + Duration::from_millis(u64::from(i)));
            assert!(rrl.len() <= 64);
        }
        // Accounts in debt all: the older half goes when a new key comes.
        let mut rrl = RateLimiter::new(&config(1, 15, 2), 64);
        for i in 0..64u64 {
            run(&mut rrl, ResponseKey(i), start + Duration::from_millis(i), Duration::ZERO, 5);
        }
        assert_eq!(rrl.len(), 64);
        assert_eq!(rrl.check(ResponseKey(1000), start + Duration::from_millis(100)), Verdict::Send);
        assert_eq!(rrl.len(), 32, "{} accounts", rrl.len());
        // Accounts seen at the same time go by half all the same.
        let mut same = RateLimiter::new(&config(1, 15, 2), 64);
        for i in 0..65u64 {
            run(&mut same, ResponseKey(i), start, Duration::ZERO, 5);
        }
        assert_eq!(same.len(), 32);
        assert_eq!(
            rrl.check(ResponseKey(63), start + Duration::from_millis(100)),
            Verdict::Drop,
            "the newer keep their debt"
        );
    }

    #[test]
    fn keys_are_the_client_network_the_kind_and_the_question() {
        let keys = ResponseKeys::new(&RrlConfig::default());
        let web = reply("web.shop.svc.cluster.local", 0, 1);
        let key = |client: &str, reply: &[u8]| keys.key(ip(client), reply);
        assert_eq!(key("10.1.0.5", &web), key("10.1.0.77", &web), "one /24");
        assert_eq!(key("10.1.0.5", &web), key("::ffff:10.1.0.6", &web), "mapped IPv4 is IPv4");
        assert_ne!(key("10.1.0.5", &web), key("10.1.1.5", &web), "another /24");
        assert_eq!(key("fd00:1:2:3400::1", &web), key("fd00:1:2:34ff::2", &web), "one /56");
        assert_ne!(key("fd00:1:2:3400::1", &web), key("fd00:1:2:3500::1", &web));
        assert_eq!(key("10.1.0.5", &web), key("10.1.0.5", &reply("WEB.shop.SVC.cluster.local", 0, 1)), "any case");
        assert_ne!(key("10.1.0.5", &web), key("10.1.0.5", &reply("db.shop.svc.cluster.local", 0, 1)));
        assert_ne!(key("10.1.0.5", &web), key("10.1.0.5", &reply("web.shop.svc.cluster.local", 0, 0)), "NODATA");
        let nx = |name| key("10.1.0.5", &reply(name, 3, 0));
        assert_ne!(nx("a.cluster.local"), nx("b.cluster.local"), "NXDOMAIN by name, as CoreDNS's rrl");
        let error = |name, rcode| key("10.1.0.5", &reply(name, rcode, 0));
        assert_eq!(error("a.example", 2), error("b.example", 5), "errors share one account per network");
        assert_eq!(error("a.example", 2), key("10.1.0.9", &[0x12, 0x34, 0x81, 0x81]), "with what is no reply");
        let whole = ResponseKeys::new(&RrlConfig { ipv4_prefix: 32, ipv6_prefix: 128, ..RrlConfig::default() });
        assert_ne!(whole.key(ip("10.1.0.5"), &web), whole.key(ip("10.1.0.6"), &web));
        let one = ResponseKeys::new(&RrlConfig { ipv4_prefix: 0, ..RrlConfig::default() });
        assert_eq!(one.key(ip("10.1.0.5"), &web), one.key(ip("192.0.2.1"), &web));
        for shards in [1, 7, 16] {
            assert!(key("10.1.0.5", &web).shard(shards) < shards);
        }
    }

    #[test]
    fn kinds_from_the_header() {
        assert_eq!(Kind::of(&reply("a.b", 0, 2)), Kind::Answer);
        assert_eq!(Kind::of(&reply("a.b", 0, 0)), Kind::NoData);
        assert_eq!(Kind::of(&reply("a.b", 3, 0)), Kind::NxDomain);
        for rcode in [1, 2, 4, 5, 9] {
            assert_eq!(Kind::of(&reply("a.b", rcode, 0)), Kind::Error);
        }
        assert_eq!(Kind::of(&[0; 11]), Kind::Error);
    }

    #[test]
    fn a_slipped_reply_is_the_header_with_tc_and_the_question() {
        let full = reply("Web.shop.svc.cluster.local", 0, 1);
        let cut = slipped(&full).expect("a header");
        let question_len = "Web.shop.svc.cluster.local".len() + 2 + 4;
        assert_eq!(cut.len(), HEADER_LEN + question_len);
        assert_eq!(&cut[..2], &full[..2], "the ID");
        assert_eq!(cut[2], full[2] | 0x02, "TC, and the other flags as they were");
        assert_eq!(cut[3], full[3]);
        assert_eq!(&cut[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&cut[12..], &full[12..12 + question_len], "the question in its case");
        // A header without a question it can find (FORMERR, a name past the end, a pointer).
        let bare = [0x12, 0x34, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(slipped(&bare).expect("a header"), [0x12, 0x34, 0x83, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]);
        let short = &full[..20];
        assert_eq!(slipped(short).expect("a header").len(), HEADER_LEN);
        let mut pointer = full.clone();
        pointer[12] = 0xc0;
        assert_eq!(slipped(&pointer).expect("a header").len(), HEADER_LEN);
        assert_eq!(slipped(&full[..11]), None);
    }

    #[test]
    fn settings_are_bounded() {
        assert_eq!(RrlConfig::default().validate(), Ok(()));
        assert_eq!(config(0, 15, 2).validate(), Ok(()), "0 is off");
        assert_eq!(config(MAX_RESPONSES_PER_SECOND + 1, 15, 2).validate(), Err(RrlError::Rate(1_000_001)));
        assert_eq!(config(100, 0, 2).validate(), Err(RrlError::Window(0)));
        assert_eq!(config(100, 3601, 2).validate(), Err(RrlError::Window(3601)));
        assert_eq!(config(100, 15, 11).validate(), Err(RrlError::Slip(11)));
        let prefix = RrlConfig { ipv4_prefix: 33, ..RrlConfig::default() };
        assert_eq!(prefix.validate(), Err(RrlError::Prefix(33)));
        assert_eq!(RrlConfig { max_accounts: 0, ..RrlConfig::default() }.validate(), Err(RrlError::Accounts));
        // The largest settings stay inside the arithmetic: a day's idleness is one second's credit.
        let mut rrl = RateLimiter::new(&config(MAX_RESPONSES_PER_SECOND, MAX_WINDOW_SECONDS, 2), 10);
        let start = Instant::now();
        assert_eq!(rrl.check(ResponseKey(1), start), Verdict::Send);
        assert_eq!(rrl.check(ResponseKey(1), start + Duration::from_secs(86400)), Verdict::Send);
    }
}

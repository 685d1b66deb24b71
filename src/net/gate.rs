//! The gate in front of a node's listener. Until a peer has proved the
//! cookie it is a stranger, and strangers get little: one deadline for the
//! whole handshake, a bounded number of handshakes at once (past it, the
//! address with the most gives way, oldest first, so that one address
//! cannot crowd out the others), a pause for an address that keeps
//! failing, a backoff when accepting fails (out of file descriptors), and
//! log lines counted rather than written one per refusal. A dialer whose
//! first flight proved the cookie is no stranger: it leaves the strangers'
//! count and is never made to give way to them, so the all-to-all dialing
//! of a large cluster from one address (one host, or many behind one NAT)
//! is never turned away by a limit meant for strangers.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::handshake::{self, Identity, HANDSHAKE_TIMEOUT};
use super::{Authenticated, Role};

/// Handshakes of strangers in progress at once.
pub const MAX_PENDING: usize = 256;
/// Handshakes in progress at once whose dialer proved the cookie (they
/// finish within a round trip; only replayed first flights linger, until
/// the handshake deadline). Past it, a proven handshake stays a stranger.
pub const MAX_PROVEN: usize = 1024;
/// Failed handshakes (a wrong cookie, a handshake never finished, a place
/// given up to others) from one address within [`FAILURE_WINDOW`] before it
/// is paused until the window ends: then it gets one handshake at a time,
/// not none, so that a good peer sharing the address (127.0.0.1, a NAT)
/// still gets in between a failing client's attempts.
pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered at once; past it, the oldest
/// record is forgotten.
pub const MAX_TRACKED: usize = 4096;
/// How often refusals are summed up in the log.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

struct Pending {
    id: u64,
    addr: IpAddr,
    evict: CancellationToken,
    /// The dialer proved the cookie: it does not give way to strangers.
    proven: bool,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Pending>,
    failures: HashMap<IpAddr, (Instant, u32)>,
    /// The failures' records in the order they began, to forget them
    /// oldest first without a scan.
    began: VecDeque<(IpAddr, Instant)>,
    next: u64,
    /// Refusals not yet logged, and the first of them.
    refused: u64,
    first: Option<String>,
    last_log: Option<Instant>,
}

/// Admission for strangers: what is pending, who failed, what was refused.
#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
}

/// A handshake's place at the gate; dropping it frees the place.
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    /// Cancelled when a newer stranger takes this place.
    pub evicted: CancellationToken,
}

impl Ticket {
    /// The dialer proved the cookie.
    pub fn proven(&self) {
        self.gate.proven(self.id);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.state.lock().expect("gate lock").pending.retain(|p| p.id != self.id);
    }
}

impl Gate {
    /// A place for a handshake from `addr`, or `None` while the address is
    /// paused for failing. Past the strangers' limit, the address with the
    /// most strangers pending (the newcomer's counted) gives way, its
    /// oldest first.
    pub fn admit(self: &Arc<Self>, addr: IpAddr, now: Instant) -> Option<Ticket> {
        let addr = source(addr);
        let mut s = self.state.lock().expect("gate lock");
        if let Some(&(since, n)) = s.failures.get(&addr) {
            let paused = now.duration_since(since) < FAILURE_WINDOW && n >= MAX_FAILURES;
            if paused && s.pending.iter().any(|p| !p.proven && p.addr == addr) {
                return None;
            }
        }
        let strangers = || s.pending.iter().filter(|p| !p.proven);
        if strangers().count() >= MAX_PENDING {
            let mut per_addr: HashMap<IpAddr, usize> = HashMap::from([(addr, 1)]);
            for p in strangers() {
                *per_addr.entry(p.addr).or_default() += 1;
            }
            let crowd = per_addr.iter().max_by_key(|(_, &n)| n).map(|(&a, _)| a).unwrap_or(addr);
            if let Some(i) = s.pending.iter().position(|p| !p.proven && p.addr == crowd) {
                s.pending.remove(i).expect("found").evict.cancel();
            } else {
                // The newcomer's address is the crowd and has nothing pending
                // to give: only possible with a limit of zero.
                return None;
            }
        }
        s.next += 1;
        let (id, evicted) = (s.next, CancellationToken::new());
        s.pending.push_back(Pending { id, addr, evict: evicted.clone(), proven: false });
        Some(Ticket { gate: self.clone(), id, evicted })
    }

    /// The handshake of `ticket` proved the cookie: it no longer counts
    /// among strangers nor gives way to them (while fewer than
    /// [`MAX_PROVEN`] are).
    fn proven(&self, id: u64) {
        let mut s = self.state.lock().expect("gate lock");
        if s.pending.iter().filter(|p| p.proven).count() < MAX_PROVEN {
            if let Some(p) = s.pending.iter_mut().find(|p| p.id == id) {
                p.proven = true;
            }
        }
    }

    /// A handshake from an address failed before it proved the cookie.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let addr = source(addr);
        let mut s = self.state.lock().expect("gate lock");
        let s = &mut *s;
        // Forget records whose window is over, and the oldest past the cap.
        while let Some(&(old, began)) = s.began.front() {
            if now.duration_since(began) < FAILURE_WINDOW && s.failures.len() < MAX_TRACKED {
                break;
            }
            s.began.pop_front();
            if s.failures.get(&old).is_some_and(|&(since, _)| since == began) {
                s.failures.remove(&old);
            }
        }
        let entry = s.failures.entry(addr).or_insert((now, 0));
        if entry.1 == 0 || now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
            s.began.push_back((addr, now));
        }
        entry.1 += 1;
    }

    /// Counts a refusal; the line to log now, if any: the first refusal of
    /// an interval is logged as it is, the others as a count.
    pub fn refused(&self, why: String, now: Instant) -> Option<String> {
        let mut s = self.state.lock().expect("gate lock");
        let quiet = s.last_log.is_some_and(|t| now.duration_since(t) < LOG_INTERVAL);
        if quiet {
            s.refused += 1;
            s.first.get_or_insert(why);
            return None;
        }
        s.last_log = Some(now);
        Some(why)
    }

    /// The count of refusals not logged since the last line, as a line.
    pub fn summary(&self, now: Instant) -> Option<String> {
        let mut s = self.state.lock().expect("gate lock");
        if s.refused == 0 || s.last_log.is_some_and(|t| now.duration_since(t) < LOG_INTERVAL) {
            return None;
        }
        let first = s.first.take().unwrap_or_default();
        let line = format!(
            "refused {} more connection{} in the last {} (the first: {first})",
            s.refused,
            if s.refused == 1 { "" } else { "s" },
            crate::settings::seconds(LOG_INTERVAL),
        );
        s.refused = 0;
        s.last_log = Some(now);
        Some(line)
    }
}

/// Where a connection comes from, for the limits: an IPv4 address (an
/// IPv4-mapped IPv6 one as IPv4), or an IPv6 /64 — one host holds a whole
/// /64, and would walk around limits kept per IPv6 address.
fn source(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// Serves a node's listener until `stop`: each connection passes the gate,
/// is authenticated as `identity` admitting `roles`, and is handed to
/// `handle` on a task of its own.
pub async fn serve<F, Fut>(listener: TcpListener, stop: CancellationToken, identity: Identity, roles: &'static [Role], handle: F)
where
    F: Fn(Authenticated) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let gate = Arc::new(Gate::default());
    let mut backoff = Duration::ZERO;
    let mut summaries = tokio::time::interval(LOG_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = summaries.tick() => {
                if let Some(line) = gate.summary(Instant::now()) {
                    tracing::warn!("{line}");
                }
            }
            accepted = listener.accept() => {
                let (stream, from) = match accepted {
                    Ok(a) => {
                        backoff = Duration::ZERO;
                        a
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: wait for some to close.
                        backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                        if let Some(line) = gate.refused(format!("cannot accept connections: {e}"), Instant::now()) {
                            tracing::warn!("{line} (retrying in {})", crate::settings::seconds(backoff));
                        }
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                };
                let Some(ticket) = gate.admit(from.ip(), Instant::now()) else {
                    if let Some(line) = gate.refused(format!("{} is paused after {MAX_FAILURES} failed handshakes (one at a time until the minute is over)", from.ip()), Instant::now()) {
                        tracing::warn!("{line}");
                    }
                    continue;
                };
                let (identity, handle, gate) = (identity.clone(), handle.clone(), gate.clone());
                tokio::spawn(async move {
                    let attempt = handshake_at_gate(stream, &identity, roles, &ticket, &gate, from).await;
                    drop(ticket);
                    match attempt {
                        Ok(auth) => handle(auth).await,
                        Err(why) => {
                            super::counters::handshake_failed();
                            if let Some(line) = gate.refused(why, Instant::now()) {
                                tracing::warn!("refused a connection: {line}");
                            }
                        }
                    }
                });
            }
        }
    }
}

/// One handshake through the gate. Strangers get [`HANDSHAKE_TIMEOUT`]; a
/// dialer that proved the cookie and then stalls (stopped, swapping) before
/// its confirmation is a member of the cluster, and gets a tick time more:
/// a stall shorter than the tick time costs nothing, handshakes included.
async fn handshake_at_gate(
    stream: tokio::net::TcpStream,
    identity: &Identity,
    roles: &[Role],
    ticket: &Ticket,
    gate: &Gate,
    from: std::net::SocketAddr,
) -> Result<Authenticated, String> {
    let proved = AtomicBool::new(false);
    let accepting = handshake::accept_with(stream, identity, roles, || {
        ticket.proven();
        proved.store(true, Ordering::Relaxed);
    });
    tokio::pin!(accepting);
    let limit = tokio::time::sleep(HANDSHAKE_TIMEOUT);
    tokio::pin!(limit);
    let mut extended = false;
    loop {
        tokio::select! {
            _ = ticket.evicted.cancelled() => {
                // A stranger crowding the gate counts as failing: one that
                // keeps the places full is paused like a wrong cookie.
                if !proved.load(Ordering::Relaxed) {
                    gate.failed(from.ip(), Instant::now());
                }
                return Err(format!("{from}: gave way to newer connections while handshaking"));
            }
            r = &mut accepting => return r.map_err(|rejected| {
                if rejected.unauthenticated {
                    gate.failed(from.ip(), Instant::now());
                }
                format!("{from}: {}", rejected.error)
            }),
            _ = &mut limit => {
                if !proved.load(Ordering::Relaxed) || extended {
                    // Silent or trickling: a failure like a wrong cookie.
                    if !proved.load(Ordering::Relaxed) {
                        gate.failed(from.ip(), Instant::now());
                    }
                    return Err(format!("{from}: the handshake took longer than {}", crate::settings::seconds(HANDSHAKE_TIMEOUT)));
                }
                extended = true;
                limit.as_mut().reset(tokio::time::Instant::now() + crate::settings::tick::tick());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn past_the_limit_the_address_with_the_most_strangers_gives_way_oldest_first() {
        let gate = Arc::new(Gate::default());
        let now = Instant::now();
        let crowd: Vec<Ticket> = (0..MAX_PENDING - 2).map(|_| gate.admit(ip(2), now).unwrap()).collect();
        let others: Vec<Ticket> = (0..2).map(|_| gate.admit(ip(3), now).unwrap()).collect();
        assert!(crowd.iter().chain(&others).all(|t| !t.evicted.is_cancelled()), "a burst from one address fits");
        let newest = gate.admit(ip(3), now).unwrap();
        assert!(crowd[0].evicted.is_cancelled() && !crowd[1].evicted.is_cancelled(), "the crowd's oldest gives way");
        assert!(others.iter().all(|t| !t.evicted.is_cancelled()) && !newest.evicted.is_cancelled());
        assert_eq!(gate.state.lock().unwrap().pending.len(), MAX_PENDING);
        drop(crowd);
        assert_eq!(gate.state.lock().unwrap().pending.len(), 3, "dropped tickets free places");
    }

    /// Issue 25: 32 workers on one host dial each other from one address;
    /// strangers from that address evicted the ones that had already
    /// proved the cookie.
    #[test]
    fn a_dialer_that_proved_the_cookie_never_gives_way_to_strangers() {
        let gate = Arc::new(Gate::default());
        let now = Instant::now();
        let peers: Vec<Ticket> = (0..64).map(|_| gate.admit(ip(1), now).unwrap()).collect();
        peers.iter().for_each(Ticket::proven);
        let strangers: Vec<Ticket> = (0..MAX_PENDING * 2).map(|_| gate.admit(ip(1), now).unwrap()).collect();
        assert!(peers.iter().all(|t| !t.evicted.is_cancelled()), "proven handshakes stay");
        assert_eq!(strangers.iter().filter(|t| !t.evicted.is_cancelled()).count(), MAX_PENDING, "strangers stay bounded");
    }

    /// Issue 31: strangers from many addresses (500 from 16, the dialer's
    /// own among them) crowd the gate; a dialer that proved the cookie
    /// keeps its place.
    #[test]
    fn a_proven_dialer_is_never_evicted_by_500_strangers_from_16_addresses() {
        let gate = Arc::new(Gate::default());
        let now = Instant::now();
        let peer = gate.admit(ip(1), now).unwrap();
        peer.proven();
        let strangers: Vec<Ticket> = (0..500).map(|i| gate.admit(ip(1 + (i % 16) as u8), now).unwrap()).collect();
        assert!(!peer.evicted.is_cancelled(), "the proven dialer gave way");
        assert_eq!(strangers.iter().filter(|t| !t.evicted.is_cancelled()).count(), MAX_PENDING, "strangers stay bounded");
    }

    #[test]
    fn all_strangers_together_are_bounded() {
        let gate = Arc::new(Gate::default());
        let now = Instant::now();
        let tickets: Vec<Ticket> = (0..MAX_PENDING).map(|i| gate.admit(ip((i % 200) as u8), now).unwrap()).collect();
        let _late = gate.admit(ip(250), now).unwrap();
        assert_eq!(tickets.iter().filter(|t| t.evicted.is_cancelled()).count(), 1);
        assert_eq!(gate.state.lock().unwrap().pending.len(), MAX_PENDING);
    }

    #[test]
    fn an_address_that_keeps_failing_is_paused_for_a_window() {
        let gate = Arc::new(Gate::default());
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(gate.admit(ip(4), now).is_some());
            gate.failed(ip(4), now);
        }
        // Paused: one handshake at a time (a good peer on the same
        // address gets in between the failing client's attempts).
        let one = gate.admit(ip(4), now).expect("one at a time");
        assert!(gate.admit(ip(4), now).is_none(), "paused");
        let _others: Vec<Ticket> = (0..5).map(|_| gate.admit(ip(5), now).expect("only that address")).collect();
        drop(one);
        assert!(gate.admit(ip(4), now).is_some(), "its one place is free again");
        let _many: Vec<Ticket> = (0..5).map(|_| gate.admit(ip(4), now + FAILURE_WINDOW).expect("the window ends")).collect();
    }

    /// Issue 31: one host holds a whole IPv6 /64; limits kept per address
    /// let it walk around them. An IPv4-mapped address is its IPv4 one.
    #[test]
    fn ipv6_addresses_are_limited_by_their_64_bit_prefix() {
        let gate = Arc::new(Gate::default());
        let now = Instant::now();
        let v6 = |s: &str| IpAddr::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        for i in 0..MAX_FAILURES {
            gate.failed(v6(&format!("2001:db8:0:7::{:x}", i + 1)), now);
        }
        let _one = gate.admit(v6("2001:db8:0:7:ffff::1"), now).expect("one at a time");
        assert!(gate.admit(v6("2001:db8:0:7:abcd::9"), now).is_none(), "the /64 is paused, whatever its last 64 bits");
        assert!(gate.admit(v6("2001:db8:0:8::1"), now).is_some(), "the next /64 is not");
        for _ in 0..MAX_FAILURES {
            gate.failed(v6("::ffff:127.0.0.9"), now);
        }
        let _nine = gate.admit(ip(9), now).expect("one at a time");
        assert!(gate.admit(ip(9), now).is_none(), "an IPv4-mapped address counts as its IPv4 one");
    }

    /// Issue 31: the failures remembered are bounded, and forgetting them
    /// takes no scan.
    #[test]
    fn the_failures_remembered_are_bounded() {
        let gate = Arc::new(Gate::default());
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 * 3) {
            gate.failed(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), now);
        }
        let s = gate.state.lock().unwrap();
        assert!(s.failures.len() <= MAX_TRACKED && s.began.len() <= MAX_TRACKED, "{} {}", s.failures.len(), s.began.len());
        drop(s);
        // The newest are the ones kept.
        for _ in 0..MAX_FAILURES {
            gate.failed(IpAddr::from((0x0a00_0000 + MAX_TRACKED as u32 * 3 - 1).to_be_bytes()), now);
        }
        assert_eq!(gate.state.lock().unwrap().failures.values().map(|&(_, n)| n).max(), Some(MAX_FAILURES + 1));
    }

    /// Issue 31: a stranger that says nothing (or trickles) until the
    /// handshake's deadline fails like a wrong cookie: enough of them and
    /// the address is paused. (Real time: the deadline is 5 s.)
    #[tokio::test]
    async fn a_silent_stranger_counts_as_a_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(Gate::default());
        let me = Identity::new(Role::Worker, "w@h", &crate::net::Cookie::for_tests("c"));
        let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, from) = listener.accept().await.unwrap();
        let ticket = gate.admit(from.ip(), Instant::now()).unwrap();
        let got = handshake_at_gate(stream, &me, &[Role::Peer], &ticket, &gate, from).await;
        assert!(got.err().unwrap().contains("took longer than"));
        assert_eq!(gate.state.lock().unwrap().failures.get(&from.ip()).map(|&(_, n)| n), Some(1));
    }

    /// Issue 25: a dialer stopped after proving the cookie and before its
    /// confirmation (an 8 s stall at the wrong moment) was dropped after the
    /// strangers' 5 s; a member gets a tick time more.
    #[tokio::test]
    async fn a_dialer_that_proved_the_cookie_may_stall_before_confirming() {
        use crate::net::handshake::{dial_pausing, Hello};
        use crate::net::message::PROTOCOL;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = Identity::new(Role::Worker, "w@h", &crate::net::Cookie::for_tests("c"));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, stop.clone(), me.clone(), &[Role::Peer], move |auth: Authenticated| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(auth.peer_name);
            }
        }));
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let hello = Hello { protocol: PROTOCOL, version: crate::VERSION.into(), role: Role::Peer, name: "p@h".into() };
        let pause = HANDSHAKE_TIMEOUT + Duration::from_secs(2);
        let _dialer = dial_pausing(stream, &me.psk, hello, pause).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(accepted.ok().flatten().as_deref(), Some("p@h"), "the member was accepted after its stall");
        stop.cancel();
    }

    #[test]
    fn refusals_are_counted_not_logged_one_by_one() {
        let gate = Gate::default();
        let now = Instant::now();
        assert!(gate.refused("first".into(), now).is_some());
        for i in 0..1000 {
            assert!(gate.refused(format!("r{i}"), now).is_none());
        }
        assert!(gate.summary(now).is_none(), "not before the interval ends");
        let line = gate.summary(now + LOG_INTERVAL).unwrap();
        assert!(line.contains("1000 more") && line.contains("r0"), "{line}");
        assert!(gate.summary(now + LOG_INTERVAL * 2).is_none(), "counted once");
    }
}

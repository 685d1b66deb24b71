//! The handshake: Noise `NNpsk0` (X25519, AES-GCM, SHA-256), its pre-shared
//! key derived from the cookie with HKDF. Three flights:
//!
//! 1. dialer -> listener: an ephemeral key and, sealed under a key only a
//!    cookie holder can derive, a [`Hello`] (protocol, version, role, name);
//! 2. listener -> dialer: its ephemeral key and, sealed, an [`Answer`]
//!    (welcome with its own name and role, or a refusal and why);
//! 3. dialer -> listener: an empty sealed record, proving it holds this
//!    connection's keys (a replayed first flight cannot).
//!
//! Both hellos are in the transcript every later key depends on, so a
//! relay that changes a role or a name breaks the connection. The cookie
//! never crosses the wire; the ephemeral keys give forward secrecy. Until the
//! first flight opens, the listener reads at most [`MAX_HANDSHAKE`] bytes,
//! decodes nothing, and says nothing about itself.

use std::time::Duration;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::cipher::Cipher;
use super::connection::Authenticated;
use super::cookie::{Cookie, Psk};
use super::framing::{SealedReader, SealedWriter};
use super::message::{Role, PROTOCOL};
use super::NetError;

const PATTERN: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
const PROLOGUE: &[u8] = b"skitter noise 1";
/// The most a handshake message may take on the wire.
pub const MAX_HANDSHAKE: usize = 2048;
/// The longest node name accepted.
pub const MAX_NAME: usize = 255;
/// How long a whole handshake may take, from connect to confirmation.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who this end is, for the handshake: the key its cookie gives, never
/// the cookie itself.
#[derive(Clone, Debug)]
pub struct Identity {
    pub role: Role,
    pub name: String,
    pub psk: Psk,
}

impl Identity {
    pub fn new(role: Role, name: impl Into<String>, cookie: &Cookie) -> Identity {
        Identity { role, name: name.into(), psk: cookie.psk() }
    }
}

/// The dialer's first words (sealed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub version: String,
    pub role: Role,
    pub name: String,
}

/// The listener's answer (sealed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Welcome { protocol: u32, version: String, role: Role, name: String },
    Refused(Refusal),
}

/// Why a listener refused a dialer that knows the cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("incompatible version: {node} runs skitter {version} (protocol {protocol}), the dialer a different protocol")]
    Version { node: String, version: String, protocol: u32 },
    #[error("mode mismatch: a {listener} does not accept connections from a {dialer}")]
    Role { listener: Role, dialer: Role },
    #[error("a node name must be 1 to {MAX_NAME} printable characters")]
    Name,
}

fn noise(psk: &Psk, initiator: bool) -> Result<snow::HandshakeState, NetError> {
    let builder = snow::Builder::new(PATTERN.parse().expect("a valid Noise pattern"))
        .psk(0, &psk.0)
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(|e| NetError::Crypto(e.to_string()))?;
    if initiator { builder.build_initiator() } else { builder.build_responder() }.map_err(|e| NetError::Crypto(e.to_string()))
}

/// The roles a listener may have for a dialer in `role`.
fn answers(role: Role) -> &'static [Role] {
    match role {
        Role::Master | Role::Peer => &[Role::Worker],
        Role::Worker => &[Role::Master],
        Role::Console => &[Role::Master, Role::Worker, Role::Local],
        Role::Local => &[],
    }
}

/// Whether a name is one a node may have: printable, not too long.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control)
}

/// Text a peer supplied, made safe for a log line: escaped, at most 64 characters.
pub fn quoted(text: &str) -> String {
    let escaped: String = text.chars().flat_map(char::escape_debug).take(64).collect();
    if escaped.len() < text.len() || text.chars().any(|c| c.escape_debug().count() > 1) {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

async fn send(stream: &mut TcpStream, msg: &[u8]) -> Result<(), NetError> {
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await?;
    Ok(())
}

/// Reads one handshake message: a 2-byte length, at most [`MAX_HANDSHAKE`].
async fn receive(stream: &mut TcpStream) -> Result<Vec<u8>, NetError> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(closed)?;
    let len = u16::from_be_bytes(len) as usize;
    if len > MAX_HANDSHAKE {
        return Err(NetError::Malformed(format!("a handshake message of {len} bytes (the limit is {MAX_HANDSHAKE})")));
    }
    let mut msg = vec![0u8; len];
    stream.read_exact(&mut msg).await.map_err(closed)?;
    Ok(msg)
}

fn closed(e: std::io::Error) -> NetError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        NetError::Closed
    } else {
        NetError::Io(e)
    }
}

fn split(
    stream: TcpStream,
    mut noise: snow::HandshakeState,
    peer_role: Role,
    peer_name: String,
    peer_addr: String,
) -> Result<Authenticated, NetError> {
    if !noise.is_handshake_finished() {
        return Err(NetError::Crypto("the handshake is not finished".into()));
    }
    // Each half its own direction: the dialer writes with the first key.
    let (to_listener, to_dialer) = noise.dangerously_get_raw_split();
    let (write, read) = if noise.is_initiator() { (to_listener, to_dialer) } else { (to_dialer, to_listener) };
    let (r, w) = stream.into_split();
    Ok(Authenticated {
        reader: SealedReader::new(r, Cipher::new(read), BytesMut::new()),
        writer: SealedWriter::new(w, Cipher::new(write)),
        peer_role,
        peer_name,
        peer_addr,
    })
}

/// Connects to `addr` and handshakes as `me`, all within [`HANDSHAKE_TIMEOUT`].
pub async fn dial(addr: &str, me: &Identity) -> Result<Authenticated, NetError> {
    dial_within(addr, me, HANDSHAKE_TIMEOUT).await
}

/// [`dial`] that waits up to `limit` for the peer's answer: a member of
/// the cluster that is stalled (stopped, swapping, paused in a debugger)
/// for less than the tick time answers late, and is no less alive for it.
pub async fn dial_within(addr: &str, me: &Identity, limit: Duration) -> Result<Authenticated, NetError> {
    let hello = Hello { protocol: PROTOCOL, version: crate::VERSION.into(), role: me.role, name: me.name.clone() };
    let attempt = async { dial_with(TcpStream::connect(addr).await?, &me.psk, hello).await };
    tokio::time::timeout(limit, attempt).await.map_err(|_| NetError::Timeout(limit))?
}

/// Dials `addr` until it answers or `wait` has passed. An attempt that
/// fails in a way `transient` accepts (a node still starting, or stalled)
/// is tried again after a pause (20 ms, doubling up to 1 s); any other
/// failure, or the last one, is returned. An attempt may take what is left
/// of `wait`, and never less than `at_least`.
pub async fn dial_retrying(
    addr: &str,
    me: &Identity,
    wait: Duration,
    at_least: Duration,
    transient: impl Fn(&NetError) -> bool,
) -> Result<Authenticated, NetError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match dial_within(addr, me, left.max(at_least)).await {
            Ok(auth) => return Ok(auth),
            Err(e) if !transient(&e) || tokio::time::Instant::now() + pause >= deadline => return Err(e),
            Err(e) => {
                tracing::debug!("dialing {addr}: {e}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn dial_with(stream: TcpStream, psk: &Psk, hello: Hello) -> Result<Authenticated, NetError> {
    dial_pausing(stream, psk, hello, std::time::Duration::ZERO).await
}

/// [`dial_with`], waiting `pause` between the listener's answer and the
/// confirmation (tests stand for a dialer stopped right there).
pub(crate) async fn dial_pausing(mut stream: TcpStream, psk: &Psk, hello: Hello, pause: Duration) -> Result<Authenticated, NetError> {
    let _ = stream.set_nodelay(true);
    let peer_addr = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let hello_role = hello.role;
    let mut noise = noise(psk, true)?;
    let mut buf = vec![0u8; MAX_HANDSHAKE];
    let n = noise.write_message(&super::framing::encode(&hello), &mut buf).map_err(|e| NetError::Crypto(e.to_string()))?;
    send(&mut stream, &buf[..n]).await?;
    let answer = match receive(&mut stream).await {
        Ok(msg) => msg,
        Err(NetError::Closed) | Err(NetError::Io(_)) => {
            return Err(NetError::Refused {
                peer: peer_addr,
                reason: "it closed the connection during the handshake: a wrong cookie, or not a skitter node".into(),
            })
        }
        Err(NetError::Malformed(_)) => {
            return Err(NetError::Handshake(format!("{peer_addr} does not speak skitter's protocol: is it a skitter node?")))
        }
        Err(e) => return Err(e),
    };
    let mut payload = vec![0u8; answer.len()];
    let n = noise.read_message(&answer, &mut payload).map_err(|_| {
        NetError::Handshake(format!("{peer_addr} failed authentication: it does not know our cookie (or is not a skitter node)"))
    })?;
    match super::framing::decode::<Answer>(&payload[..n])? {
        Answer::Welcome { role, name, .. } => {
            // The listener must be what this dialer dials: a master for a
            // worker, a worker for a master or a peer, any node for a console.
            if !answers(hello_role).contains(&role) || !valid_name(&name) {
                return Err(NetError::Refused {
                    peer: format!("{} at {peer_addr}", quoted(&name)),
                    reason: format!(
                        "mode mismatch: a {hello_role} dials a {}, and this is a {role}",
                        answers(hello_role).iter().map(Role::to_string).collect::<Vec<_>>().join(" or ")
                    ),
                });
            }
            let mut auth = split(stream, noise, role, name, peer_addr)?;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            auth.writer.confirm().await?;
            Ok(auth)
        }
        Answer::Refused(Refusal::Version { node, version, protocol }) => Err(NetError::Refused {
            peer: format!("{} at {peer_addr}", quoted(&node)),
            reason: format!(
                "incompatible version: it runs skitter {} (protocol {protocol}), this is {} (protocol {PROTOCOL})",
                quoted(&version),
                crate::VERSION
            ),
        }),
        Answer::Refused(why) => Err(NetError::Refused { peer: peer_addr, reason: why.to_string() }),
    }
}

/// Opens a first flight as a listener would: the fuzz target's entry.
pub fn open_first_flight(psk: &Psk, msg: &[u8]) -> Result<Hello, NetError> {
    if msg.len() > MAX_HANDSHAKE {
        return Err(NetError::Malformed("too long".into()));
    }
    let mut noise = noise(psk, false)?;
    let mut payload = vec![0u8; msg.len()];
    let n = noise.read_message(msg, &mut payload).map_err(|_| NetError::Handshake("wrong cookie".into()))?;
    super::framing::decode(&payload[..n])
}

/// Why a listener did not admit a dialer: what it logs.
#[derive(Debug)]
pub struct Rejected {
    pub error: NetError,
    /// The dialer did not prove the cookie (counts towards throttling).
    pub unauthenticated: bool,
}

/// The listening side; `accepts` says which roles may connect. Bounded in
/// time by the caller.
pub async fn accept(stream: TcpStream, me: &Identity, accepts: &[Role]) -> Result<Authenticated, Rejected> {
    accept_with(stream, me, accepts, || {}).await
}

/// [`accept`], calling `proven` as soon as the dialer's first flight
/// proved that it holds the cookie.
pub async fn accept_with(mut stream: TcpStream, me: &Identity, accepts: &[Role], proven: impl FnOnce()) -> Result<Authenticated, Rejected> {
    let _ = stream.set_nodelay(true);
    let peer_addr = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let unauthenticated = |error| Rejected { error, unauthenticated: true };
    let first = receive(&mut stream).await.map_err(unauthenticated)?;
    let mut noise = noise(&me.psk, false).map_err(unauthenticated)?;
    let mut payload = vec![0u8; first.len()];
    let n = noise
        .read_message(&first, &mut payload)
        .map_err(|_| unauthenticated(NetError::Handshake(format!("{peer_addr} failed authentication: wrong cookie"))))?;
    // From here the dialer holds the cookie (or replays a first flight, and
    // cannot confirm below).
    proven();
    let refused = |error| Rejected { error, unauthenticated: false };
    let hello: Hello = super::framing::decode(&payload[..n]).map_err(refused)?;
    let refusal = if hello.protocol != PROTOCOL {
        Some(Refusal::Version { node: me.name.clone(), version: crate::VERSION.into(), protocol: PROTOCOL })
    } else if !accepts.contains(&hello.role) {
        Some(Refusal::Role { listener: me.role, dialer: hello.role })
    } else if !valid_name(&hello.name) {
        Some(Refusal::Name)
    } else {
        None
    };
    let answer = match &refusal {
        Some(why) => Answer::Refused(why.clone()),
        None => Answer::Welcome { protocol: PROTOCOL, version: crate::VERSION.into(), role: me.role, name: me.name.clone() },
    };
    let mut buf = vec![0u8; MAX_HANDSHAKE];
    let n = noise.write_message(&super::framing::encode(&answer), &mut buf).map_err(|e| refused(NetError::Crypto(e.to_string())))?;
    send(&mut stream, &buf[..n]).await.map_err(refused)?;
    if let Some(why) = refusal {
        let who = format!("{} at {peer_addr}", quoted(&hello.name));
        return Err(refused(NetError::Refused { peer: who, reason: why.to_string() }));
    }
    let mut auth = split(stream, noise, hello.role, hello.name, peer_addr).map_err(refused)?;
    auth.reader.confirmed().await.map_err(unauthenticated)?;
    Ok(auth)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::net::{ControlMsg, Link};
    use tokio::net::TcpListener;

    fn id(role: Role, name: &str, cookie: &str) -> Identity {
        Identity::new(role, name, &Cookie::for_tests(cookie))
    }

    async fn listen(me: Identity, accepts: &'static [Role]) -> (String, tokio::task::JoinHandle<Result<Authenticated, Rejected>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            accept(stream, &me, accepts).await
        });
        (addr, server)
    }

    async fn pair(
        dialer_cookie: &str,
        listener_cookie: &str,
        role: Role,
    ) -> (Result<Authenticated, NetError>, Result<Authenticated, Rejected>) {
        let (addr, server) = listen(id(Role::Master, "m@h", listener_cookie), &[Role::Worker]).await;
        let client = dial(&addr, &id(role, "w@h", dialer_cookie)).await;
        if client.is_err() {
            // The listener may still wait for a confirmation that will not come.
            return (
                client,
                tokio::time::timeout(Duration::from_secs(1), server)
                    .await
                    .map(|r| r.unwrap())
                    .unwrap_or_else(|_| Err(Rejected { error: NetError::Timeout(Duration::from_secs(1)), unauthenticated: true })),
            );
        }
        (client, server.await.unwrap())
    }

    #[tokio::test]
    async fn same_cookie_authenticates_both_ends_and_names_them() {
        let (c, s) = pair("secret", "secret", Role::Worker).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!((c.peer_name.as_str(), c.peer_role), ("m@h", Role::Master));
        assert_eq!((s.peer_name.as_str(), s.peer_role), ("w@h", Role::Worker));
        // And the keys agree both ways.
        let (mut c, mut s): (Link<ControlMsg>, Link<ControlMsg>) =
            (c.into_link(Duration::from_secs(5)), s.into_link(Duration::from_secs(5)));
        c.writer.write(&ControlMsg::Output { id: None, text: "hello".into() }).await.unwrap();
        assert_eq!(s.reader.read().await.unwrap(), Some(ControlMsg::Output { id: None, text: "hello".into() }));
        s.writer.write(&ControlMsg::Welcome).await.unwrap();
        assert_eq!(c.reader.read().await.unwrap(), Some(ControlMsg::Welcome));
    }

    #[tokio::test]
    async fn a_wrong_cookie_is_refused_on_both_sides() {
        let (c, s) = pair("guess", "secret", Role::Worker).await;
        assert!(c.err().unwrap().to_string().contains("wrong cookie"));
        let s = s.err().unwrap();
        assert!(s.unauthenticated && s.error.to_string().contains("wrong cookie"), "{s:?}");
    }

    #[tokio::test]
    async fn a_role_that_is_not_accepted_is_refused() {
        let (c, s) = pair("secret", "secret", Role::Master).await;
        assert!(c.err().unwrap().to_string().contains("mode mismatch"));
        let s = s.err().unwrap();
        assert!(!s.unauthenticated && s.error.to_string().contains("mode mismatch"));
    }

    /// Issue 31: a replayed first flight (a recorded dialer's first words)
    /// still gets an answer, but costs the listener no connection buffers:
    /// it reads the confirmation, 18 bytes, into none of its own, and what
    /// follows a confirmation that does not open is never read; the
    /// failure counts against the address (`unauthenticated`).
    #[tokio::test]
    async fn a_replayed_first_flight_costs_no_buffers() {
        // Record a dialer's first flight.
        let recorder = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = recorder.local_addr().unwrap().to_string();
        let me = id(Role::Worker, "w@h", "c");
        let dialing = tokio::spawn(async move { dial(&at, &me).await });
        let (mut stream, _) = recorder.accept().await.unwrap();
        let first = receive(&mut stream).await.unwrap();
        drop(stream);
        // The dialer fails once the recorder hangs up: only its first flight counts.
        let _ = dialing.await;
        // Replay it, then send a confirmation that cannot open, and more.
        let (addr, server) = listen(id(Role::Master, "m@h", "c"), &[Role::Worker]).await;
        let mut replay = TcpStream::connect(&addr).await.unwrap();
        send(&mut replay, &first).await.unwrap();
        let _answer = receive(&mut replay).await.unwrap();
        let mut junk = vec![0u8; 2 + 16 + 60_000];
        junk[1] = 16;
        replay.write_all(&junk).await.unwrap();
        let s = server.await.unwrap().err().unwrap();
        assert!(s.unauthenticated && matches!(s.error, NetError::Tampered), "{s:?}");
        // A real dialer's connection has no buffers until its first frame.
        let (c, s) = pair("c", "c", Role::Worker).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!((s.reader.buffered(), s.writer.buffered(), c.reader.buffered(), c.writer.buffered()), (0, 0, 0, 0));
    }

    /// Issue 31: the dialer checks what it reached, too: a worker that
    /// dials a worker (a wrong --master address) or a master that dials a
    /// master is refused before any message, naming both roles.
    #[tokio::test]
    async fn a_dialer_refuses_a_listener_in_the_wrong_role() {
        for (listener, dialer) in [(Role::Worker, Role::Worker), (Role::Master, Role::Master), (Role::Local, Role::Peer)] {
            let (addr, _server) = listen(id(listener, "l@h", "c"), &[Role::Worker, Role::Master, Role::Peer]).await;
            let e = dial(&addr, &id(dialer, "d@h", "c")).await.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("mode mismatch: a {dialer} dials a")) && e.contains(&format!("this is a {listener}")), "{e}");
        }
        // A console may attach to any node.
        let (addr, server) = listen(id(Role::Local, "l@h", "c"), &[Role::Console]).await;
        assert!(dial(&addr, &id(Role::Console, "console@h", "c")).await.is_ok());
        assert!(server.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_incompatible_protocol_is_refused_with_both_versions() {
        let (addr, server) = listen(id(Role::Worker, "w@h", "c"), &[Role::Master]).await;
        let stream = TcpStream::connect(&addr).await.unwrap();
        let hello = Hello { protocol: PROTOCOL + 98, version: "9.9.9".into(), role: Role::Master, name: "m@h".into() };
        let answer = dial_with(stream, &Cookie::for_tests("c").psk(), hello).await.err().unwrap().to_string();
        assert!(answer.contains("incompatible version") && answer.contains(crate::VERSION), "{answer}");
        assert!(server.await.unwrap().err().unwrap().error.to_string().contains("incompatible version"));
    }

    #[tokio::test]
    async fn nothing_is_decoded_or_said_before_the_cookie_is_proved() {
        // A stranger announces a large handshake message: refused unread.
        let (addr, server) = listen(id(Role::Master, "secret-name@h", "c"), &[Role::Worker]).await;
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
        let s = server.await.unwrap().err().unwrap();
        assert!(s.unauthenticated && s.error.to_string().contains("limit"), "{s:?}");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "the listener said {answer:?}");
    }

    /// A proxy between dialer and listener that records every byte and may
    /// change the bytes it relays: `tamper(direction, offset in that
    /// direction's stream, byte)`.
    async fn proxy(target: String, tamper: fn(bool, usize, &mut u8)) -> (String, Arc<Mutex<Vec<u8>>>) {
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = front.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            let (client, _) = front.accept().await.unwrap();
            let server = TcpStream::connect(target).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = tokio::spawn(relay(cr, sw, true, tamper, record.clone()));
            let down = tokio::spawn(relay(sr, cw, false, tamper, record));
            let _ = tokio::join!(up, down);
        });
        (addr, seen)
    }

    async fn relay(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        up: bool,
        tamper: fn(bool, usize, &mut u8),
        seen: Arc<Mutex<Vec<u8>>>,
    ) {
        let (mut buf, mut offset) = ([0u8; 4096], 0);
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter_mut().enumerate() {
                tamper(up, offset + i, b);
            }
            offset += n;
            seen.lock().unwrap().extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }

    #[tokio::test]
    async fn a_relay_sees_neither_the_cookie_nor_the_records() {
        let cookie = "a-cookie-that-must-not-leak-0123456789";
        let (addr, server) = listen(id(Role::Master, "m@h", cookie), &[Role::Worker]).await;
        let (proxied, seen) = proxy(addr, |_, _, _| {}).await;
        let c = dial(&proxied, &id(Role::Worker, "w@h", cookie)).await.unwrap();
        let s = server.await.unwrap().unwrap();
        let (mut c, mut s): (Link<ControlMsg>, Link<ControlMsg>) =
            (c.into_link(Duration::from_secs(5)), s.into_link(Duration::from_secs(5)));
        let record = "a-distinctive-record-4f9d1c";
        c.writer.write(&ControlMsg::Output { id: None, text: record.into() }).await.unwrap();
        assert_eq!(s.reader.read().await.unwrap(), Some(ControlMsg::Output { id: None, text: record.into() }));
        let bytes = seen.lock().unwrap().clone();
        assert!(bytes.len() > 64, "the proxy relayed the traffic");
        for secret in [cookie.as_bytes(), record.as_bytes(), b"w@h", b"m@h"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{} crossed the wire in clear", String::from_utf8_lossy(secret));
        }
    }

    #[tokio::test]
    async fn a_relay_that_changes_the_first_flight_cannot_change_the_role() {
        // Flip bits in the sealed hello (where the role is): the listener
        // cannot open it, and nobody is admitted, as anything.
        let (addr, server) = listen(id(Role::Master, "m@h", "c"), &[Role::Worker, Role::Console]).await;
        let (proxied, _) = proxy(addr, |up, at, b| {
            if up && (34..80).contains(&at) {
                *b ^= 0x01;
            }
        })
        .await;
        let c = dial(&proxied, &id(Role::Console, "console@h", "c")).await;
        assert!(c.is_err());
        let s = server.await.unwrap().err().unwrap();
        assert!(s.unauthenticated, "{s:?}");
    }

    #[tokio::test]
    async fn a_flipped_bit_in_a_relayed_frame_closes_the_link() {
        let (addr, server) = listen(id(Role::Master, "m@h", "c"), &[Role::Worker]).await;
        // The handshake's flights are 2 + 32 + 16 + hello bytes up; flip a
        // bit well past them, in the first frame.
        let (proxied, _) = proxy(addr, |up, at, b| {
            if up && at == 400 {
                *b ^= 0x10;
            }
        })
        .await;
        let c = dial(&proxied, &id(Role::Worker, "w@h", "c")).await.unwrap();
        let s = server.await.unwrap().unwrap();
        let (mut c, mut s): (Link<ControlMsg>, Link<ControlMsg>) =
            (c.into_link(Duration::from_secs(5)), s.into_link(Duration::from_secs(5)));
        c.writer.write(&ControlMsg::Output { id: None, text: "x".repeat(1000) }).await.unwrap();
        let got = s.reader.read().await;
        assert!(matches!(got, Err(NetError::Tampered)), "{got:?}");
    }

    /// Issue 31: a write cut off by its deadline part way through a record
    /// poisons the writer: the next write fails at once rather than send a
    /// record the peer would read from its middle (as "tampered with").
    #[tokio::test]
    async fn a_write_cut_off_part_way_poisons_the_writer() {
        let (addr, server) = listen(id(Role::Master, "m@h", "c"), &[Role::Worker]).await;
        let c = dial(&addr, &id(Role::Worker, "w@h", "c")).await.unwrap();
        // The listener's end stays open and never reads.
        let _unread = server.await.unwrap().unwrap();
        let mut link: Link<ControlMsg> = c.into_link(Duration::from_millis(200));
        let big = ControlMsg::Output { id: None, text: "x".repeat(60_000) };
        let mut first = None;
        for _ in 0..2000 {
            if let Err(e) = link.writer.write(&big).await {
                first = Some(e);
                break;
            }
        }
        assert!(matches!(first, Some(NetError::WriteStalled(_))), "{first:?}");
        let next = tokio::time::timeout(Duration::from_secs(2), link.writer.write(&ControlMsg::Welcome)).await;
        assert!(matches!(next, Ok(Err(NetError::Poisoned))), "{next:?}");
    }

    #[test]
    fn peer_text_is_escaped_and_cut() {
        assert_eq!(quoted("w1@host"), "w1@host");
        assert_eq!(quoted("evil\nINFO forged"), "\"evil\\nINFO forged\"");
        assert_eq!(quoted(&"x".repeat(1000)).len(), 66);
        assert!(!valid_name("a\nb") && !valid_name("") && !valid_name(&"x".repeat(256)) && valid_name("w@h"));
    }

    #[test]
    fn different_cookies_give_different_keys() {
        let psk = |name: &str| Cookie::for_tests(name).psk();
        assert_ne!(psk("a"), psk("b"));
        assert_eq!(psk("a"), psk("a"));
    }

    /// What the fuzz target does, on stable: random first flights never
    /// panic the listener's side and never authenticate.
    #[test]
    fn random_first_flights_are_refused_never_a_panic() {
        let psk = Cookie::for_tests("c").psk();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
            assert!(open_first_flight(&psk, &bytes).is_err());
        }
    }
}

//! Connections: length-delimited frames of postcard-encoded [`Message`]s over
//! TCP, usable only once the handshake has authenticated both ends.
//!
//! The handshake: the dialer sends `Hello` with a fresh random nonce, the
//! listener answers with its own `Hello` (or `Refuse`: wrong protocol, role
//! not accepted); the dialer proves it knows the cookie with an HMAC-SHA256
//! over both nonces, the listener checks it (constant time) and proves the
//! same in return. The cookie itself never crosses the wire, and a recorded
//! handshake cannot be replayed: the other side's nonce is new every time.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::message::{Message, Role, PROTOCOL};

/// The largest frame accepted: a batch of records is far smaller; anything
/// bigger is a broken or hostile peer.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// How long a peer may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("refused by {peer}: {reason}")]
    Refused { peer: String, reason: String },
    #[error("{0}")]
    Handshake(String),
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer took longer than {0:?} to answer")]
    Timeout(Duration),
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec()
}

/// Decodes one frame's bytes.
pub fn decode(bytes: &[u8]) -> Result<Message, NetError> {
    super::value::decode_bounded(|| postcard::from_bytes(bytes)).map_err(|e| NetError::Malformed(format!("{e} ({} bytes)", bytes.len())))
}

/// Decodes a peer's byte stream as the connection would: length-prefixed
/// frames, each a message. Stops at the first error, which is what closes a
/// connection. The fuzz target (`fuzz/`) and the tests below drive it.
pub fn decode_stream(bytes: &[u8]) -> Vec<Result<Message, NetError>> {
    use tokio_util::codec::Decoder;
    let mut codec = codec();
    let mut buf = bytes::BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                let msg = decode(&frame);
                let stop = msg.is_err();
                out.push(msg);
                if stop {
                    return out;
                }
            }
            // Not enough bytes for the next frame: a truncated stream.
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(NetError::Malformed(e.to_string())));
                return out;
            }
        }
    }
}

pub fn encode(msg: &Message) -> Vec<u8> {
    postcard::to_allocvec(msg).expect("messages always encode")
}

/// The reading half of a connection.
pub struct Reader {
    inner: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
}

impl Reader {
    /// The next message; `None` when the peer closed cleanly.
    pub async fn read(&mut self) -> Result<Option<Message>, NetError> {
        match self.inner.next().await {
            None => Ok(None),
            Some(Ok(frame)) => decode(&frame).map(Some),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => Err(NetError::Malformed(e.to_string())),
            Some(Err(e)) => Err(NetError::Io(e)),
        }
    }
}

/// The writing half of a connection.
pub struct Writer {
    inner: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
}

impl Writer {
    pub async fn write(&mut self, msg: &Message) -> Result<(), NetError> {
        self.inner.send(bytes::Bytes::from(encode(msg))).await.map_err(NetError::Io)
    }

    /// Queues a message without flushing (for batching many small ones).
    pub async fn feed(&mut self, msg: &Message) -> Result<(), NetError> {
        self.feed_encoded(bytes::Bytes::from(encode(msg))).await
    }

    /// Queues a message encoded elsewhere (see [`encode`]).
    pub async fn feed_encoded(&mut self, frame: bytes::Bytes) -> Result<(), NetError> {
        self.inner.feed(frame).await.map_err(NetError::Io)
    }

    pub async fn flush(&mut self) -> Result<(), NetError> {
        SinkExt::<bytes::Bytes>::flush(&mut self.inner).await.map_err(NetError::Io)
    }
}

/// A TCP connection that has not been authenticated: it can only handshake.
pub struct Connection {
    reader: Reader,
    writer: Writer,
    peer_addr: String,
}

/// A connection whose peer proved it knows the cookie.
pub struct Authenticated {
    pub reader: Reader,
    pub writer: Writer,
    pub peer_role: Role,
    pub peer_name: String,
    pub peer_addr: String,
}

/// Who this end is, for the handshake.
#[derive(Clone)]
pub struct Identity {
    pub role: Role,
    pub name: String,
    pub cookie: String,
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("the OS has randomness");
    n
}

fn proof(cookie: &str, label: &[u8], first: &[u8; 32], second: &[u8; 32]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(cookie.as_bytes()).expect("HMAC takes any key length");
    mac.update(label);
    mac.update(first);
    mac.update(second);
    mac
}

/// Who we are, with this connection's fresh nonce.
fn hello(me: &Identity, nonce: [u8; 32]) -> Message {
    Message::Hello { protocol: PROTOCOL, version: crate::VERSION.into(), role: me.role, name: me.name.clone(), nonce }
}

const DIALER: &[u8] = b"skitter/1 dialer";
const LISTENER: &[u8] = b"skitter/1 listener";

impl Connection {
    pub fn new(stream: TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        let peer_addr = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        let (r, w) = stream.into_split();
        Connection {
            reader: Reader { inner: FramedRead::new(r, codec()) },
            writer: Writer { inner: FramedWrite::new(w, codec()) },
            peer_addr,
        }
    }

    pub async fn connect(addr: &str) -> Result<Connection, NetError> {
        let stream =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| NetError::Timeout(HANDSHAKE_TIMEOUT))??;
        Ok(Connection::new(stream))
    }

    async fn next(&mut self) -> Result<Message, NetError> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.reader.read()).await {
            Err(_) => Err(NetError::Timeout(HANDSHAKE_TIMEOUT)),
            Ok(Ok(Some(msg))) => Ok(msg),
            Ok(Ok(None)) => Err(NetError::Closed),
            Ok(Err(e)) => Err(e),
        }
    }

    /// The dialing side of the handshake.
    pub async fn dial(mut self, me: &Identity) -> Result<Authenticated, NetError> {
        let mine = nonce();
        self.writer.write(&hello(me, mine)).await?;
        let first = match self.next().await {
            Err(NetError::Malformed(reason)) => {
                return Err(NetError::Handshake(format!(
                    "{} does not speak skitter's protocol: is it a skitter node? ({reason})",
                    self.peer_addr
                )))
            }
            other => other?,
        };
        let (peer_role, peer_name, theirs) = match first {
            Message::Hello { protocol, role, name, nonce, .. } if protocol == PROTOCOL => (role, name, nonce),
            Message::Hello { protocol, version, .. } => {
                return Err(NetError::Handshake(format!(
                    "incompatible version: the peer runs skitter {version} (protocol {protocol}), this is {} (protocol {PROTOCOL})",
                    crate::VERSION
                )))
            }
            Message::Refuse { reason } => return Err(NetError::Refused { peer: self.peer_addr, reason }),
            other => return Err(NetError::Handshake(format!("expected hello, got {}", other.kind()))),
        };
        let mac = proof(&me.cookie, DIALER, &mine, &theirs).finalize().into_bytes().to_vec();
        self.writer.write(&Message::Proof { mac }).await?;
        match self.next().await {
            Ok(Message::Proof { mac }) => {
                if proof(&me.cookie, LISTENER, &theirs, &mine).verify_slice(&mac).is_err() {
                    return Err(NetError::Handshake(format!(
                        "{peer_name} at {} failed authentication: it does not know our cookie",
                        self.peer_addr
                    )));
                }
            }
            Ok(Message::Refuse { reason }) => return Err(NetError::Refused { peer: format!("{peer_name} at {}", self.peer_addr), reason }),
            Ok(other) => return Err(NetError::Handshake(format!("expected proof, got {}", other.kind()))),
            Err(NetError::Closed) => {
                return Err(NetError::Refused { peer: self.peer_addr, reason: "closed during authentication (wrong cookie?)".into() })
            }
            Err(e) => return Err(e),
        }
        Ok(Authenticated { reader: self.reader, writer: self.writer, peer_role, peer_name, peer_addr: self.peer_addr })
    }

    /// The listening side of the handshake; `accepts` says which roles may connect.
    pub async fn accept(mut self, me: &Identity, accepts: &[Role]) -> Result<Authenticated, NetError> {
        let (peer_role, peer_name, theirs) = match self.next().await? {
            Message::Hello { protocol, version, .. } if protocol != PROTOCOL => {
                let reason = format!(
                    "incompatible version: this node runs skitter {} (protocol {PROTOCOL}), the peer {version} (protocol {protocol})",
                    crate::VERSION
                );
                let _ = self.writer.write(&Message::Refuse { reason: reason.clone() }).await;
                return Err(NetError::Handshake(reason));
            }
            Message::Hello { role, name, nonce, .. } => (role, name, nonce),
            other => return Err(NetError::Handshake(format!("expected hello, got {}", other.kind()))),
        };
        if !accepts.contains(&peer_role) {
            let reason = format!("mode mismatch: a {} does not accept connections from a {peer_role}", me.role);
            let _ = self.writer.write(&Message::Refuse { reason: reason.clone() }).await;
            return Err(NetError::Handshake(format!("{peer_name}: {reason}")));
        }
        let mine = nonce();
        self.writer.write(&hello(me, mine)).await?;
        match self.next().await? {
            Message::Proof { mac } => {
                if proof(&me.cookie, DIALER, &theirs, &mine).verify_slice(&mac).is_err() {
                    let _ = self.writer.write(&Message::Refuse { reason: "authentication failed: wrong cookie".into() }).await;
                    return Err(NetError::Handshake(format!("{peer_name} at {} failed authentication: wrong cookie", self.peer_addr)));
                }
            }
            other => return Err(NetError::Handshake(format!("expected proof, got {}", other.kind()))),
        }
        let mac = proof(&me.cookie, LISTENER, &mine, &theirs).finalize().into_bytes().to_vec();
        self.writer.write(&Message::Proof { mac }).await?;
        Ok(Authenticated { reader: self.reader, writer: self.writer, peer_role, peer_name, peer_addr: self.peer_addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(
        dialer_cookie: &str,
        listener_cookie: &str,
        role: Role,
    ) -> (Result<Authenticated, NetError>, Result<Authenticated, NetError>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let l_id = Identity { role: Role::Master, name: "m@h".into(), cookie: listener_cookie.into() };
        let d_id = Identity { role, name: "w@h".into(), cookie: dialer_cookie.into() };
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            Connection::new(stream).accept(&l_id, &[Role::Worker]).await
        });
        let client = Connection::connect(&addr).await.unwrap().dial(&d_id).await;
        (client, server.await.unwrap())
    }

    #[tokio::test]
    async fn same_cookie_authenticates_both_ends() {
        let (c, s) = pair("secret", "secret", Role::Worker).await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!(c.peer_name, "m@h");
        assert_eq!(s.peer_role, Role::Worker);
    }

    #[tokio::test]
    async fn a_wrong_cookie_is_refused_on_both_sides() {
        let (c, s) = pair("guess", "secret", Role::Worker).await;
        assert!(c.err().unwrap().to_string().contains("wrong cookie"));
        assert!(s.err().unwrap().to_string().contains("wrong cookie"));
    }

    #[tokio::test]
    async fn a_role_that_is_not_accepted_is_refused() {
        let (c, s) = pair("secret", "secret", Role::Master).await;
        assert!(c.err().unwrap().to_string().contains("mode mismatch"));
        assert!(s.err().unwrap().to_string().contains("mode mismatch"));
    }

    #[tokio::test]
    async fn the_cookie_never_crosses_the_wire() {
        // Relay the handshake through a proxy that records every byte.
        let cookie = "a-cookie-that-must-not-leak-0123456789";
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, proxy_addr) = (listener.local_addr().unwrap(), proxy.local_addr().unwrap().to_string());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let recorder = seen.clone();
        tokio::spawn(async move {
            let (client, _) = proxy.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = recorder.clone();
            let a = tokio::spawn(async move { copy_recording(&mut cr, &mut sw, up).await });
            let b = tokio::spawn(async move { copy_recording(&mut sr, &mut cw, recorder).await });
            let _ = tokio::join!(a, b);
        });
        let l_id = Identity { role: Role::Master, name: "m@h".into(), cookie: cookie.into() };
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            Connection::new(stream).accept(&l_id, &[Role::Worker]).await.map(|_| ())
        });
        let d_id = Identity { role: Role::Worker, name: "w@h".into(), cookie: cookie.into() };
        let client = Connection::connect(&proxy_addr).await.unwrap().dial(&d_id).await;
        assert!(client.is_ok() && server.await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let bytes = seen.lock().unwrap().clone();
        assert!(bytes.len() > 64, "the proxy saw the handshake");
        assert!(!bytes.windows(cookie.len()).any(|w| w == cookie.as_bytes()), "the cookie crossed the wire");
    }

    async fn copy_recording(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                break;
            }
            seen.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn an_incompatible_protocol_is_refused_with_both_versions() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let l_id = Identity { role: Role::Worker, name: "w@h".into(), cookie: "c".into() };
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            Connection::new(stream).accept(&l_id, &[Role::Master]).await.map(|_| ())
        });
        let mut conn = Connection::connect(&addr).await.unwrap();
        conn.writer
            .write(&Message::Hello {
                protocol: PROTOCOL + 98,
                version: "9.9.9".into(),
                role: Role::Master,
                name: "m@h".into(),
                nonce: [0; 32],
            })
            .await
            .unwrap();
        let answer = conn.reader.read().await.unwrap().unwrap();
        assert!(
            matches!(&answer, Message::Refuse { reason } if reason.contains("incompatible version") && reason.contains("9.9.9")),
            "{answer:?}"
        );
        assert!(server.await.unwrap().unwrap_err().to_string().contains("incompatible version"));
    }

    fn framed(msg: &Message) -> Vec<u8> {
        let body = encode(msg);
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    /// What the fuzz target does, on stable: random streams and mutations of
    /// valid ones must decode or be refused, never panic.
    #[test]
    fn random_and_mutated_streams_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = [
            framed(&Message::Heartbeat),
            framed(&Message::Output { text: "hello".into() }),
            framed(&Message::Data {
                id: 1,
                stage: 2,
                instance: 3,
                msg: crate::net::DataMsg::Records(vec![crate::net::Value::Str("w".into()), crate::net::Value::Int(7)]),
            }),
            framed(&Message::Hello { protocol: PROTOCOL, version: "0".into(), role: Role::Worker, name: "n".into(), nonce: [7; 32] }),
        ];
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                (0..(next() % 64)).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                valid[(next() % valid.len() as u64) as usize].clone()
            };
            for _ in 0..(next() % 4) {
                if bytes.is_empty() {
                    break;
                }
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            if next() % 3 == 0 {
                let cut = (next() as usize) % (bytes.len() + 1);
                bytes.truncate(cut);
            }
            let _ = decode_stream(&bytes);
        }
    }

    /// Findings kept as cases: an oversized length prefix, a truncated frame,
    /// a frame of an unknown message kind, a string length past the frame.
    #[test]
    fn known_bad_streams_are_refused() {
        let oversized = [0xff, 0xff, 0xff, 0xff, 0];
        assert!(matches!(decode_stream(&oversized).last(), Some(Err(NetError::Malformed(m))) if m.contains("frame")));
        let mut truncated = framed(&Message::Output { text: "a long enough text".into() });
        truncated.truncate(truncated.len() - 3);
        assert!(decode_stream(&truncated).is_empty(), "waits for the rest");
        let unknown_kind = [0, 0, 0, 1, 200];
        assert!(matches!(decode_stream(&unknown_kind).last(), Some(Err(NetError::Malformed(_)))));
        let long_string = [0, 0, 0, 3, 13, 0xff, 0x7f];
        assert!(matches!(decode_stream(&long_string).last(), Some(Err(NetError::Malformed(_)))));
        let two = [framed(&Message::Heartbeat), framed(&Message::Bye)].concat();
        assert_eq!(decode_stream(&two).into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(), vec![Message::Heartbeat, Message::Bye]);
    }

    /// Found while fuzzing, by looking at what inputs of the fuzzer's 4 kB
    /// could not reach: a 400 kB frame of arrays nested 200,000 deep
    /// overflowed the stack of the thread decoding it, aborting the process.
    #[test]
    fn a_frame_of_deeply_nested_arrays_is_refused_not_a_stack_overflow() {
        let mut body = vec![16u8, 1, 0, 0, 0, 1]; // Data { id 1, stage 0, instance 0, Records(len 1) }
        for _ in 0..200_000 {
            body.extend([6u8, 1]); // an array of one ...
        }
        body.push(0); // ... around a unit
        let mut stream = (body.len() as u32).to_be_bytes().to_vec();
        stream.extend(body);
        // The stack of a runtime thread, where connections are read.
        let decoded = std::thread::Builder::new().stack_size(2 << 20).spawn(move || decode_stream(&stream)).unwrap().join().unwrap();
        assert!(matches!(decoded.last(), Some(Err(NetError::Malformed(m))) if m.contains("nested")), "{decoded:?}");
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(matches!(decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Err(NetError::Malformed(_))));
        assert!(matches!(decode(&[]), Err(NetError::Malformed(_))));
        let msg = Message::Output { text: "hi".into() };
        assert_eq!(decode(&encode(&msg)).unwrap(), msg);
        let bytes = encode(&msg);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "a truncated frame is an error");
    }
}

//! Bytes <-> frames. After the handshake every byte on a connection is a
//! sealed record: a 2-byte length, then a Noise transport message (at most
//! 64 KiB, encrypted and authenticated, its nonce implicit and counted at
//! both ends). The records carry a stream of frames, each a 4-byte length and
//! a postcard-encoded message; a frame may span records. A record that does
//! not authenticate — tampered, replayed, reordered, dropped — ends the
//! connection.

use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::cipher::{Cipher, TAG};
use super::NetError;

/// The largest frame accepted from an authenticated peer: a batch of
/// records is far smaller; anything bigger is a broken peer.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// A Noise message's limit, and its authentication tag.
const MAX_RECORD: usize = 65535;
/// The plaintext one record carries.
const RECORD_PLAIN: usize = MAX_RECORD - TAG;
/// Plaintext queued by `feed` before it is sealed and written.
const WRITE_BATCH: usize = 256 * 1024;

/// Encodes a message as a frame's body.
pub fn encode<M: Serialize>(msg: &M) -> Vec<u8> {
    postcard::to_allocvec(msg).expect("messages always encode")
}

/// Decodes a frame's body.
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, NetError> {
    super::value::decode_bounded(|| postcard::from_bytes(bytes)).map_err(|e| NetError::Malformed(format!("{e} ({} bytes)", bytes.len())))
}

/// The next whole frame at the front of `plain`, if it has arrived; an
/// error for a length past `max`.
fn take_frame(plain: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, NetError> {
    if plain.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(plain[..4].try_into().expect("4 bytes")) as usize;
    if len > max {
        return Err(NetError::Malformed(format!("a frame of {len} bytes is larger than the limit of {max}")));
    }
    if plain.len() < 4 + len {
        plain.reserve(4 + len - plain.len());
        return Ok(None);
    }
    plain.advance(4);
    Ok(Some(plain.split_to(len)))
}

/// Decodes a peer's decrypted byte stream as a connection would: frames,
/// each a message. Stops at the first error, which is what closes a
/// connection. The fuzz target (`fuzz/`) and the tests drive it.
pub fn decode_stream<M: DeserializeOwned>(bytes: &[u8]) -> Vec<Result<M, NetError>> {
    let mut plain = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match take_frame(&mut plain, MAX_FRAME) {
            Ok(Some(frame)) => {
                let msg = decode(&frame);
                let stop = msg.is_err();
                out.push(msg);
                if stop {
                    return out;
                }
            }
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

/// The reading half: records in, frames out.
pub struct SealedReader {
    half: OwnedReadHalf,
    /// The peer's direction: its key, and the number of its next record.
    cipher: Cipher,
    /// Bytes read and not yet opened.
    wire: BytesMut,
    /// Opened bytes not yet taken as frames.
    plain: BytesMut,
}

impl SealedReader {
    pub fn new(half: OwnedReadHalf, cipher: Cipher, leftover: BytesMut) -> SealedReader {
        // Its frame buffer is made at the first frame.
        SealedReader { half, cipher, wire: leftover, plain: BytesMut::new() }
    }

    /// The next frame's bytes; `None` when the peer closed between frames.
    /// Cancel-safe: everything read is kept in `self`.
    pub async fn frame(&mut self) -> Result<Option<BytesMut>, NetError> {
        if self.plain.capacity() == 0 {
            self.plain.reserve(64 * 1024);
        }
        loop {
            if let Some(frame) = take_frame(&mut self.plain, MAX_FRAME)? {
                return Ok(Some(frame));
            }
            if !self.open_record()? {
                self.wire.reserve(MAX_RECORD + 2);
                if self.half.read_buf(&mut self.wire).await? == 0 {
                    return match self.plain.is_empty() && self.wire.is_empty() {
                        true => Ok(None),
                        false => Err(NetError::Closed),
                    };
                }
            }
        }
    }

    /// Reads the dialer's confirmation: one empty record, sealed with this
    /// connection's keys — its 18 bytes and not one more, into no buffer
    /// of the connection's (a replayed first flight, which cannot confirm,
    /// costs none).
    pub async fn confirmed(&mut self) -> Result<(), NetError> {
        let mut record = [0u8; 2 + TAG];
        let have = self.wire.len().min(record.len());
        record[..have].copy_from_slice(&self.wire[..have]);
        self.wire.advance(have);
        if let Err(e) = self.half.read_exact(&mut record[have..]).await {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof { NetError::Closed } else { NetError::Io(e) });
        }
        if u16::from_be_bytes([record[0], record[1]]) as usize != TAG {
            return Err(NetError::Malformed("the handshake's confirmation is not an empty record".into()));
        }
        self.cipher.open(&record[2..], &mut []).map(|_| ()).map_err(|_| NetError::Tampered)
    }

    /// Bytes of buffers it holds.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.wire.capacity() + self.plain.capacity()
    }

    /// Records opened so far.
    #[cfg(test)]
    fn cipher_records(&self) -> u64 {
        self.cipher.records()
    }

    /// Opens the next record if it has arrived whole.
    fn open_record(&mut self) -> Result<bool, NetError> {
        if self.wire.len() < 2 {
            return Ok(false);
        }
        let len = u16::from_be_bytes([self.wire[0], self.wire[1]]) as usize;
        if self.wire.len() < 2 + len {
            return Ok(false);
        }
        if len < TAG {
            return Err(NetError::Tampered);
        }
        let start = self.plain.len();
        self.plain.resize(start + len - TAG, 0);
        let opened = self.cipher.open(&self.wire[2..2 + len], &mut self.plain[start..]);
        self.wire.advance(2 + len);
        match opened {
            Ok(n) => {
                self.plain.truncate(start + n);
                Ok(true)
            }
            Err(_) => Err(NetError::Tampered),
        }
    }
}

/// The writing half: frames in, records out.
pub struct SealedWriter {
    half: OwnedWriteHalf,
    /// This end's direction: its key, and the number of its next record.
    cipher: Cipher,
    /// Frames (length-prefixed) not yet sealed.
    plain: Vec<u8>,
    wire: Vec<u8>,
    /// A write failed, or was cancelled (a deadline) part way through a
    /// record: set before each write and cleared after it succeeds.
    poisoned: bool,
}

impl SealedWriter {
    pub fn new(half: OwnedWriteHalf, cipher: Cipher) -> SealedWriter {
        // Its buffers are made at the first frame.
        SealedWriter { half, cipher, plain: Vec::new(), wire: Vec::new(), poisoned: false }
    }

    /// Writes sealed bytes whole, or poisons the writer: a record cut off
    /// part way would make the peer read the next one as tampered with.
    async fn write_sealed(half: &mut OwnedWriteHalf, poisoned: &mut bool, bytes: &[u8]) -> Result<(), NetError> {
        if *poisoned {
            return Err(NetError::Poisoned);
        }
        *poisoned = true;
        half.write_all(bytes).await?;
        *poisoned = false;
        Ok(())
    }

    /// Queues a frame; writes once enough is queued.
    pub async fn feed(&mut self, body: &[u8]) -> Result<(), NetError> {
        if self.poisoned {
            return Err(NetError::Poisoned);
        }
        if body.len() > MAX_FRAME {
            return Err(NetError::Malformed(format!("a frame of {} bytes is larger than the limit of {MAX_FRAME}", body.len())));
        }
        if self.plain.capacity() == 0 {
            self.plain.reserve(64 * 1024);
            self.wire.reserve(64 * 1024);
        }
        self.plain.extend_from_slice(&(body.len() as u32).to_be_bytes());
        self.plain.extend_from_slice(body);
        if self.plain.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Seals and writes everything queued.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        if self.plain.is_empty() {
            return Ok(());
        }
        self.wire.clear();
        for piece in self.plain.chunks(RECORD_PLAIN) {
            let at = self.wire.len();
            self.wire.resize(at + 2 + piece.len() + TAG, 0);
            let n = self.cipher.seal(piece, &mut self.wire[at + 2..]);
            self.wire[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
            self.wire.truncate(at + 2 + n);
        }
        self.plain.clear();
        Self::write_sealed(&mut self.half, &mut self.poisoned, &self.wire).await
    }

    /// Ends this direction of the connection once everything queued is
    /// written: the peer reads what was sent, then the end.
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        self.flush().await?;
        self.half.shutdown().await?;
        Ok(())
    }

    /// Bytes of buffers it holds.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.plain.capacity() + self.wire.capacity()
    }

    /// Writes the handshake's confirmation: an empty sealed record.
    pub async fn confirm(&mut self) -> Result<(), NetError> {
        let mut record = [0u8; 2 + TAG];
        let n = self.cipher.seal(&[], &mut record[2..]);
        record[..2].copy_from_slice(&(n as u16).to_be_bytes());
        Self::write_sealed(&mut self.half, &mut self.poisoned, &record).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ConsoleMsg, ControlMsg, DataLinkMsg};

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    #[test]
    fn frames_are_taken_whole_and_in_order() {
        let mut plain = BytesMut::from(&[framed(b"one"), framed(b"two"), framed(b"thr")[..5].to_vec()].concat()[..]);
        assert_eq!(&take_frame(&mut plain, 10).unwrap().unwrap()[..], b"one");
        assert_eq!(&take_frame(&mut plain, 10).unwrap().unwrap()[..], b"two");
        assert!(take_frame(&mut plain, 10).unwrap().is_none(), "waits for the rest");
        let mut big = BytesMut::from(&framed(&[0; 11])[..]);
        assert!(matches!(take_frame(&mut big, 10), Err(NetError::Malformed(m)) if m.contains("limit")));
    }

    fn framed_msg<M: serde::Serialize>(msg: &M) -> Vec<u8> {
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
            framed_msg(&ControlMsg::Heartbeat),
            framed_msg(&ControlMsg::Output { id: None, text: "hello".into() }),
            framed_msg(&ControlMsg::Register(crate::net::WorkerInfo { name: "n".into(), addr: "a:1".into(), tags: vec![], slots: 2 })),
            framed_msg(&ControlMsg::Lines { id: 1, node: 2, text: "w\n".into() }),
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
            let _ = decode_stream::<ControlMsg>(&bytes);
            let _ = decode_stream::<DataLinkMsg>(&bytes);
            let _ = decode_stream::<ConsoleMsg>(&bytes);
        }
    }

    /// Findings kept as cases: an oversized length prefix, a truncated frame,
    /// a frame of an unknown message kind, a string length past the frame.
    #[test]
    fn known_bad_streams_are_refused() {
        let oversized = [0xff, 0xff, 0xff, 0xff, 0];
        assert!(matches!(decode_stream::<ControlMsg>(&oversized).last(), Some(Err(NetError::Malformed(m))) if m.contains("limit")));
        let mut truncated = framed_msg(&ControlMsg::Output { id: None, text: "a long enough text".into() });
        truncated.truncate(truncated.len() - 3);
        assert!(decode_stream::<ControlMsg>(&truncated).is_empty(), "waits for the rest");
        let unknown_kind = [0, 0, 0, 1, 200];
        assert!(matches!(decode_stream::<ControlMsg>(&unknown_kind).last(), Some(Err(NetError::Malformed(_)))));
        let long_string = [0, 0, 0, 3, 13, 0xff, 0x7f];
        assert!(matches!(decode_stream::<ControlMsg>(&long_string).last(), Some(Err(NetError::Malformed(_)))));
        let two = [framed_msg(&ControlMsg::Heartbeat), framed_msg(&ControlMsg::Bye)].concat();
        assert_eq!(
            decode_stream::<ControlMsg>(&two).into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(),
            vec![ControlMsg::Heartbeat, ControlMsg::Bye]
        );
    }

    /// Found while fuzzing, by looking at what inputs of the fuzzer's 4 kB
    /// could not reach: a 400 kB frame of arrays nested 200,000 deep
    /// overflowed the stack of the thread decoding it, aborting the process.
    #[test]
    fn a_frame_of_deeply_nested_arrays_is_refused_not_a_stack_overflow() {
        let mut body = vec![0u8, 1, 0, 0, 0, 0, 0, 1]; // Data { id 1, stage 0, instance 0, from 0, Records(port 0, len 1) }
        for _ in 0..200_000 {
            body.extend([6u8, 1]); // an array of one ...
        }
        body.push(0); // ... around a unit
        let mut stream = (body.len() as u32).to_be_bytes().to_vec();
        stream.extend(body);
        // The stack of a runtime thread, where connections are read.
        let decoded =
            std::thread::Builder::new().stack_size(2 << 20).spawn(move || decode_stream::<DataLinkMsg>(&stream)).unwrap().join().unwrap();
        assert!(matches!(decoded.last(), Some(Err(NetError::Malformed(m))) if m.contains("nested")), "{decoded:?}");
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(matches!(decode::<ControlMsg>(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Err(NetError::Malformed(_))));
        assert!(matches!(decode::<ControlMsg>(&[]), Err(NetError::Malformed(_))));
        let msg = ControlMsg::Output { id: None, text: "hi".into() };
        assert_eq!(decode::<ControlMsg>(&encode(&msg)).unwrap(), msg);
        let bytes = encode(&msg);
        assert!(decode::<ControlMsg>(&bytes[..bytes.len() - 1]).is_err(), "a truncated frame is an error");
    }

    /// Issue 31: keys are replaced every so many records in each direction
    /// (here every 3, to see many rekeys): frames of every size, spanning
    /// records and rekeys, arrive exact, in order; a reader that does not
    /// rekey at the same record fails as tampered, never reads garbage.
    #[tokio::test]
    async fn a_rekey_mid_stream_keeps_the_data_exact() {
        async fn halves(every: u64) -> (SealedWriter, SealedReader) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let dialing = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
            let (dialed, accepted) = tokio::join!(dialing, listener.accept());
            let (_, w) = dialed.unwrap().into_split();
            let (r, _) = accepted.unwrap().0.into_split();
            let key = [9u8; 32];
            (SealedWriter::new(w, Cipher::rekeyed_every(key, 3)), SealedReader::new(r, Cipher::rekeyed_every(key, every), BytesMut::new()))
        }
        let frames: Vec<Vec<u8>> = (0..40u32).map(|i| (0..(i * 9_973) % 200_000).map(|b| (b ^ i) as u8).collect()).collect();
        let (mut w, mut r) = halves(3).await;
        let sending = {
            let frames = frames.clone();
            tokio::spawn(async move {
                for f in &frames {
                    w.feed(f).await.unwrap();
                    w.flush().await.unwrap();
                }
                w.shutdown().await.unwrap();
            })
        };
        for (i, want) in frames.iter().enumerate() {
            let got = r.frame().await.unwrap().unwrap_or_else(|| panic!("the stream ended before frame {i}"));
            assert!(got[..] == want[..], "frame {i} differs");
        }
        assert!(r.frame().await.unwrap().is_none());
        sending.await.unwrap();
        assert!(r.cipher_records() > 3 * 10, "few rekeys: {} records", r.cipher_records());

        let (mut w, mut r) = halves(u64::MAX).await;
        // The reader gives up at the first record it cannot open; the
        // writes after that may fail, which is not what is tested.
        tokio::spawn(async move {
            for f in &frames {
                let _ = w.feed(f).await;
                let _ = w.flush().await;
            }
        });
        let mut read = 0;
        let end = loop {
            match r.frame().await {
                Ok(Some(_)) => read += 1,
                other => break other,
            }
        };
        assert!(matches!(end, Err(NetError::Tampered)), "{end:?} after {read} frames");
    }
}

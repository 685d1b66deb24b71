//! Authenticated connections, typed by link: a [`Link<M>`] reads and writes
//! only `M`, the message type of its link. Every write has a deadline: a
//! peer that stops reading is a lost peer, not a stalled node.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::framing::{self, SealedReader, SealedWriter};
use super::message::{LinkMessage, Role};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("a record failed authentication (tampered with, or corrupted): closing the connection")]
    Tampered,
    #[error("encryption failed: {0}")]
    Crypto(String),
    #[error("refused by {peer}: {reason}")]
    Refused { peer: String, reason: String },
    #[error("{0}")]
    Handshake(String),
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer took longer than {} to answer", crate::settings::seconds(*.0))]
    Timeout(Duration),
    #[error("the peer stopped reading: a write did not finish within {}", crate::settings::seconds(*.0))]
    WriteStalled(Duration),
    /// An earlier write failed or was cut off mid-record: what the peer
    /// would read next is a fragment, so nothing more is written.
    #[error("an earlier write on this connection failed part way: it takes no more")]
    Poisoned,
}

/// A connection whose peer proved it knows the cookie, not yet given a link.
pub struct Authenticated {
    pub reader: SealedReader,
    pub writer: SealedWriter,
    pub peer_role: Role,
    pub peer_name: String,
    pub peer_addr: String,
}

/// A connection carrying the messages of one link.
pub struct Link<M> {
    pub reader: Reader<M>,
    pub writer: Writer<M>,
    pub peer_role: Role,
    pub peer_name: String,
    pub peer_addr: String,
}

impl Authenticated {
    /// This connection as a link of message type `M`; writes that take
    /// longer than `write_deadline` fail.
    pub fn into_link<M: LinkMessage>(self, write_deadline: Duration) -> Link<M> {
        Link {
            reader: Reader { inner: self.reader, _m: PhantomData },
            writer: Writer { inner: self.writer, deadline: write_deadline, _m: PhantomData },
            peer_role: self.peer_role,
            peer_name: self.peer_name,
            peer_addr: self.peer_addr,
        }
    }
}

impl<M: DeserializeOwned + Serialize> Link<M> {
    /// Closes the link without losing what it sent: ends the writing half,
    /// then reads (and drops) what the peer still sends until it closes
    /// its end too, at most `limit`. A socket closed while bytes from the
    /// peer wait unread is reset, and a reset makes the peer's kernel
    /// discard what the peer had not read yet — the last frames, often
    /// the goodbye itself.
    pub async fn close(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            if self.writer.inner.shutdown().await.is_ok() {
                while let Ok(Some(_)) = self.reader.read().await {}
            }
        })
        .await;
    }
}

/// The reading half of a link.
pub struct Reader<M> {
    inner: SealedReader,
    _m: PhantomData<fn() -> M>,
}

impl<M: DeserializeOwned> Reader<M> {
    /// The next message; `None` when the peer closed cleanly. Cancel-safe.
    pub async fn read(&mut self) -> Result<Option<M>, NetError> {
        match self.inner.frame().await? {
            None => Ok(None),
            Some(frame) => framing::decode(&frame).map(Some),
        }
    }
}

/// The writing half of a link.
pub struct Writer<M> {
    inner: SealedWriter,
    deadline: Duration,
    _m: PhantomData<fn(M)>,
}

impl<M: Serialize> Writer<M> {
    pub async fn write(&mut self, msg: &M) -> Result<(), NetError> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queues a message without flushing (for batching many small ones).
    pub async fn feed(&mut self, msg: &M) -> Result<(), NetError> {
        self.feed_encoded(&framing::encode(msg)).await
    }

    /// Queues a message encoded elsewhere (with [`framing::encode`] of an `M`).
    pub async fn feed_encoded(&mut self, frame: &[u8]) -> Result<(), NetError> {
        let deadline = self.deadline;
        tokio::time::timeout(deadline, self.inner.feed(frame)).await.map_err(|_| NetError::WriteStalled(deadline))?
    }

    pub async fn flush(&mut self) -> Result<(), NetError> {
        let deadline = self.deadline;
        tokio::time::timeout(deadline, self.inner.flush()).await.map_err(|_| NetError::WriteStalled(deadline))?
    }
}

//! A consumer group's committed offsets, through the Kafka protocol's group
//! coordinator: FindCoordinator v1, OffsetFetch v1 and OffsetCommit v2 (the
//! oldest versions Kafka 4 still serves). skitter assigns partitions to its
//! source instances itself, as Flink does, so it commits as a standalone
//! member (generation -1, no member id): the offsets are the group's, and
//! `kafka-consumer-groups --describe` shows them and the lag.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIND_COORDINATOR: i16 = 10;
const OFFSET_FETCH: i16 = 9;
const OFFSET_COMMIT: i16 = 8;
/// A response larger than this is not one of ours.
const MAX_RESPONSE: usize = 16 << 20;
/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts while the group's coordinator is loading or moving.
const ATTEMPTS: usize = 5;

/// A request that failed: what, with whom, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    #[error("{broker}: {error}")]
    Io { broker: String, error: String },
    #[error("{broker}: malformed {api} response ({what})")]
    Malformed { broker: String, api: &'static str, what: &'static str },
    #[error("{api} for group `{group}`: {}", error_name(*code))]
    Refused { api: &'static str, group: String, code: i16 },
}

/// The names of the errors a group request can meet.
fn error_name(code: i16) -> String {
    let name = match code {
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        22 => "ILLEGAL_GENERATION (the group has members of another consumer; give skitter its own group)",
        24 => "INVALID_GROUP_ID",
        25 => "UNKNOWN_MEMBER_ID (the group has members of another consumer; give skitter its own group)",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        _ => return format!("Kafka error {code}"),
    };
    format!("{name} (Kafka error {code})")
}

/// Whether asking again (the coordinator again) may help.
fn retriable(code: i16) -> bool {
    (14..=16).contains(&code)
}

/// What is wrong with a response.
enum Bad {
    /// It ended before this field.
    Malformed(&'static str),
    /// The broker's error code.
    Code(i16),
}

/// A consumer group's offsets on a cluster reached through `bootstrap`.
pub struct GroupOffsets {
    bootstrap: Vec<String>,
    group: String,
}

impl GroupOffsets {
    pub fn new(bootstrap: &[String], group: &str) -> GroupOffsets {
        GroupOffsets { bootstrap: bootstrap.to_vec(), group: group.into() }
    }

    /// The committed offset of each of `partitions` of `topic` (none: the
    /// group has not committed one).
    pub async fn fetch(&self, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, Option<i64>>, OffsetError> {
        let mut body = Vec::new();
        put_str(&mut body, &self.group);
        body.extend(1i32.to_be_bytes());
        put_str(&mut body, topic);
        body.extend((partitions.len() as i32).to_be_bytes());
        for p in partitions {
            body.extend(p.to_be_bytes());
        }
        self.with_coordinator(OFFSET_FETCH, 1, &body, |r| {
            let mut found = BTreeMap::new();
            let bad = Bad::Malformed;
            for _ in 0..r.count().ok_or_else(|| bad("topics"))? {
                r.string().ok_or_else(|| bad("topic"))?;
                for _ in 0..r.count().ok_or_else(|| bad("partitions"))? {
                    let (p, offset) = (r.i32().ok_or_else(|| bad("partition"))?, r.i64().ok_or_else(|| bad("offset"))?);
                    r.nullable_string().ok_or_else(|| bad("metadata"))?;
                    let code = r.i16().ok_or_else(|| bad("error"))?;
                    if code != 0 {
                        return Err(Bad::Code(code));
                    }
                    found.insert(p, (offset >= 0).then_some(offset));
                }
            }
            Ok(found)
        })
        .await
    }

    /// Commits `offsets` (partition -> the next offset to read) of `topic`.
    pub async fn commit(&self, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<(), OffsetError> {
        let mut body = Vec::new();
        put_str(&mut body, &self.group);
        body.extend((-1i32).to_be_bytes()); // generation: not a member
        put_str(&mut body, ""); // member id
        body.extend((-1i64).to_be_bytes()); // retention: the broker's
        body.extend(1i32.to_be_bytes());
        put_str(&mut body, topic);
        body.extend((offsets.len() as i32).to_be_bytes());
        for (p, offset) in offsets {
            body.extend(p.to_be_bytes());
            body.extend(offset.to_be_bytes());
            put_str(&mut body, "skitter");
        }
        self.with_coordinator(OFFSET_COMMIT, 2, &body, |r| {
            let bad = Bad::Malformed;
            for _ in 0..r.count().ok_or_else(|| bad("topics"))? {
                r.string().ok_or_else(|| bad("topic"))?;
                for _ in 0..r.count().ok_or_else(|| bad("partitions"))? {
                    r.i32().ok_or_else(|| bad("partition"))?;
                    let code = r.i16().ok_or_else(|| bad("error"))?;
                    if code != 0 {
                        return Err(Bad::Code(code));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Sends `api` to the group's coordinator and reads the answer with
    /// `read`; asks for the coordinator again while it is moving.
    async fn with_coordinator<T>(
        &self,
        api: i16,
        version: i16,
        body: &[u8],
        read: impl Fn(&mut Reader) -> Result<T, Bad>,
    ) -> Result<T, OffsetError> {
        let name = if api == OFFSET_COMMIT { "OffsetCommit" } else { "OffsetFetch" };
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
            }
            let coordinator = self.coordinator().await?;
            let response = request(&coordinator, api, version, body).await?;
            match read(&mut Reader(&response)) {
                Ok(v) => return Ok(v),
                Err(Bad::Malformed(what)) => return Err(OffsetError::Malformed { broker: coordinator, api: name, what }),
                Err(Bad::Code(code)) if retriable(code) => last = Some(code),
                Err(Bad::Code(code)) => return Err(OffsetError::Refused { api: name, group: self.group.clone(), code }),
            }
        }
        Err(OffsetError::Refused { api: name, group: self.group.clone(), code: last.unwrap_or(15) })
    }

    /// `host:port` of the group's coordinator, from the first bootstrap
    /// broker that answers.
    async fn coordinator(&self) -> Result<String, OffsetError> {
        let mut body = Vec::new();
        put_str(&mut body, &self.group);
        body.push(0); // key type: group
        let mut failure = None;
        for broker in &self.bootstrap {
            let response = match request(broker, FIND_COORDINATOR, 1, &body).await {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(e);
                    continue;
                }
            };
            let r = &mut Reader(&response);
            let bad = |what| OffsetError::Malformed { broker: broker.clone(), api: "FindCoordinator", what };
            r.i32().ok_or_else(|| bad("throttle"))?;
            let code = r.i16().ok_or_else(|| bad("error"))?;
            r.nullable_string().ok_or_else(|| bad("message"))?;
            r.i32().ok_or_else(|| bad("node"))?;
            let host = r.string().ok_or_else(|| bad("host"))?;
            let port = r.i32().ok_or_else(|| bad("port"))?;
            if code != 0 {
                failure = Some(OffsetError::Refused { api: "FindCoordinator", group: self.group.clone(), code });
                continue;
            }
            return Ok(format!("{host}:{port}"));
        }
        Err(failure.unwrap_or(OffsetError::Io { broker: String::new(), error: "no broker given".into() }))
    }
}

/// One request on a fresh connection; the response's body.
async fn request(broker: &str, api: i16, version: i16, body: &[u8]) -> Result<Vec<u8>, OffsetError> {
    let io = |error: String| OffsetError::Io { broker: broker.into(), error };
    let exchange = async {
        let mut stream = TcpStream::connect(broker).await.map_err(|e| io(e.to_string()))?;
        let mut frame = Vec::with_capacity(body.len() + 32);
        frame.extend([0; 4]);
        frame.extend(api.to_be_bytes());
        frame.extend(version.to_be_bytes());
        frame.extend(1i32.to_be_bytes()); // correlation id
        put_str(&mut frame, "skitter");
        frame.extend(body);
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&frame).await.map_err(|e| io(e.to_string()))?;
        let size = stream.read_i32().await.map_err(|e| io(format!("the broker closed the connection ({e})")))?;
        if !(4..=MAX_RESPONSE as i32).contains(&size) {
            return Err(io(format!("a response of {size} bytes")));
        }
        let mut response = vec![0; size as usize];
        stream.read_exact(&mut response).await.map_err(|e| io(e.to_string()))?;
        if response[..4] != 1i32.to_be_bytes() {
            return Err(io("a response to another request".into()));
        }
        response.drain(..4);
        Ok(response)
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| io(format!("no answer within {} s", TIMEOUT.as_secs())))?
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

/// Reads a response's fields in order; `None` when it ends too soon.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    /// An array's length (a null array is empty).
    fn count(&mut self) -> Option<usize> {
        self.i32().map(|n| n.max(0) as usize)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.i16()?;
        let bytes = self.take(n.max(0) as usize)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
    fn nullable_string(&mut self) -> Option<Option<String>> {
        match self.i16()? {
            -1 => Some(None),
            n => Some(Some(String::from_utf8_lossy(self.take(n.max(0) as usize)?).into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_order_and_a_short_response_is_none() {
        let mut bytes = Vec::new();
        bytes.extend(2i32.to_be_bytes());
        put_str(&mut bytes, "words");
        bytes.extend((-1i16).to_be_bytes());
        bytes.extend(7i64.to_be_bytes());
        let r = &mut Reader(&bytes);
        assert_eq!(r.count(), Some(2));
        assert_eq!(r.string().as_deref(), Some("words"));
        assert_eq!(r.nullable_string(), Some(None));
        assert_eq!(r.i64(), Some(7));
        assert_eq!(r.i16(), None);
        let r = &mut Reader(&[0, 9, b'a']);
        assert_eq!(r.string(), None);
    }

    #[test]
    fn errors_name_the_kafka_error() {
        let e = OffsetError::Refused { api: "OffsetCommit", group: "g".into(), code: 25 };
        assert!(e.to_string().contains("UNKNOWN_MEMBER_ID"), "{e}");
        assert!(retriable(16) && !retriable(25));
    }
}

//! Redis Streams: a source reading a stream through a consumer group, and
//! a sink appending to a stream. The source acknowledges what it read only
//! when the workflow's sinks have settled (it finished, or stopped after
//! draining): after a failure nothing is acknowledged, and the next deploy
//! with the same group reads those entries again (its pending ones first).
//! At least once, never a gap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{Commands, Connection, RedisError};
use rhai::{Dynamic, ImmutableString, Map};

use super::error::FlowError;
use super::{bytes, BATCH};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one read waits for entries before the source looks at a stop.
const BLOCK_MS: usize = 100;
/// Attempts of a sink's write before the workflow fails.
const WRITE_ATTEMPTS: u32 = 3;
/// Entries acknowledged per command.
const ACK_CHUNK: usize = 1000;

/// The consumer name of source instance `instance`: stable, so that the
/// next deploy finds the entries this one left pending.
pub fn consumer(instance: usize) -> String {
    format!("skitter-{instance}")
}

fn connect(url: &str) -> Result<Connection, RedisError> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(Duration::from_secs(5)))?;
    con.set_write_timeout(Some(Duration::from_secs(5)))?;
    redis::cmd("PING").query::<()>(&mut con)?;
    Ok(con)
}

/// Checks that the broker at `url` answers (at deploy, so that a wrong
/// address fails the deploy, naming it).
pub fn check(operator: &str, url: &str) -> Result<(), FlowError> {
    connect(url).map(|_| ()).map_err(|e| FlowError::broker(operator, "connect to", url, e.to_string()))
}

/// An entry id, `<ms>-<seq>`, in 16 bytes: a long run keeps many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EntryId(u64, u64);

impl EntryId {
    fn parse(id: &str) -> Option<EntryId> {
        let (ms, seq) = id.split_once('-')?;
        Some(EntryId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Entries a source read and has not acknowledged yet.
pub struct Acks {
    pub url: String,
    pub stream: String,
    pub group: String,
    /// Entries read and not acknowledged, and how many of them each
    /// checkpoint not yet durable covers.
    read: Mutex<(Vec<EntryId>, super::Marks<usize>)>,
}

impl Acks {
    pub fn new(url: &str, stream: &str, group: &str) -> Acks {
        Acks { url: url.into(), stream: stream.into(), group: group.into(), read: Mutex::default() }
    }

    fn add(&self, ids: impl IntoIterator<Item = EntryId>) {
        self.read.lock().expect("acks lock").0.extend(ids);
    }
}

impl super::Acknowledge for Acks {
    /// Acknowledges every entry read so far.
    fn commit(&self) -> Result<u64, String> {
        let ids = {
            let mut read = self.read.lock().expect("acks lock");
            read.1.clear();
            std::mem::take(&mut read.0)
        };
        self.acknowledge(ids)
    }

    fn mark(&self, id: u64) {
        let mut read = self.read.lock().expect("acks lock");
        let n = read.0.len();
        read.1.mark(id, n);
    }

    fn commit_to(&self, id: u64) -> Result<u64, String> {
        let ids = {
            let mut read = self.read.lock().expect("acks lock");
            let Some(n) = read.1.take_to(id) else { return Ok(0) };
            for later in read.1.iter_mut() {
                *later -= n;
            }
            read.0.drain(..n).collect::<Vec<_>>()
        };
        self.acknowledge(ids)
    }
}

impl Acks {
    fn acknowledge(&self, ids: Vec<EntryId>) -> Result<u64, String> {
        if ids.is_empty() {
            return Ok(0);
        }
        let failed = |e: RedisError| {
            format!(
                "cannot acknowledge {} entries of stream `{}` (group `{}`) on {}: {e}; the next run with this group reads them again",
                ids.len(),
                self.stream,
                self.group,
                self.url
            )
        };
        let mut con = connect(&self.url).map_err(failed)?;
        for chunk in ids.chunks(ACK_CHUNK) {
            let chunk: Vec<String> = chunk.iter().map(EntryId::to_string).collect();
            con.xack::<_, _, _, ()>(&self.stream, &self.group, &chunk).map_err(failed)?;
        }
        Ok(ids.len() as u64)
    }
}

/// A source instance: reads its pending entries first (left by a run that
/// did not settle), then new ones.
pub struct Reader {
    con: Connection,
    operator: String,
    url: String,
    stream: String,
    group: String,
    consumer: String,
    /// While reading what was pending (from after this id) until there is
    /// none left; then new entries (">").
    pending: Option<String>,
    retry: Duration,
    acks: std::sync::Arc<Acks>,
    /// The last entry read ("": none), for a checkpoint.
    last: String,
}

impl Reader {
    /// Notes what was read so far as checkpoint `id`'s.
    pub fn mark(&self, id: u64) {
        use super::Acknowledge;
        self.acks.mark(id);
    }

    /// The last entry read: a consumer reads entries in order, so a
    /// checkpoint covers every entry up to it.
    pub fn last_read(&self) -> String {
        self.last.clone()
    }
}

impl Reader {
    pub fn open(
        operator: &str,
        url: &str,
        stream: &str,
        group: &str,
        instance: usize,
        start: super::BrokerStart,
        acks: std::sync::Arc<Acks>,
    ) -> Result<Reader, FlowError> {
        let super::BrokerStart { retry, covered } = start;
        let mut con = connect(url).map_err(|e| FlowError::broker(operator, "connect to", url, e.to_string()))?;
        // A new group starts at the stream's beginning; an existing one where it was.
        match con.xgroup_create_mkstream::<_, _, _, ()>(stream, group, "0") {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(FlowError::broker(operator, "create the group on", url, format!("stream `{stream}`: {e}"))),
        }
        let consumer_name = consumer(instance);
        // The checkpoint resumed from covers its entries up to `covered`:
        // whatever the broker was told, they are done with.
        if let Some(last) = &covered {
            acknowledge_up_to(&mut con, stream, group, &consumer_name, last).map_err(|e| {
                FlowError::broker(operator, "acknowledge what its checkpoint covered on", url, format!("stream `{stream}`: {e}"))
            })?;
        }
        Ok(Reader {
            con,
            operator: operator.into(),
            url: url.into(),
            stream: stream.into(),
            group: group.into(),
            consumer: consumer_name,
            pending: Some("0".into()),
            retry,
            acks,
            last: covered.unwrap_or_default(),
        })
    }

    /// The next entries as `#{id, fields}`; an empty batch when none came
    /// within a short wait (the caller looks at a stop and asks again).
    pub fn next_batch(&mut self) -> Result<Vec<Dynamic>, FlowError> {
        let began = Instant::now();
        loop {
            match self.read() {
                Ok(batch) => return Ok(batch),
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                    if began.elapsed() >= self.retry {
                        let error = format!("stream `{}`: {e} (retried for {} s)", self.stream, self.retry.as_secs_f64());
                        return Err(FlowError::broker(&self.operator, "read from", &self.url, error));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    if let Ok(con) = connect(&self.url) {
                        self.con = con;
                    }
                }
                Err(e) => return Err(FlowError::broker(&self.operator, "read from", &self.url, format!("stream `{}`: {e}", self.stream))),
            }
        }
    }

    fn read(&mut self) -> Result<Vec<Dynamic>, RedisError> {
        let id = self.pending.clone().unwrap_or_else(|| ">".into());
        let mut options = StreamReadOptions::default().group(&self.group, &self.consumer).count(BATCH);
        if self.pending.is_none() {
            options = options.block(BLOCK_MS);
        }
        let reply: StreamReadReply = self.con.xread_options(&[&self.stream], &[&id], &options)?;
        let entries: Vec<_> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
        if self.pending.is_some() {
            // The pending list is read in order, each read after the last.
            self.pending = entries.last().map(|e| e.id.clone());
        }
        let mut batch = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            let id = EntryId::parse(&entry.id).ok_or_else(|| malformed(&self.stream, &entry.id, "id", "not an entry id"))?;
            batch.push(self.record(&entry.id, entry.map)?);
            ids.push(id);
        }
        if let Some(last) = ids.last() {
            self.last = last.to_string();
        }
        self.acks.add(ids);
        Ok(batch)
    }

    fn record(&self, id: &str, fields: HashMap<String, redis::Value>) -> Result<Dynamic, RedisError> {
        let mut map = Map::new();
        for (name, value) in fields {
            map.insert(name.as_str().into(), field(value).map_err(|what| malformed(&self.stream, id, &name, what))?);
        }
        let mut record = Map::new();
        record.insert("id".into(), Dynamic::from(ImmutableString::from(id)));
        record.insert("fields".into(), Dynamic::from_map(map));
        Ok(Dynamic::from_map(record))
    }
}

/// Acknowledges the entries pending for `consumer` up to entry `last`.
fn acknowledge_up_to(con: &mut Connection, stream: &str, group: &str, consumer: &str, last: &str) -> Result<(), RedisError> {
    loop {
        let pending: redis::streams::StreamPendingCountReply =
            con.xpending_consumer_count(stream, group, "-", last, ACK_CHUNK, consumer)?;
        if pending.ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = pending.ids.iter().map(|p| p.id.as_str()).collect();
        con.xack::<_, _, _, ()>(stream, group, &ids)?;
    }
}

fn malformed(stream: &str, id: &str, name: &str, what: &str) -> RedisError {
    RedisError::from((redis::ErrorKind::TypeError, "malformed entry", format!("stream `{stream}`, entry {id}, field `{name}`: {what}")))
}

/// A field's value as a script sees it: text (UTF-8), or a blob.
fn field(value: redis::Value) -> Result<Dynamic, &'static str> {
    match value {
        redis::Value::BulkString(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Dynamic::from(text)),
            Err(e) => Ok(Dynamic::from_blob(e.into_bytes())),
        },
        redis::Value::SimpleString(text) => Ok(Dynamic::from(text)),
        redis::Value::Int(n) => Ok(Dynamic::from_int(n)),
        redis::Value::Nil => Ok(Dynamic::UNIT),
        _ => Err("not a string"),
    }
}

/// A sink instance: appends each record to the stream, a batch per round trip.
pub struct Writer {
    con: Option<Connection>,
    url: String,
    stream: String,
}

impl Writer {
    pub fn new(url: &str, stream: &str) -> Writer {
        Writer { con: None, url: url.into(), stream: stream.into() }
    }

    /// Appends `records` (a map as its fields, anything else as `value`);
    /// retried, reconnecting, before it fails naming broker and stream.
    pub fn write(&mut self, operator: &str, records: &[Dynamic]) -> Result<(), FlowError> {
        let mut pipe = redis::pipe();
        for record in records {
            let fields: Vec<(String, Vec<u8>)> = match record.read_lock::<Map>() {
                Some(map) => map.iter().map(|(k, v)| (k.to_string(), bytes(v))).collect(),
                None => vec![("value".to_string(), bytes(record))],
            };
            pipe.cmd("XADD").arg(&self.stream).arg("*").arg(fields).ignore();
        }
        let mut last = String::new();
        for attempt in 0..WRITE_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 << (2 * attempt)));
            }
            let con = match self.con.as_mut() {
                Some(con) => con,
                None => match connect(&self.url) {
                    Ok(con) => self.con.insert(con),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                },
            };
            match pipe.query::<()>(con) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = e.to_string();
                    self.con = None;
                }
            }
        }
        let error = format!("stream `{}`: {last} (after {WRITE_ATTEMPTS} attempts)", self.stream);
        Err(FlowError::broker(operator, "write to", &self.url, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_round_trip_and_bad_ones_are_refused() {
        let id = EntryId::parse("1795983727454-12").unwrap();
        assert_eq!(id.to_string(), "1795983727454-12");
        assert_eq!(EntryId::parse("17-x"), None);
        assert_eq!(EntryId::parse("17"), None);
    }

    #[test]
    fn records_become_fields_text_blob_or_printed() {
        assert_eq!(bytes(&Dynamic::from("a")), b"a");
        assert_eq!(bytes(&Dynamic::from_blob(vec![0xff, 0])), vec![0xff, 0]);
        assert_eq!(bytes(&Dynamic::from_int(42)), b"42");
        let not_text = field(redis::Value::BulkString(vec![0xff])).unwrap();
        assert!(not_text.is_blob());
        assert_eq!(field(redis::Value::BulkString(b"hi".to_vec())).unwrap().into_string().unwrap(), "hi");
    }
}

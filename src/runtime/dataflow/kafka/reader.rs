//! A Kafka source instance: a task per partition fetching into a bounded
//! channel, the records the instance makes of what came, and the offsets it
//! commits when the sinks settle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, ImmutableString, Map};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::{broker_list, client, partitions, GroupOffsets, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::runtime::dataflow::block;
use crate::runtime::dataflow::error::FlowError;
use crate::runtime::dataflow::BATCH;
use crate::workflow::{KafkaSource, KafkaStart, ValueFormat};

/// How long a fetch waits at the broker for records to arrive: 5 ms while
/// records flow on any of the instance's partitions (some came within
/// [`FLOWING`]), else doubling with each empty fetch up to 160 ms. Kafka
/// answers as soon as a record comes, but not every broker does
/// (librdkafka's mock cluster holds a fetch for its whole wait): a short
/// wait while the topic flows keeps the latency low there too — producers
/// fill one partition at a time, so a partition of a busy topic is often
/// quiet for a while — and a long one while it is idle keeps it cheap.
const FETCH_WAIT_MS: (i32, i32) = (5, 160);
/// How recent the last records of a partition must be for the topic to flow.
const FLOWING: Duration = Duration::from_secs(1);
/// The most a fetch of one partition brings.
const FETCH_BYTES: i32 = 1 << 20;
/// How long the reader waits for fetched records before it looks at a stop.
const POLL: Duration = Duration::from_millis(100);

/// The offsets a source instance reached, committed for its group when the
/// sinks settle.
pub struct Position {
    offsets: GroupOffsets,
    handle: Handle,
    brokers: String,
    topic: String,
    group: String,
    /// Partition -> the next offset to read.
    read: Mutex<BTreeMap<i32, i64>>,
    /// Records read since the last commit.
    fresh: std::sync::atomic::AtomicU64,
    /// The offsets each checkpoint not yet durable covers.
    marks: Mutex<crate::runtime::dataflow::Marks<BTreeMap<i32, i64>>>,
}

impl Position {
    pub fn new(spec: &KafkaSource, handle: Handle) -> Position {
        Position {
            offsets: GroupOffsets::new(&broker_list(&spec.brokers), &spec.group),
            handle,
            brokers: spec.brokers.clone(),
            topic: spec.topic.clone(),
            group: spec.group.clone(),
            read: Mutex::default(),
            fresh: Default::default(),
            marks: Mutex::default(),
        }
    }

    fn advance(&self, partition: i32, next: i64, records: usize) {
        let mut read = self.read.lock().expect("position lock");
        let at = read.entry(partition).or_insert(next);
        *at = (*at).max(next);
        self.fresh.fetch_add(records as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

impl crate::runtime::dataflow::Acknowledge for Position {
    /// Commits the offsets after what was read: it is done with.
    fn commit(&self) -> Result<u64, String> {
        self.marks.lock().expect("marks lock").clear();
        let read = self.read.lock().expect("position lock").clone();
        self.save(read)
    }

    fn mark(&self, id: u64) {
        let read = self.read.lock().expect("position lock").clone();
        self.marks.lock().expect("marks lock").mark(id, read);
    }

    fn commit_to(&self, id: u64) -> Result<u64, String> {
        match self.marks.lock().expect("marks lock").take_to(id) {
            Some(read) => self.save(read),
            None => Ok(0),
        }
    }
}

impl Position {
    fn save(&self, read: BTreeMap<i32, i64>) -> Result<u64, String> {
        if read.is_empty() {
            return Ok(0);
        }
        block(&self.handle, self.offsets.commit(&self.topic, &read)).map_err(|e| {
            format!(
                "cannot commit the offsets {read:?} of topic `{}` for group `{}` on {}: {e}; the next run reads from the last committed ones",
                self.topic, self.group, self.brokers
            )
        })?;
        Ok(self.fresh.swap(0, std::sync::atomic::Ordering::Relaxed))
    }
}

/// What a partition's task hands the reader.
enum Fetched {
    Records(i32, Vec<RecordAndOffset>),
    /// A bounded source's partition reached the end it had at the start.
    Done,
    Failed(i32, String),
}

/// A source instance: one task per partition fetches into a bounded
/// channel (back-pressure: a full channel stops the fetching); the
/// instance turns what came into records.
pub struct Reader {
    handle: Handle,
    fetched: mpsc::Receiver<Fetched>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Partitions still being read (a bounded source ends at 0).
    open: usize,
    operator: String,
    spec: KafkaSource,
    position: Arc<Position>,
    /// Records that are not text where text was asked for, kept for the
    /// `reject` port when it is linked (else they fail the workflow).
    rejects: Option<Vec<Dynamic>>,
}

impl Reader {
    /// Notes what was read so far as checkpoint `id`'s.
    pub fn mark(&self, id: u64) {
        use crate::runtime::dataflow::Acknowledge;
        self.position.mark(id);
    }

    /// The next offset of each partition read, as `partition:offset,...`.
    pub fn last_read(&self) -> String {
        let read = self.position.read.lock().expect("position lock");
        read.iter().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(",")
    }
}

/// Offsets as [`Reader::last_read`] writes them.
fn parse_offsets(text: &str) -> BTreeMap<i32, i64> {
    text.split(',').filter_map(|po| po.split_once(':')).filter_map(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?))).collect()
}

impl Reader {
    /// Opens instance `instance` of `instances`: partitions `p` with
    /// `p % instances == instance`, each from its committed offset, or
    /// from the start option when the group has none.
    pub fn open(
        handle: &Handle,
        operator: &str,
        spec: &KafkaSource,
        (instance, instances): (usize, usize),
        position: Arc<Position>,
        covered: Option<String>,
    ) -> Result<Reader, FlowError> {
        // The checkpoint resumed from says where each partition starts,
        // whatever offsets the group has committed.
        let covered = covered.map(|c| parse_offsets(&c)).unwrap_or_default();
        let retry = Duration::from_millis(spec.retry_ms);
        let opening = async {
            let client = client(&spec.brokers, retry).await?;
            let mine: Vec<i32> =
                partitions(&client, &spec.topic).await?.into_iter().filter(|p| *p as usize % instances.max(1) == instance).collect();
            let committed = position.offsets.fetch(&spec.topic, &mine).await.map_err(|e| e.to_string())?;
            let mut starts = Vec::new();
            for p in mine {
                let partition = client
                    .partition_client(spec.topic.as_str(), p, UnknownTopicHandling::Retry)
                    .await
                    .map_err(|e| format!("partition {p}: {e}"))?;
                let from = match covered.get(&p).copied().or(committed.get(&p).copied().flatten()) {
                    Some(offset) => offset,
                    None => {
                        let at = if spec.start == KafkaStart::Latest { OffsetAt::Latest } else { OffsetAt::Earliest };
                        partition.get_offset(at).await.map_err(|e| format!("partition {p}: {e}"))?
                    }
                };
                let end = match spec.bounded {
                    true => Some(partition.get_offset(OffsetAt::Latest).await.map_err(|e| format!("partition {p}: {e}"))?),
                    false => None,
                };
                starts.push((partition, from, end));
            }
            Ok::<_, String>(starts)
        };
        let limit = retry + CONNECT_TIMEOUT + REQUEST_TIMEOUT;
        let opened = block(handle, async {
            tokio::time::timeout(limit, opening).await.unwrap_or_else(|_| Err(format!("not ready within {} s", limit.as_secs())))
        })
        .map_err(|e| FlowError::broker(operator, "read from", &spec.brokers, format!("topic `{}`: {e}", spec.topic)))?;
        let (send, fetched) = mpsc::channel(2 * opened.len().max(1));
        let open = opened.len();
        let flowing = Arc::new(Flowing::new());
        let tasks = opened
            .into_iter()
            .map(|(partition, from, end)| {
                position.advance(partition.partition(), from, 0);
                handle.spawn(follow(partition, from, end, retry, send.clone(), flowing.clone()))
            })
            .collect();
        Ok(Reader { handle: handle.clone(), fetched, tasks, open, operator: operator.into(), spec: spec.clone(), position, rejects: None })
    }

    /// Sends records that are not text to the `reject` port instead of
    /// failing the workflow.
    pub fn keep_rejects(&mut self) {
        self.rejects.get_or_insert_with(Vec::new);
    }

    pub fn has_rejects(&self) -> bool {
        self.rejects.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// The records rejected since the last call.
    pub fn take_rejects(&mut self) -> Vec<Dynamic> {
        self.rejects.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The next records as `#{key, value, partition, offset, timestamp}`;
    /// `None` once a bounded source read every partition to its end; an
    /// empty batch when nothing came within a short wait.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Dynamic>>, FlowError> {
        let mut batch = Vec::new();
        let mut wait = POLL;
        while batch.len() < BATCH && self.open > 0 {
            let got = block(&self.handle, async { tokio::time::timeout(wait, self.fetched.recv()).await });
            match got {
                Ok(Some(Fetched::Records(p, records))) => {
                    let Some(last) = records.last().map(|r| r.offset) else { continue };
                    for r in &records {
                        if let Some(record) = self.record(p, r)? {
                            batch.push(record);
                        }
                    }
                    self.position.advance(p, last + 1, records.len());
                }
                Ok(Some(Fetched::Done)) => self.open -= 1,
                Ok(Some(Fetched::Failed(p, e))) => {
                    let error = format!("topic `{}` partition {p}: {e}", self.spec.topic);
                    return Err(FlowError::broker(&self.operator, "read from", &self.spec.brokers, error));
                }
                Ok(None) => return Err(FlowError::Internal(format!("{}: the partition readers ended", self.operator))),
                Err(_) => break,
            }
            // Take what is already here, without waiting again.
            wait = Duration::ZERO;
        }
        Ok((self.open > 0 || !batch.is_empty()).then_some(batch))
    }

    /// The record as a map; `None` when it went to the rejects.
    fn record(&mut self, partition: i32, r: &RecordAndOffset) -> Result<Option<Dynamic>, FlowError> {
        let format = self.spec.format;
        let convert = |bytes: &Option<Vec<u8>>| -> Result<Dynamic, std::str::Utf8Error> {
            let Some(bytes) = bytes else { return Ok(Dynamic::UNIT) };
            match (format, std::str::from_utf8(bytes)) {
                (ValueFormat::Blob, _) | (ValueFormat::Auto, Err(_)) => Ok(Dynamic::from_blob(bytes.clone())),
                (_, Ok(s)) => Ok(Dynamic::from(ImmutableString::from(s))),
                (ValueFormat::Text, Err(e)) => Err(e),
            }
        };
        let mut record = Map::new();
        let converted =
            convert(&r.record.key).map_err(|e| ("key", e)).and_then(|key| Ok((key, convert(&r.record.value).map_err(|e| ("value", e))?)));
        let reason = match converted {
            Ok((key, value)) => {
                record.insert("key".into(), key);
                record.insert("value".into(), value);
                None
            }
            Err((what, e)) => {
                Some(format!("topic `{}` partition {partition} offset {}: the {what} is not UTF-8 text ({e})", self.spec.topic, r.offset))
            }
        };
        record.insert("partition".into(), Dynamic::from_int(partition as i64));
        record.insert("offset".into(), Dynamic::from_int(r.offset));
        record.insert("timestamp".into(), Dynamic::from_int(r.record.timestamp.timestamp_millis()));
        let Some(reason) = reason else { return Ok(Some(Dynamic::from_map(record))) };
        let Some(rejects) = self.rejects.as_mut() else {
            return Err(FlowError::Operator {
                operator: self.operator.clone(),
                reason: format!("{reason}; read it as a blob with #{{ format: \"auto\" }}, or link the port `reject`"),
            });
        };
        let blob = |bytes: &Option<Vec<u8>>| bytes.clone().map_or(Dynamic::UNIT, Dynamic::from_blob);
        record.insert("key".into(), blob(&r.record.key));
        record.insert("value".into(), blob(&r.record.value));
        record.insert("error".into(), Dynamic::from(ImmutableString::from(reason)));
        rejects.push(Dynamic::from_map(record));
        Ok(None)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// When records last came on any partition of a reader.
struct Flowing {
    start: Instant,
    /// Milliseconds since `start`.
    last: std::sync::atomic::AtomicU64,
}

impl Flowing {
    fn new() -> Flowing {
        Flowing { start: Instant::now(), last: std::sync::atomic::AtomicU64::new(0) }
    }

    fn seen(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn now(&self) -> bool {
        let last = Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last) < FLOWING
    }
}

/// Fetches one partition from `offset` (to `end`, when bounded) into
/// `send` until the reader goes; a broker that fails for longer than
/// `retry` ends it with the error.
async fn follow(
    partition: PartitionClient,
    mut offset: i64,
    end: Option<i64>,
    retry: Duration,
    send: mpsc::Sender<Fetched>,
    flowing: Arc<Flowing>,
) {
    let p = partition.partition();
    let mut lost: Option<Instant> = None;
    let mut wait = FETCH_WAIT_MS.0;
    loop {
        // A send fails only when the reader is gone (its workflow ended):
        // then there is no one left to tell.
        if end.is_some_and(|end| offset >= end) {
            let _ = send.send(Fetched::Done).await;
            return;
        }
        let fetch = partition.fetch_records(offset, 1..FETCH_BYTES, wait);
        let fetched = match tokio::time::timeout(REQUEST_TIMEOUT, fetch).await {
            Ok(fetched) => fetched.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
        };
        match fetched {
            Ok((mut records, _)) => {
                lost = None;
                records.retain(|r| r.offset >= offset && end.is_none_or(|end| r.offset < end));
                let Some(last) = records.last().map(|r| r.offset) else {
                    wait = if flowing.now() { FETCH_WAIT_MS.0 } else { (wait * 2).min(FETCH_WAIT_MS.1) };
                    continue;
                };
                flowing.seen();
                wait = FETCH_WAIT_MS.0;
                offset = last + 1;
                if send.send(Fetched::Records(p, records)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let since = *lost.get_or_insert_with(Instant::now);
                if since.elapsed() >= retry {
                    let _ = send.send(Fetched::Failed(p, e)).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

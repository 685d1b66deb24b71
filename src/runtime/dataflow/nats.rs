//! NATS JetStream: a source reading a stream's subject in order, and a sink
//! publishing to a subject (acknowledged by the stream that captures it).
//! The source's position (the last sequence the workflow's sinks have
//! settled) is kept under its `durable` name in the key-value bucket
//! `skitter_positions` and saved only when the sinks have settled; the next
//! deploy with the same name starts after it. At least once, never a gap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use futures_util::StreamExt;
use rhai::{Dynamic, ImmutableString, Map};
use tokio::runtime::Handle;

use super::error::FlowError;
use super::{block, bytes, BATCH};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one read waits for messages before the source looks at a stop.
const POLL: Duration = Duration::from_millis(100);
/// How long a publish may wait for its stream's acknowledgment.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// The bucket where sources keep their positions.
pub const BUCKET: &str = "skitter_positions";

async fn connect(url: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT).connect(url).await.map_err(|e| e.to_string())
}

/// Checks that the server at `url` answers, at deploy.
pub fn check(handle: &Handle, operator: &str, url: &str) -> Result<(), FlowError> {
    block(handle, connect(url)).map(|_| ()).map_err(|e| FlowError::broker(operator, "connect to", url, e))
}

/// The position a source instance reached, saved when the sinks settle.
pub struct Position {
    pub url: String,
    pub durable: String,
    handle: Handle,
    /// The last sequence read (0: none).
    read: AtomicU64,
    /// The last sequence each checkpoint not yet durable covers.
    marks: std::sync::Mutex<super::Marks<u64>>,
}

impl Position {
    pub fn new(url: &str, durable: &str, handle: Handle) -> Position {
        Position { url: url.into(), durable: durable.into(), handle, read: AtomicU64::new(0), marks: Default::default() }
    }
}

impl super::Acknowledge for Position {
    /// Saves the position: what was read is done with.
    fn commit(&self) -> Result<u64, String> {
        self.marks.lock().expect("marks lock").clear();
        self.save(self.read.load(Ordering::Relaxed))
    }

    fn mark(&self, id: u64) {
        self.marks.lock().expect("marks lock").mark(id, self.read.load(Ordering::Relaxed));
    }

    fn commit_to(&self, id: u64) -> Result<u64, String> {
        match self.marks.lock().expect("marks lock").take_to(id) {
            Some(seq) => self.save(seq),
            None => Ok(0),
        }
    }
}

impl Position {
    fn save(&self, seq: u64) -> Result<u64, String> {
        if seq == 0 {
            return Ok(0);
        }
        let failed = |e: String| {
            format!("cannot save the position {seq} of `{}` on {}: {e}; the next run reads from the last saved one", self.durable, self.url)
        };
        block(&self.handle, async {
            let js = jetstream::new(connect(&self.url).await?);
            let kv = bucket(&js).await?;
            kv.put(&self.durable, seq.to_string().into()).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(seq)
        })
        .map_err(failed)
    }
}

async fn bucket(js: &jetstream::Context) -> Result<jetstream::kv::Store, String> {
    match js.get_key_value(BUCKET).await {
        Ok(kv) => Ok(kv),
        Err(_) => js
            .create_key_value(jetstream::kv::Config { bucket: BUCKET.into(), history: 1, ..Default::default() })
            .await
            .map_err(|e| e.to_string()),
    }
}

/// A source instance: an ordered consumer from after the saved position.
pub struct Reader {
    handle: Handle,
    /// Both dropped inside the runtime (see `Drop`).
    client: Option<async_nats::Client>,
    messages: Option<jetstream::consumer::pull::Ordered>,
    operator: String,
    url: String,
    subject: String,
    retry: Duration,
    /// Since when the server has not been reachable.
    lost: Option<Instant>,
    position: std::sync::Arc<Position>,
}

impl Reader {
    /// Notes what was read so far as checkpoint `id`'s.
    pub fn mark(&self, id: u64) {
        use super::Acknowledge;
        self.position.mark(id);
    }

    /// The last sequence read, for a checkpoint.
    pub fn last_read(&self) -> String {
        self.position.read.load(Ordering::Relaxed).to_string()
    }
}

impl Reader {
    pub fn open(
        handle: &Handle,
        operator: &str,
        url: &str,
        subject: &str,
        stream: &str,
        start: super::BrokerStart,
        position: std::sync::Arc<Position>,
    ) -> Result<Reader, FlowError> {
        let super::BrokerStart { retry, covered } = start;
        // The checkpoint resumed from says where this run starts, whatever
        // position was saved.
        let covered: Option<u64> = covered.and_then(|c| c.parse().ok());
        if let Some(seq) = covered {
            position.read.fetch_max(seq, Ordering::Relaxed);
        }
        let opened = block(handle, async {
            let client = connect(url).await?;
            let js = jetstream::new(client.clone());
            let stream_handle = js.get_stream(stream).await.map_err(|e| format!("stream `{stream}`: {e}"))?;
            let kv = bucket(&js).await?;
            let saved = match (covered, kv.get(position.durable.as_str()).await.map_err(|e| e.to_string())?) {
                (Some(seq), _) => seq,
                (None, Some(bytes)) => std::str::from_utf8(&bytes).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0),
                (None, None) => 0,
            };
            let config = OrderedConfig {
                filter_subject: subject.to_string(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: saved + 1 },
                ..Default::default()
            };
            let consumer = stream_handle.create_consumer(config).await.map_err(|e| format!("stream `{stream}`: {e}"))?;
            let messages = consumer.messages().await.map_err(|e| format!("stream `{stream}`: {e}"))?;
            Ok::<_, String>((client, messages))
        });
        let (client, messages) = opened.map_err(|e| FlowError::broker(operator, "read from", url, e))?;
        Ok(Reader {
            handle: handle.clone(),
            client: Some(client),
            messages: Some(messages),
            operator: operator.into(),
            url: url.into(),
            subject: subject.into(),
            retry,
            lost: None,
            position,
        })
    }

    /// The next messages as `#{subject, value, seq}`; an empty batch when
    /// none came within a short wait.
    pub fn next_batch(&mut self) -> Result<Vec<Dynamic>, FlowError> {
        let (Some(messages), handle) = (self.messages.as_mut(), &self.handle) else { return Ok(Vec::new()) };
        let got: Vec<Result<jetstream::Message, String>> = block(handle, async {
            let mut got = Vec::new();
            let mut wait = POLL;
            while got.len() < BATCH {
                match tokio::time::timeout(wait, messages.next()).await {
                    Ok(Some(m)) => got.push(m.map_err(|e| e.to_string())),
                    Ok(None) => {
                        got.push(Err("the consumer ended".to_string()));
                        break;
                    }
                    Err(_) => break,
                }
                // Take what is already here, without waiting again.
                wait = Duration::from_millis(1);
            }
            got
        });
        let mut batch = Vec::with_capacity(got.len());
        for message in got {
            let message = message.map_err(|e| self.failed(e))?;
            let seq = message.info().map(|i| i.stream_sequence).map_err(|e| self.failed(e.to_string()))?;
            let mut record = Map::new();
            record.insert("subject".into(), Dynamic::from(ImmutableString::from(message.subject.as_str())));
            record.insert("value".into(), payload(&message.payload));
            record.insert("seq".into(), Dynamic::from_int(seq as i64));
            batch.push(Dynamic::from_map(record));
            self.position.read.fetch_max(seq, Ordering::Relaxed);
        }
        // A server gone for longer than the retry time fails the workflow.
        match self.client.as_ref().map(|c| c.connection_state()) {
            Some(async_nats::connection::State::Connected) => self.lost = None,
            _ => {
                let since = *self.lost.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.retry {
                    let error = format!("subject `{}`: the server did not answer for {} s", self.subject, self.retry.as_secs_f64());
                    return Err(FlowError::broker(&self.operator, "read from", &self.url, error));
                }
            }
        }
        Ok(batch)
    }

    fn failed(&self, e: String) -> FlowError {
        FlowError::broker(&self.operator, "read from", &self.url, format!("subject `{}`: {e}", self.subject))
    }
}

impl Drop for Reader {
    /// The client's tasks are the runtime's: they go inside it.
    fn drop(&mut self) {
        let _inside = self.handle.enter();
        drop(self.messages.take());
        drop(self.client.take());
    }
}

/// A payload as a record's value: text, or a blob when it is not UTF-8.
fn payload(bytes: &[u8]) -> Dynamic {
    match std::str::from_utf8(bytes) {
        Ok(text) => Dynamic::from(ImmutableString::from(text)),
        Err(_) => Dynamic::from_blob(bytes.to_vec()),
    }
}

/// A sink instance: publishes each record, then waits for the stream's
/// acknowledgments of the batch.
pub struct Writer {
    handle: Handle,
    js: Option<jetstream::Context>,
    url: String,
    subject: String,
}

impl Writer {
    pub fn new(handle: &Handle, url: &str, subject: &str) -> Writer {
        Writer { handle: handle.clone(), js: None, url: url.into(), subject: subject.into() }
    }

    pub fn write(&mut self, operator: &str, records: &[Dynamic]) -> Result<(), FlowError> {
        let (url, subject) = (self.url.clone(), self.subject.clone());
        let js = self.js.take();
        let result = block(&self.handle, async move {
            let js = match js {
                Some(js) => js,
                None => jetstream::new(connect(&url).await?),
            };
            let mut acks = Vec::with_capacity(records.len());
            for record in records {
                let ack = js.publish(subject.clone(), bytes(record).into()).await.map_err(|e| e.to_string())?;
                acks.push(ack);
            }
            for ack in acks {
                tokio::time::timeout(PUBLISH_TIMEOUT, ack)
                    .await
                    .map_err(|_| "no acknowledgment from a stream within 5 s".to_string())?
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(js)
        });
        match result {
            Ok(js) => {
                self.js = Some(js);
                Ok(())
            }
            Err(e) => Err(FlowError::broker(operator, "publish to", &self.url, format!("subject `{}`: {e}", self.subject))),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _inside = self.handle.enter();
        drop(self.js.take());
    }
}

//! Sources and sinks on message brokers, as workflow steps: Kafka, Redis
//! Streams and NATS JetStream.

use rhai::plugin::*;

use super::workflow_api::RhaiResult;
use crate::workflow::{Body, KafkaSink, KafkaSource, KafkaStart, Operator, SourceSpec, ValueFormat, Workflow};

fn fail<T>(msg: impl Into<String>) -> RhaiResult<T> {
    Err(EvalAltResult::ErrorRuntime(msg.into().into(), Position::NONE).into())
}

/// `redis://host:port[/db]` (or `rediss://`, `redis+unix://`): anything else
/// is refused before it reaches a worker.
fn url(op: &str, url: &str) -> RhaiResult<String> {
    match redis::parse_redis_url(url) {
        Some(_) => Ok(url.to_string()),
        None => fail(format!("{op}: `{url}` is not a Redis URL (redis://host:port)")),
    }
}

fn name(op: &str, what: &str, value: &str) -> RhaiResult<String> {
    if value.is_empty() {
        return fail(format!("{op}: the {what} name is empty"));
    }
    Ok(value.to_string())
}

/// Refuses an option `op` does not know, naming the ones it does.
fn known_options(op: &str, options: &rhai::Map, known: &[&str]) -> RhaiResult<()> {
    match options.keys().find(|k| !known.contains(&k.as_str())) {
        Some(other) => fail(format!("{op}: unknown option `{other}` (options: {})", known.join(", "))),
        None => Ok(()),
    }
}

/// `redis_source`'s options: `group` (default "skitter"), `retry_secs` (default 5).
fn source(url_text: &str, stream: &str, options: &rhai::Map) -> RhaiResult<SourceSpec> {
    const OP: &str = "redis_source";
    known_options(OP, options, &["group", "retry_secs"])?;
    Ok(SourceSpec::Redis {
        url: url(OP, url_text)?,
        stream: name(OP, "stream", stream)?,
        group: option_text(OP, options, "group", "skitter", &[])?,
        retry_ms: retry_ms(OP, options)?,
    })
}

fn nats_url(op: &str, url: &str) -> RhaiResult<String> {
    match url.strip_prefix("nats://") {
        Some(rest) if !rest.is_empty() => Ok(url.to_string()),
        _ => fail(format!("{op}: `{url}` is not a NATS URL (nats://host:port)")),
    }
}

/// `nats_source`'s options: `stream` (required), `durable` (default
/// "skitter"), `retry_secs` (default 5).
fn nats_source(url: &str, subject: &str, options: &rhai::Map) -> RhaiResult<SourceSpec> {
    const OP: &str = "nats_source";
    known_options(OP, options, &["stream", "durable", "retry_secs"])?;
    let (url, subject) = (nats_url(OP, url)?, name(OP, "subject", subject)?);
    if !options.contains_key("stream") {
        return fail(format!("{OP}: give the JetStream stream that holds `{subject}`: #{{ stream: \"NAME\" }}"));
    }
    Ok(SourceSpec::Nats {
        url,
        subject,
        stream: option_text(OP, options, "stream", "", &[])?,
        durable: option_text(OP, options, "durable", "skitter", &[])?,
        retry_ms: retry_ms(OP, options)?,
    })
}

/// `host:port[,host:port...]`, each with a port.
fn kafka_brokers(op: &str, brokers: &str) -> RhaiResult<String> {
    let list: Vec<&str> = brokers.split(',').map(str::trim).filter(|b| !b.is_empty()).collect();
    let bad = list.iter().find(|b| b.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()));
    match (list.is_empty(), bad) {
        (true, _) => fail(format!("{op}: no broker given (\"host:port\", or several separated by commas)")),
        (_, Some(b)) => fail(format!("{op}: `{b}` is not a broker address (host:port)")),
        _ => Ok(list.join(",")),
    }
}

/// A string option: `default` when absent, not empty, one of `allowed`
/// when that is not empty.
fn option_text(op: &str, options: &rhai::Map, key: &str, default: &str, allowed: &[&str]) -> RhaiResult<String> {
    let value = match options.get(key) {
        None => return Ok(default.to_string()),
        Some(v) if v.is_string() => v.to_string(),
        Some(v) => return fail(format!("{op}: {key} must be a string, got {}", v.type_name())),
    };
    if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
        return fail(format!("{op}: {key} must be one of {}, got \"{value}\"", allowed.join(", ")));
    }
    name(op, key, &value)
}

/// `kafka_source`'s options: `group` (default "skitter"), `start`
/// ("earliest" or "latest"), `format` ("auto", "text", "blob"), `bounded`
/// (default false), `retry_secs` (default 5).
fn kafka_source(brokers: &str, topic: &str, options: &rhai::Map) -> RhaiResult<SourceSpec> {
    const OP: &str = "kafka_source";
    known_options(OP, options, &["group", "start", "format", "bounded", "retry_secs"])?;
    let start = match option_text(OP, options, "start", "earliest", &["earliest", "latest"])?.as_str() {
        "latest" => KafkaStart::Latest,
        _ => KafkaStart::Earliest,
    };
    let format = match option_text(OP, options, "format", "auto", &["auto", "text", "blob"])?.as_str() {
        "text" => ValueFormat::Text,
        "blob" => ValueFormat::Blob,
        _ => ValueFormat::Auto,
    };
    let bounded = match options.get("bounded") {
        None => false,
        Some(b) => b.as_bool().or_else(|_| fail(format!("{OP}: bounded must be true or false, got {b}")))?,
    };
    Ok(SourceSpec::Kafka(KafkaSource {
        brokers: kafka_brokers(OP, brokers)?,
        topic: name(OP, "topic", topic)?,
        group: option_text(OP, options, "group", "skitter", &[])?,
        start,
        format,
        bounded,
        retry_ms: retry_ms(OP, options)?,
    }))
}

fn kafka_sink(brokers: &str, topic: &str, options: &rhai::Map) -> RhaiResult<Operator> {
    const OP: &str = "kafka_sink";
    known_options(OP, options, &["key", "value"])?;
    let field = |f: &str| options.get(f).map(|_| option_text(OP, options, f, "", &[])).transpose();
    let (key, value) = (field("key")?, field("value")?);
    Ok(Operator::KafkaSink(KafkaSink { brokers: kafka_brokers(OP, brokers)?, topic: name(OP, "topic", topic)?, key, value }))
}

/// `retry_secs` (0 to 3600, default 5) in milliseconds.
fn retry_ms(op: &str, options: &rhai::Map) -> RhaiResult<u64> {
    let secs = match options.get("retry_secs") {
        None => 5.0,
        Some(v) => match v.as_float().ok().or_else(|| v.as_int().ok().map(|n| n as f64)) {
            Some(s) if (0.0..=3600.0).contains(&s) => s,
            _ => return fail(format!("{op}: retry_secs must be 0 to 3600 seconds, got {v}")),
        },
    };
    Ok((secs * 1000.0) as u64)
}

fn chain(wf: Workflow, op: Operator) -> RhaiResult<Workflow> {
    wf.chain(Body::Op(op)).or_else(|e| fail(e.to_string()))
}

#[export_module]
pub mod api {
    use super::*;

    /// Adds a source that reads the Kafka topic `topic` from the brokers
    /// `brokers` (`"host:port"`, or several separated by commas) and emits
    /// each record as `#{key, value, partition, offset, timestamp}` (key
    /// and value: text, or a blob when not UTF-8, `()` when absent;
    /// timestamp: milliseconds since 1970). The topic's partitions are
    /// spread over the source's instances; each starts from the offset its
    /// consumer group (`skitter`) committed, or from the earliest record
    /// when there is none. It runs until the workflow is stopped. The
    /// offsets after what it read are committed once the workflow's sinks
    /// have settled (it finished, or stopped after draining); after a
    /// failure, the next deploy with the same group reads those records
    /// again: at least once, never a gap. Strategy: source.
    ///
    /// ```rhai
    /// let wf = workflow().kafka_source("127.0.0.1:9092", "events").inspect("record");
    /// ```
    #[rhai_fn(name = "kafka_source", return_raw)]
    pub fn chain_kafka_source(wf: Workflow, brokers: &str, topic: &str) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(kafka_source(brokers, topic, &rhai::Map::new())?))
    }

    /// `kafka_source(brokers, topic)` with options: `group` (the consumer
    /// group, default "skitter"), `start` (where a partition the group has
    /// no offset for starts: "earliest", the default, or "latest"),
    /// `format` ("auto": text when UTF-8, else a blob; "text": a record
    /// that is not UTF-8 fails the workflow, naming its partition and
    /// offset, unless the source's port `reject` is linked: then it goes
    /// there as `#{key, value, partition, offset, timestamp, error}` with
    /// key and value as blobs; "blob"), `bounded` (true: read each partition up to where
    /// it ended at the start, then finish) and `retry_secs` (how long a
    /// broker that stops answering is retried before the workflow fails,
    /// default 5).
    ///
    /// ```rhai
    /// let wf = workflow().kafka_source("127.0.0.1:9092", "events", #{ group: "counts", bounded: true });
    /// let checked = workflow().kafka_source("127.0.0.1:9092", "events", #{ format: "text" }).name("events")
    ///     .inspect("ok").from("events.reject").map(|r| r.error).inspect("not text");
    /// ```
    #[rhai_fn(name = "kafka_source", return_raw)]
    pub fn chain_kafka_source_with(wf: Workflow, brokers: &str, topic: &str, options: rhai::Map) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(kafka_source(brokers, topic, &options)?))
    }

    /// Produces every record to the Kafka topic `topic` (text as it is, a
    /// blob as its bytes, anything else as it prints), without a key: each
    /// batch goes to the next partition in turn. A batch that cannot be
    /// written after 3 attempts fails the workflow, naming the brokers, the
    /// topic and the error. A sink.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(["a", "b"]).kafka_sink("127.0.0.1:9092", "words");
    /// ```
    #[rhai_fn(name = "kafka_sink", return_raw)]
    pub fn chain_kafka_sink(wf: Workflow, brokers: &str, topic: &str) -> RhaiResult<Workflow> {
        chain(wf, kafka_sink(brokers, topic, &rhai::Map::new())?)
    }

    /// `kafka_sink(brokers, topic)` with options naming fields of each
    /// record (then a map that has them): `key`, the field that is the
    /// record's Kafka key (a key goes to the partition Kafka's own
    /// producers choose for it), and `value`, the field that is its value
    /// (without it, the whole record).
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([#{ word: "a", count: 1 }]).kafka_sink("127.0.0.1:9092", "counts", #{ key: "word", value: "count" });
    /// ```
    #[rhai_fn(name = "kafka_sink", return_raw)]
    pub fn chain_kafka_sink_with(wf: Workflow, brokers: &str, topic: &str, options: rhai::Map) -> RhaiResult<Workflow> {
        chain(wf, kafka_sink(brokers, topic, &options)?)
    }

    /// An operator for `node`: `kafka_source(brokers, topic, options)`.
    ///
    /// ```rhai
    /// let op = kafka_source("127.0.0.1:9092", "events", #{ group: "g" });
    /// ```
    #[rhai_fn(name = "kafka_source", return_raw)]
    pub fn op_kafka_source(brokers: &str, topic: &str, options: rhai::Map) -> RhaiResult<Operator> {
        Ok(Operator::Source(kafka_source(brokers, topic, &options)?))
    }

    /// An operator for `node`: `kafka_sink(brokers, topic, options)`.
    ///
    /// ```rhai
    /// let op = kafka_sink("127.0.0.1:9092", "counts", #{ key: "word" });
    /// ```
    #[rhai_fn(name = "kafka_sink", return_raw)]
    pub fn op_kafka_sink(brokers: &str, topic: &str, options: rhai::Map) -> RhaiResult<Operator> {
        kafka_sink(brokers, topic, &options)
    }

    /// Adds a source that reads the Redis stream `stream` at `url` through
    /// the consumer group `skitter` (created at the stream's beginning when
    /// it does not exist) and emits each entry as `#{id, fields}`. It runs
    /// until the workflow is stopped. What it read is acknowledged once the
    /// workflow's sinks have settled (it finished, or stopped after
    /// draining); after a failure, the next deploy with the same group reads
    /// those entries again: at least once, never a gap. Strategy: source.
    ///
    /// ```rhai
    /// let wf = workflow().redis_source("redis://127.0.0.1:6379", "events").inspect("entry");
    /// ```
    #[rhai_fn(name = "redis_source", return_raw)]
    pub fn chain_redis_source(wf: Workflow, url: &str, stream: &str) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(source(url, stream, &rhai::Map::new())?))
    }

    /// `redis_source(url, stream)` with options: `group` (the consumer
    /// group, default "skitter") and `retry_secs` (how long a broker that
    /// stops answering is retried before the workflow fails, default 5).
    ///
    /// ```rhai
    /// let wf = workflow().redis_source("redis://127.0.0.1:6379", "events", #{ group: "counts", retry_secs: 30 });
    /// ```
    #[rhai_fn(name = "redis_source", return_raw)]
    pub fn chain_redis_source_with(wf: Workflow, url: &str, stream: &str, options: rhai::Map) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(source(url, stream, &options)?))
    }

    /// Appends every record to the Redis stream `stream` at `url`: a map's
    /// entries as the entry's fields, anything else as the field `value`
    /// (text as it is, a blob as its bytes, other values as they print).
    /// A write that fails is retried (3 attempts, reconnecting) before the
    /// workflow fails, naming the broker and the stream. A sink.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(["a", "b"]).map(|w| #{ word: w }).redis_sink("redis://127.0.0.1:6379", "words");
    /// ```
    #[rhai_fn(name = "redis_sink", return_raw)]
    pub fn chain_redis_sink(wf: Workflow, url: &str, stream: &str) -> RhaiResult<Workflow> {
        chain(wf, sink(url, stream)?)
    }

    /// An operator for `node`: `redis_source(url, stream)`.
    ///
    /// ```rhai
    /// let op = redis_source("redis://127.0.0.1:6379", "events");
    /// ```
    #[rhai_fn(name = "redis_source", return_raw)]
    pub fn op_redis_source(url: &str, stream: &str) -> RhaiResult<Operator> {
        Ok(Operator::Source(source(url, stream, &rhai::Map::new())?))
    }

    /// An operator for `node`: `redis_source(url, stream, options)`.
    ///
    /// ```rhai
    /// let op = redis_source("redis://127.0.0.1:6379", "events", #{ group: "g" });
    /// ```
    #[rhai_fn(name = "redis_source", return_raw)]
    pub fn op_redis_source_with(url: &str, stream: &str, options: rhai::Map) -> RhaiResult<Operator> {
        Ok(Operator::Source(source(url, stream, &options)?))
    }

    /// Adds a source that reads the messages of `subject` from the NATS
    /// JetStream stream named by the option `stream`, in order, and emits
    /// each as `#{subject, value, seq}` (`value`: text, or a blob when it is
    /// not UTF-8; `seq`: its sequence in the stream). It starts after the
    /// position saved under `durable` (default "skitter") in the key-value
    /// bucket `skitter_positions`, and saves its own once the workflow's
    /// sinks have settled (it finished, or stopped after draining); after a
    /// failure nothing is saved and the next deploy reads those messages
    /// again. It runs until the workflow is stopped. Options: `stream`,
    /// `durable`, `retry_secs` (how long a server that stops answering is
    /// waited for, default 5). Strategy: source.
    ///
    /// ```rhai
    /// let wf = workflow().nats_source("nats://127.0.0.1:4222", "orders.new", #{ stream: "ORDERS", durable: "billing" });
    /// ```
    #[rhai_fn(name = "nats_source", return_raw)]
    pub fn chain_nats_source(wf: Workflow, url: &str, subject: &str, options: rhai::Map) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(super::nats_source(url, subject, &options)?))
    }

    /// Publishes every record to the NATS subject `subject` and waits for
    /// the JetStream stream that captures it to acknowledge (text as it is,
    /// a blob as its bytes, anything else as it prints). A publish that is
    /// not acknowledged fails the workflow, naming the server and subject.
    /// A sink.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(["a", "b"]).nats_sink("nats://127.0.0.1:4222", "words.out");
    /// ```
    #[rhai_fn(name = "nats_sink", return_raw)]
    pub fn chain_nats_sink(wf: Workflow, url: &str, subject: &str) -> RhaiResult<Workflow> {
        chain(wf, nats_sink(url, subject)?)
    }

    /// An operator for `node`: `nats_source(url, subject, options)`.
    ///
    /// ```rhai
    /// let op = nats_source("nats://127.0.0.1:4222", "orders.new", #{ stream: "ORDERS" });
    /// ```
    #[rhai_fn(name = "nats_source", return_raw)]
    pub fn op_nats_source(url: &str, subject: &str, options: rhai::Map) -> RhaiResult<Operator> {
        Ok(Operator::Source(super::nats_source(url, subject, &options)?))
    }

    /// An operator for `node`: `nats_sink(url, subject)`.
    ///
    /// ```rhai
    /// let op = nats_sink("nats://127.0.0.1:4222", "words.out");
    /// ```
    #[rhai_fn(name = "nats_sink", return_raw)]
    pub fn op_nats_sink(url: &str, subject: &str) -> RhaiResult<Operator> {
        nats_sink(url, subject)
    }

    /// An operator for `node`: `redis_sink(url, stream)`.
    ///
    /// ```rhai
    /// let op = redis_sink("redis://127.0.0.1:6379", "words");
    /// ```
    #[rhai_fn(name = "redis_sink", return_raw)]
    pub fn op_redis_sink(url: &str, stream: &str) -> RhaiResult<Operator> {
        sink(url, stream)
    }
}

fn sink(url_text: &str, stream: &str) -> RhaiResult<Operator> {
    const OP: &str = "redis_sink";
    Ok(Operator::RedisSink { url: url(OP, url_text)?, stream: name(OP, "stream", stream)? })
}

fn nats_sink(url: &str, subject: &str) -> RhaiResult<Operator> {
    const OP: &str = "nats_sink";
    Ok(Operator::NatsSink { url: nats_url(OP, url)?, subject: name(OP, "subject", subject)? })
}

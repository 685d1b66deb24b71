//! Sources and sinks on message brokers, as workflow steps: Redis Streams
//! and NATS JetStream.

use rhai::plugin::*;

use super::workflow_api::RhaiResult;
use crate::workflow::{Body, Operator, SourceSpec, Workflow};

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

/// `redis_source`'s options: `group` (default "skitter"), `retry_secs` (default 5).
fn source(url_text: &str, stream: &str, options: &rhai::Map) -> RhaiResult<SourceSpec> {
    const OP: &str = "redis_source";
    if let Some(other) = options.keys().find(|k| !matches!(k.as_str(), "group" | "retry_secs")) {
        return fail(format!("{OP}: unknown option `{other}` (options: group, retry_secs)"));
    }
    let group = match options.get("group") {
        None => "skitter".to_string(),
        Some(g) if g.is_string() => name(OP, "group", &g.to_string())?,
        Some(g) => return fail(format!("{OP}: group must be a string, got {}", g.type_name())),
    };
    let retry = retry_secs(OP, options)?;
    Ok(SourceSpec::Redis { url: url(OP, url_text)?, stream: name(OP, "stream", stream)?, group, retry_ms: (retry * 1000.0) as u64 })
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
    if let Some(other) = options.keys().find(|k| !matches!(k.as_str(), "stream" | "durable" | "retry_secs")) {
        return fail(format!("{OP}: unknown option `{other}` (options: stream, durable, retry_secs)"));
    }
    let text = |key: &str, default: Option<&str>| -> RhaiResult<String> {
        match (options.get(key), default) {
            (Some(v), _) if v.is_string() => name(OP, key, &v.to_string()),
            (Some(v), _) => fail(format!("{OP}: {key} must be a string, got {}", v.type_name())),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => fail(format!("{OP}: give the JetStream stream that holds `{subject}`: #{{ stream: \"NAME\" }}")),
        }
    };
    Ok(SourceSpec::Nats {
        url: nats_url(OP, url)?,
        subject: name(OP, "subject", subject)?,
        stream: text("stream", None)?,
        durable: text("durable", Some("skitter"))?,
        retry_ms: (retry_secs(OP, options)? * 1000.0) as u64,
    })
}

fn retry_secs(op: &str, options: &rhai::Map) -> RhaiResult<f64> {
    match options.get("retry_secs") {
        None => Ok(5.0),
        Some(v) => match v.as_float().ok().or_else(|| v.as_int().ok().map(|n| n as f64)) {
            Some(s) if (0.0..=3600.0).contains(&s) => Ok(s),
            _ => fail(format!("{op}: retry_secs must be 0 to 3600 seconds, got {v}")),
        },
    }
}

fn chain(wf: Workflow, op: Operator) -> RhaiResult<Workflow> {
    wf.chain(Body::Op(op)).or_else(|e| fail(e.to_string()))
}

#[export_module]
pub mod api {
    use super::*;

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

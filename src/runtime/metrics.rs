//! `--metrics ADDR:PORT`: the node's numbers in the Prometheus (OpenMetrics)
//! text format at `http://ADDR:PORT/metrics`, for a monitoring system to
//! scrape. What is served is read from the node when it is asked for: the
//! workflows it knows (on a master, added up over its workers), their
//! operators, its workers, its connection failures and its memory.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::http::{Request, Response};
use crate::net::counters::{CONNECTION_FAILURES, HANDSHAKE_FAILURES};
use crate::script::Host;

type Labels = Vec<(&'static str, String)>;

/// The text a scrape gets now.
pub fn render(host: &dyn Host) -> String {
    let mut registry = Registry::default();
    let family = |registry: &mut Registry, name: &str, help: &str| {
        let f = Family::<Labels, Counter>::default();
        registry.register(name, help, f.clone());
        f
    };
    let records_in = family(&mut registry, "skitter_operator_records_in", "Records into an operator, over all its instances");
    let records_out = family(&mut registry, "skitter_operator_records_out", "Records out of an operator, over all its instances");
    let errors = family(&mut registry, "skitter_operator_errors", "Failures of an operator's code");
    let queued = Family::<Labels, Gauge>::default();
    registry.register("skitter_operator_queued_batches", "Batches waiting in the inboxes of an operator's instances", queued.clone());
    let capacity = Family::<Labels, Gauge>::default();
    registry.register("skitter_operator_queue_capacity_batches", "Batches the inboxes of an operator's instances hold", capacity.clone());
    let p99 = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register_with_unit(
        "skitter_operator_p99",
        "99th percentile of the time per record in an operator",
        Unit::Seconds,
        p99.clone(),
    );
    let watermark = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register_with_unit(
        "skitter_operator_watermark",
        "An operator's event time: the earliest watermark of its instances, since the epoch",
        Unit::Seconds,
        watermark.clone(),
    );
    let lag = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register_with_unit(
        "skitter_operator_watermark_lag",
        "How far an operator's event time is behind the clock",
        Unit::Seconds,
        lag.clone(),
    );
    let late = family(&mut registry, "skitter_operator_late_records", "Records later than their windows");
    let read = family(&mut registry, "skitter_workflow_records_read", "Records a workflow's sources emitted");
    let written = family(&mut registry, "skitter_workflow_records_written", "Records a workflow's sinks took");
    let running = Family::<Labels, Gauge>::default();
    registry.register("skitter_workflow_running", "1 while a workflow runs, 0 once it ended", running.clone());

    let completed = family(&mut registry, "skitter_checkpoints_completed", "Checkpoints a workflow completed");
    let failed = family(&mut registry, "skitter_checkpoints_failed", "Checkpoints a workflow gave up or could not write");
    let last_duration = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register_with_unit(
        "skitter_checkpoint_last_duration",
        "How long the last completed checkpoint took, from its barriers to its manifest",
        Unit::Seconds,
        last_duration.clone(),
    );
    let last_alignment = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register_with_unit(
        "skitter_checkpoint_last_alignment",
        "The longest an instance waited for its inputs' barriers in the last completed checkpoint",
        Unit::Seconds,
        last_alignment.clone(),
    );
    let last_size = Family::<Labels, Gauge>::default();
    registry.register_with_unit(
        "skitter_checkpoint_last_size",
        "The size of the last completed checkpoint",
        Unit::Bytes,
        last_size.clone(),
    );
    let last_at = Family::<Labels, Gauge>::default();
    registry.register_with_unit(
        "skitter_checkpoint_last_completed",
        "When the last checkpoint completed (Unix time)",
        Unit::Seconds,
        last_at.clone(),
    );

    let restarts = family(&mut registry, "skitter_workflow_restarts", "Runs a workflow started again from its last checkpoint");
    let fenced = family(&mut registry, "skitter_workflow_fenced_messages", "Late messages of a workflow's runs given up, refused");
    let replayed =
        family(&mut registry, "skitter_workflow_replayed_records", "Records a workflow read again after restarts from checkpoints");
    let last_recovery = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    registry.register_with_unit(
        "skitter_workflow_last_recovery",
        "How long the last recovery took, from the failure to the new run deployed",
        Unit::Seconds,
        last_recovery.clone(),
    );

    for (r, status) in host.workflows() {
        let Ok(stats) = host.stats(r) else { continue };
        let workflow: Labels = vec![("workflow", r.id.to_string())];
        if let Some(c) = &stats.checkpoints {
            completed.get_or_create(&workflow).inc_by(c.completed);
            failed.get_or_create(&workflow).inc_by(c.failed);
            if c.last_id.is_some() {
                last_duration.get_or_create(&workflow).set(c.last_ms as f64 / 1000.0);
                last_alignment.get_or_create(&workflow).set(c.alignment_ms as f64 / 1000.0);
                last_size.get_or_create(&workflow).set(c.bytes as i64);
                last_at.get_or_create(&workflow).set((c.last_at_ms / 1000) as i64);
            }
        }
        if let Some(rec) = &stats.recovery {
            restarts.get_or_create(&workflow).inc_by(rec.restarts);
            fenced.get_or_create(&workflow).inc_by(rec.fenced);
            replayed.get_or_create(&workflow).inc_by(rec.replayed);
            if let Some(ms) = rec.last_recovery_ms {
                last_recovery.get_or_create(&workflow).set(ms as f64 / 1000.0);
            }
        }
        read.get_or_create(&workflow).inc_by(stats.read());
        written.get_or_create(&workflow).inc_by(stats.written());
        running.get_or_create(&workflow).set(i64::from(!status.is_done()));
        for (name, node) in stats.names().zip(&stats.nodes) {
            let labels: Labels = vec![("workflow", r.id.to_string()), ("operator", name.to_string())];
            records_in.get_or_create(&labels).inc_by(node.records_in);
            records_out.get_or_create(&labels).inc_by(node.records_out);
            errors.get_or_create(&labels).inc_by(node.errors);
            if node.capacity > 0 {
                queued.get_or_create(&labels).set(node.queued as i64);
                capacity.get_or_create(&labels).set(node.capacity as i64);
            }
            if let Some(us) = node.p99_us() {
                p99.get_or_create(&labels).set(us / 1e6);
            }
            if let (Some(wm), Some(behind)) = (node.watermark_ms, node.lag()) {
                watermark.get_or_create(&labels).set(wm as f64 / 1000.0);
                lag.get_or_create(&labels).set(behind);
                late.get_or_create(&labels).inc_by(node.late);
            }
        }
    }

    let workers = Gauge::<i64>::default();
    workers.set(host.workers().len() as i64);
    registry.register("skitter_workers", "Workers this node places instances on", workers);
    let handshakes = Counter::<u64>::default();
    handshakes.inc_by(HANDSHAKE_FAILURES.load(Ordering::Relaxed));
    registry.register("skitter_handshake_failures", "Incoming connections refused before or during the handshake", handshakes);
    let connections = Counter::<u64>::default();
    connections.inc_by(CONNECTION_FAILURES.load(Ordering::Relaxed));
    registry.register("skitter_connection_failures", "Links lost and peers that could not be reached", connections);

    if let Some(rss) = super::process::resident_bytes() {
        let g = Gauge::<i64>::default();
        g.set(rss as i64);
        registry.register_with_unit("process_resident_memory", "Resident memory of this process", Unit::Bytes, g);
    }
    let mut text = String::new();
    // Writing to a String does not fail.
    let _ = encode(&mut text, &registry);
    text
}

/// Serves scrapes at `/metrics` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, host: Arc<dyn Host>, stop: tokio_util::sync::CancellationToken) {
    let handler = move |r: Request| {
        let host = host.clone();
        async move { answer(&r, host).await.unwrap_or_else(|| Response::text("404 Not Found", "metrics are at /metrics\n")) }
    };
    super::http::serve(listener, "metrics", handler, stop).await
}

/// The answer to a request for `/metrics`; `None` for other paths.
pub async fn answer(r: &Request, host: Arc<dyn Host>) -> Option<Response> {
    if r.path != "/metrics" {
        return None;
    }
    if r.method != "GET" {
        return Some(Response::text("405 Method Not Allowed", "only GET\n"));
    }
    Some(match tokio::task::spawn_blocking(move || render(host.as_ref())).await {
        Ok(body) => Response::new("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", body),
        Err(e) => Response::text("500 Internal Server Error", format!("{e}\n")),
    })
}

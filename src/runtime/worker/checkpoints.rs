//! A worker's side of its master's checkpoints: what its instances hand
//! in for a checkpoint, or at their end, goes to the master in pieces of
//! 1 MiB on the link's bounded data queue (a big state waits for the link,
//! it does not pile up in memory), after the lines of the worker's own
//! files (`write_parts`) are appended to them; the part's status is
//! published once its end is sent (so the master has it before the part's
//! end is reported, which goes behind it on the same queue).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::net::framing::encode;
use crate::net::ControlMsg;
use crate::runtime::checkpoint::output::Outputs;
use crate::runtime::checkpoint::part::{pieces, WorkerPart};
use crate::runtime::dataflow::barriers::PartEvent;
use crate::runtime::dataflow::Running;
use crate::workflow::Status;

/// Sends what the instances of workflow `id`'s part hand in to the master
/// (on `data`, its link's data queue); `names`: per stage, its nodes'
/// names; `outputs`: the files this worker writes.
pub async fn drive(id: u64, running: Arc<Running>, names: Arc<Vec<Vec<String>>>, outputs: Outputs, data: mpsc::Sender<Bytes>) {
    let outputs = Arc::new(Mutex::new(outputs));
    let Some(ends) = running.driver_ends() else { return };
    let (mut events, mut outcome) = (ends.events, ends.outcome);
    let send = move |msg: ControlMsg| {
        let data = data.clone();
        async move { data.send(Bytes::from(encode(&msg))).await.map_err(|_| "the link to the master closed".to_string()) }
    };
    let forward = |checkpoint: Option<u64>, instances| {
        let (names, send, outputs) = (names.clone(), send.clone(), outputs.clone());
        async move {
            let encoded = tokio::task::spawn_blocking(move || {
                let mut outputs = outputs.lock().expect("outputs lock");
                WorkerPart::of(&names, instances, &mut outputs).and_then(|p| p.encode())
            })
            .await
            .map_err(|e| format!("the part's encoder panicked: {e}"))?;
            let bytes = encoded?;
            let count = bytes.len().div_ceil(super::remote::DATA_CHUNK).max(1);
            for (i, chunk) in pieces(&bytes, super::remote::DATA_CHUNK).enumerate() {
                send(ControlMsg::Snapshot { id, checkpoint, chunk: chunk.to_vec(), last: i + 1 == count }).await?;
            }
            if bytes.is_empty() {
                send(ControlMsg::Snapshot { id, checkpoint, chunk: Vec::new(), last: true }).await?;
            }
            Ok::<(), String>(())
        }
    };
    loop {
        tokio::select! {
            Some(event) = events.recv() => {
                let sent = match event {
                    PartEvent::Taken { id: checkpoint, instances } => forward(Some(checkpoint), instances).await,
                    PartEvent::Ended { instances } => forward(None, instances).await,
                };
                if let Err(reason) = sent {
                    running.fail(reason);
                }
            }
            status = &mut outcome => {
                let status = status.unwrap_or_else(|_| Status::Failed("the part ended without a status".into()));
                // What the instances handed in before they ended goes first.
                while let Ok(event) = events.try_recv() {
                    let sent = match event {
                        PartEvent::Taken { id: checkpoint, instances } => forward(Some(checkpoint), instances).await,
                        PartEvent::Ended { instances } => forward(None, instances).await,
                    };
                    if let Err(reason) = sent {
                        running.finish(Status::Failed(reason));
                        return;
                    }
                }
                running.finish(status);
                return;
            }
        }
    }
}

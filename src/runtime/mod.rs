//! Runtimes: the local one (master and worker in one process), master and
//! worker nodes, the coordinator, the dataflow executor they share, node
//! identity and logging.

pub mod console;
pub mod coordinator;
pub mod dataflow;
pub mod local;
pub mod log;
pub mod master;
pub mod node;
pub mod worker;

pub use local::LocalRuntime;

use std::future::Future;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::net::{Authenticated, Connection, Identity, Role};
use crate::workflow::Status;

/// Blocks the calling thread until a workflow's status is final. A runtime
/// thread must not block on its runtime, so there the status is polled.
pub(crate) fn wait_until_done(handle: &Handle, mut status: watch::Receiver<Status>) -> Status {
    if Handle::try_current().is_ok() {
        loop {
            let s = status.borrow().clone();
            if s.is_done() {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    handle.block_on(async move {
        let _ = status.wait_for(|s| s.is_done()).await;
        let s = status.borrow().clone();
        s
    })
}

/// Which of a workflow's `collect()` sinks (`names`) `results(ref, sink)`
/// reads: the one named, or the only one.
pub(crate) fn choose_sink(names: &[&str], sink: Option<&str>) -> Result<usize, String> {
    match sink {
        Some(name) => {
            names.iter().position(|n| *n == name).ok_or_else(|| format!("no collect() sink named `{name}` (sinks: {})", names.join(", ")))
        }
        None if names.len() == 1 => Ok(0),
        None if names.is_empty() => Err("this workflow has no collect() sink".into()),
        None => Err(format!("this workflow has several collect() sinks ({}): name one with results(ref, name)", names.join(", "))),
    }
}

/// Serves a node's listener until `stop`: each connection is authenticated
/// as `identity`, admitting `roles`, and handed to `handle` on a task of its
/// own; refusals are logged.
pub(crate) async fn accept_each<F, Fut>(
    listener: TcpListener,
    stop: CancellationToken,
    identity: Identity,
    roles: &'static [Role],
    handle: F,
) where
    F: Fn(Authenticated) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (identity, handle) = (identity.clone(), handle.clone());
                tokio::spawn(async move {
                    match Connection::new(stream).accept(&identity, roles).await {
                        Ok(auth) => handle(auth).await,
                        Err(e) => tracing::warn!("refused a connection: {e}"),
                    }
                });
            }
        }
    }
}

//! Sending and receiving on bounded channels from an instance's thread,
//! without ever blocking past the end of the workflow: a sender waiting on a
//! full inbox, or a receiver on an empty one, wakes when the workflow ends.

use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};
use tokio_util::sync::CancellationToken;

/// Why a send (or a receive: `Ended` only) did not happen.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsent {
    /// The receiver is gone.
    Closed,
    /// The workflow ended while the sender waited.
    Ended,
}

/// Sends `msg`, waiting while the channel is full (back-pressure) but not
/// past `ended`. Called from instance threads, never from the runtime's.
pub fn send<T>(handle: &Handle, tx: &mpsc::Sender<T>, msg: T, ended: &CancellationToken) -> Result<(), Unsent> {
    match tx.try_send(msg) {
        Ok(()) => Ok(()),
        Err(TrySendError::Closed(_)) => Err(Unsent::Closed),
        Err(TrySendError::Full(msg)) => handle.block_on(async {
            tokio::select! {
                biased;
                _ = ended.cancelled() => Err(Unsent::Ended),
                sent = tx.send(msg) => sent.map_err(|_| Unsent::Closed),
            }
        }),
    }
}

/// Receives the next message; `Ok(None)` when every sender is gone,
/// `Err(Unsent::Ended)` when the workflow ended while waiting.
pub fn recv<T>(handle: &Handle, rx: &mut mpsc::Receiver<T>, ended: &CancellationToken) -> Result<Option<T>, Unsent> {
    match rx.try_recv() {
        Ok(msg) => Ok(Some(msg)),
        Err(TryRecvError::Disconnected) => Ok(None),
        Err(TryRecvError::Empty) => handle.block_on(async {
            tokio::select! {
                biased;
                _ = ended.cancelled() => Err(Unsent::Ended),
                msg = rx.recv() => Ok(msg),
            }
        }),
    }
}

/// What [`recv_until`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Got<T> {
    Msg(T),
    /// Every sender is gone.
    Closed,
    /// The deadline passed first.
    Timeout,
}

/// [`recv`], waiting no later than `deadline` (none: as long as it takes).
pub fn recv_until<T>(
    handle: &Handle,
    rx: &mut mpsc::Receiver<T>,
    ended: &CancellationToken,
    deadline: Option<std::time::Instant>,
) -> Result<Got<T>, Unsent> {
    let Some(deadline) = deadline else {
        return recv(handle, rx, ended).map(|m| m.map_or(Got::Closed, Got::Msg));
    };
    match rx.try_recv() {
        Ok(msg) => Ok(Got::Msg(msg)),
        Err(TryRecvError::Disconnected) => Ok(Got::Closed),
        Err(TryRecvError::Empty) => handle.block_on(async {
            tokio::select! {
                biased;
                _ = ended.cancelled() => Err(Unsent::Ended),
                msg = rx.recv() => Ok(msg.map_or(Got::Closed, Got::Msg)),
                _ = tokio::time::sleep_until(deadline.into()) => Ok(Got::Timeout),
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_blocked_on_a_full_channel_wakes_when_the_workflow_ends() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (tx, _rx) = mpsc::channel::<u32>(1);
        let ended = CancellationToken::new();
        let handle = rt.handle().clone();
        send(&handle, &tx, 1, &ended).unwrap();
        let (h, t, e) = (handle.clone(), tx.clone(), ended.clone());
        let blocked = std::thread::spawn(move || send(&h, &t, 2, &e));
        ended.cancel();
        assert_eq!(blocked.join().unwrap(), Err(Unsent::Ended));
    }

    #[test]
    fn a_receiver_waiting_on_an_empty_channel_wakes_when_the_workflow_ends() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (_tx, mut rx) = mpsc::channel::<u32>(1);
        let ended = CancellationToken::new();
        let (h, e) = (rt.handle().clone(), ended.clone());
        let waiting = std::thread::spawn(move || recv(&h, &mut rx, &e));
        ended.cancel();
        assert_eq!(waiting.join().unwrap(), Err(Unsent::Ended));
    }

    #[test]
    fn a_receiver_with_a_deadline_wakes_at_it() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (tx, mut rx) = mpsc::channel::<u32>(1);
        let ended = CancellationToken::new();
        let soon = std::time::Instant::now() + std::time::Duration::from_millis(20);
        assert_eq!(recv_until(rt.handle(), &mut rx, &ended, Some(soon)), Ok(Got::Timeout));
        tx.try_send(7).unwrap();
        assert_eq!(recv_until(rt.handle(), &mut rx, &ended, Some(soon)), Ok(Got::Msg(7)));
        drop(tx);
        assert_eq!(recv_until(rt.handle(), &mut rx, &ended, None), Ok(Got::Closed));
    }

    #[test]
    fn a_closed_channel_is_told_apart_from_an_ended_workflow() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (tx, rx) = mpsc::channel::<u32>(1);
        drop(rx);
        assert_eq!(send(rt.handle(), &tx, 1, &CancellationToken::new()), Err(Unsent::Closed));
    }
}

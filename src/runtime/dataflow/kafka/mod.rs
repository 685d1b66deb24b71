//! Kafka: a source reading a topic's partitions (spread over the source's
//! instances) from its consumer group's committed offsets, and a sink
//! producing to a topic. The client is rskafka (pure Rust); the group's
//! offsets go through [`offsets`]. A source commits the offsets after what
//! it read only when the workflow's sinks have settled (it finished, or
//! stopped after draining): at least once, never a gap.

mod offsets;
mod reader;
mod writer;

use std::time::Duration;

use rskafka::client::{Client, ClientBuilder};
use tokio::runtime::Handle;

use super::block;
use super::error::FlowError;
use offsets::GroupOffsets;
pub use reader::{Position, Reader};
pub use writer::Writer;

/// How long connecting to a broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may take (rskafka has no timeout of its own: a
/// broker that stops answering would hold a request forever).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port,host:port` as a list.
pub fn broker_list(brokers: &str) -> Vec<String> {
    brokers.split(',').map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect()
}

/// A client that gives up on a broker after `retry`.
async fn client(brokers: &str, retry: Duration) -> Result<Client, String> {
    let backoff = rskafka::BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        base: 2.0,
        deadline: Some(retry.max(Duration::from_millis(500))),
    };
    let build = ClientBuilder::new(broker_list(brokers)).client_id("skitter").backoff_config(backoff).build();
    match tokio::time::timeout(retry + CONNECT_TIMEOUT, build).await {
        Ok(client) => client.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no broker answered within {} s", (retry + CONNECT_TIMEOUT).as_secs())),
    }
}

/// The partitions of `topic`; an error naming it when it does not exist.
async fn partitions(client: &Client, topic: &str) -> Result<Vec<i32>, String> {
    let topics = client.list_topics().await.map_err(|e| e.to_string())?;
    match topics.into_iter().find(|t| t.name == topic) {
        Some(t) if !t.partitions.is_empty() => Ok(t.partitions.into_iter().collect()),
        _ => Err(format!("topic `{topic}` does not exist (create it first)")),
    }
}

/// Checks at deploy that a broker answers and that the topic exists.
pub fn check(handle: &Handle, operator: &str, brokers: &str, topic: &str) -> Result<(), FlowError> {
    block(handle, async { partitions(&client(brokers, Duration::from_secs(1)).await?, topic).await })
        .map(|_| ())
        .map_err(|e| FlowError::broker(operator, "use", brokers, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_lists_split_on_commas() {
        assert_eq!(broker_list("a:1, b:2,"), vec!["a:1".to_string(), "b:2".to_string()]);
    }
}

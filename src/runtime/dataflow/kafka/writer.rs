//! A Kafka sink instance: a produce request per partition and batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rhai::{Dynamic, Map};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::Record;
use tokio::runtime::Handle;

use super::{client, partitions, REQUEST_TIMEOUT};
use crate::runtime::dataflow::block;
use crate::runtime::dataflow::bytes;
use crate::runtime::dataflow::error::FlowError;
use crate::workflow::KafkaSink;

/// Attempts of a produce request before the workflow fails.
const PRODUCE_ATTEMPTS: usize = 3;

/// A sink instance: produces each batch, a partition's records in one
/// request; a record with a key goes to the partition Kafka's own clients
/// choose for it (murmur2), one without to the next partition in turn.
pub struct Writer {
    handle: Handle,
    spec: KafkaSink,
    partitions: Vec<Arc<PartitionClient>>,
    /// Keeps the partitions' connections.
    client: Option<Client>,
    next: usize,
}

impl Writer {
    pub fn new(handle: &Handle, spec: &KafkaSink) -> Writer {
        Writer { handle: handle.clone(), spec: spec.clone(), partitions: Vec::new(), client: None, next: 0 }
    }

    pub fn write(&mut self, operator: &str, records: &[Dynamic]) -> Result<(), FlowError> {
        let mut last = String::new();
        for attempt in 0..PRODUCE_ATTEMPTS {
            if self.partitions.is_empty() {
                if let Err(e) = self.connect() {
                    last = e;
                    std::thread::sleep(Duration::from_millis(200 << attempt));
                    continue;
                }
            }
            let by_partition = self.assign(operator, records)?;
            let partitions = &self.partitions;
            let produced = block(&self.handle, async {
                let sends = by_partition.into_iter().enumerate().filter(|(_, r)| !r.is_empty()).map(|(p, records)| {
                    let partition = partitions[p].clone();
                    async move { partition.produce(records, rskafka::client::partition::Compression::NoCompression).await }
                });
                match tokio::time::timeout(REQUEST_TIMEOUT, futures_util::future::join_all(sends)).await {
                    Ok(done) => done.into_iter().map(|r| r.map(|_| ()).map_err(|e| e.to_string())).collect::<Result<Vec<()>, String>>(),
                    Err(_) => Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
                }
            });
            match produced {
                Ok(_) => return Ok(()),
                Err(e) => {
                    last = e;
                    // Connect again: the leader may have moved.
                    self.partitions.clear();
                    self.client = None;
                }
            }
        }
        let error = format!("topic `{}`: {last} (after {PRODUCE_ATTEMPTS} attempts)", self.spec.topic);
        Err(FlowError::broker(operator, "write to", &self.spec.brokers, error))
    }

    fn connect(&mut self) -> Result<(), String> {
        let topic = self.spec.topic.clone();
        let (client, partitions) = block(&self.handle, async {
            let client = client(&self.spec.brokers, REQUEST_TIMEOUT).await?;
            let mut clients = Vec::new();
            for p in partitions(&client, &topic).await? {
                clients.push(Arc::new(
                    client.partition_client(topic.as_str(), p, UnknownTopicHandling::Retry).await.map_err(|e| e.to_string())?,
                ));
            }
            Ok::<_, String>((client, clients))
        })?;
        self.client = Some(client);
        self.partitions = partitions;
        Ok(())
    }

    /// The records of a batch per partition.
    fn assign(&mut self, operator: &str, records: &[Dynamic]) -> Result<Vec<Vec<Record>>, FlowError> {
        let n = self.partitions.len();
        let mut out: Vec<Vec<Record>> = vec![Vec::new(); n];
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let timestamp = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
        let unkeyed = self.next % n;
        self.next = self.next.wrapping_add(1);
        for r in records {
            let key = self.spec.key.as_deref().map(|f| field(operator, r, f)).transpose()?;
            let value = match self.spec.value.as_deref() {
                Some(f) => field(operator, r, f)?,
                None => bytes(r),
            };
            let p = key.as_deref().map_or(unkeyed, |k| (murmur2(k) & 0x7fff_ffff) as usize % n);
            out[p].push(Record { key, value: Some(value), headers: BTreeMap::new(), timestamp });
        }
        Ok(out)
    }
}

/// The bytes of field `name` of a map record.
fn field(operator: &str, record: &Dynamic, name: &str) -> Result<Vec<u8>, FlowError> {
    match record.read_lock::<Map>().and_then(|m| m.get(name).map(bytes)) {
        Some(bytes) => Ok(bytes),
        None => Err(FlowError::Record {
            operator: operator.into(),
            record: record.to_string(),
            message: format!("the field `{name}` is missing (kafka_sink's key and value options name fields of map records)"),
        }),
    }
}

/// Kafka's key hash (the Java client's `Utils.murmur2`), so that a key goes
/// to the partition other Kafka producers send it to.
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate() {
            h ^= (*b as u32) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // The values of Kafka's own `UtilsTest.testMurmur2`.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}

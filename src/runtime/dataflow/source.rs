//! Sources, read batch by batch. Line sources bound what one record may
//! hold: a longer line fails the workflow rather than taking the memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use rhai::Dynamic;

use super::call::Calls;
use super::error::{script_error, FlowError};
use super::lines::LineBlock;
use super::snapshot::Position;
use super::{deadline, BATCH, TCP_POLL};
use crate::workflow::{Func, SourceSpec};

/// A bounded line reader's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A whole line is in the buffer, without its `\n`.
    Line,
    /// The input ended; the buffer holds what followed the last `\n`.
    Eof,
    /// The line in progress is longer than allowed.
    TooLong,
}

/// Reads up to the next `\n` into `buf` without letting it grow past `max`
/// bytes. On an error (a read timeout) what was read stays in `buf`, so the
/// next call continues the same line.
pub fn read_line_bounded<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<LineRead> {
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(LineRead::Eof);
        }
        let (take, complete) = match memchr::memchr(b'\n', available) {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(&available[..take]);
        reader.consume(if complete { take + 1 } else { take });
        if complete {
            return Ok(LineRead::Line);
        }
    }
}

/// A line source: a file, or a connection with a read timeout so that a
/// stop is noticed while idle.
pub struct Lines<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    max: usize,
    /// Lines read so far, for errors.
    line: u64,
    ended: bool,
    /// Hand over a partial batch as soon as the input pauses (a network
    /// stream) rather than wait for a full one (a file).
    eager: bool,
}

/// Reads a source batch by batch.
pub enum SourceReader {
    Items {
        items: std::iter::Skip<std::vec::IntoIter<Dynamic>>,
        given: u64,
    },
    /// A generator that returned `()`, and where it was.
    Exhausted(Position),
    Range {
        next: i64,
        end: i64,
        step: i64,
    },
    Generator {
        f: Func,
        n: i64,
    },
    File(Lines<File>),
    Tcp(Lines<std::net::TcpStream>),
    Redis(Box<super::redis::Reader>),
    Nats(Box<super::nats::Reader>),
    Kafka(Box<super::kafka::Reader>),
}

impl SourceReader {
    /// Opens the reader of instance `instance.0` of `instance.1`; a source
    /// that acknowledges what it read registers with `running`, which does
    /// it when the sinks settle.
    ///
    /// `at` is where a checkpoint left it: a restored source reads on from there.
    pub fn open(
        spec: SourceSpec,
        operator: &str,
        instance: (usize, usize),
        running: &super::Running,
        at: Option<Position>,
    ) -> Result<SourceReader, FlowError> {
        let (instance, instances) = instance;
        Ok(match spec {
            SourceSpec::Items(items) => {
                let skip = match at {
                    Some(Position::Items(n)) => n as usize,
                    _ => 0,
                };
                SourceReader::Items { items: items.into_iter().skip(skip), given: skip as u64 }
            }
            SourceSpec::Range { start, end, step } => {
                let next = match at {
                    Some(Position::Range(next)) => next,
                    _ => start,
                };
                SourceReader::Range { next, end, step }
            }
            SourceSpec::Generator(f) => {
                let n = match at {
                    Some(Position::Generator(n)) => n,
                    _ => 0,
                };
                SourceReader::Generator { f, n }
            }
            SourceSpec::Lines { path, max_line } => {
                let failed = |action, e: std::io::Error| FlowError::File {
                    operator: operator.into(),
                    action,
                    path: path.clone(),
                    error: e.to_string(),
                };
                let mut file = File::open(&path).map_err(|e| failed("read", e))?;
                let mut line = 0;
                if let Some(Position::File { offset, line: at_line }) = at {
                    let len = file.metadata().map_err(|e| failed("read", e))?.len();
                    if len < offset {
                        let shorter = std::io::Error::other(format!(
                            "it is shorter ({len} bytes) than where the checkpoint left off ({offset}): it was changed since"
                        ));
                        return Err(failed("resume reading", shorter));
                    }
                    file.seek(SeekFrom::Start(offset)).map_err(|e| failed("resume reading", e))?;
                    line = at_line;
                }
                let mut lines = Lines::new(BufReader::with_capacity(256 * 1024, file), max_line, false);
                lines.line = line;
                SourceReader::File(lines)
            }
            SourceSpec::Tcp { host, port, max_line } => {
                let failed = |e: std::io::Error| FlowError::File {
                    operator: operator.into(),
                    action: "connect to",
                    path: format!("{host}:{port}").into(),
                    error: e.to_string(),
                };
                let stream = std::net::TcpStream::connect((host.as_str(), port)).map_err(failed)?;
                stream.set_read_timeout(Some(TCP_POLL)).map_err(failed)?;
                SourceReader::Tcp(Lines::new(BufReader::new(stream), max_line, true))
            }
            SourceSpec::Redis { url, stream, group, retry_ms } => {
                let acks = std::sync::Arc::new(super::redis::Acks::new(&url, &stream, &group));
                running.acknowledge_on_settle(acks.clone());
                let retry = std::time::Duration::from_millis(retry_ms);
                let start = super::BrokerStart { retry, covered: broker_mark(at) };
                SourceReader::Redis(Box::new(super::redis::Reader::open(operator, &url, &stream, &group, instance, start, acks)?))
            }
            SourceSpec::Nats { url, subject, stream, durable, retry_ms } => {
                let position = std::sync::Arc::new(super::nats::Position::new(&url, &durable, running.handle().clone()));
                running.acknowledge_on_settle(position.clone());
                let retry = std::time::Duration::from_millis(retry_ms);
                SourceReader::Nats(Box::new(super::nats::Reader::open(
                    running.handle(),
                    operator,
                    &url,
                    &subject,
                    &stream,
                    super::BrokerStart { retry, covered: broker_mark(at) },
                    position,
                )?))
            }
            SourceSpec::Kafka(spec) => {
                let position = std::sync::Arc::new(super::kafka::Position::new(&spec, running.handle().clone()));
                running.acknowledge_on_settle(position.clone());
                SourceReader::Kafka(Box::new(super::kafka::Reader::open(
                    running.handle(),
                    operator,
                    &spec,
                    (instance, instances),
                    position,
                    broker_mark(at),
                )?))
            }
        })
    }

    /// The next batch; `None` once the source is exhausted. `stopping` is
    /// asked while a network source waits, so that a stop or a barrier is
    /// noticed: it then hands over what it has, maybe nothing.
    pub fn next_batch(&mut self, calls: &Calls, operator: &str, stopping: &dyn Fn() -> bool) -> Result<Option<Vec<Dynamic>>, FlowError> {
        let mut batch = Vec::with_capacity(BATCH);
        match self {
            SourceReader::Exhausted(_) => {}
            SourceReader::Items { items, given } => {
                batch.extend(items.by_ref().take(BATCH));
                *given += batch.len() as u64;
            }
            SourceReader::Range { next, end, step } => {
                while batch.len() < BATCH && *next < *end {
                    batch.push(Dynamic::from_int(*next));
                    *next = next.saturating_add(*step);
                }
            }
            SourceReader::Generator { f, n } => {
                // At least one call a batch, and only `()` ends the stream:
                // a deadline past before the first call (this thread paused,
                // a deadline of 0) hands over a short batch, never an end.
                let started = std::time::Instant::now();
                loop {
                    let v = calls.call(f, [Dynamic::from_int(*n)]).map_err(|e| script_error(operator, None, &e))?;
                    if v.is_unit() {
                        *self = SourceReader::Exhausted(Position::Generator(*n));
                        break;
                    }
                    batch.push(v);
                    *n += 1;
                    if batch.len() >= BATCH || started.elapsed() >= deadline::get() {
                        break;
                    }
                }
            }
            SourceReader::File(_) | SourceReader::Tcp(_) => {
                return Ok(self.next_lines(operator, stopping)?.map(|block| block.records()));
            }
            SourceReader::Redis(reader) => return Ok(Some(poll(|| reader.next_batch(), stopping)?)),
            SourceReader::Nats(reader) => return Ok(Some(poll(|| reader.next_batch(), stopping)?)),
            SourceReader::Kafka(reader) => loop {
                match reader.next_batch()? {
                    None => return Ok(None),
                    Some(got) if got.is_empty() && !reader.has_rejects() && !stopping() => continue,
                    Some(got) => return Ok(Some(got)),
                }
            },
        }
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// Whether this is a line source, which can hand its lines over as a
    /// block of text (`next_lines`).
    pub fn reads_lines(&self) -> bool {
        matches!(self, SourceReader::File(_) | SourceReader::Tcp(_))
    }

    /// A line source's next lines; `None` once it is exhausted (any other
    /// source has none).
    pub fn next_lines(&mut self, operator: &str, stopping: &dyn Fn() -> bool) -> Result<Option<LineBlock>, FlowError> {
        match self {
            SourceReader::File(lines) => lines.next(operator, stopping),
            SourceReader::Tcp(lines) => lines.next(operator, stopping),
            _ => Ok(None),
        }
    }

    /// Checkpoint `id`'s barrier leaves now: a broker source notes what it
    /// read, to acknowledge it once the checkpoint is durable.
    pub fn mark(&self, id: u64) {
        match self {
            SourceReader::Redis(reader) => reader.mark(id),
            SourceReader::Nats(reader) => reader.mark(id),
            SourceReader::Kafka(reader) => reader.mark(id),
            _ => {}
        }
    }

    /// Where the reader is, for a checkpoint.
    pub fn position(&mut self) -> Position {
        match self {
            SourceReader::Items { given, .. } => Position::Items(*given),
            SourceReader::Exhausted(at) => at.clone(),
            SourceReader::Range { next, .. } => Position::Range(*next),
            SourceReader::Generator { n, .. } => Position::Generator(*n),
            SourceReader::File(lines) => {
                // Batches end at a line's end: nothing of a line is held.
                let read = lines.reader.stream_position().unwrap_or(0);
                Position::File { offset: read.saturating_sub(lines.buf.len() as u64), line: lines.line }
            }
            SourceReader::Tcp(_) => Position::Unrewindable,
            SourceReader::Redis(reader) => Position::Broker(reader.last_read()),
            SourceReader::Nats(reader) => Position::Broker(reader.last_read()),
            SourceReader::Kafka(reader) => Position::Broker(reader.last_read()),
        }
    }

    /// Records go to port 1 (`reject`) when they cannot be read as asked,
    /// instead of failing the workflow: the port is linked.
    pub fn keep_rejects(&mut self) {
        if let SourceReader::Kafka(reader) = self {
            reader.keep_rejects();
        }
    }

    /// The records rejected since the last call (for port 1).
    pub fn take_rejects(&mut self) -> Vec<Dynamic> {
        match self {
            SourceReader::Kafka(reader) => reader.take_rejects(),
            _ => Vec::new(),
        }
    }
}

/// The mark a checkpoint left for a broker source, if any.
fn broker_mark(at: Option<Position>) -> Option<String> {
    match at {
        Some(Position::Broker(mark)) if !mark.is_empty() => Some(mark),
        _ => None,
    }
}

/// Asks a broker source for entries (each ask waits a little) until some
/// come or the workflow is stopping.
fn poll(mut next: impl FnMut() -> Result<Vec<Dynamic>, FlowError>, stopping: &dyn Fn() -> bool) -> Result<Vec<Dynamic>, FlowError> {
    loop {
        let batch = next()?;
        if !batch.is_empty() || stopping() {
            return Ok(batch);
        }
    }
}

impl<R: Read> Lines<R> {
    pub fn new(reader: BufReader<R>, max: usize, eager: bool) -> Lines<R> {
        Lines { reader, buf: Vec::new(), max, line: 0, ended: false, eager }
    }

    /// The next lines; `None` once the input ended. Only the end ends it,
    /// not a block that came back empty while a barrier or a stop was asked
    /// for: an endless source hands over what it has (maybe nothing)
    /// whenever `stopping` says so.
    fn next(&mut self, operator: &str, stopping: &dyn Fn() -> bool) -> Result<Option<LineBlock>, FlowError> {
        let block = self.fill(operator, stopping)?;
        Ok((!block.is_empty() || !self.ended).then_some(block))
    }

    /// Reads up to a batch of lines, checked as UTF-8 once they are read.
    fn fill(&mut self, operator: &str, stopping: &dyn Fn() -> bool) -> Result<LineBlock, FlowError> {
        let io = |e: std::io::Error| FlowError::Operator { operator: operator.into(), reason: format!("read error: {e}") };
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        while ends.len() < BATCH && !self.ended {
            match read_line_bounded(&mut self.reader, &mut self.buf, self.max) {
                Ok(LineRead::Line) => {}
                Ok(LineRead::Eof) => {
                    self.ended = true;
                    if self.buf.is_empty() {
                        break;
                    }
                }
                Ok(LineRead::TooLong) => {
                    return Err(FlowError::LineTooLong { operator: operator.into(), line: self.line + 1, max: self.max })
                }
                // A partial line stays in the buffer until the rest arrives.
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if !ends.is_empty() || stopping() {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(io(e)),
            }
            self.line += 1;
            bytes.extend_from_slice(&self.buf);
            ends.push(bytes.len());
            bytes.push(b'\n');
            self.buf.clear();
            if self.eager && self.reader.buffer().is_empty() {
                break;
            }
        }
        let first = self.line - ends.len() as u64;
        LineBlock::new(bytes, ends).map_err(|bad| FlowError::Operator {
            operator: operator.into(),
            reason: format!("line {} is not UTF-8 text: {}", first + bad.index as u64 + 1, bad.error),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_whole_and_a_long_one_is_refused() {
        let text = b"short\r\nlonger line\n0123456789ABC\nlast";
        let mut r = BufReader::with_capacity(4, &text[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 12).unwrap(), LineRead::Line);
        assert_eq!(buf, b"short\r");
        buf.clear();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 12).unwrap(), LineRead::Line);
        assert_eq!(buf, b"longer line");
        buf.clear();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 12).unwrap(), LineRead::TooLong);
        assert!(buf.len() <= 12);
    }

    #[test]
    fn the_last_line_needs_no_newline() {
        let mut r = BufReader::new(&b"a\nlast"[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 100).unwrap(), LineRead::Line);
        buf.clear();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 100).unwrap(), LineRead::Eof);
        assert_eq!(buf, b"last");
    }

    #[test]
    fn a_source_fails_on_a_line_over_its_limit_naming_it() {
        let mut lines = Lines::new(BufReader::new(&b"ok\nway too long\n"[..]), 5, false);
        let err = lines.fill("src", &|| false).unwrap_err();
        assert_eq!(err, FlowError::LineTooLong { operator: "src".into(), line: 2, max: 5 });
    }

    #[test]
    fn a_source_reads_a_block_of_lines_and_names_the_first_that_is_not_text() {
        let mut lines = Lines::new(BufReader::new(&b"one\r\ntwo\n\nlast"[..]), 100, false);
        let block = lines.fill("src", &|| false).unwrap();
        assert_eq!(block.lines().collect::<Vec<_>>(), ["one", "two", "", "last"]);
        assert!(lines.ended);
        let mut lines = Lines::new(BufReader::new(&b"a\nb\nc \xff\nd\n"[..]), 100, false);
        let err = lines.fill("src", &|| false).unwrap_err();
        let reason = "line 3 is not UTF-8 text: invalid utf-8 sequence of 1 bytes from index 2".into();
        assert_eq!(err, FlowError::Operator { operator: "src".into(), reason });
    }
}

//! Lines a line source read, handed on as one block of text. The thread
//! that runs the first nodes after the source makes each line's string:
//! the string is then made, read and freed by one thread, from memory that
//! thread freed a moment ago, instead of made by the reader and freed, cold,
//! by another (the reader's allocations and the other thread's frees of
//! them were about a fifth of a log filter's CPU).

use rhai::{Dynamic, ImmutableString};

/// Lines, each followed by its `\n`, in one UTF-8 text.
#[derive(Debug)]
pub struct LineBlock {
    text: String,
    /// Where each line ends in `text` (at its `\n`).
    ends: Vec<usize>,
}

/// A line of a block that is not UTF-8: the `index`th (from 0).
#[derive(Debug)]
pub struct NotText {
    pub index: usize,
    pub error: std::str::Utf8Error,
}

impl LineBlock {
    /// The lines `bytes` holds, each ending where `ends` says with a `\n`.
    /// The whole text is checked at once: a `\n` cannot be inside a UTF-8
    /// sequence, so that is each line checked.
    pub fn new(bytes: Vec<u8>, ends: Vec<usize>) -> Result<LineBlock, NotText> {
        debug_assert!(ends.iter().all(|&e| bytes.get(e) == Some(&b'\n')), "every line ends with a newline");
        match String::from_utf8(bytes) {
            Ok(text) => Ok(LineBlock { text, ends }),
            Err(e) => {
                let bad = e.utf8_error().valid_up_to();
                let index = ends.partition_point(|&end| end < bad);
                let start = start(&ends, index);
                let bytes = e.into_bytes();
                let error = std::str::from_utf8(&bytes[start..ends.get(index).copied().unwrap_or(bytes.len())])
                    .expect_err("the line with the first invalid byte is not UTF-8");
                Err(NotText { index, error })
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The lines, each without its `\r`, if it had one.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.ends.iter().enumerate().map(|(i, &end)| {
            let line = &self.text[start(&self.ends, i)..end];
            line.strip_suffix('\r').unwrap_or(line)
        })
    }

    /// A block of `lines` (for tests).
    #[cfg(test)]
    pub fn of(lines: &[&str]) -> LineBlock {
        let (mut text, mut ends) = (String::new(), Vec::new());
        for line in lines {
            text.push_str(line);
            ends.push(text.len());
            text.push('\n');
        }
        LineBlock { text, ends }
    }

    /// The lines as records, made here.
    pub fn records(&self) -> Vec<Dynamic> {
        self.lines().map(|line| Dynamic::from(ImmutableString::from(line))).collect()
    }
}

/// Where line `i` starts: just past the `\n` of the line before it.
fn start(ends: &[usize], i: usize) -> usize {
    i.checked_sub(1).map_or(0, |before| ends[before] + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(lines: &[&[u8]]) -> Result<LineBlock, NotText> {
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        for line in lines {
            bytes.extend_from_slice(line);
            ends.push(bytes.len());
            bytes.push(b'\n');
        }
        LineBlock::new(bytes, ends)
    }

    #[test]
    fn lines_come_out_as_they_went_in_without_their_carriage_return() {
        let b = block(&[b"first", b"", b"with cr\r", "d\u{e9}j\u{e0}".as_bytes()]).unwrap();
        assert_eq!(b.len(), 4);
        assert_eq!(b.lines().collect::<Vec<_>>(), ["first", "", "with cr", "d\u{e9}j\u{e0}"]);
        let records: Vec<String> = b.records().into_iter().map(|r| r.into_string().unwrap()).collect();
        assert_eq!(records, ["first", "", "with cr", "d\u{e9}j\u{e0}"]);
    }

    #[test]
    fn the_first_line_that_is_not_text_is_named_whatever_the_lines_around_it() {
        let e = block(&[b"ok", b"also ok", b"bad \xff here", b"\xfe"]).unwrap_err();
        assert_eq!(e.index, 2);
        assert_eq!(e.error.valid_up_to(), 4);
        assert_eq!(block(&[b"\xc3"]).unwrap_err().index, 0);
        // A sequence cut by a line's end is two bad lines, not one good one.
        assert_eq!(block(&[b"a", b"\xc3", b"\xa9"]).unwrap_err().index, 1);
    }
}

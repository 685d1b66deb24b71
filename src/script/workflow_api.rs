//! The workflow builder as a Rhai package. Every function builds data; none
//! runs anything. Chaining forms (`wf.map(f)`) append a node and link it from
//! the previous step; the bare forms (`map(f)`, in `operator_api`) make an
//! operator for `node`.

use rhai::plugin::*;
use rhai::FnPtr;

use crate::workflow::{Body, Func, Operator, SourceSpec, Workflow, WorkflowError};

pub(super) type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(msg: impl Into<String>) -> RhaiResult<T> {
    Err(EvalAltResult::ErrorRuntime(msg.into().into(), Position::NONE).into())
}

fn wf_err<T>(e: WorkflowError) -> RhaiResult<T> {
    fail(e.to_string())
}

/// A function argument: a closure or `Fn("name")`, nothing else.
pub(super) fn func(op: &str, what: &str, value: Dynamic) -> RhaiResult<Func> {
    if value.is::<FnPtr>() {
        return Ok(Func::from_ptr(&value.cast::<FnPtr>()));
    }
    fail(format!("{op} expects a function as its {what} (a closure like `|x| x + 1` or `Fn(\"name\")`), got {}", value.type_name()))
}

pub(super) fn source(value: Dynamic) -> RhaiResult<SourceSpec> {
    if value.is_array() {
        return Ok(SourceSpec::Items(value.cast::<rhai::Array>()));
    }
    if let Some(r) = value.clone().try_cast::<std::ops::Range<i64>>() {
        return Ok(SourceSpec::Range { start: r.start, end: r.end, step: 1 });
    }
    if let Some(r) = value.clone().try_cast::<std::ops::RangeInclusive<i64>>() {
        return Ok(SourceSpec::Range { start: *r.start(), end: r.end().saturating_add(1), step: 1 });
    }
    if value.is::<FnPtr>() {
        return Ok(SourceSpec::Generator(Func::from_ptr(&value.cast::<FnPtr>())));
    }
    fail(format!("stream_source expects an array, a range or a generator function `|n| ...`, got {}", value.type_name()))
}

fn port(value: i64) -> RhaiResult<u16> {
    u16::try_from(value).or_else(|_| fail(format!("tcp_source: {value} is not a TCP port (0-65535)")))
}

/// A line source's options: `#{ max_line: BYTES }`; nothing else.
fn max_line(op: &str, options: &rhai::Map) -> RhaiResult<usize> {
    if let Some(other) = options.keys().find(|k| k.as_str() != "max_line") {
        return fail(format!("{op}: unknown option `{other}` (options: max_line)"));
    }
    match options.get("max_line") {
        None => Ok(crate::workflow::operator::MAX_LINE),
        Some(v) => match v.as_int() {
            Ok(n) if n > 0 => Ok(n as usize),
            _ => fail(format!("{op}: max_line must be a positive number of bytes, got {v}")),
        },
    }
}

pub(super) fn lines(path: &str, options: &rhai::Map) -> RhaiResult<SourceSpec> {
    Ok(SourceSpec::Lines { path: path.into(), max_line: max_line("read_lines", options)? })
}

pub(super) fn tcp(host: &str, port: i64, options: &rhai::Map) -> RhaiResult<SourceSpec> {
    Ok(SourceSpec::Tcp { host: host.into(), port: self::port(port)?, max_line: max_line("tcp_source", options)? })
}

fn chain(wf: Workflow, op: Operator) -> RhaiResult<Workflow> {
    wf.chain(Body::Op(op)).or_else(wf_err)
}

/// A node body for `node`: an operator or a whole workflow.
fn body(value: Dynamic) -> RhaiResult<Body> {
    if value.is::<Operator>() {
        let op = value.cast::<Operator>();
        if let Some(missing) = op.missing_callback() {
            return fail(missing);
        }
        return Ok(Body::Op(op));
    }
    if value.is::<Workflow>() {
        return Ok(Body::Nested(Box::new(value.cast::<Workflow>())));
    }
    fail(format!("node expects an operator (like `map(|x| x)`) or a workflow, got {}", value.type_name()))
}

#[export_module]
pub mod api {
    use super::*;

    pub type Workflow = crate::workflow::Workflow;
    pub type Operator = crate::workflow::Operator;

    /// Starts an empty workflow. Chain operators onto it.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([1, 2, 3]).map(|x| x * 2).collect();
    /// ```
    pub fn workflow() -> Workflow {
        Workflow::new()
    }

    /// Adds a source that emits the elements of an array, the integers of a
    /// range, or `f(0)`, `f(1)`, ... of a generator until it returns `()`
    /// (a generator that never returns `()` is endless). Strategy: source.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(1..=10).inspect("n");
    /// let endless = workflow().stream_source(|n| n * n).collect();
    /// ```
    #[rhai_fn(name = "stream_source", return_raw)]
    pub fn chain_stream_source(wf: Workflow, items: Dynamic) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(source(items)?))
    }

    /// Adds a source that emits each line of a text file (without its line
    /// ending). Relative paths are taken from the current directory; use
    /// `priv_path(name)` for the app's data files. A line longer than 1 MiB
    /// fails the workflow. Strategy: source.
    ///
    /// ```rhai
    /// let wf = workflow().read_lines(priv_path("words.txt")).collect();
    /// ```
    #[rhai_fn(name = "read_lines", return_raw)]
    pub fn chain_read_lines(wf: Workflow, path: &str) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(lines(path, &rhai::Map::new())?))
    }

    /// `read_lines(path)` with options: `max_line` (bytes, default 1 MiB) is
    /// the longest line taken; a longer one fails the workflow.
    ///
    /// ```rhai
    /// let wf = workflow().read_lines(priv_path("words.txt"), #{ max_line: 64 * 1024 }).collect();
    /// ```
    #[rhai_fn(name = "read_lines", return_raw)]
    pub fn chain_read_lines_with(wf: Workflow, path: &str, options: rhai::Map) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(lines(path, &options)?))
    }

    /// Adds a source that connects to `host:port` and emits every line it
    /// receives until the peer closes the connection. A line longer than
    /// 1 MiB fails the workflow. Strategy: source.
    ///
    /// ```rhai
    /// let wf = workflow().tcp_source("127.0.0.1", 7000).inspect("line");
    /// ```
    #[rhai_fn(name = "tcp_source", return_raw)]
    pub fn chain_tcp_source(wf: Workflow, host: &str, port: i64) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(tcp(host, port, &rhai::Map::new())?))
    }

    /// `tcp_source(host, port)` with options: `max_line` (bytes, default
    /// 1 MiB) is the longest line taken; a longer one fails the workflow.
    ///
    /// ```rhai
    /// let wf = workflow().tcp_source("127.0.0.1", 7000, #{ max_line: 4096 }).inspect("line");
    /// ```
    #[rhai_fn(name = "tcp_source", return_raw)]
    pub fn chain_tcp_source_with(wf: Workflow, host: &str, port: i64, options: rhai::Map) -> RhaiResult<Workflow> {
        chain(wf, Operator::Source(tcp(host, port, &options)?))
    }

    /// Applies `f` to every record and emits its result. Strategy: immutable-local.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([1, 2, 3]).map(|x| x + 1).collect();
    /// ```
    #[rhai_fn(name = "map", return_raw)]
    pub fn chain_map(wf: Workflow, f: Dynamic) -> RhaiResult<Workflow> {
        chain(wf, Operator::Map(func("map", "argument", f)?))
    }

    /// Applies `f` to every record; `f` returns an array whose elements are
    /// emitted one by one. Strategy: immutable-local.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(["a b", "c"]).flat_map(|line| line.split(" ")).collect();
    /// ```
    #[rhai_fn(name = "flat_map", return_raw)]
    pub fn chain_flat_map(wf: Workflow, f: Dynamic) -> RhaiResult<Workflow> {
        chain(wf, Operator::FlatMap(func("flat_map", "argument", f)?))
    }

    /// Sends every record for which `f` returns true to port `accept` (where
    /// chaining continues) and every other record to port `reject`.
    /// Strategy: immutable-local.
    ///
    /// ```rhai
    /// let wf = workflow()
    ///     .stream_source(1..=6)
    ///     .filter(|x| x % 2 == 0).name("split")
    ///     .inspect("even")
    ///     .from("split.reject")
    ///     .inspect("odd");
    /// ```
    #[rhai_fn(name = "filter", return_raw)]
    pub fn chain_filter(wf: Workflow, f: Dynamic) -> RhaiResult<Workflow> {
        chain(wf, Operator::Filter(func("filter", "argument", f)?))
    }

    /// Keeps a state per key. For each record, `key_fn(record)` gives its key
    /// and `reduce_fn(state, record)` returns `[new_state, emitted]`; `emitted`
    /// is sent on unless it is `()`. A key's first state is `initial`.
    /// Strategy: keyed (every key lives on exactly one instance).
    ///
    /// ```rhai
    /// let wf = workflow()
    ///     .stream_source(["a", "b", "a"])
    ///     .keyed_reduce(|w| w, |count, w| [count + 1, [w, count + 1]], 0)
    ///     .collect();
    /// ```
    #[rhai_fn(name = "keyed_reduce", return_raw)]
    pub fn chain_keyed_reduce(wf: Workflow, key_fn: Dynamic, reduce_fn: Dynamic, initial: Dynamic) -> RhaiResult<Workflow> {
        let key = func("keyed_reduce", "key function", key_fn)?;
        let reduce = func("keyed_reduce", "reduce function", reduce_fn)?;
        chain(wf, Operator::KeyedReduce { key, reduce, initial })
    }

    /// Counts records per distinct value, natively (no script call per
    /// record), and emits `[value, count]` for each value once its input has
    /// ended: when the sources are exhausted or the workflow is stopped.
    /// Strategy: keyed.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(["a", "b", "a"]).count().collect();
    /// ```
    #[rhai_fn(name = "count", return_raw)]
    pub fn chain_count(wf: Workflow) -> RhaiResult<Workflow> {
        chain(wf, Operator::Count { key: None })
    }

    /// Counts records per key `key_fn(record)` and emits `[key, count]` for
    /// each key once its input has ended. Strategy: keyed.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(1..=10).count(|x| x % 3).collect();
    /// ```
    #[rhai_fn(name = "count", return_raw)]
    pub fn chain_count_by(wf: Workflow, key_fn: Dynamic) -> RhaiResult<Workflow> {
        chain(wf, Operator::Count { key: Some(func("count", "key function", key_fn)?) })
    }

    /// Prints every record as `label: value` on the node's output and passes
    /// it on unchanged, like Elixir's `IO.inspect(label: ...)`. (It is not
    /// called `print`: Rhai sends whatever a function named `print` returns to
    /// its own printer.) Strategy: immutable-local.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([1, 2]).inspect("seen");
    /// ```
    #[rhai_fn(name = "inspect", return_raw)]
    pub fn chain_print(wf: Workflow, label: &str) -> RhaiResult<Workflow> {
        chain(wf, Operator::Print(label.into()))
    }

    /// Prints every record (without a label) and passes it on.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([1, 2]).inspect();
    /// ```
    #[rhai_fn(name = "inspect", return_raw)]
    pub fn chain_print_bare(wf: Workflow) -> RhaiResult<Workflow> {
        chain(wf, Operator::Print(String::new()))
    }

    /// Writes every record as a line of one file at `path`, on the host
    /// where the master runs (locally: this host), whatever the number of
    /// workers. Lines go to a temporary file beside `path`, which becomes
    /// `path` only when the workflow finishes or is stopped; a failed or
    /// aborted workflow leaves it at `path.incomplete` and says so. A sink.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(["x", "y"]).write_lines("out.txt");
    /// ```
    #[rhai_fn(name = "write_lines", return_raw)]
    pub fn chain_write_lines(wf: Workflow, path: &str) -> RhaiResult<Workflow> {
        chain(wf, Operator::WriteLines(path.into()))
    }

    /// Writes every record as a line of a part file in directory `dir`, one
    /// file per instance, on each worker's own host:
    /// `dir/part-<worker>-<instance>`. For output too large for one host.
    /// Parts appear under their names only when the workflow finishes or is
    /// stopped (`.incomplete` otherwise). A sink.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source(1..100).write_parts("out.d");
    /// ```
    #[rhai_fn(name = "write_parts", return_raw)]
    pub fn chain_write_parts(wf: Workflow, dir: &str) -> RhaiResult<Workflow> {
        chain(wf, Operator::WriteParts(dir.into()))
    }

    /// Gathers every record; `results(ref)` reads them. A sink.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([1, 2, 3]).collect();
    /// ```
    #[rhai_fn(name = "collect", return_raw)]
    pub fn chain_collect(wf: Workflow) -> RhaiResult<Workflow> {
        chain(wf, Operator::Collect)
    }

    /// Appends a whole workflow as one nested node: the previous step feeds
    /// its entry nodes and chaining continues from its last step.
    ///
    /// ```rhai
    /// let double = workflow().map(|x| x * 2);
    /// let wf = workflow().stream_source([1, 2]).then(double).collect();
    /// ```
    #[rhai_fn(name = "then", return_raw)]
    pub fn then(wf: Workflow, inner: Workflow) -> RhaiResult<Workflow> {
        wf.chain(Body::Nested(Box::new(inner))).or_else(wf_err)
    }

    /// Adds a named node (an operator or a nested workflow) without linking
    /// it; chaining continues from it. Use `link` to connect it.
    ///
    /// ```rhai
    /// let wf = workflow()
    ///     .node("numbers", stream_source([1, 2, 3]))
    ///     .node("sink", collect())
    ///     .link("numbers.out", "sink.in");
    /// ```
    #[rhai_fn(name = "node", return_raw)]
    pub fn node(wf: Workflow, name: &str, op: Dynamic) -> RhaiResult<Workflow> {
        wf.with_node(name, body(op)?).or_else(wf_err)
    }

    /// Links an output port to an input port: `"node.port"`, or `"node"` for
    /// the node's first output (when linking from) or `in` (when linking to).
    /// Unknown nodes or ports and links that would make a cycle are errors.
    ///
    /// ```rhai
    /// let wf = workflow()
    ///     .node("a", stream_source([1]))
    ///     .node("b", stream_source([2]))
    ///     .node("both", collect())
    ///     .link("a", "both")
    ///     .link("b.out", "both.in");
    /// ```
    #[rhai_fn(name = "link", return_raw)]
    pub fn link(wf: Workflow, from: &str, to: &str) -> RhaiResult<Workflow> {
        wf.link(from, to).or_else(wf_err)
    }

    /// Continues chaining from another output port, e.g. a filter's `reject`.
    ///
    /// ```rhai
    /// let wf = workflow()
    ///     .stream_source(1..=4)
    ///     .filter(|x| x > 2).name("big")
    ///     .collect()
    ///     .from("big.reject")
    ///     .inspect("small");
    /// ```
    #[rhai_fn(name = "from", return_raw)]
    pub fn from_port(wf: Workflow, port: &str) -> RhaiResult<Workflow> {
        wf.from_port(port).or_else(wf_err)
    }

    /// Names an inner port `"node.port"` as an input of this workflow, for
    /// when it is nested: a function returning a workflow is then an
    /// operator with that port, linked as `"node.name"` in the outer one.
    ///
    /// ```rhai
    /// fn tagger() {
    ///     workflow().node("tag", map(|r| [r, "tagged"])).input("raw", "tag.in")
    /// }
    /// let wf = workflow().node("src", stream_source([1])).node("t", tagger()).link("src", "t.raw");
    /// ```
    #[rhai_fn(name = "input", return_raw)]
    pub fn input(wf: Workflow, name: &str, inner: &str) -> RhaiResult<Workflow> {
        wf.expose(name, inner, false).or_else(wf_err)
    }

    /// Names an inner port `"node.port"` as an output of this workflow, for
    /// when it is nested (besides `out`, where chaining ended).
    ///
    /// ```rhai
    /// fn evens() {
    ///     workflow().filter(|x| x % 2 == 0).name("check").output("odd", "check.reject")
    /// }
    /// let wf = workflow()
    ///     .node("src", stream_source(1..=4))
    ///     .node("e", evens())
    ///     .node("odd", collect())
    ///     .link("src", "e")
    ///     .link("e.odd", "odd")
    ///     .from("e").collect();
    /// ```
    #[rhai_fn(name = "output", return_raw)]
    pub fn output(wf: Workflow, name: &str, inner: &str) -> RhaiResult<Workflow> {
        wf.expose(name, inner, true).or_else(wf_err)
    }

    /// Names the node added last, so that `link` and `from` can refer to it.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([1]).name("numbers").collect();
    /// ```
    #[rhai_fn(name = "name", return_raw)]
    pub fn name(wf: Workflow, name: &str) -> RhaiResult<Workflow> {
        wf.rename_last(name).or_else(wf_err)
    }

    /// Checks that the workflow can run (it has a source, every input is
    /// linked) and returns it, or raises an error saying what is wrong.
    ///
    /// ```rhai
    /// let wf = workflow().stream_source([1]).collect().validate();
    /// ```
    #[rhai_fn(name = "validate", return_raw)]
    pub fn validate(wf: Workflow) -> RhaiResult<Workflow> {
        wf.validate().or_else(wf_err)?;
        Ok(wf)
    }

    /// Renders the workflow as a Graphviz `dot` graph.
    ///
    /// ```rhai
    /// let dot = workflow().stream_source([1]).map(|x| x).collect().to_dot();
    /// ```
    #[rhai_fn(name = "to_dot", pure)]
    pub fn to_dot(wf: &mut Workflow) -> String {
        crate::workflow::dot::to_dot(wf)
    }

    /// The names of the workflow's nodes, nested ones as `outer/inner`.
    ///
    /// ```rhai
    /// let names = workflow().stream_source([1]).collect().node_names();
    /// ```
    #[rhai_fn(name = "node_names", pure)]
    pub fn node_names(wf: &mut Workflow) -> rhai::Array {
        wf.flatten().nodes.into_iter().map(|n| Dynamic::from(n.name)).collect()
    }

    /// Renders a workflow for display.
    #[rhai_fn(name = "to_string", pure)]
    pub fn workflow_to_string(wf: &mut Workflow) -> String {
        wf.to_string()
    }

    /// Renders a workflow for debugging.
    #[rhai_fn(name = "to_debug", pure)]
    pub fn workflow_to_debug(wf: &mut Workflow) -> String {
        workflow_to_string(wf)
    }

    /// Splits a string into its words: runs of non-whitespace. Native, and
    /// the fastest way to tokenize a line.
    ///
    /// ```rhai
    /// let w = words("the  quick brown\tfox");   // ["the", "quick", "brown", "fox"]
    /// ```
    #[rhai_fn(name = "words")]
    pub fn words(text: &str) -> rhai::Array {
        let mut out = rhai::Array::with_capacity(8);
        super::for_each_word(text, |w| out.push(Dynamic::from(ImmutableString::from(w))));
        out
    }
}

/// Calls `f` on every word of `text`, as `str::split_whitespace` splits it:
/// on ASCII text (the usual line) by bytes, without decoding characters.
pub(crate) fn for_each_word(text: &str, mut f: impl FnMut(&str)) {
    if !text.is_ascii() {
        text.split_whitespace().for_each(f);
        return;
    }
    // `char::is_whitespace` on ASCII: tab, line feed, vertical tab, form feed,
    // carriage return and space.
    let bytes = text.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        let space = matches!(b, b'\t'..=b'\r' | b' ');
        match (space, start) {
            (true, Some(s)) => {
                f(&text[s..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_word;

    fn split(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_word(text, |w| out.push(w.to_string()));
        out
    }

    #[test]
    fn words_split_as_split_whitespace_does() {
        let cases = [
            "",
            " ",
            "one",
            "the  quick brown\tfox",
            "  lead and trail  ",
            "vertical\x0btab\x0cform\rfeed\nline",
            "\x1cnot\x1fspace",
            "naïve café\u{a0}non-breaking\u{2003}em space",
            "a",
            "a b",
        ];
        for text in cases {
            let want: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            assert_eq!(split(text), want, "on {text:?}");
        }
    }
}

//! The bare operator forms of the workflow builder (`map(f)`, `collect()`,
//! ...): operators for `node`, whose ports are then linked by name.

use rhai::plugin::*;

use super::workflow_api::{func, lines, source, tcp, RhaiResult};

#[export_module]
pub mod api {
    use super::*;

    pub type Operator = crate::workflow::Operator;

    /// An operator for `node`: a source over an array, a range or a generator.
    ///
    /// ```rhai
    /// let op = stream_source([1, 2, 3]);
    /// ```
    #[rhai_fn(name = "stream_source", return_raw)]
    pub fn op_stream_source(items: Dynamic) -> RhaiResult<Operator> {
        Ok(Operator::Source(source(items)?))
    }

    /// An operator for `node`: a source over the lines of a file.
    ///
    /// ```rhai
    /// let op = read_lines(priv_path("words.txt"));
    /// ```
    #[rhai_fn(name = "read_lines", return_raw)]
    pub fn op_read_lines(path: &str) -> RhaiResult<Operator> {
        Ok(Operator::Source(lines(path, &rhai::Map::new())?))
    }

    /// An operator for `node`: `read_lines(path, options)`.
    ///
    /// ```rhai
    /// let op = read_lines(priv_path("words.txt"), #{ max_line: 4096 });
    /// ```
    #[rhai_fn(name = "read_lines", return_raw)]
    pub fn op_read_lines_with(path: &str, options: rhai::Map) -> RhaiResult<Operator> {
        Ok(Operator::Source(lines(path, &options)?))
    }

    /// An operator for `node`: a source over the lines read from `host:port`.
    ///
    /// ```rhai
    /// let op = tcp_source("127.0.0.1", 7000);
    /// ```
    #[rhai_fn(name = "tcp_source", return_raw)]
    pub fn op_tcp_source(host: &str, port: i64) -> RhaiResult<Operator> {
        Ok(Operator::Source(tcp(host, port, &rhai::Map::new())?))
    }

    /// An operator for `node`: `tcp_source(host, port, options)`.
    ///
    /// ```rhai
    /// let op = tcp_source("127.0.0.1", 7000, #{ max_line: 4096 });
    /// ```
    #[rhai_fn(name = "tcp_source", return_raw)]
    pub fn op_tcp_source_with(host: &str, port: i64, options: rhai::Map) -> RhaiResult<Operator> {
        Ok(Operator::Source(tcp(host, port, &options)?))
    }

    /// An operator for `node`: `map(f)`.
    ///
    /// ```rhai
    /// let op = map(|x| x + 1);
    /// ```
    #[rhai_fn(name = "map", return_raw)]
    pub fn op_map(f: Dynamic) -> RhaiResult<Operator> {
        Ok(Operator::Map(func("map", "argument", f)?))
    }

    /// An operator for `node`: `flat_map(f)`.
    ///
    /// ```rhai
    /// let op = flat_map(|line| line.split(" "));
    /// ```
    #[rhai_fn(name = "flat_map", return_raw)]
    pub fn op_flat_map(f: Dynamic) -> RhaiResult<Operator> {
        Ok(Operator::FlatMap(func("flat_map", "argument", f)?))
    }

    /// An operator for `node`: `filter(f)`, with ports `accept` and `reject`.
    ///
    /// ```rhai
    /// let op = filter(|x| x > 0);
    /// ```
    #[rhai_fn(name = "filter", return_raw)]
    pub fn op_filter(f: Dynamic) -> RhaiResult<Operator> {
        Ok(Operator::Filter(func("filter", "argument", f)?))
    }

    /// An operator for `node`: `keyed_reduce(key_fn, reduce_fn, initial)`.
    ///
    /// ```rhai
    /// let op = keyed_reduce(|w| w, |n, w| [n + 1, [w, n + 1]], 0);
    /// ```
    #[rhai_fn(name = "keyed_reduce", return_raw)]
    pub fn op_keyed_reduce(key_fn: Dynamic, reduce_fn: Dynamic, initial: Dynamic) -> RhaiResult<Operator> {
        let key = func("keyed_reduce", "key function", key_fn)?;
        let reduce = func("keyed_reduce", "reduce function", reduce_fn)?;
        Ok(Operator::KeyedReduce { key, reduce, initial })
    }

    /// An operator for `node`: `count()`.
    ///
    /// ```rhai
    /// let op = count();
    /// ```
    #[rhai_fn(name = "count")]
    pub fn op_count() -> Operator {
        Operator::Count { key: None }
    }

    /// An operator for `node`: `count(key_fn)`.
    ///
    /// ```rhai
    /// let op = count(|x| x % 2);
    /// ```
    #[rhai_fn(name = "count", return_raw)]
    pub fn op_count_by(key_fn: Dynamic) -> RhaiResult<Operator> {
        Ok(Operator::Count { key: Some(func("count", "key function", key_fn)?) })
    }

    /// An operator for `node`: `inspect(label)`.
    ///
    /// ```rhai
    /// let op = inspect("seen");
    /// ```
    #[rhai_fn(name = "inspect")]
    pub fn op_printer(label: &str) -> Operator {
        Operator::Print(label.into())
    }

    /// An operator for `node`: `write_lines(path)`.
    ///
    /// ```rhai
    /// let op = write_lines("out.txt");
    /// ```
    #[rhai_fn(name = "write_lines")]
    pub fn op_write_lines(path: &str) -> Operator {
        Operator::WriteLines(path.into())
    }

    /// An operator for `node`: `write_parts(dir)`.
    ///
    /// ```rhai
    /// let op = write_parts("out.d");
    /// ```
    #[rhai_fn(name = "write_parts")]
    pub fn op_write_parts(dir: &str) -> Operator {
        Operator::WriteParts(dir.into())
    }

    /// An operator for `node`: `collect()`.
    ///
    /// ```rhai
    /// let op = collect();
    /// ```
    #[rhai_fn(name = "collect")]
    pub fn op_collect() -> Operator {
        Operator::Collect
    }

    /// Renders an operator for display.
    #[rhai_fn(name = "to_string", pure)]
    pub fn operator_to_string(op: &mut Operator) -> String {
        format!("#Operator<{op}>")
    }

    /// Renders an operator for debugging.
    #[rhai_fn(name = "to_debug", pure)]
    pub fn operator_to_debug(op: &mut Operator) -> String {
        format!("#Operator<{op}>")
    }
}

//! A small HTTP/1.1 server for what a node shows over HTTP (`--metrics`,
//! `--http`): one request per connection, its head read within 5 s and at
//! most 8 KiB, a body of at most 8 KiB, at most 16 connections served at
//! once (more wait in the listen queue). What is answered is a handler's.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a client has to send its request, and how much it may send.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST: usize = 8 * 1024;
/// Requests served at once.
const CONCURRENT: usize = 16;

/// `PORT` alone means loopback; `ADDR:PORT` is taken as it is. `flag`
/// names the option in the error.
pub fn address(flag: &str, spec: &str) -> Result<String, String> {
    let spec = spec.trim();
    if let Ok(port) = spec.parse::<u16>() {
        return Ok(format!("127.0.0.1:{port}"));
    }
    match spec.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(spec.to_string()),
        _ => Err(format!("{flag} {spec}: give PORT (on 127.0.0.1) or ADDR:PORT")),
    }
}

/// Binds `spec` (see [`address`]); returns the address bound.
pub async fn bind(flag: &str, spec: &str) -> Result<(TcpListener, String), String> {
    let addr = address(flag, spec)?;
    let listener = TcpListener::bind(&addr).await.map_err(|e| format!("{flag}: cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?.to_string();
    Ok((listener, bound))
}

/// A request: its method, path (without the query), headers and body.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: &'static str,
    pub kind: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: &'static str, kind: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, kind, body: body.into() }
    }

    pub fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }
}

/// Serves `handler` on `listener` until `stop`.
pub async fn serve<H, F>(listener: TcpListener, what: &'static str, handler: H, stop: CancellationToken)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("{what}: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = answer(stream, handler).await {
                tracing::debug!("{what}: {e}");
            }
        });
    }
}

/// Reads one request and answers it; the connection closes after.
async fn answer<H, F>(mut stream: TcpStream, handler: H) -> Result<(), String>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let request =
        tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await.map_err(|_| "a request slower than 5 s".to_string())?;
    let response = match request {
        Ok(request) => handler(request).await,
        Err(e) => Response::text("400 Bad Request", format!("{e}\n")),
    };
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        response.status,
        response.kind,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.write_all(&response.body).await.map_err(|e| e.to_string())?;
    let _ = stream.shutdown().await;
    Ok(())
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, String> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if bytes.len() > MAX_REQUEST {
            return Err("a request head larger than 8 KiB".into());
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before the request ended".into());
        }
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().split('?').next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut request = Request { method, path, headers, body: bytes[end + 4..].to_vec() };
    let length: usize =
        request.header("content-length").map_or(Ok(0), |v| v.parse()).map_err(|_| "a Content-Length that is not a number")?;
    if length > MAX_REQUEST {
        return Err(format!("a body of {length} bytes (the limit is 8 KiB)"));
    }
    while request.body.len() < length {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before the body ended".into());
        }
        request.body.extend_from_slice(&buf[..n]);
    }
    request.body.truncate(length);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_is_on_loopback() {
        assert_eq!(address("--metrics", "9464").unwrap(), "127.0.0.1:9464");
        assert_eq!(address("--http", "0.0.0.0:9464").unwrap(), "0.0.0.0:9464");
        assert!(address("--http", "nine").unwrap_err().contains("--http nine: give PORT"));
        assert!(address("--metrics", ":80").is_err());
    }

    #[tokio::test]
    async fn a_request_is_read_with_its_headers_and_body_and_answered() {
        let (listener, addr) = bind("--http", "127.0.0.1:0").await.unwrap();
        let stop = CancellationToken::new();
        let handler = |r: Request| async move {
            Response::text("200 OK", format!("{} {} {:?} {}", r.method, r.path, r.header("x-token"), String::from_utf8_lossy(&r.body)))
        };
        tokio::spawn(serve(listener, "test", handler, stop.clone()));
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /a/b?c=1 HTTP/1.1\r\nX-Token: t\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("POST /a/b Some(\"t\") hello"), "{out}");
        stop.cancel();
    }
}

//! `--http ADDR:PORT`: a web view of the node — the cluster's nodes and
//! workflows, and each workflow's graph with its operators' rates, times and
//! queues — as pages that update themselves every second, and `/metrics`
//! beside them. Read-only unless started with a token (`--http-token`):
//! then a workflow's page can stop, abort or checkpoint it, each request
//! carrying the token in its `Authorization` header (never in a URL, so in
//! no log; a form on another site cannot send it). The pages, their script
//! and style are in the binary: nothing to install, nothing fetched.

mod api;
mod rates;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::http::{Request, Response};
use crate::script::Host;
use rates::Rates;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// What the pages are served from.
struct Web {
    host: Arc<dyn Host>,
    started: Instant,
    rates: Mutex<Rates>,
    /// What a request must carry to act; none: the view is read-only.
    token: Option<Token>,
    /// Bound to a loopback address: only requests naming a loopback host
    /// are answered (a web page elsewhere that rebinds its own name to
    /// 127.0.0.1 cannot read the view through the user's browser).
    loopback: bool,
}

/// Whether a request with `Host: host` may be answered by a view bound to
/// loopback: an IP literal on loopback, or `localhost`, with any port.
fn loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host.map(str::trim) else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The shortest token taken: a guessable one would hand out stop buttons.
const MIN_TOKEN: usize = 16;

/// A token for the web view's actions (redacted when printed).
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// The token `text`, given by `from` (named in the error).
    pub fn new(text: &str, from: &str) -> Result<Token, String> {
        let text = text.trim();
        if text.len() < MIN_TOKEN {
            return Err(format!(
                "{from}: a token of {} characters is too easy to guess; give at least {MIN_TOKEN} (make one with `head -c 24 /dev/urandom | base64`)",
                text.len()
            ));
        }
        Ok(Token(text.to_string()))
    }

    /// Whether `request` carries this token (`Authorization: Bearer ...`),
    /// compared in constant time.
    fn admits(&self, request: &Request) -> bool {
        let given = request.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default().trim().as_bytes();
        let want = self.0.as_bytes();
        given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

static ENVIRONMENT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Takes SKITTER_HTTP_TOKEN out of this process's environment (first thing
/// in `main`, like the cookie): the programs it runs never see it.
pub fn take_token_from_environment() {
    token_from_environment();
}

/// SKITTER_HTTP_TOKEN as this process started with it (unset when empty).
pub fn token_from_environment() -> Option<&'static str> {
    crate::settings::take_var(&ENVIRONMENT, "SKITTER_HTTP_TOKEN").filter(|t| !t.trim().is_empty())
}

/// Serves the pages, their data and `/metrics` until `stop`.
pub async fn serve(listener: TcpListener, host: Arc<dyn Host>, token: Option<Token>, stop: CancellationToken) {
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let web = Arc::new(Web { host, started: Instant::now(), rates: Mutex::new(Rates::default()), token, loopback });
    let handler = move |r: Request| {
        let web = web.clone();
        async move { route(web, r).await }
    };
    super::http::serve(listener, "http", handler, stop).await
}

async fn route(web: Arc<Web>, r: Request) -> Response {
    if web.loopback && !loopback_host(r.header("host")) {
        return Response::text("421 Misdirected Request", "this view answers requests for a loopback host (127.0.0.1, localhost) only\n");
    }
    if let Some(answer) = super::metrics::answer(&r, web.host.clone()).await {
        return answer;
    }
    if r.method == "POST" {
        return act(web, &r).await;
    }
    if r.method != "GET" {
        return Response::text("405 Method Not Allowed", "only GET, and POST for actions\n");
    }
    let path = r.path.as_str();
    match path {
        "/" => Response::new("200 OK", "text/html; charset=utf-8", INDEX),
        "/app.js" => Response::new("200 OK", "text/javascript; charset=utf-8", SCRIPT),
        "/style.css" => Response::new("200 OK", "text/css; charset=utf-8", STYLE),
        "/api/overview" => data(web, |w| Some(api::overview(w.host.as_ref(), w.started, &w.rates, w.token.is_some()))).await,
        _ => {
            if path.strip_prefix("/workflow/").is_some_and(|id| id.parse::<u64>().is_ok()) {
                return Response::new("200 OK", "text/html; charset=utf-8", INDEX);
            }
            if let Some(id) = path.strip_prefix("/api/workflow/").and_then(|id| id.parse::<u64>().ok()) {
                return data(web, move |w| api::workflow(w.host.as_ref(), id, &w.rates, w.token.is_some())).await;
            }
            Response::text("404 Not Found", format!("nothing at {path}: the view is at /\n"))
        }
    }
}

/// JSON made by `make` off the async threads (a master's stats are gathered
/// under its locks); 404 when it has nothing.
async fn data(web: Arc<Web>, make: impl FnOnce(&Web) -> Option<serde_json::Value> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(move || make(&web)).await {
        Ok(Some(value)) => Response::new("200 OK", "application/json", value.to_string()),
        Ok(None) => Response::text("404 Not Found", "no such workflow\n"),
        Err(e) => Response::text("500 Internal Server Error", format!("{e}\n")),
    }
}

/// `POST /api/workflow/ID/stop` (or `abort`, `checkpoint`): done when the
/// view has a token and the request carries it; the answer says what came
/// of it.
async fn act(web: Arc<Web>, r: &Request) -> Response {
    let Some(token) = &web.token else {
        return Response::text("403 Forbidden", "this view is read-only: start the node with --http-token to act from it\n");
    };
    if !token.admits(r) {
        return Response::text("401 Unauthorized", "the token is missing or wrong\n");
    }
    let Some((id, action)) = r.path.strip_prefix("/api/workflow/").and_then(|rest| rest.split_once('/')) else {
        return Response::text("404 Not Found", "actions are at /api/workflow/ID/stop, abort or checkpoint\n");
    };
    let Ok(id) = id.parse::<u64>() else { return Response::text("404 Not Found", "no such workflow\n") };
    let wf = crate::script::WorkflowRef { id };
    let action = action.to_string();
    let host = web.host.clone();
    let done = tokio::task::spawn_blocking(move || match action.as_str() {
        "stop" => Some(host.stop(wf, crate::settings::STOP_DEADLINE).map(|s| format!("{s}"))),
        "abort" => Some(host.abort(wf).map(|s| format!("{s}"))),
        "checkpoint" => Some(host.checkpoint(wf).map(|id| format!("checkpoint {id} taken"))),
        _ => None,
    })
    .await;
    match done {
        Ok(Some(Ok(what))) => {
            tracing::info!("web view: {} of workflow {id}: {what}", r.path.rsplit('/').next().unwrap_or_default());
            Response::text("200 OK", format!("{what}\n"))
        }
        Ok(Some(Err(e))) => Response::text("409 Conflict", format!("{e}\n")),
        Ok(None) => Response::text("404 Not Found", "actions are stop, abort and checkpoint\n"),
        Err(e) => Response::text("500 Internal Server Error", format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> Request {
        Request { headers: auth.map(|a| vec![("Authorization".into(), a.into())]).unwrap_or_default(), ..Request::default() }
    }

    #[test]
    fn a_view_on_loopback_answers_loopback_hosts_only() {
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "127.0.0.182:1", "[::1]:8080", "[::1]"] {
            assert!(loopback_host(Some(ok)), "{ok}");
        }
        for no in ["evil.example:8080", "evil.example", "10.0.0.1:8080", "127.0.0.1.evil.example", ""] {
            assert!(!loopback_host(Some(no)), "{no}");
        }
        assert!(!loopback_host(None));
    }

    #[test]
    fn a_token_admits_only_requests_that_carry_it_whole() {
        assert_eq!(Token::new("short", "SKITTER_HTTP_TOKEN").unwrap_err().split(':').next(), Some("SKITTER_HTTP_TOKEN"));
        assert!(Token::new("short", "--http-token").unwrap_err().contains("at least 16"));
        let t = Token::new(" 0123456789abcdefXYZ \n", "--http-token").unwrap();
        assert!(t.admits(&request(Some("Bearer 0123456789abcdefXYZ"))));
        assert!(!t.admits(&request(Some("Bearer 0123456789abcdefXY"))));
        assert!(!t.admits(&request(Some("0123456789abcdefXYZ"))));
        assert!(!t.admits(&request(None)));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }
}

//! A tiny HTTP/1.1 responder on 127.0.0.1 for scrapers: `GET /metrics` gets
//! the OpenMetrics text with 200, anything else 404. One request per
//! connection (`Connection: close`); the request head is limited to 8 KiB
//! and 10 seconds.
//!
//! Loopback TCP has no peer credentials: any local user can read the metrics
//! (program paths and image keys included). The endpoint is off by default.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use zygote_core::metrics::openmetrics::CONTENT_TYPE;

/// The metrics endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {addr}: {what}: {source}")]
pub struct HttpError {
    pub addr: String,
    pub what: &'static str,
    pub source: std::io::Error,
}

const MAX_HEAD: usize = 8192;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind `127.0.0.1:port` (0 picks a free port). Call inside the runtime.
pub fn bind(port: u16) -> Result<TcpListener, HttpError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let err = |what| move |source| HttpError { addr: addr.to_string(), what, source };
    let l = std::net::TcpListener::bind(addr).map_err(err("bind"))?;
    l.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    TcpListener::from_std(l).map_err(err("registering with the runtime"))
}

/// What a request head asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    NotFound,
}

/// Route a request head (`GET /metrics HTTP/1.1`, query strings ignored).
pub fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut it = line.trim_end_matches('\r').split(' ');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some("GET"), Some(target), Some(v), None)
            if v.starts_with("HTTP/1.") && target.split('?').next() == Some("/metrics") =>
        {
            Route::Metrics
        }
        _ => Route::NotFound,
    }
}

/// A complete response.
pub fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}

/// Serve until `shutdown` turns true. `body` renders the metrics text.
pub async fn serve<F, Fut>(listener: TcpListener, body: F, mut shutdown: watch::Receiver<bool>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    let body = Arc::new(body);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let body = body.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &*body).await {
                            tracing::debug!("metrics request: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of fds, most likely: do not spin.
                    tracing::warn!("metrics accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

/// Read the request head (until the blank line), answer, close.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_HEAD {
            break;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

async fn answer<F, Fut>(mut stream: TcpStream, body: &F) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(h) => h?,
        Err(_) => return Ok(()),
    };
    let reply = match route(&head) {
        Route::Metrics => response("200 OK", CONTENT_TYPE, &body().await),
        Route::NotFound => response("404 Not Found", "text/plain; charset=utf-8", "not found\n"),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"\x00\xff garbage"), Route::NotFound);
        assert_eq!(route(b""), Route::NotFound);
    }

    #[test]
    fn responses_have_a_length() {
        let r = String::from_utf8(response("200 OK", "text/plain", "abc")).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.contains("Content-Length: 3\r\n") && r.ends_with("\r\n\r\nabc")
        );
    }
}

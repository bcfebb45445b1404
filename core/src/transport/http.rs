//! The one HTTP client: health probes, nginx and php-fpm status pages, runbook HTTP steps and
//! (through [`send`]) the Docker engine over TLS or an SSH channel.
//!
//! HTTP/1.1 over hyper, `http://` and `https://` (rustls, see [`super::tls`]). The socket
//! comes from [`Connections::service_addr`]: the URL's host directly, or, with `via = "ssh"`,
//! as the inventory host sees it through its SSH connection. The certificate is checked
//! against the URL's host (or `tls.server_name`), never against the loopback forward.
//! Everything is bounded: one timeout over connect, handshake, request and body, and the body
//! kept up to a size limit.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::Uri;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use super::Connections;
use super::tls;
use crate::inventory::{Host, TlsSettings, Via};

/// Default bound on a kept body (a status page or health JSON is a few hundred bytes).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `GET`, `HEAD`, `POST`, `PUT`, `DELETE`.
    pub method: &'a str,
    pub url: &'a str,
    /// How the URL's host is reached: directly, or through the host's SSH connection.
    pub via: Via,
    /// For `https://`: trust and identity; `None` means the system CAs, full verification.
    pub tls: Option<&'a TlsSettings>,
    /// Covers everything: connecting, the TLS handshake, the request and the body.
    pub timeout: Duration,
    /// Bytes of body kept; the rest is not read and the response says `truncated`.
    pub max_body: usize,
    pub user_agent: &'a str,
}

impl<'a> Request<'a> {
    /// A `GET` with the defaults (direct, system CAs, [`DEFAULT_MAX_BODY`]).
    pub fn get(url: &'a str, timeout: Duration) -> Self {
        Request {
            method: "GET",
            url,
            via: Via::Direct,
            tls: None,
            timeout,
            max_body: DEFAULT_MAX_BODY,
            user_agent: "opsdeck",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The body as text (lossy UTF-8), at most `max_body` bytes of it.
    pub body: String,
    /// True when the body was longer than `max_body`.
    pub truncated: bool,
    /// Until the whole (kept) body had arrived.
    pub latency: Duration,
}

/// Why a request failed. `sent`: the request had been handed to the server, so a changing
/// request (POST, PUT, DELETE) may have taken effect.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method} {url}: {reason}")]
pub struct HttpError {
    pub method: String,
    pub url: String,
    pub reason: String,
    pub sent: bool,
}

/// Where a URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// The host as written, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub authority: String,
    pub path_and_query: String,
}

/// Parses an `http://` or `https://` URL.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(format!(
                "{url:?}: scheme {other}:// is not supported; use http:// or https://"
            ));
        }
        None => {
            return Err(format!(
                "{url:?} has no scheme; write http://… or https://…"
            ));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(Target {
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        authority: authority.as_str().to_owned(),
        host,
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    })
}

/// How `host` reaches `url`: the `via` and `tls` of its HTTP service with the same origin
/// (scheme, host, port), else directly with the defaults. Lets a status page or a runbook
/// step use what the inventory says about that endpoint.
pub fn route<'h>(host: &'h Host, url: &str) -> (Via, Option<&'h TlsSettings>) {
    let Ok(want) = parse_url(url) else {
        return (Via::Direct, None);
    };
    host.services
        .http
        .iter()
        .find(|s| {
            parse_url(&s.url).is_ok_and(|t| {
                t.https == want.https
                    && t.port == want.port
                    && t.host.eq_ignore_ascii_case(&want.host)
            })
        })
        .map_or((Via::Direct, None), |s| (s.via, s.tls.as_ref()))
}

/// Sends `req` and reads the response, within `req.timeout`. `host` is the inventory host the
/// request is made for: needed for `via = "ssh"`.
pub async fn request(
    conns: &Connections,
    host: Option<&Host>,
    req: &Request<'_>,
) -> Result<Response, HttpError> {
    let sent = std::sync::atomic::AtomicBool::new(false);
    let fail = |reason: String, sent: bool| HttpError {
        method: req.method.to_owned(),
        url: req.url.to_owned(),
        reason,
        sent,
    };
    match tokio::time::timeout(req.timeout, exchange(conns, host, req, &sent)).await {
        Ok(r) => r.map_err(|(reason, sent)| fail(reason, sent)),
        Err(_) => {
            let sent = sent.load(std::sync::atomic::Ordering::Acquire);
            Err(fail(
                format!(
                    "no answer within {}{}",
                    humantime::format_duration(req.timeout),
                    if sent {
                        " (the request had been sent)"
                    } else {
                        ""
                    }
                ),
                sent,
            ))
        }
    }
}

/// The request, start to end; errors carry whether the request was sent.
async fn exchange(
    conns: &Connections,
    host: Option<&Host>,
    req: &Request<'_>,
    sent: &std::sync::atomic::AtomicBool,
) -> Result<Response, (String, bool)> {
    let target = parse_url(req.url).map_err(|e| (e, false))?;
    let method = hyper::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| (format!("{:?} is not an HTTP method", req.method), false))?;
    let started = Instant::now();
    let addr = match (host, req.via) {
        (Some(h), via) => conns
            .service_addr(h, &target.host, target.port, via)
            .await
            .map_err(|e| (e.masked(), false))?,
        (None, Via::Direct) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| (format!("{} does not resolve", target.host), false))?,
        (None, Via::Ssh) => {
            return Err((
                "via = \"ssh\" needs the inventory host whose SSH connection carries it".to_owned(),
                false,
            ));
        }
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
        let route = if req.via == Via::Ssh {
            format!(" (the tunnel to {}:{})", target.host, target.port)
        } else {
            String::new()
        };
        (format!("cannot connect to {addr}{route}: {e}"), false)
    })?;
    let _ = tcp.set_nodelay(true);
    let request = hyper::Request::builder()
        .method(method)
        .uri(target.path_and_query.as_str())
        .header(hyper::header::HOST, target.authority.as_str())
        .header(hyper::header::USER_AGENT, req.user_agent)
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| (e.to_string(), false))?;
    let (resp, driver) = if target.https {
        let defaults = TlsSettings::default();
        let settings = req.tls.unwrap_or(&defaults);
        let stream = tls::connect(tcp, settings, &target.host)
            .await
            .map_err(|e| (e.to_string(), false))?;
        sent.store(true, std::sync::atomic::Ordering::Release);
        send(stream, request).await
    } else {
        sent.store(true, std::sync::atomic::Ordering::Release);
        send(tcp, request).await
    }
    .map_err(|e| {
        let text = error_chain(&e);
        let text = if target.https {
            tls::with_alert_hint(text, Some(req.tls.unwrap_or(&TlsSettings::default())))
        } else {
            text
        };
        (text, true)
    })?;
    // The connection task ends with the body; abort it if the body never ends.
    let _abort = AbortOnDrop(driver);
    let status = resp.status().as_u16();
    let (body, truncated) = read_body(resp.into_body(), req.max_body)
        .await
        .map_err(|e| (format!("reading the body: {}", error_chain(&e)), true))?;
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        truncated,
        latency: started.elapsed(),
    })
}

/// An error with its causes (hyper's own text is often just "connection error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads at most `max` bytes of `body`; true when there was more.
pub async fn read_body(mut body: Incoming, max: usize) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let room = max.saturating_sub(buf.len());
        if data.len() > room {
            buf.extend_from_slice(&data[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf, false))
}

/// Sends one HTTP/1.1 request over `io` (any stream: TCP, TLS, an SSH channel) and returns
/// the response head with its body still to read, plus the task that drives the connection
/// (it ends with the body, or hands the stream over on a protocol upgrade, as Docker's exec
/// attach does). `req` must carry an origin-form URI and a `Host` header.
pub async fn send<S, B>(
    io: S,
    req: hyper::Request<B>,
) -> Result<(hyper::Response<Incoming>, JoinHandle<()>), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("http connection ended: {e}");
        }
    });
    match sender.send_request(req).await {
        Ok(resp) => Ok((resp, driver)),
        Err(e) => {
            driver.abort();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_with_default_ports_and_refused_with_a_reason() {
        let t = parse_url("https://lb.example:8443/health?x=1").expect("https");
        assert_eq!(
            t,
            Target {
                https: true,
                host: "lb.example".to_owned(),
                port: 8443,
                authority: "lb.example:8443".to_owned(),
                path_and_query: "/health?x=1".to_owned(),
            }
        );
        assert_eq!(parse_url("https://127.0.0.1").expect("ip").port, 443);
        assert_eq!(parse_url("http://[::1]/").expect("v6").host, "::1");
        assert_eq!(parse_url("http://a").expect("bare").path_and_query, "/");
        let e = parse_url("ftp://a/x").expect_err("ftp");
        assert!(e.contains("http:// or https://"), "{e}");
        assert!(parse_url("/health").is_err());
    }
}

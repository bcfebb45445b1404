//! Plain HTTP/1.1 GETs for health endpoints, nginx `stub_status` and php-fpm status.
//! The socket comes from [`Connections::service_addr`] (direct or through the host's SSH
//! connection); the probe never picks a route itself.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::inventory::{Host, Via};
use crate::transport::Connections;

/// Bodies above this are cut (a status page or health JSON is a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub latency: Duration,
}

/// `GET url` and read the body, within `timeout` overall.
pub async fn get(
    conns: &Connections,
    host: &Host,
    url: &str,
    via: Via,
    timeout: Duration,
) -> Result<Response, String> {
    tokio::time::timeout(timeout, get_inner(conns, host, url, via))
        .await
        .map_err(|_| {
            format!(
                "GET {url}: no answer within {}",
                humantime::format_duration(timeout)
            )
        })?
}

async fn get_inner(
    conns: &Connections,
    host: &Host,
    url: &str,
    via: Via,
) -> Result<Response, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let started = Instant::now();
    let addr = conns
        .service_addr(host, authority.host(), port, via)
        .await
        .map_err(|e| e.masked())?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("GET {url}: cannot connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::USER_AGENT, "opsdeck-health")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?
        .to_bytes();
    let latency = started.elapsed();
    driver.abort();
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        latency,
    })
}

//! HTTP(S) GETs for health endpoints, nginx `stub_status` and php-fpm status, through the one
//! client in [`crate::transport::http`] (direct or through the host's SSH connection, TLS as
//! the service's `tls` settings say). The probe never picks a route itself.

use std::time::Duration;

use crate::inventory::{Host, TlsSettings, Via};
use crate::transport::Connections;
use crate::transport::http::{self, Request};

/// Bodies above this are cut (a status page or health JSON is a few hundred bytes).
pub const MAX_BODY: usize = http::DEFAULT_MAX_BODY;

pub use crate::transport::http::Response;

/// `GET url` and read the body, within `timeout` overall.
pub async fn get(
    conns: &Connections,
    host: &Host,
    url: &str,
    via: Via,
    tls: Option<&TlsSettings>,
    timeout: Duration,
) -> Result<Response, String> {
    let req = Request {
        via,
        tls,
        user_agent: "opsdeck-health",
        ..Request::get(url, timeout)
    };
    let resp = http::request(conns, Some(host), &req)
        .await
        .map_err(|e| format!("GET {url}: {}", e.reason))?;
    if resp.truncated {
        return Err(format!(
            "GET {url}: the body is longer than {} KiB; is this the status page?",
            MAX_BODY / 1024
        ));
    }
    Ok(resp)
}

//! Engine connections bollard does not make itself: `tcp://` with TLS through opsdeck's TLS
//! settings, and `ssh://` through opsdeck's own SSH connection to the host, one
//! `direct-streamlocal@openssh.com` channel to the remote engine socket per request (no `ssh`
//! program, no second SSH client). Both speak HTTP/1.1 through [`crate::transport::http::send`],
//! upgrades included (an attached exec switches protocols).

use std::future::Future;
use std::io;
use std::sync::Arc;

use bollard::BollardRequest;
use bollard::errors::Error as BollardError;
use hyper::body::Incoming;

use crate::inventory::TlsSettings;
use crate::transport::ssh::SshHost;
use crate::transport::{http, tls};

type Reply = Result<hyper::Response<Incoming>, BollardError>;

/// bollard builds absolute URIs (`http://docker/containers/json`); one connection per request
/// wants the origin form and a `Host` header.
fn origin_form(req: BollardRequest) -> Result<BollardRequest, BollardError> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    parts.uri = path
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| io::Error::other(e.to_string()))?;
    parts.headers.insert(
        hyper::header::HOST,
        hyper::header::HeaderValue::from_static("docker"),
    );
    Ok(BollardRequest::from_parts(parts, body))
}

async fn exchange<S>(io: S, req: BollardRequest) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The connection task lives on with the body (a followed log, an attached exec).
    let (resp, _driver) = http::send(io, origin_form(req)?).await?;
    Ok(resp)
}

/// `tcp://host:port` with TLS.
pub fn tls_transport(
    host: String,
    port: u16,
    settings: TlsSettings,
) -> impl Fn(BollardRequest) -> std::pin::Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync
{
    let target = Arc::new((host, port, settings));
    move |req: BollardRequest| {
        let target = Arc::clone(&target);
        Box::pin(async move {
            let (host, port, settings) = &*target;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tls::connect(tcp, settings, host)
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
            exchange(stream, req).await
        })
    }
}

/// The engine socket `socket` on the SSH host `ssh`.
pub fn ssh_transport(
    ssh: Arc<SshHost>,
    socket: String,
) -> impl Fn(BollardRequest) -> std::pin::Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync
{
    let socket = Arc::new(socket);
    move |req: BollardRequest| {
        let ssh = Arc::clone(&ssh);
        let socket = Arc::clone(&socket);
        Box::pin(async move {
            let stream = ssh
                .open_direct_streamlocal(&socket)
                .await
                .map_err(|e| io::Error::other(format!("over ssh: {}", e.masked())))?;
            exchange(stream, req).await
        })
    }
}

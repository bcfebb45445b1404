//! SSH via russh: one authenticated connection per host, shared by many channels.
//! (Placeholder: the implementation lands with the SSH transport work.)

use std::net::SocketAddr;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{ExitStatus, OutputSink, Transport, TransportError};
use crate::inventory::SshSpec;

pub struct SshHost {
    spec: SshSpec,
}

impl SshHost {
    pub fn new(spec: SshSpec) -> Self {
        SshHost { spec }
    }

    /// Binds a loopback listener that forwards each accepted connection to
    /// `address:port` as seen from the host (direct-tcpip).
    pub async fn forward_local(
        &self,
        address: &str,
        port: u16,
    ) -> Result<SocketAddr, TransportError> {
        Err(TransportError::Other {
            target: self.label(),
            reason: format!("tunnel to {address}:{port} not implemented yet"),
        })
    }
}

impl Transport for SshHost {
    fn label(&self) -> String {
        format!("ssh {}", self.spec.display())
    }

    fn exec<'a>(
        &'a self,
        _command: &'a str,
        _sink: Option<OutputSink>,
        _cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, TransportError>> {
        Box::pin(async move {
            Err(TransportError::Other {
                target: self.label(),
                reason: "ssh not implemented yet".to_owned(),
            })
        })
    }
}

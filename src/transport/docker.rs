//! Docker via bollard: exec in a container and container lifecycle.
//! (Placeholder: the implementation lands with the Docker transport work.)

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{ExitStatus, OutputSink, Transport, TransportError};
use crate::inventory::{ContainerTarget, DockerSpec};

/// One bollard client per engine endpoint, shared by every container host on it.
#[derive(Default)]
pub struct DockerClients {}

pub struct DockerHost {
    spec: DockerSpec,
}

impl DockerHost {
    pub fn new(spec: DockerSpec, _clients: &DockerClients) -> Self {
        DockerHost { spec }
    }
}

impl Transport for DockerHost {
    fn label(&self) -> String {
        match &self.spec.target {
            ContainerTarget::Name(n) => format!("docker {n}"),
            ContainerTarget::Compose { project, service } => format!("docker {project}/{service}"),
        }
    }

    fn exec<'a>(
        &'a self,
        _command: &'a str,
        _sink: Option<OutputSink>,
        _cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, TransportError>> {
        Box::pin(async move {
            Err(TransportError::Docker {
                target: self.label(),
                reason: "docker not implemented yet".to_owned(),
            })
        })
    }
}

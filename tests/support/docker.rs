//! Docker harness: a real dockerd (started if none answers), tiny images imported from this
//! machine's binaries, and containers on the host network that are removed on drop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions};

use opsdeck::lab::docker::{build_image, ensure_dockerd};

/// The busybox-only image every test container uses unless it needs more.
pub const BUSYBOX_IMAGE: &str = "opsdeck-test-busybox:1";
/// Busybox plus `/usr/bin/redis-server` and its libraries.
pub const REDIS_IMAGE: &str = "opsdeck-test-redis:1";

/// Starts dockerd if needed and builds the busybox image, once per test process.
pub fn engine() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let state = std::env::temp_dir().join("opsdeck-test-dockerd");
        ensure_dockerd(&state).map_err(|e| e.to_string())?;
        build_image(BUSYBOX_IMAGE, &[]).map_err(|e| e.to_string())
    });
    if let Err(e) = ready {
        panic!("docker engine for tests: {e}");
    }
}

/// The redis image (busybox + redis-server), built once.
pub fn redis_image() -> &'static str {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    engine();
    let ready = READY.get_or_init(|| {
        let redis: PathBuf = opsdeck::lab::process::find_program("redis-server")
            .ok_or("redis-server not found: apt-get install redis-server")?;
        build_image(REDIS_IMAGE, &[Path::new(&redis)]).map_err(|e| e.to_string())
    });
    if let Err(e) = ready {
        panic!("redis image for tests: {e}");
    }
    REDIS_IMAGE
}

/// A client on the local engine socket.
pub fn client() -> Docker {
    Docker::connect_with_unix_defaults().expect("bollard client on /var/run/docker.sock")
}

/// A name no other test (in this or another process) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "opsdeck-test-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// What to run: image, command, labels, healthcheck. Always host networking.
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub labels: HashMap<String, String>,
    pub healthcheck: Option<HealthConfig>,
}

impl ContainerSpec {
    /// A busybox container running `sh -c SCRIPT`.
    pub fn busybox(prefix: &str, script: &str) -> Self {
        engine();
        ContainerSpec {
            name: unique_name(prefix),
            image: BUSYBOX_IMAGE.to_owned(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            labels: HashMap::new(),
            healthcheck: None,
        }
    }

    /// Adds the labels docker compose puts on a service's containers.
    pub fn compose(mut self, project: &str, service: &str) -> Self {
        self.labels
            .insert("com.docker.compose.project".into(), project.into());
        self.labels
            .insert("com.docker.compose.service".into(), service.into());
        self
    }

    /// A healthcheck `sh -c CHECK` every 200 ms.
    pub fn healthcheck(mut self, check: &str) -> Self {
        self.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD".into(), "sh".into(), "-c".into(), check.into()]),
            interval: Some(200_000_000),
            timeout: Some(2_000_000_000),
            retries: Some(3),
            start_period: Some(0),
            start_interval: None,
        });
        self
    }

    /// Creates and starts the container.
    pub async fn start(self) -> TestContainer {
        let docker = client();
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.cmd.clone()),
            labels: Some(self.labels.clone()),
            healthcheck: self.healthcheck.clone(),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&self.name)
            .build();
        let created = docker
            .create_container(Some(opts), body)
            .await
            .unwrap_or_else(|e| panic!("create container {}: {e}", self.name));
        let container = TestContainer {
            name: self.name,
            id: created.id,
        };
        docker
            .start_container(&container.name, None::<StartContainerOptions>)
            .await
            .unwrap_or_else(|e| panic!("start container {}: {e}", container.name));
        container
    }
}

/// A container removed (forcibly) when dropped.
pub struct TestContainer {
    pub name: String,
    pub id: String,
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop may run outside any runtime.
        let _ = Command::new(
            opsdeck::lab::process::find_program("docker").unwrap_or_else(|| "docker".into()),
        )
        .args(["rm", "-f", "-v", &self.name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

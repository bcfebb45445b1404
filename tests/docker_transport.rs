//! The Docker transport against a real dockerd on this machine (containers on the host network).

mod support;

use support::docker::{ContainerSpec, engine};

#[tokio::test]
async fn lab_engine_runs_an_imported_busybox_container() {
    engine();
    let c = ContainerSpec::busybox("smoke", "sleep 30").start().await;
    let info = support::docker::client()
        .inspect_container(&c.name, None)
        .await
        .expect("inspect");
    assert_eq!(info.state.and_then(|s| s.running), Some(true));
}

//! The team-mode tests' etcd: the lab's cluster in a temp directory.

#[allow(unused_imports)] // each test binary uses its part
pub use opsdeck::lab::etcd::{EtcdCluster, available};

/// A 3-member cluster in a fresh temp directory (kept alive with the cluster).
pub struct TestEtcd {
    pub cluster: EtcdCluster,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestEtcd {
    type Target = EtcdCluster;
    fn deref(&self) -> &EtcdCluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for TestEtcd {
    fn deref_mut(&mut self) -> &mut EtcdCluster {
        &mut self.cluster
    }
}

pub fn start(n: usize) -> TestEtcd {
    let dir = tempfile::Builder::new()
        .prefix("opsdeck-etcd-")
        .tempdir()
        .expect("tempdir");
    let cluster = EtcdCluster::start(dir.path(), n).expect("etcd starts (Debian etcd-server)");
    TestEtcd { cluster, _dir: dir }
}

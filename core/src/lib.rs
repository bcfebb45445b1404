//! opsdeck's core: everything both front ends (the console and the headless commands) drive,
//! with no terminal crate in it — the compiler refuses a core → UI import.
//!
//! - [`inventory`]: the topology file, `ssh -G` resolution, selectors.
//! - [`transport`]: one SSH session per host, Docker, local processes, the one HTTP client.
//! - [`clients`]: MySQL and Redis, directly or through a tunnel.
//! - [`probes`]: health: plan, scheduler, collection, checks, history, live topology.
//! - [`runbook`]: runbooks, the pure engine, the run driver, suggestions from health.
//! - [`team`]: team mode over etcd.

pub mod clients;
pub mod config;
pub mod identity;
pub mod inventory;
pub mod logging;
pub mod private_fs;
pub mod probes;
pub mod runbook;
pub mod secret;
pub mod team;
pub mod transport;

//! Live health: what to measure per service, typed samples, thresholds, checks, history and
//! the scheduler that runs probes through [`crate::transport::Connections`].

pub mod check;
pub mod collect;
pub mod driver;
pub mod haproxy;
pub mod history;
pub mod model;
pub mod parse;
pub mod plan;
pub mod scheduler;
pub mod state;
pub mod sweep;
pub mod thresholds;
pub mod top;
pub mod topology;

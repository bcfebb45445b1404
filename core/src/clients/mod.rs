//! Protocol clients for the services opsdeck watches and repairs: MySQL/MariaDB and Redis
//! (with Sentinel), reached directly or through an SSH tunnel (see
//! [`crate::transport::Connections::service_addr`]).

pub mod mysql;
pub mod read_only;
pub mod redis;

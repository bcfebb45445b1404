//! The lab: a local stack of real servers on loopback (sshd, nginx, php-fpm, `MariaDB`, Redis and
//! Sentinel, a queue worker, Docker containers), and the drills that break it.
//!
//! The server launchers here are also what the integration tests use to start real servers.

pub mod account;
pub mod cli;
pub mod docker;
pub mod drill;
pub mod etcd;
pub mod invfile;
pub mod layout;
pub mod mariadb;
pub mod packages;
pub mod process;
pub mod redis;
pub mod scores;
pub mod service;
pub mod sshd;
pub mod stack;
pub mod web;
pub mod wire;

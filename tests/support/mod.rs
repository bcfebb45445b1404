#![allow(dead_code)]

pub mod console;
pub mod docker;
pub mod etcd;
pub mod mariadb;
pub mod redis;
pub mod sshd;
pub mod tls;

#![allow(dead_code)]

pub mod docker;
pub mod sshd;

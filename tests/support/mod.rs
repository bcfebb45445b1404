#![allow(dead_code)]
pub mod sshd;

#![allow(dead_code)]

pub mod mariadb;
pub mod redis;

//! opsdeck: a terminal operations console for classic web stacks.
//!
//! One core, two front ends: the console (`tui`, `ui`) and the headless commands (`headless`)
//! drive the same inventory, transports, probes and runbook engine, which live in the
//! `opsdeck-core` crate (`core/`) and are re-exported here under their own names.

pub use opsdeck_core::{
    clients, config, identity, inventory, logging, private_fs, probes, runbook, secret, team,
    transport,
};

pub mod app;
pub mod cli;
pub mod complete;
pub mod headless;
pub mod hygiene;
pub mod lab;
pub mod tui;
pub mod ui;

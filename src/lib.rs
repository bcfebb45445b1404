//! opsdeck: a terminal operations console for classic web stacks.
//!
//! One core, two front ends: the console (`tui`, `ui`) and the headless commands (`headless`)
//! drive the same inventory, transports, probes and runbook engine.

pub mod app;
pub mod cli;
pub mod clients;
pub mod complete;
pub mod config;
pub mod headless;
pub mod hygiene;
pub mod identity;
pub mod inventory;
pub mod lab;
pub mod logging;
pub mod private_fs;
pub mod probes;
pub mod runbook;
pub mod secret;
pub mod team;
pub mod transport;
pub mod tui;
pub mod ui;

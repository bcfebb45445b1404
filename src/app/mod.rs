//! The console's state, events and update: pure, no terminal, no network.

pub mod keymap;

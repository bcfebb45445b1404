//! The console's state, events and update: pure, no terminal, no network.

pub mod browser;
pub mod feed;
pub mod keymap;
pub mod layout;
pub mod run;
pub mod stack;
pub mod state;

pub use state::{App, Command, Event, TeamView, View, update};

//! Views and widgets: pure drawing from a state snapshot. No I/O, no locks, no awaits.

pub mod theme;

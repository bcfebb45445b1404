//! Redis and Sentinel client (redis crate). Placeholder until the clients work lands.

//! The lab's drills, by name: a runbook's `drill = "..."` must name one of them (the lab
//! itself, which injects and checks them, lives in the `opsdeck` crate: `lab::drill`).

/// Every drill: name and what it does.
pub const DRILLS: &[(&str, &str)] = &[
    (
        "connection-exhaustion",
        "fill db1's max_connections with idle sleeper connections (app user)",
    ),
    ("redis-down", "kill the Redis master on cache1"),
    (
        "disk-full",
        "fill app1's small disk past 95 % with a 10-day-old rotated log under its logs dir",
    ),
    ("primary-down", "stop the MariaDB primary on db1"),
    (
        "sentinel-failover",
        "force SENTINEL FAILOVER mymaster: cache2 becomes the master",
    ),
    (
        "high-cpu",
        "queue two runaway report jobs: both queue workers on worker1 burn a CPU",
    ),
    (
        "slow-api",
        "degrade php-fpm on app1 and app2: 400 ms more per request until php-fpm restarts",
    ),
    (
        "queue-backlog",
        "stop the queue worker on worker1 and push 1500 jobs",
    ),
    (
        "bad-release",
        "switch the load balancer to a broken green release: every request through lb fails (500)",
    ),
    (
        "cache-full",
        "a cache warm-up fills Redis's page cache (db 2) up to maxmemory: writes are refused",
    ),
    (
        "haproxy-maint",
        "leave app2 in maintenance on HAProxy (lb2), as a deploy that forgot to enable it would",
    ),
];

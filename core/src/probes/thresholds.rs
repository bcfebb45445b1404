//! Thresholds: when a measured value turns a check warning or critical.
//!
//! Defaults come from the stack's runbooks and monitoring notes (CPU above 80 %, memory above
//! 90 %, disk above 85 % / 95 %, API p95 above 200 ms, connections above 80 % / 95 % of max,
//! queue backlog above 1000, ...). An inventory overrides them in `[defaults.thresholds]`, `[tiers.NAME.thresholds]`
//! and `[hosts.NAME.thresholds]`, the most specific winning, key by key:
//!
//! ```toml
//! [tiers.db.thresholds]
//! disk_warning = 80
//! replication_lag_critical_s = 30
//! ```
//!
//! Every value is a number; a value strictly above the threshold triggers it. Unknown keys,
//! non-numbers, percentages outside 0..=100 and a warning above its critical are errors.

use std::collections::BTreeMap;
use std::fmt;

use crate::inventory::{Host, Inventory};

/// Resolved thresholds for one host.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub cpu_warning: f64,
    pub cpu_critical: f64,
    pub memory_warning: f64,
    pub memory_critical: f64,
    pub swap_warning: f64,
    pub swap_critical: f64,
    pub disk_warning: f64,
    pub disk_critical: f64,
    pub inodes_warning: f64,
    pub inodes_critical: f64,
    pub http_p95_warning_ms: f64,
    pub http_p95_critical_ms: f64,
    pub mysql_connections_warning: f64,
    pub mysql_connections_critical: f64,
    pub replication_lag_warning_s: f64,
    pub replication_lag_critical_s: f64,
    pub queue_warning: f64,
    pub queue_critical: f64,
    pub redis_memory_warning: f64,
    pub redis_memory_critical: f64,
    pub redis_clients_warning: f64,
    pub redis_clients_critical: f64,
    pub redis_ping_warning_ms: f64,
    pub redis_ping_critical_ms: f64,
    pub php_fpm_listen_queue_warning: f64,
    pub php_fpm_listen_queue_critical: f64,
    pub docker_memory_warning: f64,
    pub docker_memory_critical: f64,
    pub docker_restarts_warning: f64,
    /// A sample older than this many probe intervals is shown as unknown.
    pub stale_intervals: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            // Seed 001 "Monitoring": CPU alert > 80 %, memory > 90 %, disk > 85 %;
            // seed 002 "Disk Space Critical": > 95 %.
            cpu_warning: 80.0,
            cpu_critical: 95.0,
            memory_warning: 90.0,
            memory_critical: 95.0,
            swap_warning: 80.0,
            swap_critical: 95.0,
            disk_warning: 85.0,
            disk_critical: 95.0,
            inodes_warning: 85.0,
            inodes_critical: 95.0,
            // Seed 002 "API Response Time Degradation": p95 > 200 ms (normal < 100 ms).
            http_p95_warning_ms: 200.0,
            http_p95_critical_ms: 1000.0,
            mysql_connections_warning: 80.0,
            mysql_connections_critical: 95.0,
            replication_lag_warning_s: 10.0,
            replication_lag_critical_s: 60.0,
            // Seed 001 `/health`: queue size < 1000 is healthy, otherwise "backlog".
            queue_warning: 1000.0,
            queue_critical: 10000.0,
            redis_memory_warning: 90.0,
            redis_memory_critical: 98.0,
            redis_clients_warning: 80.0,
            redis_clients_critical: 95.0,
            redis_ping_warning_ms: 100.0,
            redis_ping_critical_ms: 1000.0,
            php_fpm_listen_queue_warning: 0.0,
            php_fpm_listen_queue_critical: 20.0,
            docker_memory_warning: 90.0,
            docker_memory_critical: 95.0,
            docker_restarts_warning: 3.0,
            stale_intervals: 3.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Percent,
    Millis,
    Seconds,
    Count,
}

impl Unit {
    fn describe(self) -> &'static str {
        match self {
            Unit::Percent => "a percentage from 0 to 100",
            Unit::Millis => "milliseconds, a number >= 0",
            Unit::Seconds => "seconds, a number >= 0",
            Unit::Count => "a count, a number >= 0",
        }
    }
}

struct KeyDef {
    key: &'static str,
    unit: Unit,
    field: fn(&mut Thresholds) -> &mut f64,
}

macro_rules! keys {
    ($($name:ident : $unit:ident),* $(,)?) => {
        const KEYS: &[KeyDef] = &[
            $(KeyDef { key: stringify!($name), unit: Unit::$unit, field: |t| &mut t.$name }),*
        ];
    };
}

keys! {
    cpu_warning: Percent, cpu_critical: Percent,
    memory_warning: Percent, memory_critical: Percent,
    swap_warning: Percent, swap_critical: Percent,
    disk_warning: Percent, disk_critical: Percent,
    inodes_warning: Percent, inodes_critical: Percent,
    http_p95_warning_ms: Millis, http_p95_critical_ms: Millis,
    mysql_connections_warning: Percent, mysql_connections_critical: Percent,
    replication_lag_warning_s: Seconds, replication_lag_critical_s: Seconds,
    queue_warning: Count, queue_critical: Count,
    redis_memory_warning: Percent, redis_memory_critical: Percent,
    redis_clients_warning: Percent, redis_clients_critical: Percent,
    redis_ping_warning_ms: Millis, redis_ping_critical_ms: Millis,
    php_fpm_listen_queue_warning: Count, php_fpm_listen_queue_critical: Count,
    docker_memory_warning: Percent, docker_memory_critical: Percent,
    docker_restarts_warning: Count,
    stale_intervals: Count,
}

/// Every key an inventory may set, for help texts and the console.
pub fn known_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|k| k.key)
}

/// One wrong threshold setting: where, which key, what is wrong and what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdError {
    /// `[defaults.thresholds]`, `[tiers.db.thresholds]`, `[hosts.db-1.thresholds]`.
    pub scope: String,
    pub key: String,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for ThresholdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}\n  hint: {}",
            self.scope, self.key, self.message, self.hint
        )
    }
}

/// All threshold errors of an inventory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ThresholdErrors(pub Vec<ThresholdError>);

impl fmt::Display for ThresholdErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

fn closest_key(key: &str) -> Option<&'static str> {
    // The known key sharing the longest prefix, if it shares a meaningful one.
    KEYS.iter()
        .map(|k| {
            let common = k
                .key
                .chars()
                .zip(key.chars())
                .take_while(|(a, b)| a == b)
                .count();
            (common, k.key)
        })
        .filter(|(c, _)| *c >= 3)
        .max_by_key(|(c, _)| *c)
        .map(|(_, k)| k)
}

/// Applies one table of overrides onto `t`, collecting errors.
fn apply(t: &mut Thresholds, table: &toml::Table, scope: &str, errors: &mut Vec<ThresholdError>) {
    for (key, value) in table {
        let Some(def) = KEYS.iter().find(|k| k.key == key) else {
            let hint = match closest_key(key) {
                Some(k) => format!("did you mean `{k}`? known keys: {}", key_list()),
                None => format!("known keys: {}", key_list()),
            };
            errors.push(ThresholdError {
                scope: scope.to_owned(),
                key: key.clone(),
                message: "unknown threshold".to_owned(),
                hint,
            });
            continue;
        };
        let number = match value {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            other => {
                errors.push(ThresholdError {
                    scope: scope.to_owned(),
                    key: key.clone(),
                    message: format!("expected a number, found {}", other.type_str()),
                    hint: format!("write e.g. `{key} = 90` ({})", def.unit.describe()),
                });
                continue;
            }
        };
        let valid = number.is_finite()
            && number >= 0.0
            && (def.unit != Unit::Percent || number <= 100.0)
            && (def.key != "stale_intervals" || number >= 1.0);
        if !valid {
            errors.push(ThresholdError {
                scope: scope.to_owned(),
                key: key.clone(),
                message: format!("{number} is out of range"),
                hint: if def.key == "stale_intervals" {
                    "write a number of probe intervals >= 1, e.g. `stale_intervals = 3`".to_owned()
                } else {
                    format!("write {}", def.unit.describe())
                },
            });
            continue;
        }
        *(def.field)(t) = number;
    }
}

fn key_list() -> String {
    known_keys().collect::<Vec<_>>().join(", ")
}

/// Checks every `*_warning` is not above its `*_critical` after merging.
fn check_order(t: &mut Thresholds, scope: &str, errors: &mut Vec<ThresholdError>) {
    for w in KEYS.iter().filter(|k| k.key.contains("_warning")) {
        let crit_key = w.key.replace("_warning", "_critical");
        let Some(c) = KEYS.iter().find(|k| k.key == crit_key) else {
            continue;
        };
        let (wv, cv) = (*(w.field)(t), *(c.field)(t));
        if wv > cv {
            errors.push(ThresholdError {
                scope: scope.to_owned(),
                key: w.key.to_owned(),
                message: format!("{wv} is above {crit_key} = {cv}"),
                hint: format!(
                    "a warning must not exceed its critical; lower {} or raise {crit_key}",
                    w.key
                ),
            });
        }
    }
}

/// The thresholds of one host: defaults, then the inventory's, the tier's, the host's.
pub fn for_host(inv: &Inventory, host: &Host) -> Result<Thresholds, ThresholdErrors> {
    let mut t = Thresholds::default();
    let mut errors = Vec::new();
    if let Some(table) = &inv.thresholds {
        apply(&mut t, table, "[defaults.thresholds]", &mut errors);
    }
    if let Some(table) = inv
        .tier(&host.tier)
        .and_then(|tier| tier.thresholds.as_ref())
    {
        apply(
            &mut t,
            table,
            &format!("[tiers.{}.thresholds]", host.tier),
            &mut errors,
        );
    }
    if let Some(table) = &host.thresholds {
        apply(
            &mut t,
            table,
            &format!("[hosts.{}.thresholds]", host.name),
            &mut errors,
        );
    }
    check_order(
        &mut t,
        &format!(
            "host {:?} (after merging defaults, tier and host)",
            host.name
        ),
        &mut errors,
    );
    if errors.is_empty() {
        Ok(t)
    } else {
        Err(ThresholdErrors(errors))
    }
}

/// Resolves every host's thresholds, or every error in the inventory (each reported once).
pub fn resolve(inv: &Inventory) -> Result<BTreeMap<String, Thresholds>, ThresholdErrors> {
    let mut out = BTreeMap::new();
    let mut errors: Vec<ThresholdError> = Vec::new();
    // Tables without hosts are still checked.
    let mut scratch = Thresholds::default();
    for tier in &inv.tiers {
        if let Some(table) = &tier.thresholds {
            apply(
                &mut scratch,
                table,
                &format!("[tiers.{}.thresholds]", tier.name),
                &mut errors,
            );
        }
    }
    for host in &inv.hosts {
        match for_host(inv, host) {
            Ok(t) => {
                out.insert(host.name.clone(), t);
            }
            Err(ThresholdErrors(es)) => {
                for e in es {
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ThresholdErrors(errors))
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // values compared are set exactly from integers
mod tests {
    use super::*;

    fn inv(text: &str) -> Inventory {
        crate::inventory::load_str(text, std::path::Path::new("test.toml"))
            .expect("inventory loads")
    }

    const BASE: &str = r#"
[defaults.thresholds]
cpu_warning = 70

[tiers.db.thresholds]
disk_warning = 80
disk_critical = 90.5

[tiers.app]

[hosts.db-1]
tier = "db"
local = {}
thresholds = { disk_critical = 99 }

[hosts.app-1]
tier = "app"
local = {}
"#;

    #[test]
    fn defaults_come_from_the_seeds() {
        let t = Thresholds::default();
        assert_eq!(t.cpu_warning, 80.0);
        assert_eq!(t.memory_warning, 90.0);
        assert_eq!((t.disk_warning, t.disk_critical), (85.0, 95.0));
        assert_eq!(t.http_p95_warning_ms, 200.0);
        assert_eq!(
            (t.mysql_connections_warning, t.mysql_connections_critical),
            (80.0, 95.0)
        );
        assert_eq!(t.queue_warning, 1000.0);
    }

    #[test]
    fn most_specific_scope_wins_key_by_key() {
        let inv = inv(BASE);
        let all = resolve(&inv).expect("valid");
        let db = &all["db-1"];
        assert_eq!(db.cpu_warning, 70.0, "from [defaults.thresholds]");
        assert_eq!(db.disk_warning, 80.0, "from the tier");
        assert_eq!(db.disk_critical, 99.0, "from the host");
        assert_eq!(db.memory_warning, 90.0, "built-in default");
        let app = &all["app-1"];
        assert_eq!(app.cpu_warning, 70.0);
        assert_eq!(app.disk_warning, 85.0, "the db tier does not leak into app");
    }

    #[test]
    fn unknown_key_is_an_error_with_a_suggestion() {
        let inv = inv(&BASE.replace("cpu_warning = 70", "cpu_warn = 70"));
        let e = resolve(&inv).expect_err("unknown key");
        let text = e.to_string();
        assert!(
            text.contains("[defaults.thresholds] cpu_warn: unknown threshold"),
            "{text}"
        );
        assert!(text.contains("did you mean `cpu_warning`?"), "{text}");
        // Reported once although two hosts inherit it.
        assert_eq!(e.0.len(), 1, "{text}");
    }

    #[test]
    fn wrong_type_and_range_name_the_key_and_what_to_write() {
        let inv = inv(&BASE.replace(
            "cpu_warning = 70",
            "cpu_warning = \"70%\"\nmemory_critical = 120",
        ));
        let text = resolve(&inv).expect_err("invalid").to_string();
        assert!(
            text.contains("cpu_warning: expected a number, found string"),
            "{text}"
        );
        assert!(text.contains("write e.g. `cpu_warning = 90`"), "{text}");
        assert!(
            text.contains("memory_critical: 120 is out of range"),
            "{text}"
        );
        assert!(text.contains("a percentage from 0 to 100"), "{text}");
    }

    #[test]
    fn warning_above_critical_after_merge_is_an_error() {
        let inv = inv(&BASE.replace("disk_critical = 99", "disk_critical = 75"));
        let text = resolve(&inv).expect_err("order").to_string();
        assert!(text.contains("host \"db-1\""), "{text}");
        assert!(
            text.contains("disk_warning: 80 is above disk_critical = 75"),
            "{text}"
        );
    }

    #[test]
    fn tier_without_hosts_is_still_checked() {
        let inv = inv(&format!("{BASE}\n[tiers.empty.thresholds]\nbogus = 1\n"));
        let text = resolve(&inv).expect_err("unknown").to_string();
        assert!(text.contains("[tiers.empty.thresholds] bogus"), "{text}");
    }
}

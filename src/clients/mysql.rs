//! MySQL/MariaDB client for probes and runbook steps (`mysql_async`).
//!
//! Built for an ops tool, not an application: a pool of a single connection, TCP only
//! (`prefer_socket` off, so a loopback address never silently switches to the server's socket),
//! and every network wait bounded by the caller's timeout, since `mysql_async` has no connect
//! timeout of its own.
//!
//! Masking happens here, at the client boundary: every text this module hands out (error
//! messages, status and variable values, processlist rows, query results) has passed through
//! [`crate::secret::mask`], so callers can show, log or journal it as is. A server that echoes a
//! password back (`SELECT 'pw'`, a `CREATE USER ... IDENTIFIED BY` in the processlist) shows
//! `********` instead.
//!
//! Server error 1040 (`Too many connections`) is its own variant: a full server is a health
//! fact to report, not a reason for a probe to crash.

#![allow(
    clippy::doc_markdown,
    reason = "product names (MySQL, MariaDB) are prose here, not code"
)]

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, Value};
use serde::Serialize;

use crate::inventory::{Host, MysqlService, Via};
use crate::secret::{Secret, mask};
use crate::transport::Connections;

/// Idle pooled connections are closed after this long.
const IDLE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    /// The server refused the connection because `max_connections` is reached (error 1040).
    #[error(
        "{target} refused the connection: {message} (max_connections reached; look for piled-up \
         or sleeping connections in the processlist)"
    )]
    TooManyConnections { target: String, message: String },
    #[error("{target} denied access: {message} (check the user, its grants and the password file)")]
    AccessDenied { target: String, message: String },
    #[error("{what} on {target} timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        target: String,
        what: String,
        after: Duration,
    },
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("{target} answered with error {code}: {message}")]
    Server {
        target: String,
        code: u16,
        message: String,
    },
    /// The connection broke or the reply could not be read.
    #[error("connection to {target} failed: {reason}")]
    Connection { target: String, reason: String },
    #[error("{target}: {reason}")]
    Invalid { target: String, reason: String },
}

impl MysqlError {
    /// The MySQL error code for server errors (including 1040 and access denied).
    pub fn code(&self) -> Option<u16> {
        match self {
            MysqlError::TooManyConnections { .. } => Some(1040),
            MysqlError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Classifies a driver error. Every text is masked on the way in, so neither `Display` nor
    /// `Debug` of the result can show a secret.
    fn from_driver(target: &str, connecting: bool, e: mysql_async::Error) -> MysqlError {
        let target = target.to_owned();
        match e {
            mysql_async::Error::Server(s) => {
                let message = mask(&s.message).into_owned();
                match s.code {
                    1040 => MysqlError::TooManyConnections { target, message },
                    1044 | 1045 | 1698 => MysqlError::AccessDenied { target, message },
                    code => MysqlError::Server {
                        target,
                        code,
                        message,
                    },
                }
            }
            other => {
                let reason = mask(&other.to_string()).into_owned();
                if connecting {
                    MysqlError::Connect { target, reason }
                } else {
                    MysqlError::Connection { target, reason }
                }
            }
        }
    }
}

/// One row of `SHOW FULL PROCESSLIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    pub id: u64,
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    pub command: String,
    /// Seconds in the current state.
    pub time: u64,
    pub state: Option<String>,
    /// The statement running, masked.
    pub info: Option<String>,
}

/// A replica's view of its replication (`SHOW REPLICA STATUS` / `SHOW SLAVE STATUS`), read by
/// column name with both the MySQL 8 (`Source`/`Replica`) and the MariaDB and older
/// (`Master`/`Slave`) spellings. Multi-source setups report the default connection only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicationStatus {
    /// The IO thread runs (`Yes`); `Connecting` counts as not running.
    pub io_running: bool,
    pub sql_running: bool,
    /// The raw IO thread state: `Yes`, `No` or `Connecting`.
    pub io_state: String,
    pub sql_state: String,
    /// `None` when the server does not know (a thread stopped).
    pub seconds_behind: Option<u64>,
    pub source_host: String,
    pub source_port: Option<u16>,
    pub last_io_errno: Option<u32>,
    pub last_io_error: String,
    pub last_sql_errno: Option<u32>,
    pub last_sql_error: String,
    /// MariaDB `Using_Gtid` (`No`, `Slave_Pos`, `Current_Pos`); MySQL `Auto_Position`.
    pub using_gtid: Option<String>,
    /// MariaDB `Gtid_IO_Pos`; MySQL `Retrieved_Gtid_Set`.
    pub gtid_io_pos: Option<String>,
    /// MySQL `Executed_Gtid_Set` (MariaDB keeps this in `@@gtid_slave_pos`).
    pub executed_gtid_set: Option<String>,
}

/// A result set for runbook SQL steps: column names and text values (`None` = SQL NULL), all
/// masked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows changed, for statements that change data.
    pub affected_rows: u64,
}

impl QueryResult {
    /// A plain text table (tab-separated, header first), for step output.
    pub fn to_text(&self) -> String {
        let mut out = self.columns.join("\t");
        for row in &self.rows {
            out.push('\n');
            let cells: Vec<&str> = row.iter().map(|c| c.as_deref().unwrap_or("NULL")).collect();
            out.push_str(&cells.join("\t"));
        }
        out
    }
}

/// A pooled connection (one, redialled when it breaks) to one MySQL/MariaDB server.
pub struct MysqlClient {
    pool: Pool,
    target: String,
    timeout: Duration,
}

/// Shows where it points, never the options (they hold the password).
impl fmt::Debug for MysqlClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlClient")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MysqlClient {
    /// Connects to `addr` (TCP) and checks the login, waiting at most `timeout` for the
    /// connection; later calls wait at most `timeout` for each reply.
    pub async fn connect(
        addr: SocketAddr,
        user: &str,
        password: Option<&Secret>,
        database: Option<&str>,
        timeout: Duration,
    ) -> Result<MysqlClient, MysqlError> {
        let target = format!("mysql {user}@{addr}");
        Self::connect_labelled(target, addr, user, password, database, timeout).await
    }

    /// Connects to a service from the inventory, directly or through the host's SSH connection
    /// (`via = "ssh"`: a local forward from [`Connections::service_addr`]).
    pub async fn connect_service(
        conns: &Connections,
        host: &Host,
        svc: &MysqlService,
        timeout: Duration,
    ) -> Result<MysqlClient, MysqlError> {
        let mut target = format!(
            "{} mysql {}@{}:{}",
            host.name, svc.user, svc.address, svc.port
        );
        if svc.via == Via::Ssh {
            target.push_str(" (via ssh)");
        }
        let addr = tokio::time::timeout(
            timeout,
            conns.service_addr(host, &svc.address, svc.port, svc.via),
        )
        .await
        .map_err(|_| MysqlError::Timeout {
            target: target.clone(),
            what: "reaching the service".to_owned(),
            after: timeout,
        })?
        .map_err(|e| MysqlError::Connect {
            target: target.clone(),
            reason: e.masked(),
        })?;
        let password = svc.password.as_ref().map(|p| &p.value);
        Self::connect_labelled(
            target,
            addr,
            &svc.user,
            password,
            svc.database.as_deref(),
            timeout,
        )
        .await
    }

    async fn connect_labelled(
        target: String,
        addr: SocketAddr,
        user: &str,
        password: Option<&Secret>,
        database: Option<&str>,
        timeout: Duration,
    ) -> Result<MysqlClient, MysqlError> {
        // One connection: the pool hands a returned connection back through a background
        // recycler, so with room for two, back-to-back calls would often dial a second
        // connection. On a full server only one (the reserved admin slot) may be available,
        // and an ops tool should not add load. Concurrent calls on one client queue.
        let constraints = PoolConstraints::new(0, 1).ok_or_else(|| MysqlError::Invalid {
            target: target.clone(),
            reason: "invalid pool constraints".to_owned(),
        })?;
        let pool_opts = PoolOpts::new()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(IDLE_TTL)
            // Nothing here changes session state worth resetting; skip the extra round trip.
            .with_reset_connection(false);
        let opts = OptsBuilder::default()
            .ip_or_hostname(addr.ip().to_string())
            .tcp_port(addr.port())
            .user(Some(user))
            .pass(password.map(Secret::expose))
            .db_name(database)
            .prefer_socket(false)
            .stmt_cache_size(0)
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .pool_opts(pool_opts);
        let client = MysqlClient {
            pool: Pool::new(opts),
            target,
            timeout,
        };
        // Dial now so that a wrong password or a full server is reported by `connect`.
        let conn = client.conn().await?;
        drop(conn);
        Ok(client)
    }

    /// `host:port` and user this client talks to, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A pooled connection, dialled if needed, within the timeout.
    async fn conn(&self) -> Result<Conn, MysqlError> {
        match tokio::time::timeout(self.timeout, self.pool.get_conn()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(MysqlError::from_driver(&self.target, true, e)),
            Err(_) => Err(MysqlError::Timeout {
                target: self.target.clone(),
                what: "connecting".to_owned(),
                after: self.timeout,
            }),
        }
    }

    /// Runs `f` on a pooled connection, bounded by the timeout. A statement cut off by the
    /// timeout keeps running on the server, and the pool reads its result away before it
    /// hands the connection out again: until it ends, later calls on this client wait (and
    /// time out). `kill_query` from another client ends it.
    async fn with_conn<T, F, Fut>(&self, what: &str, f: F) -> Result<T, MysqlError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, mysql_async::Error>>,
    {
        let conn = self.conn().await?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(r) => r.map_err(|e| MysqlError::from_driver(&self.target, false, e)),
            Err(_) => Err(MysqlError::Timeout {
                target: self.target.clone(),
                what: mask(what).into_owned(),
                after: self.timeout,
            }),
        }
    }

    async fn rows(&self, sql: &str) -> Result<Vec<Row>, MysqlError> {
        let sql = sql.to_owned();
        self.with_conn(
            &sql.clone(),
            |mut c| async move { c.query::<Row, _>(sql).await },
        )
        .await
    }

    async fn exec_drop(&self, sql: &str) -> Result<(), MysqlError> {
        let sql = sql.to_owned();
        self.with_conn(&sql.clone(), |mut c| async move { c.query_drop(sql).await })
            .await
    }

    async fn name_value(&self, sql: &str) -> Result<BTreeMap<String, String>, MysqlError> {
        Ok(self
            .rows(sql)
            .await?
            .into_iter()
            .filter_map(|r| {
                let name = cell(&r, 0)?;
                Some((name, cell(&r, 1).unwrap_or_default()))
            })
            .collect())
    }

    /// `SHOW GLOBAL STATUS` as name → value (masked).
    pub async fn global_status(&self) -> Result<BTreeMap<String, String>, MysqlError> {
        self.name_value("SHOW GLOBAL STATUS").await
    }

    /// `SHOW GLOBAL VARIABLES` as name → value (masked).
    pub async fn global_variables(&self) -> Result<BTreeMap<String, String>, MysqlError> {
        self.name_value("SHOW GLOBAL VARIABLES").await
    }

    /// One global variable; `None` if the server has no variable of that name.
    pub async fn variable(&self, name: &str) -> Result<Option<String>, MysqlError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(MysqlError::Invalid {
                target: self.target.clone(),
                reason: format!(
                    "{:?} is not a variable name (letters, digits and _ only)",
                    mask(name)
                ),
            });
        }
        match self.rows(&format!("SELECT @@GLOBAL.{name}")).await {
            Ok(rows) => Ok(rows.first().and_then(|r| cell(r, 0))),
            // 1193: unknown system variable.
            Err(MysqlError::Server { code: 1193, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `SHOW FULL PROCESSLIST`, read by column name.
    pub async fn processlist(&self) -> Result<Vec<Process>, MysqlError> {
        let rows = self.rows("SHOW FULL PROCESSLIST").await?;
        Ok(rows
            .iter()
            .map(|r| {
                let cols = Columns::new(r);
                Process {
                    id: cols.parse(&["Id"]).unwrap_or_default(),
                    user: cols.text(&["User"]).unwrap_or_default(),
                    host: cols.text(&["Host"]).unwrap_or_default(),
                    db: cols.text(&["db"]),
                    command: cols.text(&["Command"]).unwrap_or_default(),
                    time: cols.parse(&["Time"]).unwrap_or_default(),
                    state: cols.text(&["State"]).filter(|s| !s.is_empty()),
                    info: cols.text(&["Info"]),
                }
            })
            .collect())
    }

    /// The connection id of one of this client's pooled connections (the one a call would use
    /// next, as long as nothing else runs concurrently).
    pub async fn connection_id(&self) -> Result<u64, MysqlError> {
        self.with_conn("reading the connection id", |c| async move {
            Ok(u64::from(c.id()))
        })
        .await
    }

    /// This server's replication as a replica; `None` if it is not configured as one.
    pub async fn replication_status(&self) -> Result<Option<ReplicationStatus>, MysqlError> {
        let rows = match self.rows("SHOW REPLICA STATUS").await {
            Ok(rows) => rows,
            // 1064: syntax error (servers older than MySQL 8.0.22 / MariaDB 10.5.1).
            Err(MysqlError::Server { code: 1064, .. }) => self.rows("SHOW SLAVE STATUS").await?,
            Err(e) => return Err(e),
        };
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let c = Columns::new(row);
        let io_state = c
            .text(&["Replica_IO_Running", "Slave_IO_Running"])
            .unwrap_or_default();
        let sql_state = c
            .text(&["Replica_SQL_Running", "Slave_SQL_Running"])
            .unwrap_or_default();
        Ok(Some(ReplicationStatus {
            io_running: io_state.eq_ignore_ascii_case("Yes"),
            sql_running: sql_state.eq_ignore_ascii_case("Yes"),
            io_state,
            sql_state,
            seconds_behind: c.parse(&["Seconds_Behind_Source", "Seconds_Behind_Master"]),
            source_host: c.text(&["Source_Host", "Master_Host"]).unwrap_or_default(),
            source_port: c.parse(&["Source_Port", "Master_Port"]),
            last_io_errno: c.parse(&["Last_IO_Errno"]),
            last_io_error: c.text(&["Last_IO_Error"]).unwrap_or_default(),
            last_sql_errno: c.parse(&["Last_SQL_Errno"]),
            last_sql_error: c.text(&["Last_SQL_Error"]).unwrap_or_default(),
            using_gtid: c.text(&["Using_Gtid", "Auto_Position"]),
            gtid_io_pos: c
                .text(&["Gtid_IO_Pos", "Retrieved_Gtid_Set"])
                .filter(|s| !s.is_empty()),
            executed_gtid_set: c.text(&["Executed_Gtid_Set"]).filter(|s| !s.is_empty()),
        }))
    }

    /// `KILL CONNECTION id`.
    pub async fn kill(&self, id: u64) -> Result<(), MysqlError> {
        self.exec_drop(&format!("KILL CONNECTION {id}")).await
    }

    /// `KILL QUERY id`: stops the statement, keeps the connection (its client sees error 1317).
    pub async fn kill_query(&self, id: u64) -> Result<(), MysqlError> {
        self.exec_drop(&format!("KILL QUERY {id}")).await
    }

    /// `@@GLOBAL.read_only`.
    pub async fn read_only(&self) -> Result<bool, MysqlError> {
        let v = self.variable("read_only").await?.unwrap_or_default();
        Ok(v == "1" || v.eq_ignore_ascii_case("ON"))
    }

    /// `SET GLOBAL read_only` (needs SUPER or READ_ONLY ADMIN).
    pub async fn set_read_only(&self, on: bool) -> Result<(), MysqlError> {
        let v = if on { "ON" } else { "OFF" };
        self.exec_drop(&format!("SET GLOBAL read_only = {v}")).await
    }

    /// Runs one SQL statement and returns its first result set (values masked). For
    /// statements without a result set, `columns` is empty and `affected_rows` is set.
    pub async fn query_table(&self, sql: &str) -> Result<QueryResult, MysqlError> {
        let sql = sql.to_owned();
        let what = format!("query {:?}", mask(&sql));
        self.with_conn(&what, |mut c| async move {
            let mut result = c.query_iter(sql).await?;
            let columns: Vec<String> = result
                .columns_ref()
                .iter()
                .map(|col| mask(&col.name_str()).into_owned())
                .collect();
            let rows: Vec<Row> = result.collect().await?;
            let affected_rows = result.affected_rows();
            // Further result sets (multi-statement text) are read and dropped.
            result.drop_result().await?;
            let rows = rows
                .iter()
                .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
                .collect();
            Ok(QueryResult {
                columns,
                rows,
                affected_rows,
            })
        })
        .await
    }

    /// One statement with its values bound as parameters (a prepared statement: the values
    /// are never part of the SQL text, and several statements cannot be sent at once).
    pub async fn query_params(
        &self,
        sql: &str,
        params: &[String],
    ) -> Result<QueryResult, MysqlError> {
        self.prepared(sql, params, false).await
    }

    /// Like [`MysqlClient::query_params`], inside a read-only transaction that is rolled
    /// back: the server itself refuses a write to a table.
    pub async fn query_read_only(
        &self,
        sql: &str,
        params: &[String],
    ) -> Result<QueryResult, MysqlError> {
        self.prepared(sql, params, true).await
    }

    async fn prepared(
        &self,
        sql: &str,
        params: &[String],
        read_only: bool,
    ) -> Result<QueryResult, MysqlError> {
        let sql = sql.to_owned();
        let what = format!("query {:?}", mask(&sql));
        let values: Vec<mysql_async::Value> = params
            .iter()
            .map(|p| mysql_async::Value::Bytes(p.clone().into_bytes()))
            .collect();
        self.with_conn(&what, |mut c| async move {
            if read_only {
                c.query_drop("START TRANSACTION READ ONLY").await?;
            }
            let r = async {
                let mut result = c
                    .exec_iter(sql, mysql_async::Params::Positional(values))
                    .await?;
                let columns: Vec<String> = result
                    .columns_ref()
                    .iter()
                    .map(|col| mask(&col.name_str()).into_owned())
                    .collect();
                let rows: Vec<Row> = result.collect().await?;
                let affected_rows = result.affected_rows();
                result.drop_result().await?;
                let rows = rows
                    .iter()
                    .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
                    .collect();
                Ok::<_, mysql_async::Error>(QueryResult {
                    columns,
                    rows,
                    affected_rows,
                })
            }
            .await;
            if read_only {
                c.query_drop("ROLLBACK").await?;
            }
            r
        })
        .await
    }

    /// Closes the pool's connections politely.
    pub async fn disconnect(self) -> Result<(), MysqlError> {
        let target = self.target.clone();
        match tokio::time::timeout(self.timeout, self.pool.disconnect()).await {
            Ok(r) => r.map_err(|e| MysqlError::from_driver(&target, false, e)),
            Err(_) => Err(MysqlError::Timeout {
                target,
                what: "disconnecting".to_owned(),
                after: self.timeout,
            }),
        }
    }
}

/// Cells of a row by column name, case-insensitive, first matching spelling wins.
struct Columns<'a> {
    row: &'a Row,
}

impl<'a> Columns<'a> {
    fn new(row: &'a Row) -> Self {
        Columns { row }
    }

    fn index(&self, names: &[&str]) -> Option<usize> {
        let cols = self.row.columns_ref();
        names.iter().find_map(|want| {
            cols.iter()
                .position(|c| c.name_str().eq_ignore_ascii_case(want))
        })
    }

    fn text(&self, names: &[&str]) -> Option<String> {
        cell(self.row, self.index(names)?)
    }

    fn parse<T: std::str::FromStr>(&self, names: &[&str]) -> Option<T> {
        self.text(names)?.trim().parse().ok()
    }
}

/// A cell as masked text; `None` for SQL NULL or a missing column.
fn cell(row: &Row, index: usize) -> Option<String> {
    let text = match row.as_ref(index)? {
        Value::NULL => return None,
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(f) => f.to_string(),
        Value::Date(year, month, day, hour, min, sec, micros) => {
            let date = format!("{year:04}-{month:02}-{day:02} {hour:02}:{min:02}:{sec:02}");
            if *micros == 0 {
                date
            } else {
                format!("{date}.{micros:06}")
            }
        }
        Value::Time(negative, days, hour, min, sec, micros) => {
            let sign = if *negative { "-" } else { "" };
            let hours = u64::from(*days) * 24 + u64::from(*hour);
            let time = format!("{sign}{hours:02}:{min:02}:{sec:02}");
            if *micros == 0 {
                time
            } else {
                format!("{time}.{micros:06}")
            }
        }
    };
    Some(mask(&text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_and_masked() {
        let _pw = Secret::new("unit-canary-Zq81");
        let e = MysqlError::from_driver(
            "mysql app@127.0.0.1:3306",
            true,
            mysql_async::Error::Server(mysql_async::ServerError {
                code: 1040,
                message: "Too many connections".to_owned(),
                state: "08004".to_owned(),
            }),
        );
        assert!(matches!(e, MysqlError::TooManyConnections { .. }));
        assert_eq!(e.code(), Some(1040));
        let text = e.to_string();
        assert!(text.contains("Too many connections") && text.contains("127.0.0.1:3306"));

        let e = MysqlError::from_driver(
            "t",
            false,
            mysql_async::Error::Server(mysql_async::ServerError {
                code: 1064,
                message: "near 'unit-canary-Zq81'".to_owned(),
                state: "42000".to_owned(),
            }),
        );
        assert!(!format!("{e} {e:?}").contains("unit-canary-Zq81"));
    }

    #[test]
    fn query_result_text_is_tab_separated_with_null() {
        let r = QueryResult {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![Some("1".into()), None]],
            affected_rows: 0,
        };
        assert_eq!(r.to_text(), "a\tb\n1\tNULL");
    }
}

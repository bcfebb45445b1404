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
//!
//! Result sets are bounded: at most [`MAX_ROWS`] rows and [`MAX_TEXT_BYTES`] of text are kept
//! per query; the rest is read from the server (so the connection stays usable) and counted,
//! never stored, and the result says how many rows it left out.
//!
//! For runbooks, values never go into SQL text: [`MysqlClient::query_params`] sends them as
//! bound parameters of a prepared statement (binary protocol). Diagnose, check and wait steps
//! and guards use [`MysqlClient::query_read_only`]: an allowlisted statement
//! ([`check_read_only_sql`]), prepared (so exactly one statement runs: the server refuses to
//! prepare `SELECT 1; DROP TABLE t`), inside `START TRANSACTION READ ONLY`, rolled back.
//! `mysql_async` 0.37 always announces `CLIENT_MULTI_STATEMENTS` (and has no public
//! `COM_SET_OPTION`), so the prepared statement is what keeps multi-statements out.

#![allow(
    clippy::doc_markdown,
    reason = "product names (MySQL, MariaDB) are prose here, not code"
)]

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{
    ClientIdentity, Conn, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row, SslOpts,
    TxOpts, Value,
};
use serde::Serialize;

use crate::inventory::{Host, MysqlService, TlsSettings, TlsVerify, Via};
use crate::secret::{Secret, mask};
use crate::transport::Connections;

/// Idle pooled connections are closed after this long.
const IDLE_TTL: Duration = Duration::from_secs(300);

/// Most rows a query result keeps; the rest are counted in [`QueryResult::omitted_rows`].
pub const MAX_ROWS: usize = 10_000;
/// Most text (cells, tab and newline separators) a query result keeps.
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// Server error: the statement cannot be prepared (`ER_UNSUPPORTED_PS`).
const ER_UNSUPPORTED_PS: u16 = 1295;

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
    /// A statement given to [`MysqlClient::query_read_only`] that is not known to be
    /// read-only; nothing was sent.
    #[error(
        "{target}: refused to run {statement} as a read-only statement: {reason} (only one \
         SELECT, SHOW, EXPLAIN or DESCRIBE without INTO or locking clauses may run here)"
    )]
    NotReadOnly {
        target: String,
        statement: String,
        reason: String,
    },
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

/// Why `verify = "ca"` is refused for MySQL.
pub const MYSQL_VERIFY_CA: &str = "tls verify = \"ca\" is not available for MySQL: mysql_async \
    0.37 recognises a name mismatch by an error text rustls 0.23 no longer produces, so it would \
    refuse the server anyway; use verify = \"full\" with server_name = a name the certificate \
    carries";

/// `mysql_async`'s TLS options for `tls`: the CA file (or the system bundle, never the
/// crate's built-in roots), the client identity, the verify mode and the name to check
/// (`tls.server_name`, else `name`: the service's address as the inventory writes it).
fn ssl_opts(tls: &TlsSettings, name: &str) -> Result<SslOpts, String> {
    let roots = match &tls.ca_file {
        Some(ca) => vec![ca.clone().into()],
        None => crate::transport::tls::system_certificates()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|c| c.to_vec().into())
            .collect(),
    };
    let mut opts = SslOpts::default()
        .with_disable_built_in_roots(true)
        .with_root_certs(roots)
        .with_danger_tls_hostname_override(Some(
            tls.server_name.clone().unwrap_or_else(|| name.to_owned()),
        ));
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        opts = opts.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    Ok(match tls.verify {
        TlsVerify::Full => opts,
        TlsVerify::Ca => return Err(MYSQL_VERIFY_CA.to_owned()),
        TlsVerify::None => opts.with_danger_accept_invalid_certs(true),
    })
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
/// masked, and bounded ([`MAX_ROWS`], [`MAX_TEXT_BYTES`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows changed, for statements that change data.
    pub affected_rows: u64,
    /// Rows the server sent beyond the bounds, counted but not kept.
    #[serde(skip_serializing_if = "is_zero")]
    pub omitted_rows: u64,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl QueryResult {
    /// A plain text table (tab-separated, header first), for step output; a last line
    /// `[opsdeck: N more rows omitted]` when the result was cut.
    pub fn to_text(&self) -> String {
        let mut out = self.columns.join("\t");
        for row in &self.rows {
            out.push('\n');
            let cells: Vec<&str> = row.iter().map(|c| c.as_deref().unwrap_or("NULL")).collect();
            out.push_str(&cells.join("\t"));
        }
        if self.omitted_rows > 0 {
            out.push('\n');
            out.push_str(&omitted_mark(self.omitted_rows));
        }
        out
    }
}

/// The line that stands for rows a result left out.
pub fn omitted_mark(rows: u64) -> String {
    format!("[opsdeck: {rows} more rows omitted]")
}

/// Reads the current result set into a bounded [`QueryResult`], counting (not keeping) rows
/// past the bounds, then reads away any further result sets.
async fn collect_bounded<P: mysql_async::prelude::Protocol>(
    mut result: mysql_async::QueryResult<'_, '_, P>,
) -> Result<QueryResult, mysql_async::Error> {
    let columns: Vec<String> = result
        .columns_ref()
        .iter()
        .map(|col| mask(&col.name_str()).into_owned())
        .collect();
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    let mut bytes = columns.iter().map(|c| c.len() + 1).sum::<usize>();
    let mut omitted_rows = 0u64;
    let mut full = false;
    result
        .for_each(|row| {
            if full || rows.len() >= MAX_ROWS {
                full = true;
                omitted_rows += 1;
                return;
            }
            let mut cells: Vec<Option<String>> = (0..row.len()).map(|i| cell(&row, i)).collect();
            let size: usize = cells
                .iter()
                .map(|c| c.as_ref().map_or(4, String::len) + 1)
                .sum();
            if bytes + size > MAX_TEXT_BYTES {
                if !rows.is_empty() {
                    full = true;
                    omitted_rows += 1;
                    return;
                }
                // One row larger than the bound: keep the head of each cell.
                let share = MAX_TEXT_BYTES / cells.len().max(1);
                for c in cells.iter_mut().flatten() {
                    cut_cell(c, share);
                }
                full = true;
            }
            bytes += size;
            rows.push(cells);
        })
        .await?;
    let affected_rows = result.affected_rows();
    // Further result sets (multi-statement text) are read and dropped.
    result.drop_result().await?;
    Ok(QueryResult {
        columns,
        rows,
        affected_rows,
        omitted_rows,
    })
}

/// Cuts a cell to at most `max` bytes (on a character boundary) and marks the cut.
fn cut_cell(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    let _ = write!(text, "[opsdeck: {cut} more bytes omitted]");
}

/// Checks that `sql` is one statement known not to change anything, by the allowlist the
/// runbook validator also uses ([`super::read_only::sql`]). The reason names the first
/// problem.
pub fn check_read_only_sql(sql: &str) -> Result<(), String> {
    super::read_only::sql(sql).map_err(|e| e.reason)
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
        Self::connect_labelled(target, addr, user, password, database, None, timeout).await
    }

    /// [`MysqlClient::connect`] over TLS: the server's certificate is checked as `tls` says,
    /// against `tls.server_name`, else `addr`'s IP address.
    pub async fn connect_tls(
        addr: SocketAddr,
        user: &str,
        password: Option<&Secret>,
        database: Option<&str>,
        tls: &TlsSettings,
        timeout: Duration,
    ) -> Result<MysqlClient, MysqlError> {
        let target = format!("mysql {user}@{addr} (tls)");
        let name = addr.ip().to_string();
        let tls = Some((tls, name.as_str()));
        Self::connect_labelled(target, addr, user, password, database, tls, timeout).await
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
        if svc.tls.is_some() {
            target.push_str(" (tls)");
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
            // The certificate names the server as the inventory does, not the tunnel's end.
            svc.tls.as_ref().map(|t| (t, svc.address.as_str())),
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
        tls: Option<(&TlsSettings, &str)>,
        timeout: Duration,
    ) -> Result<MysqlClient, MysqlError> {
        let ssl = match tls {
            Some((t, name)) => Some(ssl_opts(t, name).map_err(|reason| MysqlError::Connect {
                target: target.clone(),
                reason,
            })?),
            None => None,
        };
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
            .ssl_opts(ssl)
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

    /// Runs one SQL statement and returns its first result set (values masked, bounded). For
    /// statements without a result set, `columns` is empty and `affected_rows` is set.
    pub async fn query_table(&self, sql: &str) -> Result<QueryResult, MysqlError> {
        let sql = sql.to_owned();
        let what = format!("query {:?}", mask(&sql));
        self.with_conn(&what, |mut c| async move {
            let result = c.query_iter(sql).await?;
            collect_bounded(result).await
        })
        .await
    }

    /// Runs one statement with `params` bound to its `?` placeholders (a prepared statement,
    /// binary protocol: values are never part of the SQL text, so no value can change what
    /// the statement does). Values are sent as strings; the server converts them where the
    /// statement needs a number (`KILL ?`, `WHERE id = ?`). Result bounded like
    /// [`Self::query_table`].
    ///
    /// Checked on MariaDB 10.11: `SELECT/UPDATE/DELETE ... WHERE x = ?`, `KILL ?`,
    /// `KILL CONNECTION ?`, `KILL QUERY ?`, `SET GLOBAL read_only = ?` (`ON`/`OFF`),
    /// `SET GLOBAL max_connections = CAST(? AS UNSIGNED)` (a numeric variable refuses a string
    /// value, error 1232), `SHOW ... WHERE Variable_name = ?`, `PURGE BINARY LOGS BEFORE ?`,
    /// `DO SLEEP(?)`, and every SHOW, `STOP SLAVE`, `FLUSH`, `LOCK TABLES` without
    /// placeholders prepare. A placeholder is a syntax error (1064) in `SHOW ... LIKE ?` and
    /// `CHANGE MASTER TO MASTER_HOST = ?`; two statements (`SELECT 1; SELECT 2`) are too.
    pub async fn query_params(
        &self,
        sql: &str,
        params: &[String],
    ) -> Result<QueryResult, MysqlError> {
        let sql = sql.to_owned();
        let params = positional(params);
        let what = format!("statement {:?}", mask(&sql));
        self.with_conn(&what, |mut c| async move {
            let result = c.exec_iter(sql, params).await?;
            collect_bounded(result).await
        })
        .await
    }

    /// Runs a statement that must not change anything, for diagnose, check and wait steps
    /// and guards: it must pass [`check_read_only_sql`] (else [`MysqlError::NotReadOnly`],
    /// nothing sent), and runs prepared, with `params` bound, inside `START TRANSACTION READ
    /// ONLY`, then `ROLLBACK`. The few read-only statements the server cannot prepare
    /// (error 1295) run as text inside the same transaction when they take no parameters:
    /// the check has already ruled out a second statement.
    pub async fn query_read_only(
        &self,
        sql: &str,
        params: &[String],
    ) -> Result<QueryResult, MysqlError> {
        if let Err(reason) = check_read_only_sql(sql) {
            return Err(MysqlError::NotReadOnly {
                target: self.target.clone(),
                statement: format!("{:?}", mask(sql)),
                reason,
            });
        }
        let sql = sql.to_owned();
        let params = positional(params);
        let what = format!("read-only statement {:?}", mask(&sql));
        self.with_conn(&what, |mut c| async move {
            let mut opts = TxOpts::new();
            opts.with_readonly(true);
            let mut tx = c.start_transaction(opts).await?;
            let no_params = matches!(params, Params::Empty);
            let prepared = match tx.exec_iter(sql.as_str(), params).await {
                Ok(result) => collect_bounded(result).await,
                Err(e) => Err(e),
            };
            let result = match prepared {
                Err(mysql_async::Error::Server(e)) if e.code == ER_UNSUPPORTED_PS && no_params => {
                    let result = tx.query_iter(sql).await?;
                    collect_bounded(result).await
                }
                other => other,
            };
            // Rolled back on every path: on error the pool rolls back before reuse.
            tx.rollback().await?;
            result
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

/// Parameters as positional string values (`Params::Empty` for none).
fn positional(params: &[String]) -> Params {
    if params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(
            params
                .iter()
                .map(|p| Value::Bytes(p.as_bytes().to_vec()))
                .collect(),
        )
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
        let mut r = QueryResult {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![Some("1".into()), None]],
            affected_rows: 0,
            omitted_rows: 0,
        };
        assert_eq!(r.to_text(), "a\tb\n1\tNULL");
        r.omitted_rows = 7;
        assert_eq!(r.to_text(), "a\tb\n1\tNULL\n[opsdeck: 7 more rows omitted]");
    }

    #[test]
    fn only_single_read_only_statements_pass_the_check() {
        for ok in [
            "SELECT 1",
            "  select * from t where a = 'x; DROP TABLE t' -- trailing\n",
            "SHOW GLOBAL STATUS LIKE 'Threads%'",
            "SHOW GRANTS FOR 'app'@'%'",
            "/* why */ EXPLAIN SELECT * FROM t",
            "DESCRIBE t",
            "SELECT 1;",
            "SELECT `into` FROM t",
            "SELECT 'it''s', \"a\\\"b\" FROM dual",
        ] {
            assert_eq!(check_read_only_sql(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("SELECT 1; DROP TABLE t", "more than one statement"),
            ("/**/KILL 5", "KILL is not"),
            ("CALL p()", "CALL is not"),
            ("SELECT * FROM t INTO OUTFILE '/tmp/x'", "INTO"),
            ("SELECT 1 INTO @x", "INTO"),
            ("SELECT * FROM t FOR UPDATE", "row locks"),
            ("SELECT * FROM t LOCK IN SHARE MODE", "row locks"),
            ("SELECT GET_LOCK('x', 1)", "GET_LOCK"),
            ("SELECT nextval(s)", "NEXTVAL"),
            ("SELECT load_file ('/etc/shadow')", "LOAD_FILE"),
            ("/*! DROP TABLE t */ SELECT 1", "executable comment"),
            (
                "SELECT /*M!100000 1; DROP TABLE t */ 1",
                "executable comment",
            ),
            ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE"),
            ("UPDATE t SET a = 1", "UPDATE is not"),
            ("  ", "empty"),
            ("SELECT 'unterminated", "not closed"),
            ("(SELECT 1)", "( is not"),
        ] {
            // The reasons are the shared allowlist's (clients::read_only); here: refused.
            let _ = why;
            assert!(check_read_only_sql(bad).is_err(), "{bad}");
        }
    }
}

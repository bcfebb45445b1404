//! Collection: each probe asks [`Connections`] for what it needs (a host's transport, a
//! service socket), measures, and returns an owned [`ProbeResult`]. A [`Runner`] belongs to
//! one target and keeps what carries over between runs (CPU counters, open clients), so the
//! scheduler never shares it between two concurrent runs.

pub mod host;
pub mod http;
pub mod sftp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::model::{
    CpuCounters, DockerSample, HttpSample, MysqlSample, MysqlStatus, NginxSample, Outcome,
    ProbeResult, ProcessSample, QueueSample, RedisSample, ReplicationSample, Sample,
    SentinelSample, UpstreamSample,
};
use super::parse;
use super::plan::{ProbeSpec, What};
use crate::clients::mysql::{MysqlClient, MysqlError};
use crate::clients::redis::{RedisClient, SentinelClient};
use crate::inventory::Via;
use crate::transport::{self, Connections, HostConn};

/// Runs one target's probe, again and again, keeping state between runs.
pub struct Runner {
    pub spec: ProbeSpec,
    conns: Arc<Connections>,
    timeout: Duration,
    cpu_prev: Option<CpuCounters>,
    mysql: Option<MysqlClient>,
    redis: Option<RedisClient>,
    sentinel: Option<SentinelClient>,
}

impl Runner {
    pub fn new(spec: ProbeSpec, conns: Arc<Connections>, timeout: Duration) -> Self {
        Runner {
            spec,
            conns,
            timeout,
            cpu_prev: None,
            mysql: None,
            redis: None,
            sentinel: None,
        }
    }

    /// One run, bounded by the probe timeout. Never fails: a failure is a `Down` outcome.
    pub async fn run(&mut self) -> ProbeResult {
        let started = Instant::now();
        let timeout = self.timeout;
        let outcome = match tokio::time::timeout(timeout, self.collect()).await {
            Ok(o) => o,
            Err(_) => {
                // A hung client may be half-open: start afresh next time.
                self.mysql = None;
                self.redis = None;
                self.sentinel = None;
                Outcome::Down {
                    reason: format!("no answer within {}", humantime::format_duration(timeout)),
                }
            }
        };
        ProbeResult::now(self.spec.key.clone(), started.elapsed(), outcome)
    }

    async fn collect(&mut self) -> Outcome {
        let spec = self.spec.clone();
        let host = &spec.host;
        let r: Result<Sample, String> = match &spec.what {
            What::Host { mounts } => self.host(mounts).await,
            What::Http(def) => {
                match http::get(
                    &self.conns,
                    host,
                    &def.url,
                    def.via,
                    def.tls.as_ref(),
                    self.timeout,
                )
                .await
                {
                    Ok(resp) => {
                        let app = if def.app_health {
                            // A health endpoint that does not answer its JSON is a failure.
                            match parse::app_health(&resp.body) {
                                Ok(a) => Some(a),
                                Err(e) if (200..400).contains(&resp.status) => {
                                    return Outcome::Down {
                                        reason: e.to_string(),
                                    };
                                }
                                Err(_) => None,
                            }
                        } else {
                            None
                        };
                        Ok(Sample::Http(HttpSample {
                            url: def.url.clone(),
                            status: resp.status,
                            latency: resp.latency,
                            app,
                        }))
                    }
                    Err(e) => Err(e),
                }
            }
            What::Nginx(def) => self.nginx(def).await,
            What::PhpFpm(def) => {
                let (via, tls) = transport::http::route(host, &def.status_url);
                match http::get(&self.conns, host, &def.status_url, via, tls, self.timeout).await {
                    Ok(resp) if resp.status == 200 => parse::php_fpm_status(&resp.body)
                        .map(Sample::PhpFpm)
                        .map_err(|e| e.to_string()),
                    Ok(resp) => Err(format!("{} answered HTTP {}", def.status_url, resp.status)),
                    Err(e) => Err(e),
                }
            }
            What::Mysql(svc) => return self.mysql(svc).await,
            What::Redis(svc) => self.redis(host, svc).await,
            What::Sentinel(svc) => self.sentinel(svc).await,
            What::Queue {
                name,
                redis_host,
                service,
            } => {
                if self.redis.is_none() {
                    match RedisClient::connect_service(
                        &self.conns,
                        redis_host,
                        service,
                        self.timeout,
                    )
                    .await
                    {
                        Ok(c) => self.redis = Some(c),
                        Err(e) => {
                            return Outcome::Down {
                                reason: e.to_string(),
                            };
                        }
                    }
                }
                let r = match &self.redis {
                    Some(c) => c.llen(name).await.map_err(|e| e.to_string()),
                    None => Err("no Redis client".to_owned()),
                };
                if r.is_err() {
                    self.redis = None;
                }
                r.map(|length| {
                    Sample::Queue(QueueSample {
                        name: name.clone(),
                        length,
                    })
                })
            }
            What::Process(name) => self.process(name).await,
            What::Docker => self.docker().await,
            What::Haproxy(def) => super::haproxy::collect(&self.conns, host, def, self.timeout)
                .await
                .map(Sample::Haproxy),
            What::Unavailable(reason) => {
                return Outcome::Unsupported {
                    reason: reason.clone(),
                };
            }
        };
        match r {
            Ok(s) => Outcome::Ok(s),
            Err(reason) => Outcome::Down { reason },
        }
    }

    async fn host(&mut self, mounts: &[String]) -> Result<Sample, String> {
        let conn = self.conns.host(&self.spec.host);
        let baseline = self.cpu_prev.is_none();
        let raw = match &*conn {
            HostConn::Local(_) => {
                use host::HostReader as _;
                host::LocalReader.read(mounts, baseline).await?
            }
            // One long-lived SFTP session per host: no remote process per poll.
            HostConn::Ssh(ssh) => {
                use host::HostReader as _;
                let reader = sftp::SftpReader {
                    host: ssh,
                    timeout: self.timeout,
                };
                reader.read(mounts, baseline).await?
            }
            docker @ HostConn::Docker(_) => {
                use host::HostReader as _;
                let reader = host::ExecReader {
                    transport: docker.transport(),
                    timeout: self.timeout,
                };
                reader.read(mounts, baseline).await?
            }
        };
        let mut sample = host::to_sample(&raw, self.cpu_prev.as_ref())?;
        self.cpu_prev = Some(sample.cpu_counters);
        // A busy CPU gets its cause named: one `ps` then, never on a healthy poll.
        let busy = super::thresholds::Thresholds::default().cpu_warning;
        if sample.cpu_percent.is_some_and(|c| c >= busy)
            && let Ok(rows) =
                super::top::top_processes(&self.conns, &self.spec.host, self.timeout).await
            && let Some(r) = rows.iter().find(|r| !r.command.contains("ps -eo pid="))
        {
            sample.top_process = Some(format!(
                "{} (pid {}, {:.0} % cpu)",
                r.command, r.pid, r.cpu_percent
            ));
        }
        Ok(Sample::Host(sample))
    }

    async fn nginx(&mut self, def: &crate::inventory::model::NginxDef) -> Result<Sample, String> {
        let host = &self.spec.host;
        let mut sample = match &def.status_url {
            Some(url) => {
                let (via, tls) = transport::http::route(host, url);
                let resp = http::get(&self.conns, host, url, via, tls, self.timeout).await?;
                if resp.status != 200 {
                    return Err(format!("{url} answered HTTP {}", resp.status));
                }
                parse::nginx_stub_status(&resp.body).map_err(|e| e.to_string())?
            }
            None => NginxSample {
                active: 0,
                accepts: 0,
                handled: 0,
                requests: 0,
                reading: 0,
                writing: 0,
                waiting: 0,
                upstreams: Vec::new(),
            },
        };
        for u in &def.upstreams {
            let Some((addr, port)) = u
                .rsplit_once(':')
                .and_then(|(a, p)| Some((a, p.parse::<u16>().ok()?)))
            else {
                sample.upstreams.push(UpstreamSample {
                    address: u.clone(),
                    up: false,
                    error: Some("not host:port".to_owned()),
                });
                continue;
            };
            let r = async {
                let a = self
                    .conns
                    .service_addr(host, addr, port, Via::Direct)
                    .await
                    .map_err(|e| e.masked())?;
                tokio::net::TcpStream::connect(a)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            .await;
            sample.upstreams.push(UpstreamSample {
                address: u.clone(),
                up: r.is_ok(),
                error: r.err(),
            });
        }
        Ok(Sample::Nginx(sample))
    }

    async fn mysql(&mut self, svc: &crate::inventory::MysqlService) -> Outcome {
        if self.mysql.is_none() {
            match MysqlClient::connect_service(&self.conns, &self.spec.host, svc, self.timeout)
                .await
            {
                Ok(c) => self.mysql = Some(c),
                Err(e) => return mysql_error_outcome(&e),
            }
        }
        let Some(c) = &self.mysql else {
            return Outcome::Down {
                reason: "no MySQL client".to_owned(),
            };
        };
        let started = Instant::now();
        let r = async {
            let st = c.global_status().await?;
            let latency = started.elapsed();
            let max = c.variable("max_connections").await?;
            let read_only = c.read_only().await?;
            let repl = c.replication_status().await?;
            Ok::<_, MysqlError>((st, latency, max, read_only, repl))
        }
        .await;
        match r {
            Ok((st, latency, max, read_only, repl)) => {
                let n = |k: &str| st.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                Outcome::Ok(Sample::Mysql(MysqlSample::Status(MysqlStatus {
                    connections: n("Threads_connected"),
                    max_connections: max.and_then(|v| v.parse().ok()).unwrap_or(0),
                    threads_running: n("Threads_running"),
                    aborted_connects: n("Aborted_connects"),
                    slow_queries: n("Slow_queries"),
                    questions: n("Questions"),
                    uptime_s: n("Uptime"),
                    read_only,
                    replication: repl.map(|r| ReplicationSample {
                        io_running: r.io_running,
                        sql_running: r.sql_running,
                        lag_s: r.seconds_behind,
                        last_error: [r.last_io_error, r.last_sql_error]
                            .into_iter()
                            .find(|e| !e.is_empty()),
                    }),
                    latency,
                })))
            }
            Err(e) => {
                self.mysql = None;
                mysql_error_outcome(&e)
            }
        }
    }

    async fn redis(
        &mut self,
        host: &crate::inventory::Host,
        svc: &crate::inventory::RedisService,
    ) -> Result<Sample, String> {
        if self.redis.is_none() {
            self.redis = Some(
                RedisClient::connect_service(&self.conns, host, svc, self.timeout)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(c) = &self.redis else {
            return Err("no Redis client".to_owned());
        };
        let r = async {
            let ping = c.ping().await?;
            let info = c.info().await?;
            let maxclients = match info.get("maxclients").and_then(|v| v.parse().ok()) {
                Some(m) => m,
                None => c
                    .config_get("maxclients")
                    .await?
                    .get("maxclients")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            };
            Ok::<_, crate::clients::redis::RedisError>((ping, info, maxclients))
        }
        .await;
        match r {
            Ok((ping, info, maxclients)) => {
                let role = info.role().unwrap_or("unknown").to_owned();
                let replica = role == "slave";
                Ok(Sample::Redis(RedisSample {
                    ping,
                    role,
                    connected_clients: info.connected_clients().unwrap_or(0),
                    maxclients,
                    rejected_connections: info.rejected_connections().unwrap_or(0),
                    used_memory: info.used_memory().unwrap_or(0),
                    maxmemory: info.maxmemory().unwrap_or(0),
                    evicted_keys: info.evicted_keys().unwrap_or(0),
                    keyspace_hits: info.keyspace_hits().unwrap_or(0),
                    keyspace_misses: info.keyspace_misses().unwrap_or(0),
                    master_link_status: replica
                        .then(|| info.master_link_status().map(str::to_owned))
                        .flatten(),
                    replica_lag_bytes: if replica {
                        match (info.master_repl_offset(), info.slave_repl_offset()) {
                            (Some(m), Some(s)) => Some(m as i64 - s as i64),
                            _ => None,
                        }
                    } else {
                        None
                    },
                    master_last_io_s: if replica {
                        info.get("master_last_io_seconds_ago")
                            .and_then(|v| v.parse().ok())
                    } else {
                        None
                    },
                }))
            }
            Err(e) => {
                self.redis = None;
                Err(e.to_string())
            }
        }
    }

    async fn sentinel(&mut self, svc: &crate::inventory::RedisService) -> Result<Sample, String> {
        let name = svc
            .master_name
            .clone()
            .unwrap_or_else(|| "mymaster".to_owned());
        if self.sentinel.is_none() {
            self.sentinel = Some(
                SentinelClient::connect_service(&self.conns, &self.spec.host, svc, self.timeout)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some(c) = &self.sentinel else {
            return Err("no Sentinel client".to_owned());
        };
        let r = async {
            let master = c.get_master_addr_by_name(&name).await?;
            let q = c.ckquorum(&name).await?;
            let (replicas, sentinels) = if master.is_some() {
                (
                    c.replicas(&name).await?.len(),
                    c.sentinels(&name).await?.len(),
                )
            } else {
                (0, 0)
            };
            Ok::<_, crate::clients::redis::RedisError>((master, q, replicas, sentinels))
        }
        .await;
        match r {
            Ok((master, q, replicas, sentinels)) => Ok(Sample::Sentinel(SentinelSample {
                master_name: name,
                master_addr: master.map(|(h, p)| format!("{h}:{p}")),
                ckquorum_ok: q.is_ok(),
                ckquorum_message: match q {
                    Ok(m) | Err(m) => m,
                },
                sentinels: u32::try_from(sentinels).unwrap_or(u32::MAX),
                replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
            })),
            Err(e) => {
                self.sentinel = None;
                Err(e.to_string())
            }
        }
    }

    async fn process(&self, name: &str) -> Result<Sample, String> {
        let conn = self.conns.host(&self.spec.host);
        let cmd = process_count_command(name)?;
        let out = transport::run(
            conn.transport(),
            &cmd,
            self.timeout,
            CancellationToken::new(),
        )
        .await
        .map_err(|e| e.masked())?;
        let count: u32 = out.stdout.trim().parse().map_err(|_| {
            format!(
                "unexpected answer from pgrep: {:?} {}",
                out.stdout,
                out.stderr.trim()
            )
        })?;
        Ok(Sample::Process(ProcessSample {
            name: name.to_owned(),
            present: count > 0,
            count,
        }))
    }

    async fn docker(&self) -> Result<Sample, String> {
        let conn = self.conns.host(&self.spec.host);
        let HostConn::Docker(d) = &*conn else {
            return Err("not a docker host".to_owned());
        };
        let st = d.inspect().await.map_err(|e| e.masked())?;
        let stats = if st.running {
            d.stats_once().await.ok()
        } else {
            None
        };
        Ok(Sample::Docker(DockerSample {
            container: st.name,
            state: st.state,
            health: st.health,
            restart_count: st
                .restart_count
                .and_then(|c| u64::try_from(c).ok())
                .unwrap_or(0),
            cpu_percent: stats.as_ref().and_then(|s| s.cpu_percent),
            mem_used_bytes: stats.as_ref().and_then(|s| s.mem_used_bytes),
            mem_limit_bytes: stats.as_ref().and_then(|s| s.mem_limit_bytes),
        }))
    }
}

/// The shell command that prints how many processes are named `name` (php-fpm8.2) or carry it
/// in their command line (`php artisan queue:work`, as supervisor starts workers).
///
/// Both `pgrep`s get the self-excluding pattern: the name must not appear literally anywhere in
/// the command, or the shell running it (and its subshells) would count as the process.
fn process_count_command(name: &str) -> Result<String, String> {
    let pattern = cmdline_pattern(name);
    let pattern = shlex::try_quote(&pattern).map_err(|e| format!("process name {name:?}: {e}"))?;
    Ok(format!(
        "{{ pgrep -x -- {pattern}; pgrep -f -- {pattern}; }} | sort -u | wc -l"
    ))
}

fn mysql_error_outcome(e: &MysqlError) -> Outcome {
    match e {
        MysqlError::TooManyConnections { message, .. } => {
            Outcome::Ok(Sample::Mysql(MysqlSample::TooManyConnections {
                message: message.clone(),
            }))
        }
        other => Outcome::Down {
            reason: other.to_string(),
        },
    }
}

/// An extended regex matching `name` literally in a command line, written so that it does not
/// match the shell command carrying it (`[q]ueue:work` matches `queue:work`, not itself).
fn cmdline_pattern(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == 0 && c.is_ascii_alphanumeric() {
            out.push('[');
            out.push(c);
            out.push(']');
        } else if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod pattern_tests {
    #[test]
    fn cmdline_pattern_is_literal_and_self_excluding() {
        assert_eq!(super::cmdline_pattern("queue:work"), "[q]ueue:work");
        assert_eq!(super::cmdline_pattern("php-fpm8.2"), "[p]hp-fpm8\\.2");
    }

    fn count(name: &str) -> u32 {
        let cmd = super::process_count_command(name).expect("command");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .expect("sh");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a count")
    }

    /// The shell running the probe never counts as the process it looks for: with no such
    /// process the count is 0, with one it is 1.
    #[test]
    fn process_count_does_not_count_itself() {
        let name = format!("opsdeck-probe-test-{}:work", std::process::id());
        assert_eq!(count(&name), 0);
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(": {name}; sleep 30; :"))
            .spawn()
            .expect("spawn");
        let seen = count(&name);
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert_eq!(seen, 1);
        assert_eq!(count(&name), 0);
    }
}

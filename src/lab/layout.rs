//! The lab's fixed shape: which hosts exist, their loopback addresses, which servers each runs,
//! and where every file lives in the lab directory.
//!
//! ```text
//! DIR/.opsdeck-lab         marker: `lab down` removes only a directory that has it
//! DIR/inventory.toml       the inventory `lab up` writes
//! DIR/secrets/             generated passwords (0600), client .cnf files for the mariadb CLI
//! DIR/ssh/                 client key, authorized_keys, known_hosts
//! DIR/run/                 pid files, logs, configs and sockets of every server
//! DIR/hosts/HOST/          each host's small tmpfs (logs/, tmp/)
//! DIR/app/                 the PHP application, the worker and their config
//! DIR/drills/              drill state (pid files of sleepers and burners, flag files)
//! ```
//!
//! The lab runs as root and acts on what this directory holds: it kills the process groups
//! its pid files name, and its inventory names password files. A directory another user
//! could have prepared (the default lives in the world-writable `/var/tmp`) is therefore
//! refused ([`Lab::check_trusted`]): it must be a real directory, owned by this user, writable
//! by no one else. `lab up` creates it 0711 (the lab's login account traverses it to its public
//! key list and the hosts' disks, and can list nothing) and writes its secrets, configs and
//! inventory 0600 in 0700 directories.

use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Errors of the lab commands; each says what failed, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the lab needs programs that are not installed: {programs}\n  install them with: apt-get update && apt-get install -y {packages}"
    )]
    MissingPackages { programs: String, packages: String },
    #[error("{0}")]
    Failed(String),
    #[error("no lab in {dir}: run `opsdeck lab up --dir {dir}` first")]
    NotRunning { dir: String },
    #[error(
        "refusing to use the lab directory {dir}: {why}\n  remove it (after checking what is in \
         it) or choose another with --dir or OPSDECK_LAB_DIR; opsdeck creates it itself, mode 0700"
    )]
    Untrusted { dir: String, why: String },
}

impl LabError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
        let what = what.into();
        move |source| LabError::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, LabError>;

/// The default lab directory when neither `--dir` nor `OPSDECK_LAB_DIR` is given.
pub const DEFAULT_DIR: &str = "/var/tmp/opsdeck-lab";

pub const SENTINEL_MASTER: &str = "mymaster";
pub const SENTINEL_PORT: u16 = 26379;
pub const REDIS_PORT: u16 = 6379;
pub const MYSQL_PORT: u16 = 3306;
pub const HTTP_PORT: u16 = 80;
pub const SSH_PORT: u16 = 22;
/// Small on purpose, so the connection-exhaustion drill can reach it.
pub const MAX_CONNECTIONS: u32 = 30;
pub const DATABASE: &str = "marg";
pub const APP_USER: &str = "app";
pub const MONITOR_USER: &str = "opsdeck";
pub const REPL_USER: &str = "repl";
pub const QUEUE_KEY: &str = "queues:default";
/// Redis memory cap on the cache tier, small so the cache-full drill reaches it; the lab
/// refuses writes past it (`noeviction`), as a Redis holding sessions must.
pub const REDIS_MAXMEMORY: &str = "32mb";
/// Seed 000's Redis databases: sessions, the default cache, the page cache.
pub const SESSIONS_DB: &str = "0";
pub const CACHE_DB: &str = "1";
pub const PAGE_CACHE_DB: &str = "2";
/// How many logged-in users' sessions the lab keeps in the sessions database.
pub const SESSIONS: usize = 40;
/// Size of each host's tmpfs.
pub const DISK_MB: u32 = 24;
/// The Docker-run Redis for sessions, when an engine is available.
pub const SESSIONS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 10, 35);
pub const COMPOSE_PROJECT: &str = "opsdeck-lab";
pub const SESSIONS_CONTAINER: &str = "opsdeck-lab-sessions-1";
pub const SESSIONS_IMAGE: &str = "opsdeck-lab/redis:latest";

/// What a lab host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Lb,
    /// HAProxy, the load balancer of seed 001's phase 3, beside the nginx one.
    Haproxy,
    App,
    DbPrimary,
    DbReplica,
    CacheMaster,
    CacheReplica,
    Worker,
}

#[derive(Debug, Clone, Copy)]
pub struct LabHost {
    pub name: &'static str,
    pub tier: &'static str,
    pub addr: Ipv4Addr,
    pub role: Role,
    /// Runs one of the three Sentinels.
    pub sentinel: bool,
}

impl LabHost {
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.addr)
    }
}

pub const HOSTS: [LabHost; 9] = [
    host("lb", "lb", [127, 0, 10, 1], Role::Lb, false),
    host("lb2", "lb", [127, 0, 10, 2], Role::Haproxy, false),
    host("app1", "app", [127, 0, 10, 11], Role::App, false),
    host("app2", "app", [127, 0, 10, 12], Role::App, false),
    host("db1", "db", [127, 0, 10, 21], Role::DbPrimary, false),
    host("db2", "db", [127, 0, 10, 22], Role::DbReplica, false),
    host("cache1", "cache", [127, 0, 10, 31], Role::CacheMaster, true),
    host(
        "cache2",
        "cache",
        [127, 0, 10, 32],
        Role::CacheReplica,
        true,
    ),
    host("worker1", "worker", [127, 0, 10, 51], Role::Worker, true),
];

const fn host(
    name: &'static str,
    tier: &'static str,
    a: [u8; 4],
    role: Role,
    sentinel: bool,
) -> LabHost {
    LabHost {
        name,
        tier,
        addr: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
        role,
        sentinel,
    }
}

pub fn lab_host(name: &str) -> Option<&'static LabHost> {
    HOSTS.iter().find(|h| h.name == name)
}

fn host_by_role(role: Role) -> &'static LabHost {
    // HOSTS holds every role; the fallback is never taken.
    HOSTS.iter().find(|h| h.role == role).unwrap_or(&HOSTS[0])
}

pub fn primary_db() -> &'static LabHost {
    host_by_role(Role::DbPrimary)
}
pub fn replica_db() -> &'static LabHost {
    host_by_role(Role::DbReplica)
}
pub fn redis_master() -> &'static LabHost {
    host_by_role(Role::CacheMaster)
}
pub fn redis_replica() -> &'static LabHost {
    host_by_role(Role::CacheReplica)
}
pub fn lb() -> &'static LabHost {
    host_by_role(Role::Lb)
}
pub fn haproxy_lb() -> &'static LabHost {
    host_by_role(Role::Haproxy)
}
/// HAProxy's stats page (CSV with `;csv`) and the backend the app servers are in.
pub const HAPROXY_STATS_PORT: u16 = 8404;
pub const HAPROXY_BACKEND: &str = "http_back";
/// The green deployment's port on every app server (blue is on [`HTTP_PORT`]).
pub const GREEN_PORT: u16 = 8080;
/// The deployment colours, blue first (live after `lab up`).
pub const COLORS: [(&str, u16); 2] = [("blue", HTTP_PORT), ("green", GREEN_PORT)];
pub fn app_hosts() -> impl Iterator<Item = &'static LabHost> {
    HOSTS.iter().filter(|h| h.role == Role::App)
}
pub fn sentinel_hosts() -> impl Iterator<Item = &'static LabHost> {
    HOSTS.iter().filter(|h| h.sentinel)
}
pub fn sentinel_addrs() -> Vec<SocketAddr> {
    sentinel_hosts()
        .map(|h| SocketAddr::new(h.ip(), SENTINEL_PORT))
        .collect()
}
pub fn redis_master_addr() -> SocketAddr {
    SocketAddr::new(redis_master().ip(), REDIS_PORT)
}

/// The kinds of server processes the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sshd,
    Nginx,
    PhpFpm,
    Mariadb,
    Redis,
    Sentinel,
    Worker,
    Haproxy,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Sshd => "sshd",
            Kind::Nginx => "nginx",
            Kind::PhpFpm => "php-fpm",
            Kind::Mariadb => "mariadbd",
            Kind::Redis => "redis-server",
            Kind::Sentinel => "redis-sentinel",
            Kind::Worker => "queue:work",
            Kind::Haproxy => "haproxy",
        })
    }
}

/// One server process of the lab, known by its pid file `DIR/run/NAME.pid`.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub host: &'static LabHost,
    pub kind: Kind,
    /// Where it listens (`None` for the worker).
    pub listen: Option<String>,
}

/// Every server process of the lab, in start order.
pub fn components() -> Vec<Component> {
    let mut out = Vec::new();
    let c = |name: String, host: &'static LabHost, kind: Kind, listen: Option<String>| Component {
        name,
        host,
        kind,
        listen,
    };
    for h in &HOSTS {
        out.push(c(
            sshd_name(h.name),
            h,
            Kind::Sshd,
            Some(format!("{}:{SSH_PORT}", h.addr)),
        ));
    }
    for h in &HOSTS {
        match h.role {
            Role::DbPrimary | Role::DbReplica => out.push(c(
                h.name.to_owned(),
                h,
                Kind::Mariadb,
                Some(format!("{}:{MYSQL_PORT}", h.addr)),
            )),
            Role::CacheMaster | Role::CacheReplica => out.push(c(
                redis_name(h.name),
                h,
                Kind::Redis,
                Some(format!("{}:{REDIS_PORT}", h.addr)),
            )),
            Role::App => {
                out.push(c(
                    fpm_name(h.name),
                    h,
                    Kind::PhpFpm,
                    Some(format!("unix:run/{}.sock", fpm_name(h.name))),
                ));
                out.push(c(
                    nginx_name(h.name),
                    h,
                    Kind::Nginx,
                    Some(format!("{}:{HTTP_PORT}", h.addr)),
                ));
            }
            Role::Lb => out.push(c(
                nginx_name(h.name),
                h,
                Kind::Nginx,
                Some(format!("{}:{HTTP_PORT}", h.addr)),
            )),
            Role::Worker => out.push(c(worker_name(h.name), h, Kind::Worker, None)),
            Role::Haproxy => out.push(c(
                haproxy_name(h.name),
                h,
                Kind::Haproxy,
                Some(format!("{}:{HTTP_PORT}", h.addr)),
            )),
        }
    }
    for h in sentinel_hosts() {
        out.push(c(
            sentinel_name(h.name),
            h,
            Kind::Sentinel,
            Some(format!("{}:{SENTINEL_PORT}", h.addr)),
        ));
    }
    out
}

pub fn sshd_name(host: &str) -> String {
    format!("sshd-{host}")
}
pub fn nginx_name(host: &str) -> String {
    format!("nginx-{host}")
}
pub fn fpm_name(host: &str) -> String {
    format!("fpm-{host}")
}
pub fn redis_name(host: &str) -> String {
    format!("redis-{host}")
}
pub fn sentinel_name(host: &str) -> String {
    format!("sentinel-{host}")
}
pub fn haproxy_name(host: &str) -> String {
    format!("haproxy-{host}")
}
pub fn worker_name(host: &str) -> String {
    format!("worker-{host}")
}

/// Paths inside one lab directory.
#[derive(Debug, Clone)]
pub struct Lab {
    pub dir: PathBuf,
}

impl Lab {
    /// `--dir`, else `OPSDECK_LAB_DIR`, else [`DEFAULT_DIR`]; made absolute.
    pub fn new(dir: Option<&Path>) -> Lab {
        let dir = dir.map_or_else(
            || {
                std::env::var_os("OPSDECK_LAB_DIR")
                    .filter(|v| !v.is_empty())
                    .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
            },
            Path::to_path_buf,
        );
        let dir = if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir().unwrap_or_default().join(dir)
        };
        Lab { dir }
    }

    /// Checks that the lab directory, if it exists, can be trusted: a directory (not a
    /// symlink), owned by this user, not writable by group or others. Every lab command calls
    /// it before reading anything from the directory.
    pub fn check_trusted(&self) -> Result<()> {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let meta = match fs::symlink_metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(LabError::Io {
                    what: format!("checking {}", self.dir.display()),
                    source: e,
                });
            }
        };
        let refuse = |why: String| LabError::Untrusted {
            dir: self.dir.display().to_string(),
            why,
        };
        if !meta.is_dir() {
            return Err(refuse("it is not a directory (a symlink?)".to_owned()));
        }
        let me = nix::unistd::getuid().as_raw();
        if meta.uid() != me {
            return Err(refuse(format!(
                "it is owned by uid {}, not by you (uid {me}): another user may have prepared it",
                meta.uid()
            )));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(refuse(format!(
                "other users can write it (mode {mode:o}): someone may have planted files in it"
            )));
        }
        Ok(())
    }

    /// For `lab up`: creates the lab directory (0700, parents too), or checks an existing one
    /// ([`Self::check_trusted`]) and that it is a lab directory or empty.
    pub fn create_or_check(&self) -> Result<()> {
        self.check_trusted()?;
        if self.dir.exists() && !self.exists() {
            let empty = fs::read_dir(&self.dir)
                .map_err(LabError::io(format!("reading {}", self.dir.display())))?
                .next()
                .is_none();
            if !empty {
                return Err(LabError::Untrusted {
                    dir: self.dir.display().to_string(),
                    why: format!(
                        "it holds files but no {} marker: it is not a lab directory",
                        self.marker().display()
                    ),
                });
            }
        }
        crate::private_fs::private_dir(&self.dir)
            .map_err(LabError::io(format!("creating {}", self.dir.display())))
    }

    pub fn marker(&self) -> PathBuf {
        self.dir.join(".opsdeck-lab")
    }
    pub fn exists(&self) -> bool {
        self.marker().is_file()
    }
    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.toml")
    }
    pub fn secrets(&self) -> PathBuf {
        self.dir.join("secrets")
    }
    pub fn ssh(&self) -> PathBuf {
        self.dir.join("ssh")
    }
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn app(&self) -> PathBuf {
        self.dir.join("app")
    }
    pub fn app_config(&self) -> PathBuf {
        self.app().join("config.json")
    }
    /// An app server's environment file (`DB_HOST=...`), on its own disk.
    pub fn app_env(&self, host: &str) -> PathBuf {
        self.disk(host).join("app.env")
    }
    /// The load balancer's live upstream servers (an nginx `include`), and each colour's.
    pub fn lb_upstream(&self) -> PathBuf {
        self.run().join("lb-upstream.conf")
    }
    pub fn lb_upstream_of(&self, color: &str) -> PathBuf {
        self.run().join(format!("lb-upstream.{color}.conf"))
    }
    pub fn drills(&self) -> PathBuf {
        self.dir.join("drills")
    }
    pub fn client_key(&self) -> PathBuf {
        self.ssh().join("id_ed25519")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.ssh().join("known_hosts")
    }
    pub fn authorized_keys(&self) -> PathBuf {
        self.ssh().join("authorized_keys")
    }
    /// The mount point of a host's tmpfs.
    pub fn disk(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host)
    }
    pub fn logs(&self, host: &str) -> PathBuf {
        self.disk(host).join("logs")
    }
    pub fn tmp(&self, host: &str) -> PathBuf {
        self.disk(host).join("tmp")
    }
    pub fn pidfile(&self, name: &str) -> PathBuf {
        self.run().join(format!("{name}.pid"))
    }
    /// HAProxy's runtime API (`stats socket ... level admin`).
    pub fn haproxy_socket(&self, host: &str) -> PathBuf {
        self.run().join(format!("{}.sock", haproxy_name(host)))
    }
    pub fn fpm_socket(&self, host: &str) -> PathBuf {
        self.run().join(format!("{}.sock", fpm_name(host)))
    }
    /// A `[client]` option file for the mariadb CLI (`--defaults-file`), per user.
    pub fn mysql_cnf(&self, user: &str, host: &LabHost) -> PathBuf {
        self.secrets().join(format!("{user}@{}.cnf", host.name))
    }

    /// Reads a secret `DIR/secrets/NAME`, creating it (random, mode 0600) if missing.
    pub fn secret(&self, name: &str) -> Result<String> {
        let path = self.secrets().join(name);
        if let Ok(v) = fs::read_to_string(&path) {
            let v = v.trim().to_owned();
            if !v.is_empty() {
                crate::secret::masker().register(&v);
                return Ok(v);
            }
        }
        let value = random_token()?;
        write_private(&path, &format!("{value}\n"))?;
        crate::secret::masker().register(&value);
        Ok(value)
    }

    /// Reads an existing secret (for drills and status on a running lab).
    pub fn read_secret(&self, name: &str) -> Result<String> {
        let path = self.secrets().join(name);
        let v = fs::read_to_string(&path)
            .map_err(LabError::io(format!("reading {}", path.display())))?;
        let v = v.trim().to_owned();
        crate::secret::masker().register(&v);
        Ok(v)
    }
}

/// Writes a file readable only by its owner (0600, whatever the umask; replaced atomically),
/// creating missing parent directories 0700.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        crate::private_fs::private_dir(parent)
            .map_err(LabError::io(format!("creating {}", parent.display())))?;
    }
    crate::private_fs::write_atomic(path, text.as_bytes())
        .map_err(LabError::io(format!("writing {}", path.display())))
}

/// 32 hex characters from the kernel's random source.
fn random_token() -> Result<String> {
    let mut buf = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(LabError::io("reading /dev/urandom for a lab password"))?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Replaces every `{{KEY}}` in a template.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

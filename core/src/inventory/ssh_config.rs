//! `ssh_config`, read the way `ssh` reads it: by asking the installed OpenSSH client.
//!
//! `ssh -G ALIAS` prints the configuration `ssh ALIAS` would use, with everything OpenSSH
//! evaluates applied: `Include`, `Host` and `Match host/user/exec/...` blocks, first value
//! obtained wins, the `ProxyJump`/`ProxyCommand` exclusivity. No parser of ours can drift from
//! that. Each alias (with the user and port the inventory gives it, which `ssh` would get from
//! its command line) is asked once per process and cached; resolution happens when the
//! inventory is loaded, never on a connection's path.
//!
//! `ssh -G` prints every option, set or not. What the config itself set is told apart from
//! OpenSSH's defaults by comparing with `ssh -G -F /dev/null` (asked once): only values that
//! differ count as ssh_config's, so the inventory's `[defaults.ssh]` fills the rest. A config
//! that spells out OpenSSH's own default (`Port 22`) is therefore indistinguishable from one
//! that says nothing.
//!
//! `ssh -G` leaves the tokens of `IdentityFile`, `CertificateFile`, `IdentityAgent` and
//! `ProxyCommand` unexpanded (`ssh` expands them when it connects): [`Tokens`] expands them the
//! same way.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sha1::Digest as _;

/// How long one `ssh -G` may take (a `Match exec` command runs inside it).
const SSH_G_TIMEOUT: Duration = Duration::from_secs(10);

/// `ssh -G` calls run at once when an inventory is loaded.
const PARALLEL_LOOKUPS: usize = 8;

/// What `ssh_config` sets for one host, beyond OpenSSH's defaults. Values are as `ssh -G`
/// prints them: `identity_files`, `certificate_files`, `identity_agent` and `proxy_command`
/// still hold their `%` tokens and `~`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SshConfigEntry {
    /// `HostName` (when it differs from the alias).
    pub host_name: Option<String>,
    /// The host name ssh connects to, set or not (ssh lower-cases an alias it uses as is).
    pub connect_to: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub certificate_files: Vec<String>,
    pub identities_only: Option<bool>,
    /// A socket path, `SSH_AUTH_SOCK`, `$VAR` or `none`.
    pub identity_agent: Option<String>,
    /// The comma list as written (`ProxyJump none` is absent).
    pub proxy_jump: Option<String>,
    pub proxy_command: Option<String>,
    pub proxy_use_fdpass: bool,
    /// Expanded by ssh (tokens and `~`); the first is the one new keys are written to.
    pub user_known_hosts: Vec<PathBuf>,
    /// `true` (yes), `false` (no/off), `accept-new` (`ask`, the default, is absent).
    pub strict_host_key_checking: Option<String>,
    pub host_key_alias: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub server_alive_interval: Option<Duration>,
}

/// Which alias to resolve, and what `ssh` would get on its command line (`-l`, `-p`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    pub alias: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

/// Where ssh_config comes from for this process.
#[derive(Debug, Clone)]
enum Mode {
    /// Nothing to read (`OPSDECK_SSH_CONFIG=/dev/null`, or no config and no `ssh`).
    Off,
    /// Ask `program -G`, with `-F file` when `OPSDECK_SSH_CONFIG` names one (else ssh reads
    /// `~/.ssh/config` and `/etc/ssh/ssh_config` as it always does).
    Ssh {
        program: PathBuf,
        file: Option<PathBuf>,
    },
    /// A config file exists but no `ssh` is installed to evaluate it.
    Unavailable { file: PathBuf },
}

/// The user's ssh configuration, as `ssh` evaluates it.
#[derive(Debug, Clone)]
pub struct UserSshConfig {
    mode: Mode,
}

type CacheKey = (Option<PathBuf>, Query);

fn cache() -> &'static Mutex<HashMap<CacheKey, Result<SshConfigEntry, String>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Result<SshConfigEntry, String>>>> =
        OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl UserSshConfig {
    /// `OPSDECK_SSH_CONFIG` if set (`/dev/null` turns ssh_config off; tests use it), else what
    /// `ssh` reads by itself (`~/.ssh/config`, `/etc/ssh/ssh_config`).
    pub fn load() -> Self {
        let program = find_ssh();
        let mode = match std::env::var_os("OPSDECK_SSH_CONFIG") {
            Some(v) if v.is_empty() || v == "/dev/null" || v == "none" => Mode::Off,
            Some(v) => {
                let file = PathBuf::from(v);
                match program {
                    Some(program) => Mode::Ssh {
                        program,
                        file: Some(file),
                    },
                    None if file.exists() => Mode::Unavailable { file },
                    None => Mode::Off,
                }
            }
            None => match program {
                Some(program) => Mode::Ssh {
                    program,
                    file: None,
                },
                None => match home_dir().map(|h| h.join(".ssh").join("config")) {
                    Some(file) if file.exists() => Mode::Unavailable { file },
                    _ => Mode::Off,
                },
            },
        };
        UserSshConfig { mode }
    }

    /// Resolves many aliases at once (a few `ssh -G` in parallel), filling the cache.
    pub fn prefetch(&self, queries: &[Query]) {
        let Mode::Ssh { program, file } = &self.mode else {
            return;
        };
        let todo: Vec<&Query> = {
            let cached = cache()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut seen = std::collections::HashSet::new();
            queries
                .iter()
                .filter(|q| !cached.contains_key(&(file.clone(), (*q).clone())) && seen.insert(*q))
                .collect()
        };
        if todo.len() < 2 {
            return;
        }
        let _ = baseline(program);
        let chunk = todo.len().div_ceil(PARALLEL_LOOKUPS);
        std::thread::scope(|s| {
            for part in todo.chunks(chunk) {
                s.spawn(move || {
                    for q in part {
                        let r = ask(program, file.as_deref(), q);
                        cache()
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert((file.clone(), (*q).clone()), r);
                    }
                });
            }
        });
    }

    /// What ssh_config sets for `query`, or why it cannot be known (the message names the
    /// config file and line when ssh does).
    pub fn query(&self, query: &Query) -> Result<SshConfigEntry, String> {
        match &self.mode {
            Mode::Off => Ok(SshConfigEntry::default()),
            Mode::Unavailable { file } => Err(format!(
                "{} exists, but the OpenSSH client (`ssh`) that evaluates it is not installed; \
                 install openssh-client, or set OPSDECK_SSH_CONFIG=/dev/null to ignore ssh_config",
                file.display()
            )),
            Mode::Ssh { program, file } => {
                let key = (file.clone(), query.clone());
                if let Some(r) = cache()
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&key)
                {
                    return r.clone();
                }
                let r = ask(program, file.as_deref(), query);
                cache()
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key, r.clone());
                r
            }
        }
    }
}

fn find_ssh() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("ssh"))
        .find(|p| p.is_file())
}

/// `ssh -G` output: keyword → values (repeated keywords such as `identityfile` collect).
type Printed = HashMap<String, Vec<String>>;

fn parse_printed(text: &str) -> Printed {
    let mut map: Printed = HashMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        map.entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.to_owned());
    }
    map
}

/// OpenSSH's defaults, as this `ssh` prints them with no configuration at all.
fn baseline(program: &Path) -> &'static Result<Printed, String> {
    static BASELINE: OnceLock<Result<Printed, String>> = OnceLock::new();
    BASELINE.get_or_init(|| {
        run_ssh_g(
            program,
            Some(Path::new("/dev/null")),
            &Query {
                alias: "opsdeck-baseline".to_owned(),
                user: None,
                port: None,
            },
        )
        .map(|t| parse_printed(&t))
    })
}

fn ask(program: &Path, file: Option<&Path>, q: &Query) -> Result<SshConfigEntry, String> {
    let base = baseline(program).as_ref().map_err(Clone::clone)?;
    let printed = parse_printed(&run_ssh_g(program, file, q)?);
    Ok(entry_from(&printed, base, q))
}

/// Keeps what differs from OpenSSH's defaults.
fn entry_from(printed: &Printed, base: &Printed, q: &Query) -> SshConfigEntry {
    let one = |k: &str| printed.get(k).and_then(|v| v.first()).cloned();
    let all = |k: &str| printed.get(k).cloned().unwrap_or_default();
    let set = |k: &str| -> Option<String> {
        let v = printed.get(k);
        (v.is_some() && v != base.get(k)).then(|| one(k)).flatten()
    };
    let set_all = |k: &str| -> Vec<String> {
        let v = printed.get(k);
        if v.is_some() && v != base.get(k) {
            all(k)
        } else {
            Vec::new()
        }
    };
    let seconds = |k: &str| -> Option<Duration> {
        set(k)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
    };
    let connect_to = one("hostname");
    let host_name = connect_to.clone().filter(|h| *h != q.alias.to_lowercase());
    SshConfigEntry {
        host_name,
        connect_to,
        user: if q.user.is_some() { None } else { set("user") },
        port: if q.port.is_some() {
            None
        } else {
            set("port").and_then(|p| p.parse().ok())
        },
        identity_files: set_all("identityfile"),
        certificate_files: set_all("certificatefile"),
        identities_only: set("identitiesonly").map(|v| v == "yes" || v == "true"),
        identity_agent: set("identityagent"),
        proxy_jump: set("proxyjump").filter(|j| !j.eq_ignore_ascii_case("none")),
        proxy_command: set("proxycommand").filter(|c| !c.eq_ignore_ascii_case("none")),
        proxy_use_fdpass: set("proxyusefdpass").is_some_and(|v| v == "yes" || v == "true"),
        user_known_hosts: set("userknownhostsfile")
            .map(|v| v.split_whitespace().map(PathBuf::from).collect())
            .unwrap_or_default(),
        strict_host_key_checking: set("stricthostkeychecking"),
        host_key_alias: set("hostkeyalias"),
        connect_timeout: seconds("connecttimeout"),
        server_alive_interval: seconds("serveraliveinterval"),
    }
}

/// Runs `ssh -G [-F file] [-l user] [-p port] -- alias`, stdin closed, for at most
/// [`SSH_G_TIMEOUT`] (its process group is killed then).
fn run_ssh_g(program: &Path, file: Option<&Path>, q: &Query) -> Result<String, String> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(program);
    cmd.arg("-G");
    if let Some(f) = file {
        cmd.arg("-F").arg(f);
    }
    if let Some(u) = &q.user {
        cmd.arg("-l").arg(u);
    }
    if let Some(p) = q.port {
        cmd.arg("-p").arg(p.to_string());
    }
    // `--`: an alias can never be taken for an option.
    cmd.arg("--").arg(&q.alias);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let shown = format!("`ssh -G {}`", q.alias);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (out, err) = (child.stdout.take(), child.stderr.take());
    // stderr on its own thread, so neither pipe can fill up and stall ssh.
    let stderr_reader = std::thread::spawn(move || {
        let mut stderr = Vec::new();
        if let Some(e) = err {
            let _ = e.take(64 << 10).read_to_end(&mut stderr);
        }
        stderr
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = Vec::new();
        if let Some(o) = out {
            let _ = o.take(4 << 20).read_to_end(&mut stdout);
        }
        let stderr = stderr_reader.join().unwrap_or_default();
        let _ = tx.send((stdout, stderr));
    });
    let Ok((stdout, stderr)) = rx.recv_timeout(SSH_G_TIMEOUT) else {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        return Err(format!(
            "{shown} did not finish within {}s (a `Match exec` command that hangs?)",
            SSH_G_TIMEOUT.as_secs()
        ));
    };
    let status = child.wait().map_err(|e| format!("{shown} was lost: {e}"))?;
    if status.success() {
        return Ok(String::from_utf8_lossy(&stdout).into_owned());
    }
    let said: Vec<String> = String::from_utf8_lossy(&stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Pseudo-terminal"))
        .take(4)
        .map(str::to_owned)
        .collect();
    Err(if said.is_empty() {
        format!("{shown} failed ({status})")
    } else {
        format!("{shown} failed: {}", said.join("; "))
    })
}

pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The values `%` tokens stand for, as `ssh` fills them for one connection.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// `%h`: the host name connected to (after `HostName`).
    pub host: String,
    /// `%n`: the alias as given.
    pub original: String,
    /// `%p`.
    pub port: u16,
    /// `%r`: the remote user.
    pub remote_user: String,
    /// `%k`: `HostKeyAlias`, else the alias.
    pub host_key_alias: Option<String>,
    /// `%j`: the `ProxyJump` value, if any.
    pub jump: Option<String>,
}

/// Which tokens a keyword accepts (OpenSSH refuses the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSet {
    /// `IdentityFile`, `CertificateFile`, `IdentityAgent`: `%% %C %d %h %i %j %k %L %l %n %p
    /// %r %u`, `~` and `${VAR}`.
    Files,
    /// `ProxyCommand`: `%% %h %n %p %r`.
    ProxyCommand,
}

impl Tokens {
    /// Expands `value` as ssh does for a keyword of `set`; an unknown token or an unset
    /// `${VAR}` is an error, as in ssh.
    pub fn expand(&self, value: &str, set: TokenSet) -> Result<String, String> {
        let value = if set == TokenSet::Files {
            expand_env(&tilde(value)?)?
        } else {
            value.to_owned()
        };
        let mut out = String::with_capacity(value.len());
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(t) = chars.next() else {
                return Err(format!("{value:?} ends with a lone %"));
            };
            let local = || crate::identity::current();
            let text = match (t, set) {
                ('%', _) => "%".to_owned(),
                ('h', _) => self.host.clone(),
                ('n', _) => self.original.clone(),
                ('p', _) => self.port.to_string(),
                ('r', _) => self.remote_user.clone(),
                ('C', TokenSet::Files) => self.connection_hash(),
                ('d', TokenSet::Files) => home_dir().unwrap_or_default().display().to_string(),
                ('i', TokenSet::Files) => local().uid.to_string(),
                ('u', TokenSet::Files) => local().account.clone(),
                ('l', TokenSet::Files) => local().host.clone(),
                ('L', TokenSet::Files) => short_host(&local().host),
                ('k', TokenSet::Files) => self
                    .host_key_alias
                    .clone()
                    .unwrap_or_else(|| self.original.clone()),
                ('j', TokenSet::Files) => self.jump.clone().unwrap_or_default(),
                (other, _) => {
                    return Err(format!("unknown token %{other} in {value:?}"));
                }
            };
            out.push_str(&text);
        }
        Ok(out)
    }

    /// `%C`: SHA-1 of `%l%h%p%r` in hex (OpenSSH 9.2; later versions add `%j`).
    fn connection_hash(&self) -> String {
        let local = crate::identity::current();
        let mut h = sha1::Sha1::new();
        h.update(local.host.as_bytes());
        h.update(self.host.as_bytes());
        h.update(self.port.to_string().as_bytes());
        h.update(self.remote_user.as_bytes());
        h.finalize()
            .iter()
            .fold(String::with_capacity(40), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

fn short_host(host: &str) -> String {
    host.split('.').next().unwrap_or(host).to_owned()
}

/// `~/x` and `~user/x`, as ssh expands file names.
fn tilde(value: &str) -> Result<String, String> {
    let Some(rest) = value.strip_prefix('~') else {
        return Ok(value.to_owned());
    };
    let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let home = if user.is_empty() {
        home_dir().ok_or_else(|| format!("cannot expand {value:?}: HOME is not set"))?
    } else {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.dir)
            .ok_or_else(|| format!("cannot expand {value:?}: no user {user:?}"))?
    };
    Ok(if tail.is_empty() {
        home.display().to_string()
    } else {
        home.join(tail).display().to_string()
    })
}

/// `${VAR}` from the environment; an unset variable is an error, as in ssh.
fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated ${{ in {value:?}"));
        };
        let name = &after[..end];
        let v = std::env::var(name)
            .map_err(|_| format!("environment variable ${{{name}}} in {value:?} is not set"))?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One hop of a `ProxyJump` list: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHop {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// Parses a `ProxyJump` value; `none` is the empty list. Hops are in connection order (the
/// first is dialled first).
pub fn parse_proxy_jump(value: &str) -> Result<Vec<JumpHop>, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|hop| parse_hop(hop.trim()).ok_or_else(|| format!("invalid jump host {hop:?}")))
        .collect()
}

fn parse_hop(hop: &str) -> Option<JumpHop> {
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    if hop.is_empty() {
        return None;
    }
    let (user, rest) = match hop.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
        Some(_) => return None,
        None => (None, hop),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (h.to_owned(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.parse().ok()?)),
            None => (rest.to_owned(), None),
        }
    };
    (!host.is_empty() && !host.starts_with('-')).then_some(JumpHop { user, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            host: "10.0.0.5".into(),
            original: "web".into(),
            port: 2222,
            remote_user: "deploy".into(),
            host_key_alias: None,
            jump: Some("b1,b2".into()),
        }
    }

    #[test]
    fn proxy_jump_lists_parse_in_connection_order() {
        let hops = parse_proxy_jump("ssh://u@h:23,x@y,[::1]:2200,plain").expect("parses");
        assert_eq!(
            hops,
            vec![
                JumpHop {
                    user: Some("u".into()),
                    host: "h".into(),
                    port: Some(23)
                },
                JumpHop {
                    user: Some("x".into()),
                    host: "y".into(),
                    port: None
                },
                JumpHop {
                    user: None,
                    host: "::1".into(),
                    port: Some(2200)
                },
                JumpHop {
                    user: None,
                    host: "plain".into(),
                    port: None
                },
            ]
        );
        assert!(parse_proxy_jump("none").expect("none").is_empty());
        assert!(parse_proxy_jump("NONE").expect("none").is_empty());
        assert!(parse_proxy_jump("a,,b").is_err());
        assert!(parse_proxy_jump("h:notaport").is_err());
        assert!(parse_proxy_jump("-oProxyCommand=x").is_err());
    }

    #[test]
    fn tokens_expand_like_ssh() {
        let t = tokens();
        assert_eq!(
            t.expand("socat - TCP:%h:%p # %n %r %%", TokenSet::ProxyCommand)
                .expect("expands"),
            "socat - TCP:10.0.0.5:2222 # web deploy %"
        );
        assert!(t.expand("nc %d", TokenSet::ProxyCommand).is_err());
        assert_eq!(
            t.expand("/keys/%r@%h-%k", TokenSet::Files)
                .expect("expands"),
            "/keys/deploy@10.0.0.5-web"
        );
        assert!(t.expand("/keys/%q", TokenSet::Files).is_err());
        assert!(t.expand("/keys/%", TokenSet::Files).is_err());
        assert!(
            t.expand("${OPSDECK_SURELY_UNSET_VARIABLE}/k", TokenSet::Files)
                .is_err()
        );
    }

    #[test]
    fn only_values_that_differ_from_the_defaults_count_as_set() {
        let base = parse_printed(
            "user root\nhostname opsdeck-baseline\nport 22\nidentityfile ~/.ssh/id_rsa\n\
             identityfile ~/.ssh/id_ed25519\nstricthostkeychecking ask\nconnecttimeout none\n\
             serveraliveinterval 0\nuserknownhostsfile /root/.ssh/known_hosts /root/.ssh/known_hosts2\n",
        );
        let q = Query {
            alias: "Web".into(),
            user: None,
            port: None,
        };
        let same = parse_printed(
            "user root\nhostname web\nport 22\nidentityfile ~/.ssh/id_rsa\n\
             identityfile ~/.ssh/id_ed25519\nstricthostkeychecking ask\nconnecttimeout none\n\
             serveraliveinterval 0\nuserknownhostsfile /root/.ssh/known_hosts /root/.ssh/known_hosts2\n",
        );
        let e = entry_from(&same, &base, &q);
        assert_eq!(
            e,
            SshConfigEntry {
                connect_to: Some("web".into()),
                ..SshConfigEntry::default()
            }
        );
        let set = parse_printed(
            "user deploy\nhostname 10.1.1.1\nport 2200\nidentityfile ~/.ssh/work\n\
             stricthostkeychecking accept-new\nconnecttimeout 7\nserveraliveinterval 9\n\
             proxyjump a,b\ncertificatefile ~/.ssh/work-cert.pub\n\
             userknownhostsfile /k1 /k2\n",
        );
        let e = entry_from(&set, &base, &q);
        assert_eq!(e.host_name.as_deref(), Some("10.1.1.1"));
        assert_eq!(e.user.as_deref(), Some("deploy"));
        assert_eq!(e.port, Some(2200));
        assert_eq!(e.identity_files, vec!["~/.ssh/work".to_owned()]);
        assert_eq!(e.certificate_files, vec!["~/.ssh/work-cert.pub".to_owned()]);
        assert_eq!(e.strict_host_key_checking.as_deref(), Some("accept-new"));
        assert_eq!(e.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(e.server_alive_interval, Some(Duration::from_secs(9)));
        assert_eq!(e.proxy_jump.as_deref(), Some("a,b"));
        assert_eq!(
            e.user_known_hosts,
            vec![PathBuf::from("/k1"), PathBuf::from("/k2")]
        );
    }
}

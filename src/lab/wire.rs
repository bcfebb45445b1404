//! Small blocking clients the lab uses to set up and judge its own servers: Redis commands in
//! RESP, an HTTP/1.0 GET, the `mariadb` CLI with an option file, disk usage, the process table.
//! (The console's real clients live in `clients/`; these stay dependency-free and synchronous.)

use std::fs;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::find_program;

/// A Redis reply, as much of RESP2 as the lab needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) | Reply::Bulk(Some(s)) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(None) => String::new(),
            Reply::Array(a) => a.iter().map(Reply::text).collect::<Vec<_>>().join(" "),
        }
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(r: &mut BufReader<TcpStream>) -> io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad RESP line {line:?}"),
        )
    };
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; usize::try_from(n).map_err(|_| bad())? + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Reply::Array(items)
        }
        _ => return Err(bad()),
    })
}

/// Sends commands (pipelined) after an optional AUTH and returns one reply per command.
pub fn redis(
    addr: SocketAddr,
    password: Option<&str>,
    commands: &[Vec<&str>],
) -> io::Result<Vec<Reply>> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut out = Vec::new();
    if let Some(p) = password {
        out.extend(encode(&["AUTH", p]));
    }
    for c in commands {
        out.extend(encode(c));
    }
    (&stream).write_all(&out)?;
    let mut r = BufReader::new(stream);
    if password.is_some()
        && let Reply::Error(e) = read_reply(&mut r)?
    {
        return Err(io::Error::other(format!("AUTH refused by {addr}: {e}")));
    }
    commands.iter().map(|_| read_reply(&mut r)).collect()
}

/// One command; a Redis error reply becomes an `Err`.
pub fn redis1(addr: SocketAddr, password: Option<&str>, args: &[&str]) -> io::Result<Reply> {
    let reply = redis(addr, password, &[args.to_vec()])?
        .pop()
        .ok_or_else(|| io::Error::other("no reply"))?;
    if let Reply::Error(e) = &reply {
        return Err(io::Error::other(format!("{} on {addr}: {e}", args[0])));
    }
    Ok(reply)
}

/// The master address a Sentinel names for `master_name`.
pub fn sentinel_master(sentinel: SocketAddr, master_name: &str) -> io::Result<SocketAddr> {
    let reply = redis1(
        sentinel,
        None,
        &["SENTINEL", "get-master-addr-by-name", master_name],
    )?;
    if let Reply::Array(items) = reply
        && let [Reply::Bulk(Some(h)), Reply::Bulk(Some(p))] = items.as_slice()
    {
        return format!("{h}:{p}")
            .parse()
            .map_err(|e| io::Error::other(format!("sentinel answered {h}:{p}: {e}")));
    }
    Err(io::Error::other(format!(
        "sentinel {sentinel} does not know master {master_name:?}"
    )))
}

/// A field of `INFO` (e.g. `role`, `used_memory`).
pub fn redis_info_field(
    addr: SocketAddr,
    password: Option<&str>,
    field: &str,
) -> io::Result<String> {
    let info = redis1(addr, password, &["INFO"])?.text();
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// The answer to an HTTP/1.0 GET: status, body, and how long it took.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<HttpReply> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: opsdeck-lab\r\n\r\n",
        addr.ip()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let elapsed = start.elapsed();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no HTTP status from {addr}{path}")))?;
    // Some servers (HAProxy's stats page) answer chunked even to HTTP/1.0.
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok(HttpReply {
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
        elapsed,
    })
}

/// A chunked body's data (`SIZE\r\nDATA\r\n` ... `0\r\n\r\n`); what does not parse ends it.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(rest.get(..n.min(rest.len())).unwrap_or(""));
            break;
        }
        out.push_str(rest.get(..n).unwrap_or(""));
        body = rest.get(n..).unwrap_or("").trim_start_matches("\r\n");
    }
    out
}

/// One command on a line-oriented unix socket (HAProxy's runtime API); the answer.
pub fn unix_command(path: &Path, command: &str) -> io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(s, "{command}")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

pub fn tcp_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Runs SQL with the `mariadb` CLI and an option file holding user, password, host and port.
/// `Err` carries the client's error text (e.g. `ERROR 1040 (HY000): Too many connections`).
pub fn mariadb_cli(cnf: &Path, sql: &str) -> io::Result<std::result::Result<String, String>> {
    let client = find_program("mariadb").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "mariadb client not found: apt-get install -y mariadb-client",
        )
    })?;
    let mut child = Command::new(client)
        .arg(format!("--defaults-file={}", cnf.display()))
        // Vertical output (`\G`) is only readable with its field names.
        .args(if sql.contains("\\G") {
            &["-B"][..]
        } else {
            &["-N", "-B"][..]
        })
        .arg("--connect-timeout=3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(sql.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(Ok(String::from_utf8_lossy(&out.stdout).into_owned()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// Used share of a filesystem, in percent of the blocks available to users (as `df` shows).
pub fn disk_used_percent(path: &Path) -> io::Result<f64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let total = st.blocks() as f64;
    let free = st.blocks_free() as f64;
    let avail = st.blocks_available() as f64;
    let used = total - free;
    if used + avail <= 0.0 {
        return Ok(0.0);
    }
    Ok(used * 100.0 / (used + avail))
}

/// Pids whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            }) && super::process::pid_alive(*pid)
        })
        .collect()
}

/// A process's state letter (`R` running or runnable, `S` sleeping, ...), from
/// `/proc/PID/stat`.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Busy share of all CPUs over `window`, from `/proc/stat`.
pub fn cpu_busy_percent(window: Duration) -> io::Result<f64> {
    fn sample() -> io::Result<(u64, u64)> {
        let stat = fs::read_to_string("/proc/stat")?;
        let line = stat
            .lines()
            .next()
            .ok_or_else(|| io::Error::other("/proc/stat is empty"))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let total: u64 = v.iter().sum();
        // idle + iowait
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        Ok((total, idle))
    }
    let (t0, i0) = sample()?;
    std::thread::sleep(window);
    let (t1, i1) = sample()?;
    let dt = t1.saturating_sub(t0);
    if dt == 0 {
        return Ok(0.0);
    }
    Ok((dt - i1.saturating_sub(i0).min(dt)) as f64 * 100.0 / dt as f64)
}

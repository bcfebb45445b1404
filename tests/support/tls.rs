//! A test PKI made with `openssl` (a CA, a server certificate for the loopback addresses and
//! `localhost`, a client certificate, and a second CA nobody trusts), and real servers that
//! speak only TLS: nginx serving `/health` over HTTPS, redis-server on a `tls-port` with an ACL
//! user, MariaDB with `require_secure_transport`. All on loopback, stopped on drop.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use opsdeck::lab::mariadb::{self, Mariadb, MariadbOptions};
use opsdeck::lab::process::{Daemon, find_program, free_port, wait_for_tcp};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// CA, server and client certificates in a temp directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Issued,
    /// For 127.0.0.1, 127.0.0.2, ::1 and `localhost`.
    pub server: Issued,
    /// For `db.internal` only (to test `server_name` and `verify = "ca"`).
    pub named: Issued,
    /// A client certificate (CN `opsdeck`).
    pub client: Issued,
    /// A CA that signed nothing here: trusting it trusts none of the servers.
    pub other_ca: Issued,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("opsdeck-pki-")
            .tempdir()
            .expect("temp dir");
        let ca = make_ca(dir.path(), "ca", "opsdeck test CA");
        let other_ca = make_ca(dir.path(), "other-ca", "someone else's CA");
        let server = issue(
            dir.path(),
            &ca,
            "server",
            // clientAuth too: etcd's gateway dials its own gRPC port with the server certificate.
            "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth",
        );
        let named = issue(
            dir.path(),
            &ca,
            "named",
            "subjectAltName=DNS:db.internal\nextendedKeyUsage=serverAuth",
        );
        let client = issue(dir.path(), &ca, "client", "extendedKeyUsage=clientAuth");
        Pki {
            dir,
            ca,
            server,
            named,
            client,
            other_ca,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn make_ca(dir: &Path, name: &str, cn: &str) -> Issued {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &cert,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
    Issued {
        cert: dir.join(cert),
        key: dir.join(key),
    }
}

fn issue(dir: &Path, ca: &Issued, name: &str, ext: &str) -> Issued {
    let (cert, key, csr, extfile) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(
        dir.join(&extfile),
        format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}\n"),
    )
    .expect("ext file");
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca.cert.to_string_lossy(),
            "-CAkey",
            &ca.key.to_string_lossy(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &cert,
        ],
        dir,
    );
    Issued {
        cert: dir.join(cert),
        key: dir.join(key),
    }
}

/// A daemon stopped when dropped.
pub struct Running {
    pub daemon: Daemon,
    pub addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.daemon.stop(Duration::from_secs(3));
    }
}

/// nginx on `127.0.0.1:PORT` speaking HTTPS with `cert`: `/health` answers 200 with the
/// application's health JSON; `/status` is `stub_status`.
pub fn https_nginx(dir: &Path, cert: &Issued) -> Running {
    let nginx = find_program("nginx").expect("nginx installed");
    let port = free_port(LOOPBACK).expect("port");
    let run = dir.join("nginx");
    for sub in ["", "tmp"] {
        std::fs::create_dir_all(run.join(sub)).expect("mkdir");
    }
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {run}/nginx.pid;
error_log {run}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/tmp/body;
    proxy_temp_path {run}/tmp/proxy;
    fastcgi_temp_path {run}/tmp/fastcgi;
    uwsgi_temp_path {run}/tmp/uwsgi;
    scgi_temp_path {run}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location = /health {{
            default_type application/json;
            return 200 '{{"status":"ok","database":"ok","redis":"ok"}}';
        }}
        location = /status {{ stub_status; }}
    }}
}}
"#,
        run = run.display(),
        cert = cert.cert.display(),
        key = cert.key.display(),
    );
    let path = run.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(&run)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(run.join("error.log"));
    let daemon = Daemon::spawn("https-nginx", &mut cmd, &run).expect("nginx starts");
    let addr = SocketAddr::new(LOOPBACK, port);
    wait_for_tcp(addr, Duration::from_secs(10)).unwrap_or_else(|e| {
        panic!(
            "nginx does not listen on {addr}: {e}\n{}",
            std::fs::read_to_string(run.join("error.log")).unwrap_or_default()
        )
    });
    Running { daemon, addr }
}

/// redis-server listening only on a TLS port (no plaintext port), the `default` user off and
/// an ACL user `ops` with `password`. `client_certs`: the server asks for a client certificate
/// signed by the test CA.
pub fn tls_redis(dir: &Path, pki: &Pki, password: &str, client_certs: bool) -> Running {
    let redis = find_program("redis-server").expect("redis-server installed");
    let port = free_port(LOOPBACK).expect("port");
    let run = dir.join(format!("redis-{port}"));
    std::fs::create_dir_all(&run).expect("mkdir");
    let mut conf = String::new();
    let _ = writeln!(conf, "bind 127.0.0.1");
    let _ = writeln!(conf, "port 0");
    let _ = writeln!(conf, "tls-port {port}");
    let _ = writeln!(conf, "tls-cert-file {}", pki.server.cert.display());
    let _ = writeln!(conf, "tls-key-file {}", pki.server.key.display());
    let _ = writeln!(conf, "tls-ca-cert-file {}", pki.ca.cert.display());
    let _ = writeln!(
        conf,
        "tls-auth-clients {}",
        if client_certs { "yes" } else { "no" }
    );
    let _ = writeln!(conf, "dir {}", run.display());
    let _ = writeln!(conf, "save \"\"");
    let _ = writeln!(conf, "appendonly no");
    let _ = writeln!(conf, "user default off");
    let _ = writeln!(conf, "user ops on >{password} ~* &* +@all");
    let path = run.join("redis.conf");
    std::fs::write(&path, conf).expect("redis.conf");
    let mut cmd = Command::new(redis);
    cmd.arg(&path);
    let daemon = Daemon::spawn("tls-redis", &mut cmd, &run).expect("redis starts");
    let addr = SocketAddr::new(LOOPBACK, port);
    wait_for_tcp(addr, Duration::from_secs(10)).unwrap_or_else(|e| {
        panic!(
            "redis does not listen on {addr}: {e}\n{}",
            daemon.log_tail(20)
        )
    });
    Running { daemon, addr }
}

/// A MariaDB that accepts TCP clients over TLS only (`require_secure_transport`), with
/// `pki.server` as its certificate. SQL as root goes over its Unix socket.
pub struct TlsMariadb {
    pub server: Mariadb,
    _dir: tempfile::TempDir,
}

impl TlsMariadb {
    /// Bootstraps a data directory with the lab's own start (then stops it), and starts
    /// mariadbd on it again with TLS required. `cert` is the server's certificate.
    pub fn start(name: &str, pki: &Pki, cert: &Issued) -> TlsMariadb {
        let dir = tempfile::Builder::new()
            .prefix("opsdeck-mariadb-tls-")
            .tempdir()
            .expect("temp dir");
        let port = free_port(LOOPBACK).expect("free port");
        let opts = MariadbOptions::new(dir.path(), name, LOOPBACK, port);
        let mut first = mariadb::start(&opts).unwrap_or_else(|e| panic!("bootstrap {name}: {e}"));
        first.daemon.stop(Duration::from_secs(10));
        let mariadbd = find_program("mariadbd").expect("mariadbd installed");
        let mut cmd = Command::new(mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", opts.datadir().display()))
            .arg(format!("--socket={}", opts.socket().display()))
            .arg(format!("--tmpdir={}", opts.tmpdir().display()))
            .arg(format!(
                "--pid-file={}",
                dir.path().join(name).join("tls.pid").display()
            ))
            .arg(format!("--port={port}"))
            .arg(format!("--bind-address={LOOPBACK}"))
            .arg("--user=root")
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .arg("--performance-schema=OFF")
            .arg("--innodb-buffer-pool-size=16M")
            .arg(format!("--ssl-ca={}", pki.ca.cert.display()))
            .arg(format!("--ssl-cert={}", cert.cert.display()))
            .arg(format!("--ssl-key={}", cert.key.display()))
            .arg("--require-secure-transport=ON");
        let daemon = Daemon::spawn(&format!("{name}-tls"), &mut cmd, dir.path()).expect("mariadbd");
        let server = Mariadb {
            daemon,
            addr: LOOPBACK,
            port,
            socket: opts.socket(),
        };
        let addr = server.socket_addr();
        wait_for_tcp(addr, Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!(
                "mariadbd does not listen on {addr}: {e}\n{}",
                server.daemon.log_tail(20)
            )
        });
        // The socket appears a moment after the TCP port.
        for _ in 0..200 {
            if mariadb::sql(&server, "SELECT 1").is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsMariadb { server, _dir: dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.socket_addr()
    }

    pub fn sql(&self, sql: &str) -> String {
        mariadb::sql(&self.server, sql).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for TlsMariadb {
    fn drop(&mut self) {
        self.server.daemon.stop(Duration::from_secs(10));
    }
}

/// `"..."` for TOML.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

//! `known_hosts` files, read and judged the way OpenSSH does.
//!
//! Lines are `[@marker] patterns keytype base64 [comment]`. Patterns are a comma list of host
//! names or `[host]:port` (ports other than 22), each with `*` and `?` wildcards and an optional
//! leading `!` (a matching negated pattern excludes the host whatever else matches), or one
//! hashed entry `|1|salt|hmac-sha1(host)`. Markers: `@revoked` (the key is never trusted) and
//! `@cert-authority` (host certificates signed by the key are trusted for the matching hosts).
//! Comments, blank lines and unreadable lines are skipped; an unreadable line is logged with its
//! file and line.
//!
//! The verdict follows OpenSSH: a revoked key is refused; a certificate signed by a trusted CA
//! (host certificate, valid now, naming the host) is accepted; a plain key recorded for the
//! host is trusted; any other key for a host that has *anything* recorded (a key of any type,
//! or a CA) is a changed key; only a host with nothing recorded is unknown. Where OpenSSH
//! would fall back to recording a plain key for a host that is vouched for by a CA, this
//! refuses instead: a CA line is something recorded for the host.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey};
use sha1::Sha1;
use tracing::warn;

/// The system-wide files OpenSSH reads besides the user's (`GlobalKnownHostsFile`).
pub const GLOBAL_KNOWN_HOSTS: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// Overrides [`GLOBAL_KNOWN_HOSTS`]: a whitespace-separated list of files (empty: none).
pub const GLOBAL_KNOWN_HOSTS_ENV: &str = "OPSDECK_GLOBAL_KNOWN_HOSTS";

/// The global files in effect: `$OPSDECK_GLOBAL_KNOWN_HOSTS` if set, else OpenSSH's defaults.
pub fn global_files() -> Vec<PathBuf> {
    match std::env::var_os(GLOBAL_KNOWN_HOSTS_ENV) {
        Some(v) => v
            .to_string_lossy()
            .split_whitespace()
            .map(PathBuf::from)
            .collect(),
        None => GLOBAL_KNOWN_HOSTS.iter().map(PathBuf::from).collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A host key.
    None,
    /// `@cert-authority`: signs host certificates for the matching hosts.
    CertAuthority,
    /// `@revoked`: never trusted.
    Revoked,
}

/// One host pattern of a comma list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    negated: bool,
    /// Lower-cased.
    glob: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    List(Vec<Pattern>),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// Where a line is, for messages: `file line N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based, as an editor shows it (comments and blank lines counted).
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "known_hosts file {} line {}",
            self.file.display(),
            self.line
        )
    }
}

/// One usable line.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Location,
    pub marker: Marker,
    hosts: Hosts,
    pub key: PublicKey,
}

impl Entry {
    /// True if the entry names `lookup` (`host` or `[host]:port`).
    fn matches(&self, lookup: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => Hmac::<Sha1>::new_from_slice(salt)
                .map(|m| m.chain_update(lookup.as_bytes()).verify_slice(hash).is_ok())
                .unwrap_or(false),
            Hosts::List(patterns) => pattern_list_matches(patterns, &lookup.to_lowercase()),
        }
    }
}

/// OpenSSH's `match_hostname`: a matching negated pattern wins; otherwise any positive match.
fn pattern_list_matches(patterns: &[Pattern], name: &str) -> bool {
    let mut positive = false;
    for p in patterns {
        if glob(p.glob.as_bytes(), name.as_bytes()) {
            if p.negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` matches any run of characters, `?` exactly one, anything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it is currently made to cover up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// How `known_hosts` names a host: `127.0.0.2` for port 22, `[127.0.0.2]:2222` otherwise.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The entries of several `known_hosts` files, in order (user file first, then global).
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    pub entries: Vec<Entry>,
    /// The files consulted (missing ones included), for messages.
    pub files: Vec<PathBuf>,
    /// Lines that could not be read, as `file:line: why` (also logged).
    pub skipped: Vec<String>,
}

/// What the recorded entries say about the key a host offered.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A recorded plain key matches.
    Trusted(Location),
    /// A host certificate signed by a trusted CA, valid now, naming the host.
    TrustedCertificate { ca: Location, key_id: String },
    /// The offered key (or the CA that signed the certificate) is marked `@revoked`.
    Revoked(Location),
    /// A certificate from a CA trusted for the host that fails a check (expired, not a host
    /// certificate, principal not matching, bad signature, ...).
    BadCertificate { ca: Location, reason: String },
    /// Something is recorded for the host (listed), and nothing vouches for the offered key.
    Changed(Vec<Entry>),
    /// Nothing is recorded for the host.
    Unknown,
}

impl KnownHosts {
    /// Reads `files` (missing files are empty). Unreadable lines are skipped and logged.
    pub fn load(files: &[PathBuf]) -> KnownHosts {
        let mut kh = KnownHosts {
            files: files.to_vec(),
            ..KnownHosts::default()
        };
        for file in files {
            match std::fs::read(file) {
                Ok(bytes) => kh.parse_into(file, &String::from_utf8_lossy(&bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let msg = format!("{}: cannot read: {e}", file.display());
                    warn!("known_hosts {msg}");
                    kh.skipped.push(msg);
                }
            }
        }
        kh
    }

    /// Parses `text` as the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> KnownHosts {
        let mut kh = KnownHosts {
            files: vec![file.to_path_buf()],
            ..KnownHosts::default()
        };
        kh.parse_into(file, text);
        kh
    }

    fn parse_into(&mut self, file: &Path, text: &str) {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = Location {
                file: file.to_path_buf(),
                line: i + 1,
            };
            match parse_line(line) {
                Ok((marker, hosts, key)) => self.entries.push(Entry {
                    at,
                    marker,
                    hosts,
                    key,
                }),
                Err(why) => {
                    let msg = format!("{}:{}: {why}; line skipped", file.display(), i + 1);
                    warn!("known_hosts {msg}");
                    self.skipped.push(msg);
                }
            }
        }
    }

    /// Entries that name `host:port`.
    pub fn for_host<'a>(&'a self, host: &str, port: u16) -> impl Iterator<Item = &'a Entry> {
        let name = lookup_name(host, port);
        self.entries.iter().filter(move |e| e.matches(&name))
    }

    /// True if anything at all (a key of any type, a CA) is recorded for the host.
    pub fn knows(&self, host: &str, port: u16) -> bool {
        self.for_host(host, port)
            .any(|e| e.marker != Marker::Revoked)
    }

    /// True if a CA is trusted for the host: then host certificates are worth asking for.
    pub fn has_authority_for(&self, host: &str, port: u16) -> bool {
        self.for_host(host, port)
            .any(|e| e.marker == Marker::CertAuthority)
    }

    /// The algorithms of the plain keys recorded for the host, in file order, without repeats:
    /// asking the server for these first avoids a "changed" verdict for a host that has
    /// several keys of which only one is recorded.
    pub fn recorded_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let mut algs: Vec<Algorithm> = Vec::new();
        for e in self.for_host(host, port) {
            if e.marker == Marker::None && !algs.contains(&e.key.algorithm()) {
                algs.push(e.key.algorithm());
            }
        }
        algs
    }

    /// Judges a plain key offered by `host:port`.
    pub fn check_key(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let entries: Vec<&Entry> = self.for_host(host, port).collect();
        if let Some(e) = entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && same_key(&e.key, key.key_data()))
        {
            return Verdict::Revoked(e.at.clone());
        }
        if let Some(e) = entries
            .iter()
            .find(|e| e.marker == Marker::None && same_key(&e.key, key.key_data()))
        {
            return Verdict::Trusted(e.at.clone());
        }
        let recorded: Vec<Entry> = entries
            .into_iter()
            .filter(|e| e.marker != Marker::Revoked)
            .cloned()
            .collect();
        if recorded.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Changed(recorded)
        }
    }

    /// Judges a host certificate offered by `host:port`, at `now` (seconds since the epoch).
    /// A certificate from a CA not trusted for the host is judged by its plain key, as OpenSSH
    /// does.
    pub fn check_certificate(
        &self,
        host: &str,
        port: u16,
        cert: &Certificate,
        now: u64,
    ) -> Verdict {
        let entries: Vec<&Entry> = self.for_host(host, port).collect();
        if let Some(e) = entries.iter().find(|e| {
            e.marker == Marker::Revoked
                && (same_key(&e.key, cert.public_key()) || same_key(&e.key, cert.signature_key()))
        }) {
            return Verdict::Revoked(e.at.clone());
        }
        let Some(ca) = entries
            .iter()
            .find(|e| e.marker == Marker::CertAuthority && same_key(&e.key, cert.signature_key()))
        else {
            return self.check_key(host, port, &PublicKey::new(cert.public_key().clone(), ""));
        };
        match certificate_problem(cert, host, now, &ca.key) {
            None => Verdict::TrustedCertificate {
                ca: ca.at.clone(),
                key_id: cert.key_id().to_owned(),
            },
            Some(reason) => Verdict::BadCertificate {
                ca: ca.at.clone(),
                reason,
            },
        }
    }
}

fn same_key(recorded: &PublicKey, offered: &KeyData) -> bool {
    recorded.key_data() == offered
}

/// Why a certificate signed by `ca` does not prove it is `host`'s, or `None` if it does.
fn certificate_problem(cert: &Certificate, host: &str, now: u64, ca: &PublicKey) -> Option<String> {
    if cert.cert_type() != CertType::Host {
        return Some("it is a user certificate, not a host certificate".to_owned());
    }
    let ca_fp = ca.fingerprint(HashAlg::Sha256);
    if cert.validate_at(now, [&ca_fp]).is_err() {
        // `validate_at` checks the signature, then the CA, then the validity period; say which.
        if cert.verify_signature().is_err() {
            return Some("its signature does not verify".to_owned());
        }
        let (after, before) = (cert.valid_after(), cert.valid_before());
        return Some(if now < after {
            format!("it is not valid before {}", unix_text(after))
        } else if now >= before {
            format!("it expired at {}", unix_text(before))
        } else {
            "it does not validate against the CA".to_owned()
        });
    }
    if let Some((name, _)) = cert.critical_options().iter().next() {
        return Some(format!(
            "it carries the critical option {name:?}, which host certificates do not define"
        ));
    }
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return Some("it names no principals (opsdeck requires the host's name)".to_owned());
    }
    let lowered = host.to_lowercase();
    if !principals
        .iter()
        .any(|p| glob(p.to_lowercase().as_bytes(), lowered.as_bytes()))
    {
        return Some(format!(
            "it is for {} and not for {host:?}",
            principals
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    None
}

fn unix_text(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(|| format!("{secs} (unix time)"), |t| t.to_rfc3339())
}

fn parse_line(line: &str) -> Result<(Marker, Hosts, PublicKey), String> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next().ok_or("empty line")?;
    let marker = if let Some(m) = first.strip_prefix('@') {
        first = fields.next().ok_or("a marker but no host patterns")?;
        match m {
            "cert-authority" => Marker::CertAuthority,
            "revoked" => Marker::Revoked,
            other => return Err(format!("unknown marker @{other}")),
        }
    } else {
        Marker::None
    };
    let hosts = parse_hosts(first)?;
    let kind = fields.next().ok_or("no key type")?;
    let blob = fields.next().ok_or("no key")?;
    let key = PublicKey::from_openssh(&format!("{kind} {blob}"))
        .map_err(|e| format!("cannot read the {kind} key: {e}"))?;
    Ok((marker, hosts, key))
}

fn parse_hosts(field: &str) -> Result<Hosts, String> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest
            .split_once('|')
            .ok_or("hashed host entry without a hash")?;
        let salt = BASE64
            .decode(salt)
            .map_err(|e| format!("hashed host entry: bad salt: {e}"))?;
        let hash = BASE64
            .decode(hash)
            .map_err(|e| format!("hashed host entry: bad hash: {e}"))?;
        return Ok(Hosts::Hashed { salt, hash });
    }
    if field.starts_with('|') {
        return Err("unsupported hashed host format (only |1| is known)".to_owned());
    }
    let patterns: Vec<Pattern> = field
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix('!') {
            Some(rest) => Pattern {
                negated: true,
                glob: rest.to_lowercase(),
            },
            None => Pattern {
                negated: false,
                glob: p.to_lowercase(),
            },
        })
        .collect();
    if patterns.is_empty() {
        return Err("no host patterns".to_owned());
    }
    Ok(Hosts::List(patterns))
}

/// A plain-text line recording `key` for `host:port`.
pub fn line_for(host: &str, port: u16, key: &PublicKey) -> Result<String, String> {
    let text = PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    Ok(format!("{} {}", lookup_name(host, port), text.trim()))
}

/// Appends `line` to an open (append mode) file, adding the missing newline of a last line,
/// and syncs it.
pub fn append_line(file: &mut File, line: &str) -> std::io::Result<()> {
    let mut needs_newline = false;
    if file.seek(SeekFrom::End(-1)).is_ok() {
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        needs_newline = last[0] != b'\n';
    }
    let mut text = String::new();
    if needs_newline {
        text.push('\n');
    }
    let _ = writeln!(text, "{line}");
    // Opened in append mode: one write lands at the end.
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// Opens `path` for appending (creating it and its directory), for [`append_line`].
pub fn open_for_append(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK/4pI0g7LDaxXbXCv+6Qwf3IobRgr1EwACuhsXIcgoN";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIERFe8DMQCFTDdbJvBXxApK7T1uQ6AGIVpNJDeZM+S3U";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("key")
    }

    fn kh(text: &str) -> KnownHosts {
        KnownHosts::parse(Path::new("/k"), text)
    }

    #[test]
    fn glob_matches_like_openssh() {
        for (p, t, want) in [
            ("*", "anything", true),
            ("web?", "web1", true),
            ("web?", "web12", false),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("[127.0.0.*]:*", "[127.0.0.9]:2222", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("**", "", true),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} vs {t}");
        }
    }

    #[test]
    fn plain_bracketed_lists_negation_and_wildcards() {
        let k = kh(&format!(
            "# comment\n\nweb1,web2 {ED}\n[10.0.0.1]:2222 {ED}\n*.prod,!db.prod {ED}\n"
        ));
        assert_eq!(k.entries.len(), 3);
        assert!(matches!(k.check_key("web2", 22, &key(ED)), Verdict::Trusted(l) if l.line == 3));
        assert!(matches!(
            k.check_key("10.0.0.1", 2222, &key(ED)),
            Verdict::Trusted(l) if l.line == 4
        ));
        assert!(matches!(
            k.check_key("10.0.0.1", 22, &key(ED)),
            Verdict::Unknown
        ));
        assert!(matches!(
            k.check_key("app.prod", 22, &key(ED)),
            Verdict::Trusted(_)
        ));
        assert!(matches!(
            k.check_key("db.prod", 22, &key(ED)),
            Verdict::Unknown
        ));
        assert!(matches!(
            k.check_key("WEB1", 22, &key(ED)),
            Verdict::Trusted(_)
        ));
    }

    #[test]
    fn any_recorded_key_of_any_type_makes_another_key_changed() {
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCyXFp3NoIywGi33xzfZicgrfJ1H7GiFmI+lhGN/BuYd5zablrzUnzKP+iYhDF81FzcqbfnRfeNK08i1LRs4K2RDPuV5d+5UM3+pGks+XS+sotctts3BPcgkmtrgDKDcpUQjmo1e8GR4vTiVB5TPhZaZw1DuPTwrv1A592co6gHO2ZYa4GMYJyOJ7akl2s+413AuK+BjW6AxrAJgoHrw1HJc9jo9R9XcgyPwY3UekHXmQNMDQd2WiBVQAwYqMrgNf3mBpI9LaZfBa/K1mjoyLxuLSl1FuO/iuvAOtbVy1J7HRbjiu4TtvIIreoa9ICuYqey6s2UUSG+HtRjm055Ru2H";
        let k = kh(&format!("h {ED}\n"));
        match k.check_key("h", 22, &key(rsa)) {
            Verdict::Changed(r) => assert_eq!(r[0].at.line, 1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            k.check_key("h", 22, &key(ED2)),
            Verdict::Changed(_)
        ));
    }

    #[test]
    fn revoked_wins_over_a_matching_key() {
        let k = kh(&format!("h {ED}\n@revoked * {ED}\n"));
        assert!(matches!(k.check_key("h", 22, &key(ED)), Verdict::Revoked(l) if l.line == 2));
        // Revocation alone records nothing: another host with that key is unknown, not changed.
        assert!(matches!(
            k.check_key("other", 22, &key(ED2)),
            Verdict::Unknown
        ));
    }

    #[test]
    fn hashed_entries_match_their_host_only() {
        // OpenSSH's scheme: HMAC-SHA1 keyed with the salt over "[127.0.0.1]:2222".
        let salt = [7u8; 20];
        let mac = Hmac::<Sha1>::new_from_slice(&salt)
            .expect("hmac")
            .chain_update(b"[127.0.0.1]:2222")
            .finalize()
            .into_bytes();
        let line = format!("|1|{}|{} {ED}\n", BASE64.encode(salt), BASE64.encode(mac));
        let k = kh(&line);
        assert!(matches!(
            k.check_key("127.0.0.1", 2222, &key(ED)),
            Verdict::Trusted(_)
        ));
        assert!(matches!(
            k.check_key("127.0.0.1", 22, &key(ED)),
            Verdict::Unknown
        ));
    }

    #[test]
    fn bad_lines_are_skipped_with_their_place() {
        let k = kh(&format!(
            "h\n@bogus h {ED}\nh ssh-ed25519 !!!\n|2|x|y {ED}\nok {ED}\n"
        ));
        assert_eq!(k.entries.len(), 1);
        assert_eq!(k.skipped.len(), 4, "{:?}", k.skipped);
        assert!(k.skipped[0].starts_with("/k:1: "), "{:?}", k.skipped);
        assert!(k.skipped[1].contains("@bogus"), "{:?}", k.skipped);
    }

    #[test]
    fn non_ascii_and_garbage_never_panic() {
        for text in [
            "é ü",
            "@revoked",
            "@cert-authority é",
            "|1|é|é ssh-ed25519 x",
            "\u{0}\u{1}",
        ] {
            let k = kh(text);
            assert!(k.entries.is_empty());
            let _ = k.check_key("é", 22, &key(ED));
        }
    }
}

//! TLS for every client opsdeck runs (HTTPS probes and steps, Redis, a Docker engine over
//! `tcp://`; MySQL takes the same settings through `mysql_async`): rustls with the `ring`
//! provider, the system CA bundle or a configured CA file, an optional client certificate, and
//! three verify modes (`full`, `ca`, `none`, see [`TlsVerify`]).
//!
//! The name checked in the server's certificate is `server_name` when the settings give one,
//! else the address the inventory names (a URL's host, a service's `address`), never the
//! loopback forward a `via = "ssh"` tunnel dials.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::inventory::{TlsSettings, TlsVerify};

/// A built configuration is reused this long; a renewed certificate file is read after it.
const CONFIG_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The settings cannot be turned into a client configuration (a file is missing or holds
    /// no certificate, the key does not fit, ...). Nothing was sent.
    #[error("TLS settings: {0}")]
    Config(String),
    /// The handshake failed; the text says why and what to change.
    #[error("TLS handshake with {server} failed: {reason}")]
    Handshake { server: String, reason: String },
}

/// The process's crypto provider: ring, whatever else the dependency tree may enable.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's CA certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else the distribution's
/// bundle), read once.
pub fn system_certificates() -> Result<Arc<Vec<CertificateDer<'static>>>, TlsError> {
    static CERTS: OnceLock<Result<Arc<Vec<CertificateDer<'static>>>, String>> = OnceLock::new();
    CERTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "the bundle is empty".to_owned(), ToString::to_string);
                return Err(format!(
                    "no system CA certificate could be read ({why}); install ca-certificates \
                     or set tls.ca_file"
                ));
            }
            Ok(Arc::new(found.certs))
        })
        .clone()
        .map_err(TlsError::Config)
}

/// The system's CA bundle as a trust store, built once.
pub fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, TlsError>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(system_certificates()?.iter().cloned());
            Ok(Arc::new(store))
        })
        .clone()
}

/// The certificates of a PEM file (a CA bundle or a client certificate chain).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(path)
        .map_err(|e| TlsError::Config(format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError::Config(format!(
                "{} is not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError::Config(format!(
            "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read(path)
        .map_err(|e| TlsError::Config(format!("cannot read {}: {e}", path.display())))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        TlsError::Config(format!(
            "{} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            path.display()
        ))
    })
}

/// The CAs `tls` trusts: its `ca_file`, else the system bundle.
pub fn roots(tls: &TlsSettings) -> Result<Arc<RootCertStore>, TlsError> {
    let Some(ca) = &tls.ca_file else {
        return system_roots();
    };
    let mut store = RootCertStore::empty();
    for cert in read_certificates(ca)? {
        store.add(cert).map_err(|e| {
            TlsError::Config(format!(
                "{}: not a usable CA certificate: {e}",
                ca.display()
            ))
        })?;
    }
    Ok(Arc::new(store))
}

/// The client configuration for `tls` (cached for [`CONFIG_TTL`]).
pub fn client_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    type Cache = Mutex<HashMap<TlsSettings, (Instant, Arc<ClientConfig>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some((at, cfg)) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(tls)
        && at.elapsed() < CONFIG_TTL
    {
        return Ok(cfg.clone());
    }
    let cfg = build_config(tls)?;
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(tls.clone(), (Instant::now(), cfg.clone()));
    Ok(cfg)
}

fn build_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls.verify {
        TlsVerify::Full | TlsVerify::Ca => {
            let webpki = WebPkiServerVerifier::builder_with_provider(roots(tls)?, provider.clone())
                .build()
                .map_err(|e| TlsError::Config(format!("cannot use the CA certificates: {e}")))?;
            if tls.verify == TlsVerify::Full {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
        TlsVerify::None => Arc::new(Anything(provider)),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certificates(cert)?, read_key(key)?)
            .map_err(|e| {
                TlsError::Config(format!(
                    "client certificate {} and key {} do not go together: {e}",
                    cert.display(),
                    key.display()
                ))
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Config(
                "client_cert and client_key go together: give both or neither".to_owned(),
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The name sent (SNI) and checked: `server_name` if set, else `address` (brackets of an IPv6
/// literal removed).
pub fn server_name(tls: &TlsSettings, address: &str) -> Result<ServerName<'static>, TlsError> {
    let name = tls
        .server_name
        .as_deref()
        .unwrap_or(address)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(name.to_owned()).map_err(|_| {
        TlsError::Config(format!(
            "{name:?} is neither a DNS name nor an IP address to check the certificate against; \
             set tls.server_name"
        ))
    })
}

/// Runs the TLS handshake over `io` (a TCP stream, an SSH tunnel, ...).
pub async fn connect<S>(io: S, tls: &TlsSettings, address: &str) -> Result<TlsStream<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = client_config(tls)?;
    let name = server_name(tls, address)?;
    let shown = name.to_str().into_owned();
    TlsConnector::from(config)
        .connect(name, io)
        .await
        .map_err(|e| TlsError::Handshake {
            reason: explain(&e, tls, &shown),
            server: shown,
        })
}

/// A handshake error in words, with what to change.
pub fn explain(e: &std::io::Error, tls: &TlsSettings, name: &str) -> String {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    let mut text = e.to_string();
    let hint = match inner {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                Some(match &tls.ca_file {
                    Some(ca) => format!(
                        "the server's certificate is not signed by a CA in {}; point tls.ca_file at \
                     the CA that signed it",
                        ca.display()
                    ),
                    None => "the server's certificate is not signed by a CA in the system bundle; \
                         set tls.ca_file to the CA that signed it"
                        .to_owned(),
                })
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Some(format!(
                    "the certificate does not name {name:?}; set tls.server_name to a name it \
                     carries, or verify = \"ca\" to check the CA only"
                ))
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Some("the server's certificate has expired: renew it".to_owned())
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Some("the server's certificate is not valid yet: check both clocks".to_owned())
            }
            _ => None,
        },
        Some(rustls::Error::AlertReceived(alert)) => Some(
            alert_hint(&format!("{alert:?}"), tls)
                .unwrap_or_else(|| format!("the server refused the handshake ({alert:?})")),
        ),
        Some(rustls::Error::InvalidMessage(_)) => {
            Some("the server does not speak TLS on this port (a plaintext port?)".to_owned())
        }
        _ if e.kind() == std::io::ErrorKind::UnexpectedEof => Some(
            "the server closed the connection during the handshake (a plaintext port, or it \
             refused the client certificate?)"
                .to_owned(),
        ),
        _ => None,
    };
    if let Some(h) = hint {
        let _ = write!(text, " ({h})");
    }
    text
}

/// What a TLS alert from the server means for the settings, if it says something about them.
/// Under TLS 1.3 a server refuses a client certificate only after the handshake, so the alert
/// arrives with the first reply: callers pass any error text through this.
pub fn alert_hint(text: &str, tls: &TlsSettings) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let compact = compact.to_ascii_lowercase();
    if compact.contains("certificaterequired")
        || (compact.contains("handshakefailure") && tls.client_cert.is_none())
    {
        return Some(if tls.client_cert.is_none() {
            "the server requires a client certificate: set tls.client_cert and tls.client_key"
                .to_owned()
        } else {
            "the server requires a client certificate and did not take this one".to_owned()
        });
    }
    if tls.client_cert.is_some()
        && [
            "badcertificate",
            "unknownca",
            "certificateunknown",
            "accessdenied",
        ]
        .iter()
        .any(|a| compact.contains(a))
    {
        return Some(
            "the server does not accept the client certificate (tls.client_cert): is it signed \
             by a CA the server trusts, and still valid?"
                .to_owned(),
        );
    }
    None
}

/// `text` with the alert's meaning appended, when it has one.
pub fn with_alert_hint(text: String, tls: Option<&TlsSettings>) -> String {
    match tls.and_then(|t| alert_hint(&text, t)) {
        Some(h) => format!("{text} ({h})"),
        None => text,
    }
}

/// `verify = "ca"`: the chain must lead to a trusted CA; the name is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `verify = "none"`: any certificate; the handshake signatures are still checked, so the
/// peer holds the key of the certificate it sent.
#[derive(Debug)]
struct Anything(Arc<CryptoProvider>);

impl ServerCertVerifier for Anything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_prefers_the_setting_and_accepts_ip_literals() {
        let plain = TlsSettings::default();
        assert_eq!(
            server_name(&plain, "127.0.0.1").expect("ip").to_str(),
            "127.0.0.1"
        );
        assert_eq!(server_name(&plain, "[::1]").expect("ipv6").to_str(), "::1");
        let named = TlsSettings {
            server_name: Some("db1.internal".to_owned()),
            ..TlsSettings::default()
        };
        assert_eq!(
            server_name(&named, "127.0.0.1").expect("name").to_str(),
            "db1.internal"
        );
        assert!(server_name(&plain, "not a name!").is_err());
    }

    #[test]
    fn a_half_client_identity_or_a_missing_ca_is_a_config_error() {
        let half = TlsSettings {
            client_cert: Some("/nonexistent/cert.pem".into()),
            verify: TlsVerify::None,
            ..TlsSettings::default()
        };
        let e = build_config(&half).expect_err("half identity");
        assert!(e.to_string().contains("give both or neither"), "{e}");
        let missing = TlsSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsSettings::default()
        };
        let e = build_config(&missing).expect_err("missing CA");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}

//! A small etcd v3 client over etcd's own JSON gRPC gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/*`, `/v3/watch`): plain HTTP/1.1 and JSON, keys and values base64. It needs no
//! generated protobuf code, so a fresh build needs no `protoc` (the `etcd-client` crate
//! compiles etcd's protobufs in its build script and does).
//!
//! Every call has a deadline and tries the endpoints in order until one answers, so one dead
//! member of a cluster is invisible to callers; a cluster without quorum answers no write and
//! every call fails at its deadline — which the callers treat as "etcd is unreachable".

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Bytes;
use serde_json::{Value as Json, json};

use crate::secret::Secret;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered in time: etcd is unreachable (or has no quorum).
    #[error("etcd is unreachable ({0})")]
    Unreachable(String),
    /// An endpoint answered with an error.
    #[error("etcd refused: {0}")]
    Refused(String),
}

/// One key-value pair as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

/// A compare of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key is attached to this lease (it is still ours).
    Lease(String, i64),
}

/// An operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Get(String),
    Delete(String),
}

/// What a transaction did.
#[derive(Debug, Clone)]
pub struct TxnResult {
    pub succeeded: bool,
    /// The cluster revision after the transaction: a fencing token that only grows.
    pub revision: i64,
    /// Keys read by `Get` ops of the branch that ran.
    pub kvs: Vec<Kv>,
}

#[derive(Clone)]
pub struct Client {
    endpoints: Vec<String>,
    /// For `https://` endpoints: trust and identity (`None`: the system CAs).
    tls: Option<crate::inventory::TlsSettings>,
    timeout: Duration,
    credentials: Option<(String, Secret)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("etcd::Client")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

fn unb64(v: &Json) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

fn int(v: &Json) -> i64 {
    match v {
        Json::String(s) => s.parse().unwrap_or(0),
        Json::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The key just past every key starting with `prefix` (etcd's `range_end` for a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn kv(v: &Json) -> Kv {
    Kv {
        key: String::from_utf8_lossy(&unb64(&v["key"])).into_owned(),
        value: unb64(&v["value"]),
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
        lease: int(&v["lease"]),
    }
}

impl Client {
    /// `endpoints`: `http://host:port` or `https://host:port` (checked with `tls`, or the
    /// system CAs).
    pub fn new(
        endpoints: Vec<String>,
        timeout: Duration,
        credentials: Option<(String, Secret)>,
        tls: Option<crate::inventory::TlsSettings>,
    ) -> Client {
        Client {
            endpoints,
            tls,
            timeout,
            credentials,
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// One POST to `endpoint` over the project's HTTP client (`transport::http::send`),
    /// TLS for `https://`; the answer's body streams (the caller reads it, then aborts the
    /// connection's task).
    async fn post(
        &self,
        endpoint: &str,
        path: &str,
        body: &Json,
        token: Option<&str>,
    ) -> Result<
        (
            hyper::Response<hyper::body::Incoming>,
            tokio::task::JoinHandle<()>,
        ),
        String,
    > {
        let uri: hyper::Uri = format!("{}{path}", endpoint.trim_end_matches('/'))
            .parse()
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{endpoint}: endpoints are http:// or https://")),
        };
        let host = uri.host().unwrap_or("127.0.0.1").to_owned();
        let port = uri.port_u16().unwrap_or(2379);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut req = Request::post(uri.clone())
            .header("host", format!("{host}:{port}"))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let sent = if https {
            let tls = self.tls.clone().unwrap_or_default();
            let io = crate::transport::tls::connect(stream, &tls, &host)
                .await
                .map_err(|e| format!("{endpoint}: {e}"))?;
            crate::transport::http::send(io, req).await
        } else {
            crate::transport::http::send(stream, req).await
        };
        sent.map_err(|e| format!("{endpoint}: {e}"))
    }

    async fn post_once(
        &self,
        endpoint: &str,
        path: &str,
        body: &Json,
        token: Option<&str>,
    ) -> Result<(u16, Json), String> {
        let (resp, conn) = self.post(endpoint, path, body, token).await?;
        let status = resp.status().as_u16();
        // Streaming answers (watch, keepalive) send one JSON object per line: the first
        // complete one is the answer.
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            if let Some(at) = buf.iter().position(|b| *b == b'\n') {
                buf.truncate(at);
                break;
            }
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        buf.extend_from_slice(&d);
                    }
                    if buf.len() > 4 << 20 {
                        return Err(format!("{endpoint}: answer too large"));
                    }
                }
                Some(Err(e)) => return Err(format!("{endpoint}: {e}")),
                None => break,
            }
        }
        conn.abort();
        let v: Json = serde_json::from_slice(&buf).map_err(|e| format!("{endpoint}: {e}"))?;
        Ok((status, v))
    }

    /// POSTs to the first endpoint that answers within the deadline.
    async fn call(&self, path: &str, body: &Json) -> Result<Json, EtcdError> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let token = match &self.credentials {
                Some(c) => match self.authenticate(ep, c).await {
                    Ok(t) => Some(t),
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                },
                None => None,
            };
            match tokio::time::timeout(
                self.timeout,
                self.post_once(ep, path, body, token.as_deref()),
            )
            .await
            {
                Ok(Ok((200, v))) => {
                    if let Some(e) = v.get("error") {
                        return Err(EtcdError::Refused(e.to_string()));
                    }
                    // Streams wrap their answers in {"result": …}.
                    return Ok(v.get("result").cloned().unwrap_or(v));
                }
                Ok(Ok((status, v))) => {
                    let msg = v
                        .get("message")
                        .or_else(|| v.get("error"))
                        .map_or_else(|| v.to_string(), ToString::to_string);
                    // No leader / no quorum: another member may do better.
                    if status >= 500 {
                        errors.push(format!("{ep}: {status} {msg}"));
                        continue;
                    }
                    return Err(EtcdError::Refused(format!("{ep}: {status} {msg}")));
                }
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(format!(
                    "{ep}: no answer within {}",
                    humantime::format_duration(self.timeout)
                )),
            }
        }
        Err(EtcdError::Unreachable(errors.join("; ")))
    }

    async fn authenticate(
        &self,
        ep: &str,
        (user, password): &(String, Secret),
    ) -> Result<String, String> {
        let body = json!({"name": user, "password": password.expose()});
        match tokio::time::timeout(
            self.timeout,
            self.post_once(ep, "/v3/auth/authenticate", &body, None),
        )
        .await
        {
            Ok(Ok((200, v))) => v["token"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{ep}: no token in the answer")),
            Ok(Ok((status, _))) => Err(format!("{ep}: authentication refused ({status})")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("{ep}: authentication timed out")),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self
            .call("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))
            .await?;
        Ok(v["kvs"].as_array().and_then(|a| a.first()).map(kv))
    }

    /// Every key under `prefix`, in key order (at most `limit`; 0: no limit).
    pub async fn list(&self, prefix: &str, limit: i64) -> Result<Vec<Kv>, EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                &json!({
                    "key": b64(prefix.as_bytes()),
                    "range_end": b64(&prefix_end(prefix)),
                    "limit": limit,
                }),
            )
            .await?;
        Ok(v["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv).collect())
            .unwrap_or_default())
    }

    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<i64, EtcdError> {
        let mut body = json!({"key": b64(key.as_bytes()), "value": b64(value)});
        if let Some(l) = lease {
            body["lease"] = json!(l.to_string());
        }
        let v = self.call("/v3/kv/put", &body).await?;
        Ok(int(&v["header"]["revision"]))
    }

    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), EtcdError> {
        self.call(
            "/v3/kv/deleterange",
            &json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        )
        .await?;
        Ok(())
    }

    /// If every compare holds, runs `then`, else `otherwise`; atomically.
    pub async fn txn(
        &self,
        compares: &[Compare],
        then: &[Op],
        otherwise: &[Op],
    ) -> Result<TxnResult, EtcdError> {
        let cmp: Vec<Json> = compares
            .iter()
            .map(|c| match c {
                Compare::Absent(k) => json!({
                    "key": b64(k.as_bytes()), "target": "CREATE", "result": "EQUAL",
                    "create_revision": "0"
                }),
                Compare::Lease(k, l) => json!({
                    "key": b64(k.as_bytes()), "target": "LEASE", "result": "EQUAL",
                    "lease": l.to_string()
                }),
            })
            .collect();
        let ops = |ops: &[Op]| -> Vec<Json> {
            ops.iter()
                .map(|o| match o {
                    Op::Put { key, value, lease } => {
                        let mut p = json!({"key": b64(key.as_bytes()), "value": b64(value)});
                        if let Some(l) = lease {
                            p["lease"] = json!(l.to_string());
                        }
                        json!({"request_put": p})
                    }
                    Op::Get(k) => json!({"request_range": {"key": b64(k.as_bytes())}}),
                    Op::Delete(k) => json!({"request_delete_range": {"key": b64(k.as_bytes())}}),
                })
                .collect()
        };
        let v = self
            .call(
                "/v3/kv/txn",
                &json!({"compare": cmp, "success": ops(then), "failure": ops(otherwise)}),
            )
            .await?;
        let kvs = v["responses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["response_range"]["kvs"].as_array())
            .flatten()
            .map(kv)
            .collect();
        Ok(TxnResult {
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            revision: int(&v["header"]["revision"]),
            kvs,
        })
    }

    /// A lease of `ttl`; keys put with it vanish when it is not kept alive.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let v = self
            .call(
                "/v3/lease/grant",
                &json!({"TTL": ttl.as_secs().max(1).to_string()}),
            )
            .await?;
        let id = int(&v["ID"]);
        if id == 0 {
            return Err(EtcdError::Refused(format!("lease grant: {v}")));
        }
        Ok(id)
    }

    /// Renews a lease; `Ok(false)` when it had already expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<bool, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))
            .await?;
        Ok(int(&v["TTL"]) > 0)
    }

    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
            .await?;
        Ok(())
    }

    /// The current cluster revision (a cheap quorum read).
    pub async fn revision(&self) -> Result<i64, EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                &json!({"key": b64(b"\0"), "count_only": true}),
            )
            .await?;
        Ok(int(&v["header"]["revision"]))
    }

    /// Waits (up to `wait`) for the first change under `prefix` after revision `after`;
    /// `Ok(None)` when nothing changed in time.
    pub async fn watch_once(
        &self,
        prefix: &str,
        after: i64,
        wait: Duration,
    ) -> Result<Option<Vec<Kv>>, EtcdError> {
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": (after + 1).to_string(),
        }});
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            // The first line confirms the watch was created; the second carries events.
            let r = tokio::time::timeout(wait, self.watch_events(ep, &body)).await;
            match r {
                Ok(Ok(kvs)) => return Ok(Some(kvs)),
                Ok(Err(e)) => errors.push(e),
                Err(_) => return Ok(None),
            }
        }
        Err(EtcdError::Unreachable(errors.join("; ")))
    }

    async fn watch_events(&self, endpoint: &str, body: &Json) -> Result<Vec<Kv>, String> {
        let token = match &self.credentials {
            Some(c) => Some(self.authenticate(endpoint, c).await?),
            None => None,
        };
        let (resp, conn) = self
            .post(endpoint, "/v3/watch", body, token.as_deref())
            .await?;
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let result = 'read: loop {
            while let Some(at) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=at).collect();
                let Ok(v) = serde_json::from_slice::<Json>(&line) else {
                    continue;
                };
                if let Some(ev) = v["result"]["events"].as_array().filter(|e| !e.is_empty()) {
                    break 'read Ok(ev.iter().map(|e| kv(&e["kv"])).collect::<Vec<_>>());
                }
            }
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        buf.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => break Err(format!("{endpoint}: {e}")),
                None => break Err(format!("{endpoint}: the watch ended")),
            }
        };
        conn.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("a/"), b"a0".to_vec());
        assert_eq!(prefix_end("ab"), b"ac".to_vec());
    }
}

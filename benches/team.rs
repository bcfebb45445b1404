//! Team mode's costs, against a real 3-member etcd cluster on loopback, beside local mode:
//! taking and releasing a run's lock, the check before each changing command, and publishing
//! one journal line (against the local journal's synced write).
//!
//! `cargo bench --bench team` (ROUNDS=N, default 200).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use opsdeck::lab::etcd::EtcdCluster;
use opsdeck::runbook::lock::{self, LockKey, RunLock};
use opsdeck::team::{ActiveRun, Team};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i]
}

fn show(what: &str, mut v: Vec<Duration>) {
    let p50 = pct(&mut v, 50.0);
    let p99 = pct(&mut v, 99.0);
    println!(
        "{what:<46} p50 {:>8.3} ms   p99 {:>8.3} ms",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start(&tmp.path().join("etcd"), 3).unwrap();
    let cfg = opsdeck::inventory::TeamConfig {
        endpoints: cluster.endpoints(),
        tls: None,
        user: None,
        password: None,
        lease_ttl: Duration::from_secs(10),
        local_fallback: false,
        second_person: Vec::new(),
        prefix: "/opsdeck-bench".to_owned(),
    };
    let team = Team::new(&cfg);
    let keys = vec![
        LockKey::Host("db1".into()),
        LockKey::Host("db2".into()),
        LockKey::Run("bench".into()),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("{rounds} rounds, 3 keys per lock, 3-member etcd on loopback\n");

    let locks = tmp.path().join("locks");
    let local: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let l = RunLock::acquire(&locks, &keys, "bench", "bench").unwrap();
            drop(l);
            t.elapsed()
        })
        .collect();
    show("local lock acquire + release (flock)", local);

    let holder = lock::holder("bench", "bench");
    let active = ActiveRun {
        run: "bench".into(),
        runbook: "bench".into(),
        operator: "bench".into(),
        target: vec!["db1".into()],
        since: holder.since.clone(),
    };
    let (acq, check): (Vec<Duration>, Vec<Duration>) = rt.block_on(async {
        let mut acq = Vec::new();
        let mut check = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let l = team.acquire(&keys, &holder, &active).await.unwrap();
            let took = t.elapsed();
            let t = Instant::now();
            l.check().await.unwrap();
            check.push(t.elapsed());
            let t = Instant::now();
            l.release().await;
            acq.push(took + t.elapsed());
        }
        (acq, check)
    });
    show("team lock acquire + release (lease, txn, revoke)", acq);
    show("team check before a changing command", check);

    let line = format!(
        "{{\"type\":\"event\",\"event\":\"output\",\"text\":\"{}\"}}",
        "x".repeat(200)
    );
    let publish: Vec<Duration> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..rounds {
            let t = Instant::now();
            team.client
                .put(
                    &team.key(&format!("runs/bench/lines/{i:010}")),
                    line.as_bytes(),
                    None,
                )
                .await
                .unwrap();
            v.push(t.elapsed());
        }
        v
    });
    show("team journal publish (one line)", publish);

    let path = tmp.path().join("journal.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let local_write: Vec<Duration> = (0..rounds)
        .map(|_| {
            use std::io::Write as _;
            let t = Instant::now();
            f.write_all(line.as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    show("local journal line, written and synced", local_write);
}

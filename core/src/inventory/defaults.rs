//! The inventory opsdeck uses when none is given: this machine, through the local transport,
//! with whatever services answer on their default loopback ports. So `opsdeck` works with zero
//! configuration.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use super::model::{HttpDef, NginxDef};
use super::{
    Host, Inventory, MysqlRole, MysqlService, RedisRole, RedisService, Services, Tier,
    TransportSpec, Via,
};

const PROBE_TIMEOUT: Duration = Duration::from_millis(150);

fn listening(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok()
}

pub fn local_default() -> Inventory {
    let mut services = Services {
        mounts: vec!["/".to_owned()],
        ..Services::default()
    };
    let mut roles = Vec::new();
    let found = std::thread::scope(|s| {
        let handles: Vec<_> = [3306u16, 6379, 26379, 80]
            .iter()
            .map(|p| (*p, s.spawn(move || listening(*p))))
            .collect();
        handles
            .into_iter()
            .map(|(p, h)| (p, h.join().unwrap_or(false)))
            .collect::<Vec<_>>()
    });
    for (port, up) in found {
        if !up {
            continue;
        }
        match port {
            3306 => {
                roles.push("primary".to_owned());
                services.mysql.push(MysqlService {
                    role: MysqlRole::Primary,
                    address: "127.0.0.1".to_owned(),
                    port,
                    user: "root".to_owned(),
                    via: Via::Direct,
                    password: None,
                    database: None,
                    tls: None,
                    defaults_file: None,
                });
            }
            6379 => {
                roles.push("master".to_owned());
                services.redis.push(RedisService {
                    role: RedisRole::Master,
                    address: "127.0.0.1".to_owned(),
                    port,
                    via: Via::Direct,
                    master_name: None,
                    password: None,
                    username: None,
                    db: 0,
                    tls: None,
                    restart: None,
                });
            }
            26379 => {
                roles.push("sentinel".to_owned());
                services.redis.push(RedisService {
                    role: RedisRole::Sentinel,
                    address: "127.0.0.1".to_owned(),
                    port,
                    via: Via::Direct,
                    master_name: Some("mymaster".to_owned()),
                    password: None,
                    username: None,
                    db: 0,
                    tls: None,
                    restart: None,
                });
            }
            80 => {
                services.http.push(HttpDef {
                    url: "http://127.0.0.1/".to_owned(),
                    app_health: false,
                    via: Via::Direct,
                    tls: None,
                });
                services.nginx = Some(NginxDef {
                    status_url: None,
                    upstreams: Vec::new(),
                    reload: None,
                    upstream_file: None,
                });
            }
            _ => {}
        }
    }
    let name = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    Inventory {
        name: format!("{name} (local default)"),
        source: None,
        tiers: vec![Tier {
            name: "local".to_owned(),
            description: Some("this machine".to_owned()),
            read_only: false,
            thresholds: None,
        }],
        hosts: vec![Host {
            name,
            tier: "local".to_owned(),
            roles,
            description: Some("this machine, through the local transport".to_owned()),
            read_only: false,
            transport: TransportSpec::Local,
            services,
            thresholds: None,
            r#become: None,
        }],
        thresholds: None,
        team: None,
    }
}

//! Host selectors: `all`, a host name, a tier name, `tier:role` (e.g. `db:primary`), or a
//! comma-separated list of those.

use std::fmt;
use std::str::FromStr;

use super::{Host, Inventory};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(Vec<Term>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    All,
    /// A host or tier name.
    Name(String),
    TierRole {
        tier: String,
        role: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("empty selector\n  hint: use a host, a tier, tier:role (e.g. db:primary) or all")]
    Empty,
    #[error(
        "{0:?} matches no host, tier or tier:role in the inventory\n  hint: `opsdeck inventory` lists them"
    )]
    NoMatch(String),
    #[error(
        "{0:?} is not a valid selector term\n  hint: use a host, a tier, tier:role (e.g. db:primary) or all"
    )]
    Malformed(String),
}

/// Hosts a selector picked against the live topology, and what is uncertain about it.
#[derive(Debug, Clone)]
pub struct LiveSelection<'a> {
    pub hosts: Vec<&'a Host>,
    /// Why the selection may be wrong (a role unverified, two claimants).
    pub doubts: Vec<String>,
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut terms = Vec::new();
        for raw in s.split(',') {
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            let valid = |x: &str| {
                !x.is_empty()
                    && x.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            let term = if t == "all" {
                Term::All
            } else if let Some((tier, role)) = t.split_once(':') {
                if !valid(tier) || !valid(role) {
                    return Err(SelectorError::Malformed(t.to_owned()));
                }
                Term::TierRole {
                    tier: tier.to_owned(),
                    role: role.to_owned(),
                }
            } else if valid(t) {
                Term::Name(t.to_owned())
            } else {
                return Err(SelectorError::Malformed(t.to_owned()));
            };
            terms.push(term);
        }
        if terms.is_empty() {
            return Err(SelectorError::Empty);
        }
        Ok(Selector(terms))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|t| match t {
                Term::All => "all".to_owned(),
                Term::Name(n) => n.clone(),
                Term::TierRole { tier, role } => format!("{tier}:{role}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Selector {
    pub fn all() -> Self {
        Selector(vec![Term::All])
    }

    /// The selected hosts in inventory order, each once. Every term must match something:
    /// a typo is an error, not an empty selection.
    pub fn resolve<'a>(&self, inv: &'a Inventory) -> Result<Vec<&'a Host>, SelectorError> {
        let mut picked = vec![false; inv.hosts.len()];
        for term in &self.0 {
            let mut matched = false;
            for (i, h) in inv.hosts.iter().enumerate() {
                let hit = match term {
                    Term::All => true,
                    Term::Name(n) => h.name == *n || h.tier == *n,
                    Term::TierRole { tier, role } => h.tier == *tier && h.has_role(role),
                };
                if hit {
                    picked[i] = true;
                    matched = true;
                }
            }
            let known_tier = match term {
                Term::Name(n) => inv.tier(n).is_some(),
                _ => false,
            };
            if !matched && !known_tier && !matches!(term, Term::All) {
                return Err(SelectorError::NoMatch(
                    Selector(vec![term.clone()]).to_string(),
                ));
            }
        }
        Ok(inv
            .hosts
            .iter()
            .zip(picked)
            .filter_map(|(h, p)| p.then_some(h))
            .collect())
    }

    /// Like [`Selector::resolve`], but a live role (`primary`, `replica`, `master`) is what
    /// the servers report (`live`: a host's observed live roles, for hosts observed fresh):
    /// - hosts that report the role hold it (after a failover: the new primary, whatever the
    ///   inventory says); two reporting `primary` (or `master`) is a doubt (split brain);
    /// - when none reports it, the hosts the inventory declares hold it — corroborated when
    ///   another host of the tier was observed and does not claim it (a full or dead primary
    ///   beside a replica that answers), a doubt when nobody in the tier could be asked.
    pub fn resolve_live<'a>(
        &self,
        inv: &'a Inventory,
        live: &dyn Fn(&str) -> Option<Vec<String>>,
    ) -> Result<LiveSelection<'a>, SelectorError> {
        let is_live = |r: &str| crate::probes::topology::LIVE_ROLES.contains(&r);
        let mut picked = vec![false; inv.hosts.len()];
        let mut doubts = Vec::new();
        for term in &self.0 {
            let hits: Vec<usize> = match term {
                Term::TierRole { tier, role } if is_live(role) => {
                    let members: Vec<usize> = inv
                        .hosts
                        .iter()
                        .enumerate()
                        .filter(|(_, h)| h.tier == *tier)
                        .map(|(i, _)| i)
                        .collect();
                    let observed: Vec<(usize, Vec<String>)> = members
                        .iter()
                        .filter_map(|&i| live(&inv.hosts[i].name).map(|r| (i, r)))
                        .collect();
                    let claim: Vec<usize> = observed
                        .iter()
                        .filter(|(_, r)| r.iter().any(|x| x == role))
                        .map(|(i, _)| *i)
                        .collect();
                    if claim.is_empty() {
                        let declared: Vec<usize> = members
                            .iter()
                            .copied()
                            .filter(|&i| {
                                inv.hosts[i].has_role(role) && live(&inv.hosts[i].name).is_none()
                            })
                            .collect();
                        if !declared.is_empty() && observed.is_empty() {
                            let names: Vec<&str> = declared
                                .iter()
                                .map(|&i| inv.hosts[i].name.as_str())
                                .collect();
                            doubts.push(format!(
                                "{tier}:{role} is {} by the inventory only: no {tier} host could be asked",
                                names.join(", ")
                            ));
                        }
                        declared
                    } else {
                        if (role == "primary" || role == "master") && claim.len() > 1 {
                            let names: Vec<&str> =
                                claim.iter().map(|&i| inv.hosts[i].name.as_str()).collect();
                            doubts.push(format!(
                                "{} all report {role}: the topology is ambiguous (split brain?)",
                                names.join(" and ")
                            ));
                        }
                        claim
                    }
                }
                _ => inv
                    .hosts
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| match term {
                        Term::All => true,
                        Term::Name(n) => h.name == *n || h.tier == *n,
                        Term::TierRole { tier, role } => h.tier == *tier && h.has_role(role),
                    })
                    .map(|(i, _)| i)
                    .collect(),
            };
            for &i in &hits {
                picked[i] = true;
            }
            let known = match term {
                Term::Name(n) => inv.tier(n).is_some(),
                // A live role nobody holds right now (no primary while failing over) is an
                // empty selection for that term, not a typo.
                Term::TierRole { tier, role } => inv.tier(tier).is_some() && is_live(role),
                Term::All => true,
            };
            if hits.is_empty() && !known {
                return Err(SelectorError::NoMatch(
                    Selector(vec![term.clone()]).to_string(),
                ));
            }
        }
        Ok(LiveSelection {
            hosts: inv
                .hosts
                .iter()
                .zip(picked)
                .filter_map(|(h, p)| p.then_some(h))
                .collect(),
            doubts,
        })
    }

    /// True if this selector names a live role anywhere.
    pub fn names_live_role(&self) -> bool {
        self.0.iter().any(|t| {
            matches!(t, Term::TierRole { role, .. }
                if crate::probes::topology::LIVE_ROLES.contains(&role.as_str()))
        })
    }

    /// True if this selector could pick `host` (used to check runbook targets statically).
    pub fn matches(&self, host: &Host) -> bool {
        self.0.iter().any(|t| match t {
            Term::All => true,
            Term::Name(n) => host.name == *n || host.tier == *n,
            Term::TierRole { tier, role } => host.tier == *tier && host.has_role(role),
        })
    }
}

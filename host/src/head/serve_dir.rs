//! The Serve deployments the head keeps (`fabric serve deploy`), and who
//! holds which route: every node that runs an ingress follows this
//! directory ([`ServeDirectory::watch`]) and runs what it holds, so a
//! deployment outlives the client that deployed it, and the head's restart
//! (its state file keeps them).
//!
//! A tenant deploys only as itself (its token names it), and claims the
//! routes of its deployments: a route whose host and path prefix overlap
//! another tenant's (the same host, or either answering any host; one
//! prefix a whole-segment prefix of the other) is refused, as is a host
//! the operator reserved (only the admin's deployments answer those).
//! What a deployment's configuration means is the Serve layer's, which the
//! head reaches through the [`ServeRules`] port; a head without one takes
//! no deployment.
//!
//! ```
//! use fabric_host::head::{RouteClaim, claims_overlap};
//! let api = RouteClaim { host: None, prefix: "/api".into() };
//! let v2 = RouteClaim { host: Some("a.example".into()), prefix: "/api/v2".into() };
//! let apis = RouteClaim { host: None, prefix: "/apis".into() };
//! assert!(claims_overlap(&api, &v2));
//! assert!(!claims_overlap(&api, &apis));
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;

use super::records::Record;

/// Why the head refused a Serve change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServeError {
    #[error("this head takes no Serve deployments")]
    Unsupported,
    #[error("{0}")]
    Invalid(String),
    /// The route meets one another deployment holds.
    #[error("{0}")]
    Clash(String),
    /// The host is the operator's.
    #[error("{0}")]
    Reserved(String),
    #[error("{0}")]
    NotFound(String),
    #[error("limit `{name}` ({value}) exceeded: {message}")]
    Limit {
        name: &'static str,
        value: u64,
        message: String,
    },
}

/// Deployments one tenant may keep.
pub const MAX_DEPLOYMENTS_PER_TENANT: usize = 32;
/// Bytes (components, manifests, configurations) one tenant's kept
/// deployments may hold in the head.
pub const MAX_BYTES_PER_TENANT: usize = 256 << 20;

/// The host and path prefix a deployment's route answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteClaim {
    /// Lowercase; `None` answers any host.
    pub host: Option<String>,
    pub prefix: String,
}

/// Whether two routes could answer the same request: their hosts meet
/// (equal, or either any host) and one prefix is the other's, or one of
/// its leading whole segments.
pub fn claims_overlap(a: &RouteClaim, b: &RouteClaim) -> bool {
    let hosts = a.host.is_none() || b.host.is_none() || a.host == b.host;
    hosts && (segment_prefix(&a.prefix, &b.prefix) || segment_prefix(&b.prefix, &a.prefix))
}

/// Whether `prefix` is `path` or leads it by whole segments.
fn segment_prefix(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    let path = path.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// What the head needs of the Serve layer: what a deployment's
/// configuration claims (checking all of it), and which hosts the
/// operator reserved.
pub trait ServeRules: Send + Sync {
    /// Checks a deployment (its `[[deployment]]` table, name, token and
    /// manifest) and answers the route it claims.
    fn claim(&self, record: &ServeRecord) -> Result<RouteClaim, String>;
    /// Hosts (lowercase) only the admin's deployments may answer.
    fn reserved_hosts(&self) -> &[String];
}

/// One kept deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeRecord {
    pub tenant: String,
    pub name: String,
    /// Its `[[deployment]]` table (TOML).
    pub config: String,
    pub component: Bytes,
    /// Its job manifest (TOML; empty for none).
    pub manifest: String,
    /// The bearer token its route wants (`None`: a public route).
    pub token: Option<String>,
    pub deployed_unix_ms: u64,
    /// Set by the head.
    pub claim: RouteClaim,
    /// Of its component and manifest (set by the head).
    pub digest: String,
}

impl ServeRecord {
    /// What it holds in the head.
    fn bytes(&self) -> usize {
        self.component.len() + self.manifest.len() + self.config.len()
    }

    /// The digest of its component and manifest, as the head records it.
    pub fn digest_of(component: &[u8], manifest: &str) -> String {
        crate::runtime::component::digest(&[component, b"|manifest|", manifest.as_bytes()].concat())
    }
}

/// The deployments as a node's ingress follows them.
#[derive(Clone, Debug)]
pub struct ServeSet {
    pub epoch: u64,
    pub version: u64,
    /// Without their components' bytes ([`ServeDirectory::component`]).
    pub deployments: Vec<ServeRecord>,
    pub reserved_hosts: Vec<String>,
}

/// The kept deployments, by tenant and name.
pub(crate) struct ServeDirectory {
    /// This head's run: a node holding another run's version hears all.
    epoch: u64,
    state: Mutex<Kept>,
    rules: OnceLock<Arc<dyn ServeRules>>,
    /// Held from a change until it is saved, so saves go in the order the
    /// changes were made.
    writes: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Kept {
    version: u64,
    by_key: BTreeMap<(String, String), Arc<ServeRecord>>,
}

impl ServeDirectory {
    pub(crate) fn new() -> Self {
        ServeDirectory {
            epoch: rand::random::<u64>() | 1,
            state: Mutex::new(Kept {
                version: 1,
                by_key: BTreeMap::new(),
            }),
            rules: OnceLock::new(),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes the port to the Serve layer (once; later calls are ignored).
    pub(crate) fn set_rules(&self, rules: Arc<dyn ServeRules>) {
        let _ = self.rules.set(rules);
    }

    fn rules(&self) -> Result<&Arc<dyn ServeRules>, ServeError> {
        self.rules.get().ok_or(ServeError::Unsupported)
    }

    /// Takes back what a previous run of the head saved.
    pub(crate) fn restore(&self, records: Vec<ServeRecord>) {
        let mut kept = self.state.lock();
        for r in records {
            kept.by_key
                .insert((r.tenant.clone(), r.name.clone()), Arc::new(r));
        }
    }

    /// Deploys `records` for `tenant` (replacing its deployments of the same
    /// names), all or none; answers what must be saved.
    pub(crate) fn deploy(
        &self,
        tenant: &str,
        records: Vec<ServeRecord>,
    ) -> Result<Vec<Record>, ServeError> {
        let rules = self.rules()?;
        let mut checked = Vec::with_capacity(records.len());
        for mut r in records {
            r.tenant = tenant.to_string();
            r.claim = rules
                .claim(&r)
                .map_err(|e| ServeError::Invalid(format!("deployment `{}`: {e}", r.name)))?;
            let reserved = |h: &String| rules.reserved_hosts().contains(h);
            if tenant != "admin" && r.claim.host.as_ref().is_some_and(reserved) {
                return Err(ServeError::Reserved(format!(
                    "deployment `{}`: host `{}` is reserved by the operator",
                    r.name,
                    r.claim.host.as_deref().unwrap_or_default()
                )));
            }
            r.digest = ServeRecord::digest_of(&r.component, &r.manifest);
            if checked.iter().any(|o: &ServeRecord| o.name == r.name) {
                return Err(ServeError::Invalid(format!(
                    "two deployments are named `{}`",
                    r.name
                )));
            }
            checked.push(r);
        }
        let mut kept = self.state.lock();
        let mut next = kept.by_key.clone();
        for r in &checked {
            next.insert((r.tenant.clone(), r.name.clone()), Arc::new(r.clone()));
        }
        check_tenant_bounds(&next, tenant)?;
        for r in &checked {
            check_claims(&next, r)?;
        }
        kept.by_key = next;
        kept.version += 1;
        Ok(checked
            .into_iter()
            .map(|r| Record::Serve(Box::new(r)))
            .collect())
    }

    /// Deletes `tenant`'s deployments `names`; answers what must be saved.
    /// Every name must be one of its deployments.
    pub(crate) fn delete(&self, tenant: &str, names: &[String]) -> Result<Vec<Record>, ServeError> {
        let mut kept = self.state.lock();
        let key = |n: &String| (tenant.to_string(), n.clone());
        if let Some(n) = names.iter().find(|n| !kept.by_key.contains_key(&key(n))) {
            return Err(ServeError::NotFound(format!(
                "tenant `{tenant}` has no deployment `{n}`"
            )));
        }
        for n in names {
            kept.by_key.remove(&key(n));
        }
        kept.version += 1;
        Ok(names
            .iter()
            .map(|n| Record::ForgetServe(tenant.to_string(), n.clone()))
            .collect())
    }

    /// The deployments `tenant` keeps (every tenant's for `None`).
    pub(crate) fn list(&self, tenant: Option<&str>) -> Vec<Arc<ServeRecord>> {
        let kept = self.state.lock();
        kept.by_key
            .values()
            .filter(|r| tenant.is_none_or(|t| r.tenant == t))
            .cloned()
            .collect()
    }

    /// Everything, without components, unless a node holds (`epoch`,
    /// `version`) already.
    pub(crate) fn watch(&self, epoch: u64, version: u64) -> Option<ServeSet> {
        let kept = self.state.lock();
        if epoch == self.epoch && version == kept.version {
            return None;
        }
        let deployments = kept
            .by_key
            .values()
            .map(|r| ServeRecord {
                component: Bytes::new(),
                ..(**r).clone()
            })
            .collect();
        let reserved_hosts = match self.rules.get() {
            Some(rules) => rules.reserved_hosts().to_vec(),
            None => Vec::new(),
        };
        Some(ServeSet {
            epoch: self.epoch,
            version: kept.version,
            deployments,
            reserved_hosts,
        })
    }

    /// Deployment `name`'s component, if it is still the one of `digest`.
    pub(crate) fn component(&self, tenant: &str, name: &str, digest: &str) -> Option<Bytes> {
        let kept = self.state.lock();
        let r = kept.by_key.get(&(tenant.to_string(), name.to_string()))?;
        (r.digest == digest).then(|| r.component.clone())
    }
}

impl super::Head {
    /// Takes the port to the Serve layer: without it the head refuses
    /// deployments.
    pub fn set_serve_rules(&self, rules: Arc<dyn ServeRules>) {
        self.serve.set_rules(rules);
    }

    /// Deploys `records` as `tenant`'s (see [`ServeDirectory::deploy`]);
    /// answers once they are saved.
    pub(crate) async fn serve_deploy(
        &self,
        tenant: &str,
        records: Vec<ServeRecord>,
    ) -> Result<(), super::HeadError> {
        let _writing = self.serve.writes.lock().await;
        let saved = self.serve.deploy(tenant, records)?;
        self.save(saved).await
    }

    pub(crate) async fn serve_delete(
        &self,
        tenant: &str,
        names: &[String],
    ) -> Result<(), super::HeadError> {
        let _writing = self.serve.writes.lock().await;
        let saved = self.serve.delete(tenant, names)?;
        self.save(saved).await
    }

    /// `tenant`'s deployments (every tenant's for `None`).
    pub fn serve_deployments(&self, tenant: Option<&str>) -> Vec<Arc<ServeRecord>> {
        self.serve.list(tenant)
    }

    pub(crate) fn serve_watch(&self, epoch: u64, version: u64) -> Option<ServeSet> {
        self.serve.watch(epoch, version)
    }

    pub(crate) fn serve_component(&self, tenant: &str, name: &str, digest: &str) -> Option<Bytes> {
        self.serve.component(tenant, name, digest)
    }
}

/// `tenant` within its count and bytes in `next`.
fn check_tenant_bounds(
    next: &BTreeMap<(String, String), Arc<ServeRecord>>,
    tenant: &str,
) -> Result<(), ServeError> {
    let mine: Vec<_> = next.values().filter(|r| r.tenant == tenant).collect();
    if mine.len() > MAX_DEPLOYMENTS_PER_TENANT {
        return Err(ServeError::Limit {
            name: "serve-deployments",
            value: MAX_DEPLOYMENTS_PER_TENANT as u64,
            message: format!("a tenant keeps at most {MAX_DEPLOYMENTS_PER_TENANT} deployments"),
        });
    }
    let bytes: usize = mine.iter().map(|r| r.bytes()).sum();
    if bytes > MAX_BYTES_PER_TENANT {
        return Err(ServeError::Limit {
            name: "serve-bytes",
            value: MAX_BYTES_PER_TENANT as u64,
            message: format!(
                "a tenant's deployments hold at most {} MiB in the head",
                MAX_BYTES_PER_TENANT >> 20
            ),
        });
    }
    Ok(())
}

/// `r`'s route clashes with no other tenant's, and is no other of its
/// tenant's deployments' exact route.
fn check_claims(
    next: &BTreeMap<(String, String), Arc<ServeRecord>>,
    r: &ServeRecord,
) -> Result<(), ServeError> {
    for o in next.values() {
        if o.tenant == r.tenant && o.name == r.name {
            continue;
        }
        let clash = if o.tenant == r.tenant {
            o.claim.host == r.claim.host
                && o.claim.prefix.trim_end_matches('/') == r.claim.prefix.trim_end_matches('/')
        } else {
            claims_overlap(&o.claim, &r.claim)
        };
        if clash {
            let whose = match o.tenant == r.tenant {
                true => format!("your deployment `{}`", o.name),
                false => "another tenant".to_string(),
            };
            return Err(ServeError::Clash(format!(
                "deployment `{}`: its route {}{} meets one {whose} holds",
                r.name,
                r.claim.host.as_deref().unwrap_or("(any host)"),
                r.claim.prefix
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rules(Vec<String>);

    impl ServeRules for Rules {
        fn claim(&self, r: &ServeRecord) -> Result<RouteClaim, String> {
            let (host, prefix) = r.config.split_once(' ').ok_or("bad")?;
            Ok(RouteClaim {
                host: (host != "*").then(|| host.to_string()),
                prefix: prefix.to_string(),
            })
        }
        fn reserved_hosts(&self) -> &[String] {
            &self.0
        }
    }

    fn record(name: &str, route: &str) -> ServeRecord {
        ServeRecord {
            tenant: String::new(),
            name: name.into(),
            config: route.into(),
            component: Bytes::from_static(b"wasm"),
            manifest: String::new(),
            token: None,
            deployed_unix_ms: 0,
            claim: RouteClaim {
                host: None,
                prefix: String::new(),
            },
            digest: String::new(),
        }
    }

    fn directory() -> ServeDirectory {
        let d = ServeDirectory::new();
        d.set_rules(Arc::new(Rules(vec!["ops.example".into()])));
        d
    }

    #[test]
    fn another_tenants_overlapping_route_is_refused_and_nothing_changes() {
        let d = directory();
        d.deploy("a", vec![record("api", "* /api")]).unwrap();
        let before = d.watch(0, 0).unwrap().version;
        for route in ["* /api/v2", "x.example /api", "* /", "x.example /"] {
            let e = d.deploy("b", vec![record("x", "* /ok"), record("y", route)]);
            assert!(
                e.unwrap_err().to_string().contains("another tenant"),
                "{route}"
            );
        }
        assert_eq!(d.watch(0, 0).unwrap().version, before);
        assert_eq!(d.list(Some("b")), vec![]);
        d.deploy("b", vec![record("x", "* /apis"), record("y", "* /b")])
            .unwrap();
        // Its own tenant may nest routes, not repeat one.
        d.deploy("a", vec![record("v2", "* /api/v2")]).unwrap();
        let e = d.deploy("a", vec![record("again", "* /api/")]).unwrap_err();
        assert!(e.to_string().contains("your deployment `api`"), "{e}");
    }

    #[test]
    fn reserved_hosts_are_the_admins() {
        let d = directory();
        let e = d
            .deploy("a", vec![record("x", "ops.example /")])
            .unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
        d.deploy("admin", vec![record("x", "ops.example /")])
            .unwrap();
    }

    #[test]
    fn a_tenant_keeps_a_bounded_number_of_deployments() {
        let d = directory();
        let many: Vec<_> = (0..=MAX_DEPLOYMENTS_PER_TENANT)
            .map(|i| record(&format!("d{i}"), &format!("* /d{i}")))
            .collect();
        let e = d.deploy("a", many).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
        let mut big = record("big", "* /big");
        big.component = Bytes::from(vec![0u8; MAX_BYTES_PER_TENANT + 1]);
        assert!(d.deploy("a", vec![big]).is_err());
    }

    #[test]
    fn a_watch_hears_changes_once_and_components_by_digest() {
        let d = directory();
        let first = d.watch(0, 0).unwrap();
        assert!(d.watch(first.epoch, first.version).is_none());
        d.deploy("a", vec![record("x", "* /x")]).unwrap();
        let next = d.watch(first.epoch, first.version).unwrap();
        assert_eq!(next.deployments.len(), 1);
        assert!(next.deployments[0].component.is_empty());
        let digest = &next.deployments[0].digest;
        assert_eq!(d.component("a", "x", digest).as_deref(), Some(&b"wasm"[..]));
        assert_eq!(d.component("b", "x", digest), None);
        d.delete("a", &["x".into()]).unwrap();
        assert!(d.delete("a", &["x".into()]).is_err());
        assert!(
            d.watch(next.epoch, next.version)
                .unwrap()
                .deployments
                .is_empty()
        );
    }

    #[test]
    fn without_rules_the_head_takes_nothing() {
        let d = ServeDirectory::new();
        assert!(d.deploy("a", vec![record("x", "* /x")]).is_err());
    }
}

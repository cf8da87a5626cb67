//! The Serve deployments the head keeps (`fabric serve deploy`), and who
//! holds which route: every node that runs an ingress follows this
//! directory ([`ServeDirectory::watch`]) and runs what it holds, so a
//! deployment outlives the client that deployed it, and the head's restart
//! (its state file keeps them).
//!
//! A tenant deploys only as itself (its token names it), and claims the
//! routes of its deployments. A host belongs to the tenant whose
//! deployments name it: another tenant may claim no path on it (the first
//! to claim a host keeps it until its last deployment there is deleted;
//! the operator reserves hosts for the admin's deployments). The Serve
//! layer's rules (the [`ServeRules`] port: what a deployment's
//! configuration means) let only the operator's deployments answer any
//! host, and every ingress keeps those routes off the hosts tenants hold;
//! two routes for any host may not overlap (one prefix a whole-segment
//! prefix of the other). A head without rules takes no deployment, and
//! one started again checks what it kept against its (new) rules.
//!
//! ```
//! use fabric_host::head::{RouteClaim, claims_overlap};
//! let api = RouteClaim { host: None, prefix: "/api".into() };
//! let v2 = RouteClaim { host: Some("a.example".into()), prefix: "/api/v2".into() };
//! let apis = RouteClaim { host: None, prefix: "/apis".into() };
//! assert!(claims_overlap(&api, &v2));
//! assert!(!claims_overlap(&api, &apis));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::records::{Record, ServeLoad};
use crate::ids::NodeId;

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
    /// SHA-256 of the bearer token its route wants (`None`: a public
    /// route); the token itself is never sent to the head.
    pub token_sha256: Option<[u8; 32]>,
    pub deployed_unix_ms: u64,
    /// Set by the head.
    pub claim: RouteClaim,
    /// Of its component and manifest (set by the head).
    pub digest: String,
    /// Of everything above: what a node fetches it by (set by the head).
    pub revision: String,
}

/// The largest `[[deployment]]` table, manifest and route token the head
/// keeps (a node fetches each whole; the watch carries none of them).
pub const MAX_CONFIG_BYTES: usize = 64 << 10;
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;
pub const MAX_TOKEN_BYTES: usize = 1 << 10;

impl ServeRecord {
    /// What it holds in the head.
    fn bytes(&self) -> usize {
        let token = self.token_sha256.map_or(0, |t| t.len());
        self.component.len() + self.manifest.len() + self.config.len() + token
    }

    /// Its revision: a digest of its claim's inputs and its digest.
    fn revision_of(&self) -> String {
        let token = self.token_sha256.as_ref().map_or(&[][..], |t| &t[..]);
        let lengths = [self.config.len() as u64, token.len() as u64];
        let parts = [
            &lengths[0].to_le_bytes()[..],
            &lengths[1].to_le_bytes(),
            self.config.as_bytes(),
            token,
            self.digest.as_bytes(),
        ];
        crate::runtime::component::digest(&parts.concat())
    }

    /// Checks what the head bounds itself, before anything is read.
    fn check_sizes(&self) -> Result<(), ServeError> {
        let too_big = |what: &str, max: usize| {
            Err(ServeError::Invalid(format!(
                "deployment `{}`: its {what} is over {} KiB",
                self.name,
                max >> 10
            )))
        };
        if self.config.len() > MAX_CONFIG_BYTES {
            return too_big("table", MAX_CONFIG_BYTES);
        }
        if self.manifest.len() > MAX_MANIFEST_BYTES {
            return too_big("manifest", MAX_MANIFEST_BYTES);
        }
        Ok(())
    }

    /// The digest of its component and manifest, as the head records it
    /// (the component's length first, so no two pairs read the same).
    pub fn digest_of(component: &[u8], manifest: &str) -> String {
        let length = (component.len() as u64).to_le_bytes();
        crate::runtime::component::digest(&[&length, component, manifest.as_bytes()].concat())
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
    /// The deployments of the head's answer a node could not read, as
    /// (tenant, name, why): a node's view only, empty on the head.
    pub unreadable: Vec<(String, String, String)>,
}

/// A checked deploy or delete: what the deployments become, and the
/// records that make it durable.
pub(crate) struct Change {
    next: BTreeMap<(String, String), Arc<ServeRecord>>,
    tenant: String,
    /// Counted among the tenant's changes once applied.
    paced: bool,
    pub(crate) records: Vec<Record>,
}

/// The kept deployments, by tenant and name.
pub(crate) struct ServeDirectory {
    /// This head's run: a node holding another run's version hears all.
    epoch: u64,
    state: Mutex<Kept>,
    rules: OnceLock<Arc<dyn ServeRules>>,
    /// Held from a change's check until it is applied, so saves go in the
    /// order the changes were made and nothing changes what was checked.
    writes: Arc<tokio::sync::Mutex<()>>,
    /// What each node's ingress last reported, and when.
    loads: Mutex<HashMap<NodeId, (Instant, Vec<ServeLoad>)>>,
    /// When each tenant's changes of the last minute were made.
    changes: Mutex<HashMap<String, std::collections::VecDeque<Instant>>>,
    /// Told each new version, for the watches waiting on one.
    versions: tokio::sync::watch::Sender<u64>,
}

/// The longest a node's watch is held when nothing changes.
pub const MAX_WATCH_WAIT: Duration = Duration::from_secs(30);

/// Deploys and deletes one tenant may make in a minute: each makes every
/// ingress fetch what changed.
pub const CHANGES_PER_MINUTE: usize = 30;

/// Deployments one node's report may hold (a node runs at most its
/// tenants' kept deployments, and its own `fabric serve` file's).
const MAX_LOADS_PER_NODE: usize = 4096;

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
            writes: Arc::new(tokio::sync::Mutex::new(())),
            loads: Mutex::new(HashMap::new()),
            changes: Mutex::new(HashMap::new()),
            versions: tokio::sync::watch::Sender::new(1),
        }
    }

    /// Takes the port to the Serve layer (once; later calls are ignored),
    /// and checks what a previous run kept against it: a deployment it now
    /// refuses (a host the operator reserved since, a claim another kept
    /// one, deployed earlier, holds) is dropped, logged; answers what must
    /// be saved.
    pub(crate) fn set_rules(&self, rules: Arc<dyn ServeRules>) -> Vec<Record> {
        if self.rules.set(rules.clone()).is_err() {
            return Vec::new();
        }
        let mut kept = self.state.lock();
        let mut restored: Vec<ServeRecord> = kept.by_key.values().map(|r| (**r).clone()).collect();
        restored.sort_by_key(|r| r.deployed_unix_ms);
        let mut next = BTreeMap::new();
        let mut dropped = Vec::new();
        for mut r in restored {
            let key = (r.tenant.clone(), r.name.clone());
            let checked = r
                .check_sizes()
                .and_then(|()| claim(rules.as_ref(), &mut r))
                .and_then(|()| {
                    let arc = Arc::new(r.clone());
                    next.insert(key.clone(), arc);
                    check_claims(&next, &r)
                });
            if let Err(e) = checked {
                tracing::warn!(tenant = %r.tenant, deployment = %r.name, "a kept deployment is dropped: {e}");
                next.remove(&key);
                dropped.push(Record::ForgetServe(key.0, key.1));
            }
        }
        kept.by_key = next;
        kept.version += 1;
        self.versions.send_replace(kept.version);
        dropped
    }

    fn rules(&self) -> Result<&Arc<dyn ServeRules>, ServeError> {
        self.rules.get().ok_or(ServeError::Unsupported)
    }

    /// Whether `tenant` may change its deployments now: it made fewer than
    /// [`CHANGES_PER_MINUTE`] changes in the last minute.
    fn may_change(&self, tenant: &str) -> Result<(), ServeError> {
        let mut changes = self.changes.lock();
        changes.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(60))
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        if changes
            .get(tenant)
            .is_some_and(|t| t.len() >= CHANGES_PER_MINUTE)
        {
            return Err(ServeError::Limit {
                name: "serve-changes",
                value: CHANGES_PER_MINUTE as u64,
                message: format!(
                    "a tenant deploys or deletes at most {CHANGES_PER_MINUTE} times a minute"
                ),
            });
        }
        Ok(())
    }

    /// Counts one change `tenant` made.
    fn changed(&self, tenant: &str) {
        let mut changes = self.changes.lock();
        changes
            .entry(tenant.to_string())
            .or_default()
            .push_back(Instant::now());
    }

    /// Takes back what a previous run of the head saved.
    pub(crate) fn restore(&self, records: Vec<ServeRecord>) {
        let mut kept = self.state.lock();
        for r in records {
            kept.by_key
                .insert((r.tenant.clone(), r.name.clone()), Arc::new(r));
        }
    }

    /// Checks `records` as `tenant`'s deployments (replacing its
    /// deployments of the same names), all or none; answers the change,
    /// which nothing sees until it is saved and [applied](Self::apply).
    pub(crate) fn deploy(
        &self,
        tenant: &str,
        records: Vec<ServeRecord>,
    ) -> Result<Change, ServeError> {
        let rules = self.rules()?;
        self.may_change(tenant)?;
        let mut checked = Vec::with_capacity(records.len());
        for mut r in records {
            r.tenant = tenant.to_string();
            r.check_sizes()?;
            claim(rules.as_ref(), &mut r)?;
            if checked.iter().any(|o: &ServeRecord| o.name == r.name) {
                return Err(ServeError::Invalid(format!(
                    "two deployments are named `{}`",
                    r.name
                )));
            }
            checked.push(r);
        }
        let mut next = self.state.lock().by_key.clone();
        for r in &checked {
            next.insert((r.tenant.clone(), r.name.clone()), Arc::new(r.clone()));
        }
        check_tenant_bounds(&next, tenant)?;
        for r in &checked {
            check_claims(&next, r)?;
        }
        Ok(Change {
            next,
            tenant: tenant.to_string(),
            paced: true,
            records: checked
                .into_iter()
                .map(|r| Record::Serve(Box::new(r)))
                .collect(),
        })
    }

    /// Checks the deletion of `tenant`'s deployments `names` (each must be
    /// one of its deployments); answers the change, to save and apply.
    /// `paced`: counted among `tenant`'s changes (the admin's deletes of
    /// a tenant's deployments are not, nor held back by them).
    pub(crate) fn delete(
        &self,
        tenant: &str,
        names: &[String],
        paced: bool,
    ) -> Result<Change, ServeError> {
        if paced {
            self.may_change(tenant)?;
        }
        let mut next = self.state.lock().by_key.clone();
        let key = |n: &String| (tenant.to_string(), n.clone());
        if let Some(n) = names.iter().find(|n| !next.contains_key(&key(n))) {
            return Err(ServeError::NotFound(format!(
                "tenant `{tenant}` has no deployment `{n}`"
            )));
        }
        for n in names {
            next.remove(&key(n));
        }
        Ok(Change {
            next,
            tenant: tenant.to_string(),
            paced,
            records: names
                .iter()
                .map(|n| Record::ForgetServe(tenant.to_string(), n.clone()))
                .collect(),
        })
    }

    /// Makes a checked change (saved by now) what the nodes see. The
    /// caller holds `writes` from the check until here, so nothing else
    /// changed the deployments meanwhile.
    pub(crate) fn apply(&self, change: Change) {
        let mut kept = self.state.lock();
        kept.by_key = change.next;
        kept.version += 1;
        self.versions.send_replace(kept.version);
        drop(kept);
        if change.paced {
            self.changed(&change.tenant);
        }
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

    /// Every deployment's claim and revision (not its table, component,
    /// manifest or token: [`ServeDirectory::fetch`]), unless a node holds
    /// (`epoch`, `version`) already.
    pub(crate) fn watch(&self, epoch: u64, version: u64) -> Option<ServeSet> {
        let kept = self.state.lock();
        if epoch == self.epoch && version == kept.version {
            return None;
        }
        let deployments = kept
            .by_key
            .values()
            .map(|r| ServeRecord {
                config: String::new(),
                component: Bytes::new(),
                manifest: String::new(),
                token_sha256: None,
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
            unreadable: Vec::new(),
        })
    }

    /// Takes node `node`'s report of its ingress's deployments.
    pub(crate) fn report(&self, node: NodeId, mut loads: Vec<ServeLoad>) {
        let mut all = self.loads.lock();
        if loads.is_empty() {
            all.remove(&node);
            return;
        }
        loads.truncate(MAX_LOADS_PER_NODE);
        all.insert(node, (Instant::now(), loads));
    }

    /// The reports younger than `fresh`, by node (older ones are dropped:
    /// their node stopped reporting, or died).
    pub(crate) fn loads(&self, fresh: Duration) -> Vec<(NodeId, ServeLoad)> {
        let mut all = self.loads.lock();
        all.retain(|_, (at, _)| at.elapsed() < fresh);
        all.iter()
            .flat_map(|(node, (_, loads))| loads.iter().map(|l| (*node, l.clone())))
            .collect()
    }

    /// Deployment `name`, whole, if it is still at `revision`.
    pub(crate) fn fetch(
        &self,
        tenant: &str,
        name: &str,
        revision: &str,
    ) -> Option<Arc<ServeRecord>> {
        let kept = self.state.lock();
        let r = kept.by_key.get(&(tenant.to_string(), name.to_string()))?;
        (r.revision == revision).then(|| r.clone())
    }
}

impl super::Head {
    /// Takes the port to the Serve layer: without it the head refuses
    /// deployments.
    pub fn set_serve_rules(&self, rules: Arc<dyn ServeRules>) {
        let dropped = self.serve.set_rules(rules);
        self.save_later(dropped);
    }

    /// Deploys `records` as `tenant`'s (see [`ServeDirectory::deploy`]);
    /// answers once they are saved.
    pub(crate) async fn serve_deploy(
        &self,
        tenant: &str,
        records: Vec<ServeRecord>,
    ) -> Result<(), super::HeadError> {
        let writing = self.serve.writes.clone().lock_owned().await;
        let change = self.serve.deploy(tenant, records)?;
        self.save_and_apply(change, writing).await
    }

    pub(crate) async fn serve_delete(
        &self,
        tenant: &str,
        names: &[String],
        paced: bool,
    ) -> Result<(), super::HeadError> {
        let writing = self.serve.writes.clone().lock_owned().await;
        let change = self.serve.delete(tenant, names, paced)?;
        self.save_and_apply(change, writing).await
    }

    /// Saves `change`, then makes it seen: a change the head could not
    /// save is answered as failed and is not served, so what the nodes
    /// serve is what a restarted head would have. Both run on a task of
    /// their own, which holds `writing` until the change is applied: a
    /// caller that goes away (a reset stream, a deadline) once the save
    /// is asked for leaves no saved change unapplied (unseen by the nodes,
    /// unpaced, its claim hidden until a restart brings it back).
    async fn save_and_apply(
        &self,
        mut change: Change,
        writing: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<(), super::HeadError> {
        let (store, serve) = (self.store.clone(), self.serve.clone());
        let records = std::mem::take(&mut change.records);
        let saved = tokio::spawn(async move {
            let _writing = writing;
            if let Some(store) = store {
                store
                    .save(records)
                    .await
                    .map_err(super::HeadError::Unsaved)?;
            }
            serve.apply(change);
            Ok(())
        });
        saved.await.unwrap_or_else(|e| {
            Err(super::HeadError::Unsaved(crate::error::NodeError::Config(
                format!("the save's task ended: {e}"),
            )))
        })
    }

    /// `tenant`'s deployments (every tenant's for `None`).
    pub fn serve_deployments(&self, tenant: Option<&str>) -> Vec<Arc<ServeRecord>> {
        self.serve.list(tenant)
    }

    /// What changed since (`epoch`, `version`), as soon as something does,
    /// or `None` once `wait` (at most [`MAX_WATCH_WAIT`]) passed.
    pub(crate) async fn serve_watch(
        &self,
        epoch: u64,
        version: u64,
        wait: Duration,
    ) -> Option<ServeSet> {
        // Subscribed first: a change after the look below wakes it.
        let mut versions = self.serve.versions.subscribe();
        if let Some(set) = self.serve.watch(epoch, version) {
            return Some(set);
        }
        let wait = wait.min(MAX_WATCH_WAIT);
        let _ = tokio::time::timeout(wait, versions.changed()).await;
        self.serve.watch(epoch, version)
    }

    pub(crate) fn serve_fetch(
        &self,
        tenant: &str,
        name: &str,
        revision: &str,
    ) -> Option<Arc<ServeRecord>> {
        self.serve.fetch(tenant, name, revision)
    }

    pub(crate) fn serve_report(&self, node: NodeId, loads: Vec<ServeLoad>) {
        self.serve.report(node, loads);
    }

    /// Every node's ingress deployments, as last reported within a death
    /// timeout.
    pub fn serve_loads(&self) -> Vec<(NodeId, ServeLoad)> {
        self.serve.loads(self.timing.node_timeout)
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

/// Checks `r` as the head keeps it (its table through `rules`, its host
/// against the reserved ones) and sets its claim, digest and revision.
fn claim(rules: &dyn ServeRules, r: &mut ServeRecord) -> Result<(), ServeError> {
    r.claim = rules
        .claim(r)
        .map_err(|e| ServeError::Invalid(format!("deployment `{}`: {e}", r.name)))?;
    let reserved = |h: &String| rules.reserved_hosts().contains(h);
    if r.tenant != "admin" && r.claim.host.as_ref().is_some_and(reserved) {
        return Err(ServeError::Reserved(format!(
            "deployment `{}`: host `{}` is reserved by the operator",
            r.name,
            r.claim.host.as_deref().unwrap_or_default()
        )));
    }
    r.digest = ServeRecord::digest_of(&r.component, &r.manifest);
    r.revision = r.revision_of();
    Ok(())
}

/// `r`'s claim against every other in `next`. A host belongs to the one
/// tenant whose deployments name it (no other tenant may claim any path
/// on it, and the ingress keeps other tenants' routes for any host off
/// it); routes for any host of two tenants may not overlap; one tenant's
/// two deployments may not claim the same route.
fn check_claims(
    next: &BTreeMap<(String, String), Arc<ServeRecord>>,
    r: &ServeRecord,
) -> Result<(), ServeError> {
    let trimmed = |c: &RouteClaim| c.prefix.trim_end_matches('/').to_string();
    for o in next.values() {
        if o.tenant == r.tenant && o.name == r.name {
            continue;
        }
        let clash = match (&o.claim.host, &r.claim.host) {
            _ if o.tenant == r.tenant => {
                o.claim.host == r.claim.host && trimmed(&o.claim) == trimmed(&r.claim)
            }
            (Some(a), Some(b)) => a == b,
            (None, None) => claims_overlap(&o.claim, &r.claim),
            _ => false,
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
            token_sha256: None,
            deployed_unix_ms: 0,
            claim: RouteClaim {
                host: None,
                prefix: String::new(),
            },
            digest: String::new(),
            revision: String::new(),
        }
    }

    /// Deploys as the head does once the records are saved.
    fn deploy(
        d: &ServeDirectory,
        tenant: &str,
        records: Vec<ServeRecord>,
    ) -> Result<(), ServeError> {
        d.apply(d.deploy(tenant, records)?);
        Ok(())
    }

    fn delete(
        d: &ServeDirectory,
        tenant: &str,
        names: &[String],
        paced: bool,
    ) -> Result<(), ServeError> {
        d.apply(d.delete(tenant, names, paced)?);
        Ok(())
    }

    #[test]
    fn a_change_not_applied_is_not_seen_nor_counted() {
        let d = directory();
        let watched = d.watch(0, 0).unwrap();
        // A save that failed: the change is dropped, never applied.
        let change = d.deploy("a", vec![record("x", "* /x")]).unwrap();
        assert!(matches!(&change.records[..], [Record::Serve(_)]));
        drop(change);
        assert!(d.watch(watched.epoch, watched.version).is_none());
        assert_eq!(d.list(None), vec![]);
        assert!(d.changes.lock().is_empty(), "a failed change is not paced");
        // A delete the same: the deployment stays.
        deploy(&d, "a", vec![record("x", "* /x")]).unwrap();
        drop(d.delete("a", &["x".into()], true).unwrap());
        assert_eq!(d.list(Some("a")).len(), 1);
    }

    fn directory() -> ServeDirectory {
        let d = ServeDirectory::new();
        d.set_rules(Arc::new(Rules(vec!["ops.example".into()])));
        d
    }

    #[test]
    fn another_tenants_host_or_overlapping_route_is_refused_and_nothing_changes() {
        let d = directory();
        deploy(
            &d,
            "a",
            vec![record("api", "* /api"), record("site", "a.example /x")],
        )
        .unwrap();
        let before = d.watch(0, 0).unwrap().version;
        // A route for any host inside a's, and any path on a's host.
        for route in ["* /api/v2", "* /", "a.example /", "a.example /other"] {
            let e = deploy(&d, "b", vec![record("x", "* /ok"), record("y", route)]);
            assert!(
                e.unwrap_err().to_string().contains("another tenant"),
                "{route}"
            );
        }
        assert_eq!(d.watch(0, 0).unwrap().version, before);
        assert_eq!(d.list(Some("b")), vec![]);
        // Its own host may hold what a's routes for any host hold: the
        // ingress keeps a's off b's host.
        let ok = [record("x", "* /apis"), record("y", "b.example /api")];
        deploy(&d, "b", ok.to_vec()).unwrap();
        // Its own tenant may nest routes, not repeat one.
        deploy(&d, "a", vec![record("v2", "* /api/v2")]).unwrap();
        let e = deploy(&d, "a", vec![record("again", "* /api/")]).unwrap_err();
        assert!(e.to_string().contains("your deployment `api`"), "{e}");
    }

    #[test]
    fn rules_set_again_drop_what_they_now_refuse() {
        let d = ServeDirectory::new();
        d.set_rules(Arc::new(Rules(Vec::new())));
        deploy(
            &d,
            "a",
            vec![record("x", "ops.example /x"), record("y", "* /y")],
        )
        .unwrap();
        let kept: Vec<ServeRecord> = d.list(None).iter().map(|r| (**r).clone()).collect();
        // A head started again, with ops.example reserved now.
        let again = ServeDirectory::new();
        again.restore(kept);
        let dropped = again.set_rules(Arc::new(Rules(vec!["ops.example".into()])));
        assert!(matches!(&dropped[..], [Record::ForgetServe(t, n)] if t == "a" && n == "x"));
        let names: Vec<String> = again.list(None).iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, ["y"]);
    }

    #[test]
    fn reserved_hosts_are_the_admins() {
        let d = directory();
        let e = deploy(&d, "a", vec![record("x", "ops.example /")]).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
        deploy(&d, "admin", vec![record("x", "ops.example /")]).unwrap();
    }

    #[test]
    fn a_tenant_keeps_a_bounded_number_of_deployments() {
        let d = directory();
        let many: Vec<_> = (0..=MAX_DEPLOYMENTS_PER_TENANT)
            .map(|i| record(&format!("d{i}"), &format!("* /d{i}")))
            .collect();
        let e = deploy(&d, "a", many).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
        let mut big = record("big", "* /big");
        big.component = Bytes::from(vec![0u8; MAX_BYTES_PER_TENANT + 1]);
        assert!(deploy(&d, "a", vec![big]).is_err());
    }

    #[test]
    fn a_watch_hears_changes_once_and_nodes_fetch_by_revision() {
        let d = directory();
        let first = d.watch(0, 0).unwrap();
        assert!(d.watch(first.epoch, first.version).is_none());
        let mut x = record("x", "* /x");
        x.token_sha256 = Some([7; 32]);
        deploy(&d, "a", vec![x]).unwrap();
        let next = d.watch(first.epoch, first.version).unwrap();
        assert_eq!(next.deployments.len(), 1);
        // The watch carries claims and revisions, nothing a tenant wrote.
        let lean = &next.deployments[0];
        assert!(lean.component.is_empty() && lean.config.is_empty() && lean.token_sha256.is_none());
        let whole = d.fetch("a", "x", &lean.revision).unwrap();
        assert_eq!(
            (&whole.component[..], whole.config.as_str()),
            (&b"wasm"[..], "* /x")
        );
        assert!(d.fetch("b", "x", &lean.revision).is_none());
        delete(&d, "a", &["x".into()], true).unwrap();
        assert!(delete(&d, "a", &["x".into()], true).is_err());
        assert!(
            d.watch(next.epoch, next.version)
                .unwrap()
                .deployments
                .is_empty()
        );
    }

    #[test]
    fn a_table_or_manifest_past_its_bound_is_refused() {
        let d = directory();
        let mut x = record("x", "* /x");
        x.config.push_str(&"#".repeat(MAX_CONFIG_BYTES));
        assert!(deploy(&d, "a", vec![x]).is_err());
        let mut y = record("y", "* /y");
        y.manifest = "#".repeat(MAX_MANIFEST_BYTES + 1);
        assert!(deploy(&d, "a", vec![y]).is_err());
    }

    #[test]
    fn a_tenants_changes_are_paced() {
        let d = directory();
        for i in 0..CHANGES_PER_MINUTE {
            deploy(&d, "a", vec![record("x", &format!("* /x{i}"))]).unwrap();
        }
        let e = deploy(&d, "a", vec![record("x", "* /y")]).unwrap_err();
        assert!(e.to_string().contains("serve-changes"), "{e}");
        deploy(&d, "b", vec![record("x", "* /b")]).unwrap();
    }

    #[tokio::test]
    async fn a_waiting_watch_hears_a_change_at_once() {
        let head = std::sync::Arc::new(directory());
        let first = head.watch(0, 0).unwrap();
        let (epoch, version) = (first.epoch, first.version);
        let waiting = {
            let head = head.clone();
            tokio::spawn(async move {
                let mut versions = head.versions.subscribe();
                if head.watch(epoch, version).is_none() {
                    let _ = versions.changed().await;
                }
                head.watch(epoch, version)
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        deploy(&head, "a", vec![record("x", "* /x")]).unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the deploy")
            .unwrap();
        assert_eq!(heard.unwrap().deployments.len(), 1);
    }

    #[test]
    fn without_rules_the_head_takes_nothing() {
        let d = ServeDirectory::new();
        assert!(deploy(&d, "a", vec![record("x", "* /x")]).is_err());
    }
}

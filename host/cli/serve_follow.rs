//! `fabric start --ingress FILE`: an HTTP ingress on this node that serves
//! the deployments the cluster's head keeps (`fabric serve deploy`),
//! following them as they are deployed, replaced and deleted.
//!
//! The node keeps a watch open at the head, which answers as soon as the
//! deployments change (or after 20 s, with nothing): each deployment's
//! claim and revision. The node fetches whole the ones whose revision it
//! does not hold. Each tenant's deployments are brought in step by a task of
//! their own, as `fabric serve` does on a reload (`serve_deployments`): a
//! replaced deployment's new replicas start before its route switches, so
//! no request is dropped; one that cannot start here within a minute is
//! logged and left as it was. A tenant's slow or broken deployment holds
//! back only that tenant's changes: the routes switch for each tenant as
//! its task finishes. Requests never cross the head: while it is down the
//! ingress serves what it had, and catches up once it is back. Each
//! ingress runs its own replicas of every deployment (placed anywhere in
//! the cluster), so `replicas` and `autoscaling` count per ingress.
//!
//! A tenant's deployments name their hosts; the operator's (admin) may
//! answer any host, and those routes leave alone the hosts tenants'
//! deployments name (from the head's claims, as they are now).
//!
//! FILE holds `[ingress]` only (listen address, TLS, metrics token,
//! bounds), with paths relative to it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use fabric_host::Node;
use fabric_host::cluster::ClusterHandle;
use fabric_host::head::{ServeLoad, ServeRecord, ServeSet};
use fabric_host::serve::config::{DeploymentConfig, IngressConfig};
use fabric_host::serve::{Route, Serve};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::serve_deployments::{Deployed, OnFailure, Sources};

/// How long the head may hold the ingress's watch when nothing changes.
const WATCH_WAIT: Duration = Duration::from_secs(20);

/// How soon the ingress asks again after the head failed it.
const RETRY_HEAD: Duration = Duration::from_secs(1);

/// How soon a tenant's deployments that could not be applied are tried
/// again, unless they change first.
const RETRY_AFTER: Duration = Duration::from_secs(10);

#[derive(Args, Clone, Debug, Default)]
pub struct IngressArgs {
    /// Run an HTTP ingress on this node serving the deployments the head
    /// keeps (`fabric serve deploy`); FILE holds its `[ingress]`.
    #[arg(long, value_name = "FILE")]
    pub ingress: Option<PathBuf>,

    /// Listen here instead of the file's `ingress.listen`.
    #[arg(long, value_name = "ADDR", requires = "ingress")]
    pub ingress_listen: Option<SocketAddr>,

    /// On the head: a host only the admin's deployments may claim (the
    /// ingress's own public names, say). Repeatable.
    #[arg(long = "serve-reserved-host", value_name = "HOST")]
    pub reserved_hosts: Vec<String>,
}

/// A node's ingress and the deployments it runs for the head.
pub struct Follower {
    node: Node,
    routes: Arc<Routes>,
    /// The deployments held here, whole, by tenant and name.
    records: HashMap<(String, String), Arc<ServeRecord>>,
    /// Each tenant's task, and where its deployments reach it.
    tenants: HashMap<String, (watch::Sender<Arc<TenantSet>>, JoinHandle<()>)>,
    /// The head's run and version of what runs here (0: nothing yet).
    held: (u64, u64),
    /// Whether the last call to the head failed (logged once an outage).
    head_down: bool,
    /// The deployments the head's last answer held that this node could
    /// not read (logged once each, until they can be read).
    unreadable: std::collections::HashSet<(String, String)>,
}

/// The ingress, and each tenant's routes on it.
struct Routes {
    serve: Arc<Serve>,
    state: std::sync::Mutex<RouteState>,
}

#[derive(Default)]
struct RouteState {
    by_tenant: BTreeMap<String, Vec<Route>>,
    /// Who owns each host named by a kept deployment (from the head's
    /// claims), and the hosts the operator reserved.
    owners: BTreeMap<String, String>,
    reserved: Vec<String>,
}

impl RouteState {
    /// Every tenant's routes, each route for any host keeping off the
    /// hosts its tenant does not own (another's, or reserved for the
    /// admin), as the claims are now.
    fn table(&self) -> Vec<Route> {
        let mut all = Vec::new();
        for (tenant, routes) in &self.by_tenant {
            let mut not_for: Vec<String> = self
                .owners
                .iter()
                .filter(|(_, owner)| *owner != tenant)
                .map(|(host, _)| host.clone())
                .collect();
            if tenant != "admin" {
                not_for.extend(self.reserved.iter().cloned());
            }
            let not_for: Arc<[String]> = not_for.into();
            all.extend(
                routes
                    .iter()
                    .map(|r| r.clone().not_for_hosts(not_for.clone())),
            );
        }
        all
    }
}

impl Routes {
    /// Serves `routes` for `tenant` beside every other tenant's.
    fn set(&self, tenant: &str, routes: Vec<Route>) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let old = match routes.is_empty() {
            true => state.by_tenant.remove(tenant),
            false => state.by_tenant.insert(tenant.to_string(), routes),
        };
        if let Err(e) = self.serve.set_routes(state.table()) {
            match old {
                Some(old) => state.by_tenant.insert(tenant.to_string(), old),
                None => state.by_tenant.remove(tenant),
            };
            return Err(e.into());
        }
        Ok(())
    }

    /// Takes the head's claims and reserved hosts as they are now.
    fn set_claims(&self, owners: BTreeMap<String, String>, reserved: Vec<String>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.owners == owners && state.reserved == reserved {
            return;
        }
        state.owners = owners;
        state.reserved = reserved;
        if let Err(e) = self.serve.set_routes(state.table()) {
            tracing::error!("the ingress's routes are as they were: {e}");
        }
    }
}

/// One tenant's deployments as the head keeps them, for its task.
#[derive(Default)]
struct TenantSet {
    configs: Vec<DeploymentConfig>,
    records: HashMap<String, Arc<ServeRecord>>,
}

impl Follower {
    /// Starts the ingress `args` asks for, if it asks for one.
    pub async fn start(args: &IngressArgs, node: &Node) -> anyhow::Result<Option<Follower>> {
        let Some(file) = &args.ingress else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let ingress = IngressConfig::parse_file(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("in {}", file.display()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let listen = args.ingress_listen.unwrap_or(ingress.listen);
        let (serve, scheme) =
            crate::serve::start_ingress(&ingress, base, listen, node, Vec::new()).await?;
        eprintln!("ingress serving on {scheme}://{}", serve.address());
        let routes = Routes {
            serve: Arc::new(serve),
            state: Default::default(),
        };
        Ok(Some(Follower {
            node: node.clone(),
            routes: Arc::new(routes),
            records: HashMap::new(),
            tenants: HashMap::new(),
            held: (0, 0),
            head_down: false,
            unreadable: Default::default(),
        }))
    }

    /// The ingress (for the node's metrics).
    pub fn serve(&self) -> Arc<Serve> {
        self.routes.serve.clone()
    }

    /// What the ingress runs now, as the head's dashboard shows it.
    pub fn report(&self) -> fabric_host::cluster::ServeReport {
        report(&self.routes.serve)
    }

    /// Follows the head's deployments until dropped.
    pub async fn run(&mut self, joined: &ClusterHandle) {
        loop {
            self.tenants.retain(|_, (_, task)| !task.is_finished());
            let (epoch, version) = self.held;
            let set = match joined.serve_watch(epoch, version, WATCH_WAIT).await {
                Ok(set) => set,
                Err(e) => {
                    if !self.head_down {
                        tracing::warn!("the ingress serves what it has: {e}");
                    }
                    self.head_down = true;
                    tokio::time::sleep(RETRY_HEAD).await;
                    continue;
                }
            };
            self.head_down = false;
            if let Some(set) = set {
                let held = self.held;
                self.apply(joined, set).await;
                if self.held == held {
                    // Not all of it came: the head answers again at once.
                    tokio::time::sleep(RETRY_HEAD).await;
                }
            }
        }
    }

    /// Fetches what changed in `set` and hands each tenant its part. A
    /// deployment that could not be fetched (the head is gone, or it was
    /// deployed again meanwhile) stays as it was here, and `set` is not
    /// held as applied, so the next tick tries again.
    async fn apply(&mut self, joined: &ClusterHandle, set: ServeSet) {
        let mut complete = true;
        let mut records = self.keep_unreadable(set.unreadable);
        // The claims first, from the head's list: a host is kept from other
        // tenants' routes even before its owner's deployment is fetched.
        let owners = records
            .values()
            .map(|r| &**r)
            .chain(&set.deployments)
            .filter_map(|r| Some((r.claim.host.clone()?, r.tenant.clone())))
            .collect();
        self.routes.set_claims(owners, set.reserved_hosts.clone());
        for r in set.deployments {
            let key = (r.tenant.clone(), r.name.clone());
            let held = self.records.get(&key).filter(|h| h.revision == r.revision);
            let record = match held {
                Some(h) => h.clone(),
                None => match joined.serve_fetch(&r.tenant, &r.name, &r.revision).await {
                    Ok(whole) => Arc::new(whole),
                    Err(e) => {
                        tracing::warn!(tenant = %r.tenant, deployment = %r.name, "cannot fetch it: {e}");
                        complete = false;
                        match self.records.get(&key) {
                            Some(old) => old.clone(),
                            None => continue,
                        }
                    }
                },
            };
            records.insert(key, record);
        }
        self.records = records;
        let parts = tenant_sets(&self.records);
        let gone: Vec<String> = self
            .tenants
            .keys()
            .filter(|t| !parts.contains_key(*t))
            .cloned()
            .collect();
        for tenant in gone {
            self.hand(tenant, TenantSet::default());
        }
        for (tenant, part) in parts {
            self.hand(tenant, part);
        }
        if complete {
            self.held = (set.epoch, set.version);
        }
    }

    /// The deployments of the head's answer this node could not read, as
    /// held here: each stays as it was, claim and all, and is logged once.
    /// Asking again would read the same bytes: the set counts as applied,
    /// and the next change at the head (a redeploy of it, or its delete)
    /// is read afresh.
    fn keep_unreadable(
        &mut self,
        unreadable: Vec<(String, String, String)>,
    ) -> HashMap<(String, String), Arc<ServeRecord>> {
        let mut kept = HashMap::new();
        let mut keys = std::collections::HashSet::new();
        for (tenant, name, why) in unreadable {
            let key = (tenant, name);
            if !self.unreadable.contains(&key) {
                tracing::error!(tenant = %key.0, deployment = %key.1, "cannot read the head's record of it: {why}");
            }
            if let Some(old) = self.records.get(&key) {
                kept.insert(key.clone(), old.clone());
            }
            keys.insert(key);
        }
        self.unreadable = keys;
        kept
    }

    /// Hands `tenant`'s task its deployments, starting the task if needed.
    fn hand(&mut self, tenant: String, part: TenantSet) {
        let part = Arc::new(part);
        // A task that ended (its tenant had nothing here) takes no more: a
        // new one does.
        if let Some((tx, task)) = self.tenants.get(&tenant)
            && !task.is_finished()
            && tx.send(part.clone()).is_ok()
        {
            return;
        }
        let (tx, rx) = watch::channel(part);
        let task = tokio::spawn(serve_tenant(
            tenant.clone(),
            self.node.clone(),
            rx,
            self.routes.clone(),
        ));
        self.tenants.insert(tenant, (tx, task));
    }

    /// Stops every deployment here (their jobs end) and waits, a little,
    /// for the tenants' tasks to let them go.
    pub async fn stop(mut self) {
        let tasks: Vec<JoinHandle<()>> = self.tenants.drain().map(|(_, (_, t))| t).collect();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Each tenant's deployments in `records`.
fn tenant_sets(
    records: &HashMap<(String, String), Arc<ServeRecord>>,
) -> HashMap<String, TenantSet> {
    let mut parts: HashMap<String, TenantSet> = HashMap::new();
    for ((tenant, name), r) in records {
        let mut d = match DeploymentConfig::parse_one(&r.config) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(%tenant, deployment = %name, "cannot read it: {e}");
                continue;
            }
        };
        d.tenant = Some(tenant.clone());
        d.name = name.clone();
        let part = parts.entry(tenant.clone()).or_default();
        part.configs.push(d);
        part.records.insert(name.clone(), r.clone());
    }
    parts
}

/// One tenant's task: brings its deployments here in step with the latest
/// set it was handed, and ends (stopping them) once that set is empty or
/// the follower is gone.
async fn serve_tenant(
    tenant: String,
    node: Node,
    mut rx: watch::Receiver<Arc<TenantSet>>,
    routes: Arc<Routes>,
) {
    let mut deployed = Deployed::default();
    loop {
        let part = rx.borrow_and_update().clone();
        let kept = Kept(part.clone());
        let planned = deployed
            .plan(&node, &kept, &part.configs, OnFailure::Skip)
            .await;
        let applied = match planned {
            Ok(mut plan) => match routes.set(&tenant, std::mem::take(&mut plan.routes)) {
                Ok(()) => {
                    deployed.commit(plan);
                    true
                }
                Err(e) => {
                    tracing::error!(%tenant, "its routes are as they were: {e:#}");
                    false
                }
            },
            Err(e) => {
                tracing::error!(%tenant, "its deployments are as they were: {e:#}");
                false
            }
        };
        if part.configs.is_empty() && applied {
            return;
        }
        // What failed is tried again after a while, or at the next change.
        let next = async {
            match applied {
                true => rx.changed().await.is_ok(),
                false => tokio::select! {
                    changed = rx.changed() => changed.is_ok(),
                    _ = tokio::time::sleep(RETRY_AFTER) => true,
                },
            }
        };
        if !next.await {
            let _ = routes.set(&tenant, Vec::new());
            return;
        }
    }
}

/// One tenant's deployments as a [`Sources`].
struct Kept(Arc<TenantSet>);

impl Kept {
    fn of(&self, d: &DeploymentConfig) -> anyhow::Result<&ServeRecord> {
        self.0
            .records
            .get(&d.name)
            .map(|r| r.as_ref())
            .context("the head sent no such deployment")
    }
}

impl Sources for Kept {
    fn component(&self, d: &DeploymentConfig) -> anyhow::Result<Bytes> {
        Ok(self.of(d)?.component.clone())
    }

    fn manifest(&self, d: &DeploymentConfig) -> anyhow::Result<String> {
        Ok(self.of(d)?.manifest.clone())
    }

    /// The digest the head sent, which must agree with the table: a route
    /// that wants a token and came without a digest (a record from a head
    /// this node does not understand) is not served, rather than public.
    fn token_sha256(&self, d: &DeploymentConfig) -> anyhow::Result<Option<[u8; 32]>> {
        let digest = self.of(d)?.token_sha256;
        match (d.token_file.is_some(), digest.is_some()) {
            (true, false) => anyhow::bail!("its route wants a token, and the head sent no digest"),
            (false, true) => anyhow::bail!("its route is public, and the head sent a token digest"),
            _ => Ok(digest),
        }
    }
}

/// What `serve` runs now, as the head's dashboard shows it (sent with the
/// node's heartbeats; nothing once it is gone: the report does not keep
/// the ingress listening).
pub fn report(serve: &Arc<Serve>) -> fabric_host::cluster::ServeReport {
    let serve = Arc::downgrade(serve);
    Arc::new(move || match serve.upgrade() {
        Some(serve) => serve.deployments().iter().map(load).collect(),
        None => Vec::new(),
    })
}

/// A deployment's state on this ingress, as the head keeps reports.
fn load(d: &fabric_host::serve::own::DeploymentState) -> ServeLoad {
    let class = |c: &str| d.requests.get(c).copied().unwrap_or(0);
    ServeLoad {
        tenant: d.tenant.clone(),
        name: d.name.clone(),
        host: d.host.clone(),
        route: d.route.clone(),
        stateless: d.kind == "stateless",
        replicas: d.replicas.unwrap_or(0),
        starting: d.starting.unwrap_or(0),
        ongoing: d.ongoing,
        queued: d.queued,
        requests: [class("2xx"), class("3xx"), class("4xx"), class("5xx")],
        p50_ms: d.p50_ms,
        p99_ms: d.p99_ms,
    }
}

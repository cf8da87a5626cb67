//! `fabric start --ingress FILE`: an HTTP ingress on this node that serves
//! the deployments the cluster's head keeps (`fabric serve deploy`),
//! following them as they are deployed, replaced and deleted.
//!
//! The node asks the head every second whether the deployments changed
//! (one small call when nothing did), fetches the components it lacks, and
//! brings its own deployments in step as `fabric serve` does on a reload
//! (`serve_deployments`): a replaced deployment's new replicas start
//! before the route switches, so no request is dropped. One tenant's
//! deployment that cannot start here is logged and left as it was; the
//! others go ahead. Requests never cross the head: while it is down the
//! ingress serves what it had, and catches up once it is back. Each
//! ingress runs its own replicas of every deployment (placed anywhere in
//! the cluster), so `replicas` and `autoscaling` count per ingress.
//!
//! FILE holds `[ingress]` only (listen address, TLS, metrics token,
//! bounds), with paths relative to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use fabric_host::Node;
use fabric_host::cluster::ClusterHandle;
use fabric_host::head::{ServeRecord, ServeSet};
use fabric_host::serve::config::{DeploymentConfig, IngressConfig};
use fabric_host::serve::{Route, Serve};

use crate::serve_deployments::{Deployed, OnFailure, Sources};

/// How often the ingress asks the head whether its deployments changed.
const WATCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Args, Clone, Debug, Default)]
pub struct IngressArgs {
    /// Run an HTTP ingress on this node serving the deployments the head
    /// keeps (`fabric serve deploy`); FILE holds its `[ingress]`.
    #[arg(long, value_name = "FILE")]
    pub ingress: Option<PathBuf>,

    /// Listen here instead of the file's `ingress.listen`.
    #[arg(long, value_name = "ADDR", requires = "ingress")]
    pub ingress_listen: Option<SocketAddr>,

    /// On the head: a host only the admin's deployments may answer (a
    /// tenant's route for any host leaves it alone). Repeatable.
    #[arg(long = "serve-reserved-host", value_name = "HOST")]
    pub reserved_hosts: Vec<String>,
}

/// A node's ingress and the deployments it runs for the head.
pub struct Follower {
    node: Node,
    serve: Serve,
    deployed: Deployed,
    /// The components of the deployments it runs, by digest.
    components: HashMap<String, Bytes>,
    /// The head's run and version of what runs here (0: nothing yet).
    held: (u64, u64),
    /// Whether the last call to the head failed (logged once an outage).
    head_down: bool,
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
        Ok(Some(Follower {
            node: node.clone(),
            serve,
            deployed: Deployed::default(),
            components: HashMap::new(),
            held: (0, 0),
            head_down: false,
        }))
    }

    /// Follows the head's deployments until dropped.
    pub async fn run(&mut self, joined: &ClusterHandle) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (epoch, version) = self.held;
            let set = match joined.serve_watch(epoch, version).await {
                Ok(set) => set,
                Err(e) => {
                    if !self.head_down {
                        tracing::warn!("the ingress serves what it has: {e}");
                    }
                    self.head_down = true;
                    continue;
                }
            };
            self.head_down = false;
            let Some(set) = set else {
                continue;
            };
            if let Err(e) = self.apply(joined, set).await {
                tracing::error!("the ingress's deployments are as they were: {e:#}");
            }
        }
    }

    /// Brings the deployments here in step with `set`. What fails before
    /// anything starts (the head did not send a component) is tried again
    /// at the next tick; past that, `set` is held as applied, so a
    /// deployment that cannot start here is not started again every second
    /// (the next change tries it again).
    async fn apply(&mut self, joined: &ClusterHandle, set: ServeSet) -> anyhow::Result<()> {
        let held = (set.epoch, set.version);
        let reserved: Arc<[String]> = set.reserved_hosts.into();
        let mut kept = Kept {
            by_key: HashMap::new(),
            reserved,
        };
        let mut configs = Vec::with_capacity(set.deployments.len());
        for r in set.deployments {
            let mut d = match DeploymentConfig::parse_one(&r.config) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(tenant = %r.tenant, deployment = %r.name, "cannot read it: {e}");
                    continue;
                }
            };
            d.tenant = Some(r.tenant.clone());
            d.name = r.name.clone();
            let component = match self.components.get(&r.digest) {
                Some(bytes) => bytes.clone(),
                None => joined
                    .serve_component(&r.tenant, &r.name, &r.digest)
                    .await
                    .with_context(|| format!("cannot fetch `{}`'s component", r.name))?,
            };
            kept.by_key.insert(
                (r.tenant.clone(), r.name.clone()),
                Kept1 {
                    record: r,
                    component,
                },
            );
            configs.push(d);
        }
        self.held = held;
        let mut plan = self
            .deployed
            .plan(&self.node, &kept, &configs, OnFailure::Skip)
            .await?;
        self.serve.set_routes(std::mem::take(&mut plan.routes))?;
        self.deployed.commit(plan);
        self.components = kept
            .by_key
            .into_values()
            .map(|k| (k.record.digest, k.component))
            .collect();
        Ok(())
    }
}

/// The head's deployments as a [`Sources`].
struct Kept {
    by_key: HashMap<(String, String), Kept1>,
    reserved: Arc<[String]>,
}

struct Kept1 {
    record: ServeRecord,
    component: Bytes,
}

impl Kept {
    fn of(&self, d: &DeploymentConfig) -> anyhow::Result<&Kept1> {
        let tenant = d.tenant.clone().unwrap_or_default();
        self.by_key
            .get(&(tenant, d.name.clone()))
            .context("the head sent no such deployment")
    }
}

impl Sources for Kept {
    fn component(&self, d: &DeploymentConfig) -> anyhow::Result<Bytes> {
        Ok(self.of(d)?.component.clone())
    }

    fn manifest(&self, d: &DeploymentConfig) -> anyhow::Result<String> {
        Ok(self.of(d)?.record.manifest.clone())
    }

    fn token(&self, d: &DeploymentConfig) -> anyhow::Result<Option<String>> {
        Ok(self.of(d)?.record.token.clone())
    }

    /// A tenant's route for any host leaves the operator's hosts alone.
    fn route(&self, d: &DeploymentConfig, route: Route) -> Route {
        match d.tenant.as_deref() {
            Some("admin") => route,
            _ => route.not_for_hosts(self.reserved.clone()),
        }
    }
}

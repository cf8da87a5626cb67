//! The deployments one `fabric serve` runs, kept in step with its
//! configuration file: read at start, and again on `SIGHUP`.
//!
//! On a reload each deployment is compared with the one of the same name
//! that runs: if its replicas would be the same (the same component and
//! manifest bytes, class, method, resources, counts and bounds), it stays,
//! and a changed `user_config` reaches its replicas through their
//! `reconfigure` method (no restart); what the ingress applies per request
//! (route, host, token, body bounds) takes effect with the new routes.
//! Anything else starts a new deployment beside the old one; once its
//! replicas are up the routes switch to it, and the old one stops when its
//! last request is answered, so a redeploy drops no request. A reload that
//! fails (a file that does not parse, a component that does not build)
//! changes nothing and is logged: new deployments start and every file
//! is read before any running deployment is reconfigured. (A reconfigure
//! that fails falls back to new replicas; if those cannot start either,
//! deployments reconfigured before it in the same reload keep their new
//! config.)

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use fabric_host::logs::TerminalSink;
use fabric_host::resources::ResourceSet;
use fabric_host::runtime::actor::Restarts;
use fabric_host::runtime::service::ServiceActor;
use fabric_host::serve::config::DeploymentConfig;
use fabric_host::serve::deployment::{Deployment, DeploymentPlan};
use fabric_host::serve::stateless::{Stateless, StatelessPlan};
use fabric_host::serve::{Route, Target};
use fabric_host::{JobOptions, Node};

/// Where a deployment's component, manifest and route token come from:
/// files beside a configuration ([`Files`]), or what the head keeps.
pub trait Sources: Send + Sync {
    /// The component's bytes.
    fn component(&self, d: &DeploymentConfig) -> anyhow::Result<bytes::Bytes>;
    /// The job manifest's text (checked; empty for none).
    fn manifest(&self, d: &DeploymentConfig) -> anyhow::Result<String>;
    /// SHA-256 of the bearer token its route wants (`None`: public).
    fn token_sha256(&self, d: &DeploymentConfig) -> anyhow::Result<Option<[u8; 32]>>;
}

/// A configuration file's deployments: their files relative to `base`
/// (a `.py` file or a Cargo project built first).
pub struct Files<'a> {
    pub base: &'a Path,
    pub python: &'a crate::python::PythonArgs,
}

impl Sources for Files<'_> {
    fn component(&self, d: &DeploymentConfig) -> anyhow::Result<bytes::Bytes> {
        let path = crate::project::component_path(&self.base.join(&d.component), self.python)?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(bytes.into())
    }

    fn manifest(&self, d: &DeploymentConfig) -> anyhow::Result<String> {
        let path = d.manifest.as_ref().map(|m| self.base.join(m));
        crate::run::read_manifest(path.as_deref())
    }

    fn token_sha256(&self, d: &DeploymentConfig) -> anyhow::Result<Option<[u8; 32]>> {
        let token = route_token(self.base, d)?;
        Ok(token.as_deref().map(fabric_host::serve::token_sha256))
    }
}

/// What a deployment that fails to start does to the others.
#[derive(Clone, Copy, PartialEq)]
pub enum OnFailure {
    /// Nothing changes (a configuration file, read again).
    Refuse,
    /// It is logged and left as it was (running, or not), and the others
    /// go ahead (the head's deployments: one tenant's broken deployment
    /// must not hold back another's).
    Skip,
}

/// The running deployments, by tenant and name.
#[derive(Default)]
pub struct Deployed {
    by_name: HashMap<String, Running>,
}

/// Where `d` is found among the running ones: tenants may reuse names.
fn key(d: &DeploymentConfig) -> String {
    format!("{}/{}", tenant_of(d), d.name)
}

#[derive(Clone)]
struct Running {
    config: DeploymentConfig,
    /// Digest of the component's and the manifest's bytes.
    inputs: String,
    target: Target,
}

/// Deployments a reload started, whose handle names go again if the
/// reload fails (cleared once it succeeds).
struct Started(Vec<Arc<Deployment>>);

impl Drop for Started {
    fn drop(&mut self) {
        for d in &self.0 {
            d.release_handle_name();
        }
    }
}

/// Routes for a configuration, and the deployments they reach: the
/// caller serves the routes, then [`Deployed::commit`]s.
pub struct Plan {
    pub routes: Vec<Route>,
    next: HashMap<String, Running>,
}

impl Deployed {
    /// Brings up what `config` asks that does not run yet (see the module's
    /// docs). Nothing running is stopped here.
    pub async fn plan(
        &mut self,
        node: &Node,
        sources: &dyn Sources,
        deployments: &[DeploymentConfig],
        on_failure: OnFailure,
    ) -> anyhow::Result<Plan> {
        // First what can fail without touching a running deployment: new
        // deployments start (dropped again if a later one fails), files
        // and tokens are read.
        let mut brought = Vec::new();
        let mut started = Started(Vec::new());
        let ups = self
            .bring_up_all(node, sources, deployments, on_failure)
            .await;
        for (d, up) in deployments.iter().zip(ups) {
            let (running, reconfigure, token) = match up {
                Ok(up) => up,
                Err(e) if on_failure == OnFailure::Skip => {
                    tracing::error!(deployment = %key(d), "cannot deploy it: {e:#}");
                    // The running one keeps its route, with its token: one
                    // whose token cannot be read now is not served, rather
                    // than served as public.
                    if let Some(old) = self.by_name.get(&key(d)) {
                        match sources.token_sha256(&old.config) {
                            Ok(token) => brought.push((d, old.clone(), None, token)),
                            Err(e) => tracing::error!(deployment = %key(d),
                                "its route is not served: {e:#}"),
                        }
                    }
                    continue;
                }
                Err(e) => return Err(e.context(format!("cannot deploy `{}`", d.name))),
            };
            if let Target::Replicas(new) = &running.target
                && !self.by_name.values().any(|r| r.target.is(&running.target))
            {
                started.0.push(new.clone());
            }
            brought.push((d, running, reconfigure, token));
        }
        // Then running deployments get their new user config.
        for (d, running, reconfigure, _) in &mut brought {
            if let Some(r) = reconfigure.take() {
                let applied = match on_failure {
                    OnFailure::Refuse => r.apply(node, d, &running.target).await,
                    OnFailure::Skip => within(r.apply(node, d, &running.target)).await,
                };
                running.target = match applied {
                    Ok(target) => target,
                    Err(e) if on_failure == OnFailure::Skip => {
                        tracing::error!(deployment = %key(d), "cannot reconfigure it: {e:#}");
                        continue;
                    }
                    Err(e) => return Err(e.context(format!("cannot deploy `{}`", d.name))),
                };
                // Its replicas have the new config now, whether or not the
                // rest of this reload succeeds: recorded at once, so a
                // later reload compares against what they run.
                if let Some(old) = self.by_name.get_mut(&key(d))
                    && old.target.is(&running.target)
                {
                    old.config.user_config = d.user_config.clone();
                }
            }
        }
        let mut next = HashMap::new();
        let mut routes = Vec::new();
        for (d, running, _, token) in brought {
            routes.push(route_for(d, running.target.clone(), token));
            next.insert(key(d), running);
        }
        started.0.clear();
        Ok(Plan { routes, next })
    }

    /// Takes the plan's deployments as the running ones; those left out
    /// stop once their requests are answered.
    pub fn commit(&mut self, plan: Plan) {
        // The new deployments take their names over while the old ones
        // still hold them, so the handles guests keep reach the new ones
        // (the name's virtual actor id stays); those left out let theirs go.
        for running in plan.next.values() {
            if let Target::Replicas(d) = &running.target
                && let Err(e) = d.take_handle_name()
            {
                tracing::warn!(deployment = %d.name, "its handles cannot reach it: {e}");
            }
        }
        // Every deployment replaced or left out lets its name go (one whose
        // name was taken over holds nothing by now): calls already placed
        // finish, and no new call keeps it running.
        for (name, running) in &self.by_name {
            let kept = plan
                .next
                .get(name)
                .is_some_and(|next| next.target.is(&running.target));
            if let (Target::Replicas(d), false) = (&running.target, kept) {
                d.release_handle_name();
            }
        }
        self.by_name = plan.next;
    }

    /// Each deployment's own (its token, and [`Deployed::bring_up`]): one
    /// after another up to the first failure (`Refuse`), or all at once,
    /// each within [`START_WITHIN`] (`Skip`: one tenant's deployment that
    /// starts slowly, or never, holds back no other's for longer).
    async fn bring_up_all(
        &self,
        node: &Node,
        sources: &dyn Sources,
        deployments: &[DeploymentConfig],
        on_failure: OnFailure,
    ) -> Vec<anyhow::Result<BroughtUp>> {
        let up = |d| async move {
            let token = sources.token_sha256(d)?;
            let (running, reconfigure) = self.bring_up(node, sources, d).await?;
            anyhow::Ok((running, reconfigure, token))
        };
        match on_failure {
            OnFailure::Skip => {
                futures_util::future::join_all(deployments.iter().map(|d| within(up(d)))).await
            }
            OnFailure::Refuse => {
                let mut all = Vec::with_capacity(deployments.len());
                for d in deployments {
                    let r = up(d).await;
                    let failed = r.is_err();
                    all.push(r);
                    if failed {
                        break;
                    }
                }
                all
            }
        }
    }

    /// `d`'s deployment: the running one when its replicas would be the
    /// same (with what reconfigures it, when its user config changed), else
    /// a new one.
    async fn bring_up(
        &self,
        node: &Node,
        sources: &dyn Sources,
        d: &DeploymentConfig,
    ) -> anyhow::Result<(Running, Option<Reconfigure>)> {
        let bytes = sources.component(d)?;
        let manifest = sources.manifest(d)?;
        let inputs = fabric_host::head::ServeRecord::digest_of(&bytes, &manifest);
        let running = self
            .by_name
            .get(&key(d))
            .filter(|r| r.inputs == inputs && r.config.same_replicas(d));
        let (target, reconfigure) = match running {
            Some(r) if r.config.user_config != d.user_config => {
                let args = d.constructor_args().map_err(anyhow::Error::msg)?;
                let reconfigure = Reconfigure {
                    args,
                    bytes,
                    manifest,
                };
                (r.target.clone(), Some(reconfigure))
            }
            Some(r) => (r.target.clone(), None),
            None => (start(node, d, &bytes, &manifest).await?, None),
        };
        let running = Running {
            config: d.clone(),
            inputs,
            target,
        };
        Ok((running, reconfigure))
    }
}

/// A deployment brought up: what runs it, what reconfigures it, and its
/// route's token.
type BroughtUp = (Running, Option<Reconfigure>, Option<[u8; 32]>);

/// How long one of the head's deployments may take to start, or to take a
/// new user config, on a node (its replicas' constructors included).
pub const START_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// `work`, given up after [`START_WITHIN`] (dropping it stops what it
/// started).
async fn within<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(START_WITHIN, work).await {
        Ok(done) => done,
        Err(_) => anyhow::bail!("it did not start within {START_WITHIN:?}"),
    }
}

/// A running deployment's new user config, applied once every new
/// deployment of the reload is up: through its replicas' `reconfigure`,
/// else by new replicas (from `bytes` and `manifest`).
struct Reconfigure {
    args: Vec<bytes::Bytes>,
    bytes: bytes::Bytes,
    manifest: String,
}

impl Reconfigure {
    async fn apply(
        self,
        node: &Node,
        d: &DeploymentConfig,
        target: &Target,
    ) -> anyhow::Result<Target> {
        let Target::Replicas(deployment) = target else {
            return Ok(target.clone()); // a stateless deployment has no user config
        };
        match deployment.reconfigure(self.args).await {
            Ok(()) => {
                tracing::info!(deployment = %d.name, "reconfigured its replicas");
                Ok(target.clone())
            }
            Err(e) => {
                tracing::warn!(deployment = %d.name, error = %e,
                    "cannot reconfigure the replicas: starting new ones");
                start(node, d, &self.bytes, &self.manifest).await
            }
        }
    }
}

/// Loads the component and starts `d`: its replicas, or its stateless
/// service.
async fn start(
    node: &Node,
    d: &DeploymentConfig,
    bytes: &[u8],
    manifest: &str,
) -> anyhow::Result<Target> {
    let Some(class) = &d.class else {
        return start_stateless(node, d, bytes, manifest).await;
    };
    let app = node
        .load_for(bytes, tenant_of(d))
        .await
        .with_context(|| format!("cannot load {}", d.component.display()))?;
    let options = job_options(d, manifest);
    let service = node
        .start_service(app, Arc::new(TerminalSink), options)
        .await?;
    let replica = ServiceActor {
        class: class.clone(),
        args: d.constructor_args().map_err(anyhow::Error::msg)?,
        demand: ResourceSet::default().with_cpus(d.num_cpus()),
        policy: Restarts {
            max_concurrency: d.max_concurrency.unwrap_or(0),
            ..Restarts::default()
        },
    };
    let plan = DeploymentPlan {
        name: d.name.clone(),
        replica,
        replicas: match &d.autoscaling {
            Some(a) => a.initial(),
            None => d.replicas.unwrap_or(1),
        },
        method: d.method().to_string(),
        max_ongoing: d.max_ongoing_requests,
        max_queued: d.max_queued_requests,
        timeout: d.request_timeout,
        autoscaling: d.autoscaling.clone(),
        batch: d.batch.clone(),
    };
    tracing::info!(deployment = %d.name, "starting its replicas");
    Ok(Deployment::start(service, plan).await?.into())
}

/// Loads `d`'s `wasi:http` component and starts its service.
async fn start_stateless(
    node: &Node,
    d: &DeploymentConfig,
    bytes: &[u8],
    manifest: &str,
) -> anyhow::Result<Target> {
    let app = node
        .load_http(bytes, Some(tenant_of(d)))
        .await
        .with_context(|| format!("cannot load {}", d.component.display()))?;
    let options = job_options(d, manifest);
    let service = node
        .start_http_service(app, Arc::new(TerminalSink), options)
        .await?;
    let plan = StatelessPlan {
        name: d.name.clone(),
        max_ongoing: d.max_ongoing_requests,
        max_queued: d.max_queued_requests,
        timeout: d.request_timeout,
    };
    tracing::info!(deployment = %d.name, "serving a wasi:http component");
    Ok(Stateless::start(service, plan).into())
}

/// The tenant `d` runs for.
fn tenant_of(d: &DeploymentConfig) -> &str {
    d.tenant
        .as_deref()
        .unwrap_or(fabric_host::runtime::job::LOCAL_TENANT)
}

/// `d`'s job: its manifest, for its tenant.
fn job_options(d: &DeploymentConfig, manifest: &str) -> JobOptions {
    JobOptions {
        manifest: manifest.to_string(),
        tenant: Some(tenant_of(d).to_string()),
        ..JobOptions::default()
    }
}

/// The token `d`'s route wants, read from its file.
fn route_token(base: &Path, d: &DeploymentConfig) -> anyhow::Result<Option<String>> {
    match &d.token_file {
        None => Ok(None),
        Some(file) => Ok(Some(read_token(&base.join(file))?)),
    }
}

/// `d`'s route to `target`.
fn route_for(d: &DeploymentConfig, target: Target, token_sha256: Option<[u8; 32]>) -> Route {
    Route::new(
        d.host.as_deref(),
        &d.route,
        target,
        None,
        d.max_body,
        d.max_response,
    )
    .with_token_sha256(token_sha256)
}

/// A bearer token from `file`: its text, trimmed, at least 16 characters.
pub fn read_token(file: &Path) -> anyhow::Result<String> {
    let token =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let token = token.trim().to_string();
    if token.len() < 16 {
        bail!("the token in {} is under 16 characters", file.display());
    }
    Ok(token)
}

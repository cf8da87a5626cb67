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
use fabric_host::serve::config::{DeploymentConfig, ServeConfig};
use fabric_host::serve::deployment::{Deployment, DeploymentPlan};
use fabric_host::serve::stateless::{Stateless, StatelessPlan};
use fabric_host::serve::{Route, Target};
use fabric_host::{JobOptions, Node};

/// The running deployments, by name.
#[derive(Default)]
pub struct Deployed {
    by_name: HashMap<String, Running>,
}

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
        base: &Path,
        config: &ServeConfig,
        python: &crate::python::PythonArgs,
    ) -> anyhow::Result<Plan> {
        // First what can fail without touching a running deployment: new
        // deployments start (dropped again if a later one fails), files
        // and tokens are read.
        let mut brought = Vec::new();
        let mut started = Started(Vec::new());
        for d in &config.deployment {
            let (running, reconfigure) = self
                .bring_up(node, base, d, python)
                .await
                .with_context(|| format!("cannot deploy `{}`", d.name))?;
            if let Target::Replicas(new) = &running.target
                && !self.by_name.values().any(|r| r.target.is(&running.target))
            {
                started.0.push(new.clone());
            }
            let token = route_token(base, d)?;
            brought.push((d, running, reconfigure, token));
        }
        // Then running deployments get their new user config.
        for (d, running, reconfigure, _) in &mut brought {
            if let Some(r) = reconfigure.take() {
                running.target = r
                    .apply(node, d, &running.target)
                    .await
                    .with_context(|| format!("cannot deploy `{}`", d.name))?;
                // Its replicas have the new config now, whether or not the
                // rest of this reload succeeds: recorded at once, so a
                // later reload compares against what they run.
                if let Some(old) = self.by_name.get_mut(&d.name)
                    && old.target.is(&running.target)
                {
                    old.config.user_config = d.user_config.clone();
                }
            }
        }
        let mut next = HashMap::new();
        let mut routes = Vec::new();
        for (d, running, _, token) in brought {
            routes.push(route_for(d, running.target.clone(), token.as_deref()));
            next.insert(d.name.clone(), running);
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

    /// `d`'s deployment: the running one when its replicas would be the
    /// same (with what reconfigures it, when its user config changed), else
    /// a new one.
    async fn bring_up(
        &self,
        node: &Node,
        base: &Path,
        d: &DeploymentConfig,
        python: &crate::python::PythonArgs,
    ) -> anyhow::Result<(Running, Option<Reconfigure>)> {
        let path = crate::project::component_path(&base.join(&d.component), python)?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let manifest = d.manifest.as_ref().map(|m| base.join(m));
        let manifest_text = match &manifest {
            Some(m) => std::fs::read(m).with_context(|| format!("cannot read {}", m.display()))?,
            None => Vec::new(),
        };
        let inputs = fabric_host::runtime::component::digest(
            &[bytes.as_slice(), b"|manifest|", &manifest_text].concat(),
        );
        let running = self
            .by_name
            .get(&d.name)
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
            None => (start(node, d, &bytes, manifest.as_deref()).await?, None),
        };
        let running = Running {
            config: d.clone(),
            inputs,
            target,
        };
        Ok((running, reconfigure))
    }
}

/// A running deployment's new user config, applied once every new
/// deployment of the reload is up: through its replicas' `reconfigure`,
/// else by new replicas (from `bytes` and `manifest`).
struct Reconfigure {
    args: Vec<bytes::Bytes>,
    bytes: Vec<u8>,
    manifest: Option<std::path::PathBuf>,
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
                start(node, d, &self.bytes, self.manifest.as_deref()).await
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
    manifest: Option<&Path>,
) -> anyhow::Result<Target> {
    let Some(class) = &d.class else {
        return start_stateless(node, d, bytes, manifest).await;
    };
    let app = node
        .load_for(bytes, tenant_of(d))
        .await
        .with_context(|| format!("cannot load {}", d.component.display()))?;
    let options = job_options(d, manifest)?;
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
    manifest: Option<&Path>,
) -> anyhow::Result<Target> {
    let app = node
        .load_http(bytes, Some(tenant_of(d)))
        .await
        .with_context(|| format!("cannot load {}", d.component.display()))?;
    let options = job_options(d, manifest)?;
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
fn job_options(d: &DeploymentConfig, manifest: Option<&Path>) -> anyhow::Result<JobOptions> {
    Ok(JobOptions {
        manifest: crate::run::read_manifest(manifest)?,
        tenant: Some(tenant_of(d).to_string()),
        ..JobOptions::default()
    })
}

/// The token `d`'s route wants, read from its file.
fn route_token(base: &Path, d: &DeploymentConfig) -> anyhow::Result<Option<String>> {
    match &d.token_file {
        None => Ok(None),
        Some(file) => Ok(Some(read_token(&base.join(file))?)),
    }
}

/// `d`'s route to `target`.
fn route_for(d: &DeploymentConfig, target: Target, token: Option<&str>) -> Route {
    Route::new(
        d.host.as_deref(),
        &d.route,
        target,
        token,
        d.max_body,
        d.max_response,
    )
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

//! `fabric serve CONFIG`: start an embedded node, deploy the configuration's
//! deployments on it, and answer HTTP until interrupted (see
//! `fabric_host::serve` and `serve::config` for the file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use fabric_host::https::Bounds;
use fabric_host::logs::TerminalSink;
use fabric_host::resources::ResourceSet;
use fabric_host::runtime::actor::Restarts;
use fabric_host::runtime::service::ServiceActor;
use fabric_host::serve::config::{DeploymentConfig, ServeConfig};
use fabric_host::serve::deployment::{Deployment, DeploymentPlan};
use fabric_host::serve::{IngressMetrics, Route, Serve};
use fabric_host::{JobOptions, Node};

#[derive(Args)]
pub struct ServeArgs {
    /// The serve configuration (TOML): `[ingress]` and `[[deployment]]`s.
    #[arg(value_name = "CONFIG")]
    pub file: PathBuf,

    /// Listen here instead of the configuration's `ingress.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,

    #[command(flatten)]
    pub python: crate::python::PythonArgs,

    #[command(flatten)]
    pub node: crate::node_args::NodeArgs,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let config = ServeConfig::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("in {}", args.file.display()))?;
    let base = args.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let node_config = args.node.config(true)?;
    let runtime = crate::node_args::node_runtime()?;
    runtime.block_on(async move {
        let node = Node::start(node_config).context("cannot start the node")?;
        let mut routes = Vec::new();
        for d in &config.deployment {
            let route = deploy(&node, &base, d, &args.python)
                .await
                .with_context(|| format!("cannot deploy `{}`", d.name))?;
            routes.push(route);
        }
        let ingress = &config.ingress;
        let bounds = Bounds {
            connections: ingress.max_connections,
            per_address: ingress.max_connections_per_address,
            ..Bounds::default()
        };
        let listen = args.listen.unwrap_or(ingress.listen);
        let metrics = match &ingress.metrics_token_file {
            Some(file) => Some(IngressMetrics {
                token: read_token(&base.join(file))?,
                node: node.clone(),
            }),
            None => None,
        };
        let serve = Serve::start(listen, bounds, routes, metrics).await?;
        // The one line a script reads to find the port.
        println!("serving on http://{}", serve.address());
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        drop(serve);
        Ok(ExitCode::SUCCESS)
    })
}

/// Builds and loads one deployment's component, starts its replicas, and
/// returns its route.
async fn deploy(
    node: &Node,
    base: &Path,
    d: &DeploymentConfig,
    python: &crate::python::PythonArgs,
) -> anyhow::Result<Route> {
    let path = crate::project::component_path(&base.join(&d.component), python)?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let app = node
        .load(&bytes)
        .await
        .with_context(|| format!("cannot load {}", path.display()))?;
    let manifest_path = d.manifest.as_ref().map(|m| base.join(m));
    let manifest = crate::run::read_manifest(manifest_path.as_deref())?;
    let options = JobOptions {
        manifest,
        ..JobOptions::default()
    };
    let service = node
        .start_service(app, Arc::new(TerminalSink), options)
        .await?;
    let args = d.constructor_args().map_err(anyhow::Error::msg)?;
    let replica = ServiceActor {
        class: d.class.clone(),
        args,
        demand: ResourceSet::default().with_cpus(d.num_cpus),
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
        method: d.method.clone(),
        max_ongoing: d.max_ongoing_requests,
        max_queued: d.max_queued_requests,
        timeout: d.request_timeout,
        autoscaling: d.autoscaling.clone(),
    };
    let deployment = Deployment::start(service, plan).await?;
    let token = match &d.token_file {
        None => None,
        Some(file) => Some(read_token(&base.join(file))?),
    };
    Ok(Route::new(
        d.host.as_deref(),
        &d.route,
        deployment,
        token.as_deref(),
        d.max_body,
        d.max_response,
    ))
}

/// A bearer token from `file`: its text, trimmed, at least 16 characters.
fn read_token(file: &Path) -> anyhow::Result<String> {
    let token =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let token = token.trim().to_string();
    if token.len() < 16 {
        bail!("the token in {} is under 16 characters", file.display());
    }
    Ok(token)
}

//! `fabric serve CONFIG`: start an embedded node, deploy the configuration's
//! deployments on it, and answer HTTP until interrupted (see
//! `fabric_host::serve` and `serve::config` for the file). `SIGHUP` reads
//! the file again and redeploys what changed (`serve_deployments`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use fabric_host::Node;
use fabric_host::cluster::ClusterConfig;
use fabric_host::https::{self, Bounds, Versions};
use fabric_host::serve::config::{IngressConfig, ServeConfig};
use fabric_host::serve::{IngressMetrics, IngressOptions, Serve};
use tokio::signal::unix::{SignalKind, signal};

use crate::serve_deployments::{Deployed, Files, OnFailure, read_token};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub action: Option<ServeAction>,

    /// The serve configuration (TOML): `[ingress]` and `[[deployment]]`s.
    #[arg(value_name = "CONFIG", required = true)]
    pub file: Option<PathBuf>,

    /// Listen here instead of the configuration's `ingress.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,

    /// Join the cluster whose head is here, as one of its nodes: replicas
    /// are placed on any node with room, and requests go straight to them
    /// (the head places replicas; it is on no request's way).
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,

    /// The head's join file (with `--address`; keep it secret).
    #[arg(long, value_name = "FILE", requires = "address")]
    pub join_file: Option<PathBuf>,

    /// Where this node listens for its cluster peers (with `--address`).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        requires = "address"
    )]
    pub node_listen: std::net::SocketAddr,

    #[command(flatten)]
    pub python: crate::python::PythonArgs,

    #[command(flatten)]
    pub node: crate::node_args::NodeArgs,
}

/// What `fabric serve` does besides serving.
#[derive(clap::Subcommand)]
pub enum ServeAction {
    /// Show a running `fabric serve`'s deployments: replicas, requests at
    /// them and queued, answers by status class, latency.
    Status(crate::serve_status::ServeStatusArgs),
    /// Deploy a configuration's deployments to a cluster: the head keeps
    /// them, and every node started with `--ingress` serves them.
    Deploy(crate::serve_deploy::ServeDeployArgs),
    /// Delete deployments the head keeps, by name.
    Delete(crate::serve_delete::ServeDeleteArgs),
    /// List the deployments the head keeps (yours; every tenant's for the
    /// admin).
    List(crate::serve_list::ServeListArgs),
}

impl ServeArgs {
    /// The configuration file (clap requires it unless a subcommand runs).
    fn file(&self) -> &Path {
        self.file.as_deref().unwrap_or(Path::new("serve.toml"))
    }
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(ServeAction::Status(a)) => return crate::serve_status::status(a),
        Some(ServeAction::Deploy(a)) => return crate::serve_deploy::deploy(a),
        Some(ServeAction::Delete(a)) => return crate::serve_delete::delete(a),
        Some(ServeAction::List(a)) => return crate::serve_list::list(a),
        None => {}
    }
    let config = read_config(args.file())?;
    let base = args.file().parent().unwrap_or(Path::new(".")).to_path_buf();
    let node_config = args.node.config(true)?;
    let runtime = crate::node_args::node_runtime()?;
    runtime.block_on(async move {
        let node = Node::start(node_config).context("cannot start the node")?;
        let joined = join(&args, &node).await?;
        let mut deployed = Deployed::default();
        let files = Files { base: &base, python: &args.python };
        let mut plan = deployed
            .plan(&node, &files, &config.deployment, OnFailure::Refuse)
            .await?;
        let listen = args.listen.unwrap_or(config.ingress.listen);
        let routes = std::mem::take(&mut plan.routes);
        let (serve, scheme) = start_ingress(&config.ingress, &base, listen, &node, routes).await?;
        let serve = std::sync::Arc::new(serve);
        if let Some(joined) = &joined {
            // The head's dashboard shows this ingress's deployments too.
            joined.report_serve(crate::serve_follow::report(&serve));
        }
        deployed.commit(plan);
        // Listening before the line below: a script may signal at once.
        let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        // One listener for the whole run: an interrupt during a reload is
        // not lost, and ends the reload too.
        let mut interrupt =
            signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
        // The one line a script reads to find the port.
        println!("serving on {scheme}://{}", serve.address());
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                _ = hangup.recv() => {
                    let reloading = reload(&args, &config.ingress, &base, &node, &serve, &mut deployed);
                    let reloaded = tokio::select! {
                        reloaded = reloading => reloaded,
                        _ = interrupt.recv() => break,
                    };
                    match reloaded {
                        Ok(()) => tracing::info!(file = %args.file().display(), "reloaded"),
                        Err(e) => tracing::error!("the reload changed nothing: {e:#}"),
                    }
                }
            }
        }
        drop(serve);
        // The deployments' jobs end while the node is still in the
        // cluster, so their replicas on other nodes hear of it.
        drop(deployed);
        if let Some(joined) = joined {
            joined.leave().await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts an ingress as `[ingress]` says (its files relative to `base`),
/// listening on `listen`; answers it and its scheme.
pub(crate) async fn start_ingress(
    ingress: &IngressConfig,
    base: &Path,
    listen: std::net::SocketAddr,
    node: &Node,
    routes: Vec<fabric_host::serve::Route>,
) -> anyhow::Result<(Serve, &'static str)> {
    let bounds = Bounds {
        connections: ingress.max_connections,
        per_address: ingress.max_connections_per_address,
        versions: match ingress.h2c || ingress.tls_certificate.is_some() {
            true => Versions::Http1And2,
            false => Versions::Http1,
        },
        ..Bounds::default()
    };
    let tls = ingress_tls(ingress, base)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let options = IngressOptions {
        tls,
        metrics: ingress_metrics(ingress, base, node)?,
        unsent_response_bytes: ingress.max_unsent_response_bytes,
        refusals_per_second: ingress.refusals_per_second,
    };
    let serve = Serve::start(listen, bounds, routes, options).await?;
    Ok((serve, scheme))
}

/// Joins the cluster `--address` names, when it names one.
async fn join(
    args: &ServeArgs,
    node: &Node,
) -> anyhow::Result<Option<fabric_host::cluster::ClusterHandle>> {
    let Some(head) = &args.address else {
        return Ok(None);
    };
    let file = args
        .join_file
        .clone()
        .context("--address needs the head's --join-file")?;
    let security = crate::start::read_join_file(&file)?;
    let config = ClusterConfig::worker(args.node_listen, head.clone(), security);
    let joined = fabric_host::cluster::join(node, config)
        .await
        .with_context(|| format!("cannot join the cluster at {head}"))?;
    Ok(Some(joined))
}

/// The ingress's TLS settings, from the files `[ingress]` names (relative
/// to the configuration file), offering HTTP/2 and HTTP/1.1 by ALPN.
pub(crate) fn ingress_tls(
    ingress: &IngressConfig,
    base: &Path,
) -> anyhow::Result<Option<https::TlsSettings>> {
    let Some((cert, key)) = ingress.tls_files().map_err(anyhow::Error::msg)? else {
        return Ok(None);
    };
    let read = |file: &Path| {
        let path = base.join(file);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let config = https::tls_config(&read(cert)?, &read(key)?, &[b"h2", b"http/1.1"])
        .context("in [ingress]")?;
    Ok(Some(config))
}

/// `GET /-/metrics` as `[ingress]` asks: for the holder of the token in
/// its `metrics_token_file`, or not at all.
fn ingress_metrics(
    ingress: &IngressConfig,
    base: &Path,
    node: &Node,
) -> anyhow::Result<Option<IngressMetrics>> {
    match &ingress.metrics_token_file {
        Some(file) => Ok(Some(IngressMetrics {
            token: read_token(&base.join(file))?,
            node: node.clone(),
        })),
        None => Ok(None),
    }
}

/// Reads and checks the configuration file.
fn read_config(file: &Path) -> anyhow::Result<ServeConfig> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    ServeConfig::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("in {}", file.display()))
}

/// Applies the configuration file again (see `serve_deployments`). The
/// ingress's own settings (`[ingress]`) take effect only at start.
async fn reload(
    args: &ServeArgs,
    ingress: &IngressConfig,
    base: &Path,
    node: &Node,
    serve: &Serve,
    deployed: &mut Deployed,
) -> anyhow::Result<()> {
    let config = read_config(args.file())?;
    let metrics_file = |i: &IngressConfig| IngressConfig {
        metrics_token_file: None,
        ..i.clone()
    };
    if metrics_file(&config.ingress) != metrics_file(ingress) {
        tracing::warn!(
            "[ingress] changed: it applies only when `fabric serve` starts again \
             (but for metrics_token_file, read again now)"
        );
    }
    let metrics = ingress_metrics(&config.ingress, base, node)?;
    let files = Files {
        base,
        python: &args.python,
    };
    let mut plan = deployed
        .plan(node, &files, &config.deployment, OnFailure::Refuse)
        .await?;
    serve.set_routes(std::mem::take(&mut plan.routes))?;
    serve.set_metrics(metrics);
    deployed.commit(plan);
    Ok(())
}

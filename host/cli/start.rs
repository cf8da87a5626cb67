//! `fabric start`: run a node of a cluster (the head, or a worker joining one).
//!
//! Without `--block` the node runs in the background: `start` launches it,
//! waits until it has joined, prints its address and returns (as `ray
//! start` does). `fabric stop` stops the nodes started on this machine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use fabric_host::Node;
use fabric_host::cluster::ClusterConfig;
use fabric_host::security::{AdminToken, ClusterSecurity, Tokens, write_private};
use std::sync::Arc;

use crate::data_dir;
use crate::endpoint_args::EndpointArgs;
use crate::node_args::NodeArgs;

#[derive(Args)]
pub struct StartArgs {
    /// Start the head of a new cluster.
    #[arg(long, conflicts_with = "address")]
    pub head: bool,

    /// Join the cluster whose head is at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "head")]
    pub address: Option<String>,

    /// Port to listen on (default: 6380 for the head, any free one for a worker).
    #[arg(long)]
    pub port: Option<u16>,

    /// IP address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub host: String,

    /// Host name or IP others reach this node at (default: --host).
    #[arg(long, value_name = "HOST")]
    pub advertise: Option<String>,

    /// Take objects from nodes on this machine over TLS, like any other,
    /// rather than over their local sockets (a baseline for benchmarks).
    #[arg(long)]
    pub no_local_transfers: bool,

    /// Labels for placement, e.g. `zone=a,disk=ssd`.
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_labels)]
    pub labels: Option<BTreeMap<String, String>>,

    #[command(flatten)]
    pub node: NodeArgs,

    #[command(flatten)]
    pub endpoints: EndpointArgs,

    /// Milliseconds between heartbeats.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub heartbeat_ms: u64,

    /// Milliseconds without a heartbeat before the head declares a node dead.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    pub node_timeout_ms: u64,

    /// Where node records and background logs go.
    #[arg(long, default_value = data_dir::DEFAULT, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Stay in the foreground until stopped (Ctrl-C or `fabric stop`).
    #[arg(long)]
    pub block: bool,

    /// A worker's credentials: the head's join file (default: the one in
    /// the data directory, which the head writes on its first start).
    #[arg(long, value_name = "FILE", conflicts_with = "head")]
    pub join_file: Option<PathBuf>,

    #[command(flatten)]
    pub ingress: crate::serve_follow::IngressArgs,
}

/// The head's credentials, made on its first start: the cluster join file
/// (TLS identity and node secret), the CA certificate clients trust, the
/// token registry and the admin token. Returns the admin token when it was
/// just made (the only time it is shown).
fn head_credentials(
    dir: &std::path::Path,
) -> anyhow::Result<(ClusterSecurity, Arc<Tokens>, Option<AdminToken>)> {
    let sec = data_dir::security_dir(dir);
    let join = sec.join("cluster.join");
    let security = match std::fs::read_to_string(&join) {
        Ok(text) => ClusterSecurity::from_join_file(&text)
            .with_context(|| format!("cannot read {}", join.display()))?,
        Err(_) => {
            let s = ClusterSecurity::generate()?;
            write_private(&join, s.to_join_file().as_bytes())?;
            s
        }
    };
    std::fs::write(sec.join("ca.crt"), &security.ca_cert)
        .with_context(|| format!("cannot write {}", sec.join("ca.crt").display()))?;
    let (tokens, admin) = Tokens::open(&sec.join("tokens.toml"))?;
    if let Some(t) = &admin {
        write_private(&sec.join("admin.token"), t.0.as_bytes())?;
    }
    Ok((security, Arc::new(tokens), admin))
}

fn show_admin_token(dir: &std::path::Path, token: &AdminToken) {
    let path = data_dir::security_dir(dir).join("admin.token");
    println!(
        "admin token (shown only now; also in {}, mode 0600):",
        path.display()
    );
    println!("  {}", token.0);
    println!("  give tenants their own: fabric tenant add NAME");
}

/// A worker's credentials, from the head's join file.
fn worker_credentials(args: &StartArgs) -> anyhow::Result<ClusterSecurity> {
    let path = args
        .join_file
        .clone()
        .unwrap_or_else(|| data_dir::security_dir(&args.data_dir).join("cluster.join"));
    read_join_file(&path)
}

/// The cluster credentials in the head's join file at `path`.
pub(crate) fn read_join_file(path: &std::path::Path) -> anyhow::Result<ClusterSecurity> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the cluster join file {}: {e}; copy the head's <data-dir>/security/cluster.join here (keep it secret) and pass --join-file",
            path.display()
        )
    })?;
    Ok(ClusterSecurity::from_join_file(&text)?)
}

fn parse_labels(spec: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("expected `key=value`, got `{part}`"))?;
        if k.trim().is_empty() {
            return Err(format!("empty label name in `{part}`"));
        }
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

pub fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    if args.block {
        return run_blocking(args);
    }
    if args.head {
        // Made here, not in the background node, so the admin token shows
        // on this terminal rather than in a log file.
        if let (_, _, Some(token)) = head_credentials(&args.data_dir)? {
            show_admin_token(&args.data_dir, &token);
        }
    } else {
        worker_credentials(&args)?;
    }
    spawn_background(args)
}

/// Re-runs this command with `--block` in the background and waits until
/// the node has joined.
fn spawn_background(args: StartArgs) -> anyhow::Result<ExitCode> {
    let logs = data_dir::logs_dir(&args.data_dir);
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let log_path = logs.join(format!("node-{stamp}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the fabric executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).arg("--block");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the node process")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((_, id, address, role)) = data_dir::read_nodes(&args.data_dir)
            .into_iter()
            .find(|n| n.0 == pid)
        {
            println!(
                "started a {role} node: id {id}, address {address}, pid {pid}, log {}",
                log_path.display()
            );
            if role == "head" {
                println!(
                    "  add nodes:  fabric start --address {address} [--join-file cluster.join]"
                );
                println!("  run a job:  fabric submit --address {address} APP.wasm");
                println!("  see it:     fabric status --address {address}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the node exited ({status}) before joining; its log ({}):\n{}",
                log_path.display(),
                tail.join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the node did not join within 60 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cluster settings `args` ask for.
fn cluster_config(args: &StartArgs) -> anyhow::Result<ClusterConfig> {
    let port = args.port.unwrap_or(if args.head { 6380 } else { 0 });
    let listen = format!("{}:{port}", args.host)
        .parse()
        .with_context(|| format!("`{}` is not an IP address", args.host))?;
    let mut config = match &args.address {
        Some(head) => ClusterConfig::worker(listen, head.clone(), worker_credentials(args)?),
        None => {
            let (security, tokens, admin) = head_credentials(&args.data_dir)?;
            if let Some(token) = &admin {
                show_admin_token(&args.data_dir, token);
            }
            crate::endpoint_args::write_scrape_token(&args.data_dir, &security)?;
            let mut config = ClusterConfig::head(listen, security, tokens);
            // A head started again on this directory takes its state back.
            config.state_file = Some(data_dir::head_state_file(&args.data_dir));
            config
        }
    };
    config.advertise_host = args.advertise.clone();
    config.local_transfers = !args.no_local_transfers;
    config.labels = args.labels.clone().unwrap_or_default();
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms.max(10));
    config.node_timeout = Duration::from_millis(args.node_timeout_ms.max(100));
    Ok(config)
}

fn run_blocking(args: StartArgs) -> anyhow::Result<ExitCode> {
    let mut config = cluster_config(&args)?;
    let security = config.security.clone();
    config.serve_rules = match (args.head, args.ingress.reserved_hosts.is_empty()) {
        (true, _) => {
            let rules = crate::serve_rules::Rules::new(&args.ingress.reserved_hosts)?;
            Some(fabric_host::cluster::ServeRulesPort(std::sync::Arc::new(
                rules,
            )))
        }
        (false, true) => None,
        (false, false) => anyhow::bail!("--serve-reserved-host is the head's (with --head)"),
    };
    let runtime = crate::node_args::node_runtime()?;
    runtime.block_on(async move {
        let node_config = args.node.config(false)?;
        config.ingress = node_config.ingress.clone();
        let node = Node::start(node_config).context("cannot start the node")?;
        let joined = fabric_host::cluster::join(&node, config)
            .await
            .context("cannot join the cluster")?;
        let mut follower = crate::serve_follow::Follower::start(&args.ingress, &node).await?;
        if let Some(f) = &follower {
            joined.report_serve(f.report());
        }
        let source = fabric_host::metrics::Source {
            node: node.clone(),
            meters: Some(joined.meters().clone()),
            head: joined.head().cloned(),
            serve: Vec::new(),
            ingress: follower.as_ref().map(|f| f.serve()),
        };
        let endpoints = &args.endpoints;
        let _metrics = endpoints
            .start(&args.host, &security, source, &args.data_dir)
            .await?;
        let head = joined.head().cloned();
        let _api = endpoints
            .start_api(
                &args.host,
                args.advertise.as_deref(),
                &security,
                head,
                &args.data_dir,
            )
            .await?;
        let pid = std::process::id();
        data_dir::write_node(
            &args.data_dir,
            pid,
            &node.id().to_string(),
            joined.address(),
            args.head,
        )?;
        eprintln!(
            "node {} listening on {} ({})",
            node.id(),
            joined.address(),
            if args.head { "head" } else { "worker" }
        );
        let following = async {
            match &mut follower {
                Some(f) => f.run(&joined).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wait_for_stop() => {
                eprintln!("stopping");
                // Its deployments' jobs end while the node is still in the
                // cluster, so their replicas elsewhere hear of it.
                if let Some(f) = follower {
                    f.stop().await;
                }
                joined.leave().await;
            }
            // `fabric drain`: it has handed its work on and left.
            _ = joined.left() => eprintln!("drained: exiting"),
            _ = following => {}
        }
        data_dir::remove_node(&args.data_dir, pid);
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_stop() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

//! `fabric run`: start an embedded node, run the app's driver, exit with its status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::progress::{Counts, Progress, ProgressSink};
use anyhow::Context;
use clap::Args;
use fabric_host::error::{FabricError, FailureKind};
use fabric_host::logs::TerminalSink;
use fabric_host::{JobOptions, Node};

#[derive(Args)]
pub struct RunArgs {
    /// The application: a component built with the wasmfabric SDK, a
    /// Cargo project directory to build for wasm32-wasip2 first, or a
    /// Python file to build with componentize-py first.
    pub app: PathBuf,

    #[command(flatten)]
    pub python: crate::python::PythonArgs,

    #[command(flatten)]
    pub node: crate::node_args::NodeArgs,

    /// Instead of the driver, run the remote function FUNCTION once with the
    /// arguments after `--` (each a JSON value) and print its result as JSON.
    #[arg(long, value_name = "FUNCTION")]
    pub call: Option<String>,

    /// The job manifest (TOML): the limits and capabilities it asks for
    /// (without one the guest sees no files, environment or network).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Arguments for the driver (or for `--call`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let app_path = crate::project::component_path(&args.app, &args.python)?;
    let bytes =
        std::fs::read(&app_path).with_context(|| format!("cannot read {}", app_path.display()))?;
    let config = args.node.config(true)?;
    let manifest = read_manifest(args.manifest.as_deref())?;
    let parts =
        crate::project::manifest_components(args.manifest.as_deref(), &manifest, &args.python)?;
    let mut options = JobOptions {
        manifest,
        tenant: None,
        components: Vec::new(),
    };
    let runtime = crate::node_args::node_runtime()?;
    runtime.block_on(async move {
        let node = Node::start(config).context("cannot start the node")?;
        let app = node
            .load(&bytes)
            .await
            .with_context(|| format!("cannot load {}", app_path.display()))?;
        for (name, bytes) in parts {
            let part = node
                .load(&bytes)
                .await
                .with_context(|| format!("cannot load component `{name}`"))?;
            options.components.push((name, part));
        }
        match &args.call {
            None => {
                let progress = Progress::on_terminal();
                let sink = Arc::new(ProgressSink(progress.clone()));
                let (id, running) = node.start_job_with(app, args.args.clone(), sink, options);
                let ticker = progress
                    .enabled()
                    .then(|| show_progress(&node, id, &progress));
                let outcome = running.await;
                if let Some(t) = ticker {
                    t.abort();
                }
                progress.finish();
                match outcome.result {
                    Ok(()) => Ok(ExitCode::SUCCESS),
                    Err(e) => {
                        report_job_error(&e);
                        Ok(ExitCode::from(1))
                    }
                }
            }
            Some(function) => call(&node, app, function, &args.args).await,
        }
    })
}

/// Redraws `progress` from the node's counts of job `id` until aborted.
fn show_progress(
    node: &Node,
    id: fabric_host::ids::JobId,
    progress: &Arc<Progress>,
) -> tokio::task::JoinHandle<()> {
    let (node, progress) = (node.clone(), progress.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            if let Some(p) = node.job_progress(id) {
                progress.update(Counts {
                    submitted: p.submitted,
                    succeeded: p.ended() - p.failed(),
                    failed: p.failed(),
                });
            }
        }
    })
}

/// The manifest file's text (checked here, so a typo fails before the job
/// starts); empty without one.
pub fn read_manifest(path: Option<&std::path::Path>) -> anyhow::Result<String> {
    let Some(path) = path else {
        return Ok(String::new());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    fabric_host::manifest::JobManifest::parse(&text)
        .with_context(|| format!("in {}", path.display()))?;
    Ok(text)
}

async fn call(
    node: &Node,
    app: Arc<fabric_host::AppComponent>,
    function: &str,
    args: &[String],
) -> anyhow::Result<ExitCode> {
    let mut encoded = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(a).with_context(|| format!("argument {i} is not JSON: `{a}`"))?;
        encoded.push(bytes::Bytes::from(
            rmp_serde::to_vec_named(&v).context("cannot encode argument")?,
        ));
    }
    match node
        .call(app, function, encoded, Arc::new(TerminalSink))
        .await
    {
        Ok(value) => {
            let v: serde_json::Value =
                rmp_serde::from_slice(&value).context("the result is not plain data")?;
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            report_job_error(&e);
            Ok(ExitCode::from(1))
        }
    }
}

fn report_job_error(e: &FabricError) {
    match e {
        // The driver's own `Err`: its message says it all.
        FabricError::TaskFailed(f)
            if f.function == "main" && f.kind == FailureKind::ApplicationError =>
        {
            eprintln!(
                "error: the job failed: the driver returned an error: {}",
                f.message
            )
        }
        _ => eprintln!("error: the job failed: {e}"),
    }
    let text = e.to_string();
    let hint = match e {
        _ if text.contains("resources infeasible") => {
            Some("give the node more with --num-cpus, --num-gpus or --resources")
        }
        FabricError::TaskFailed(f) if f.kind == FailureKind::UnknownFunction => {
            Some("check the function name: it must be marked #[fabric::remote] in the component")
        }
        _ => None,
    };
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

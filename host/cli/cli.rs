//! The `fabric` command line: one clap enum, one file per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fabric_host::error::LoadError;

#[derive(Parser)]
#[command(
    name = "fabric",
    version,
    about = "Run WebAssembly components as sandboxed Ray-style tasks and actors"
)]
pub struct Cli {
    /// Log filter, e.g. `info` or `fabric_host=debug` (default: $RUST_LOG, else `warn`).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run an application's driver on an embedded local node.
    Run(crate::run::RunArgs),
    /// Start a cluster node: the head (--head) or a worker (--address).
    Start(crate::start::StartArgs),
    /// Run an application on a cluster, streaming its output back.
    Submit(crate::submit::SubmitArgs),
    /// Build an application (a Cargo project or a Python file) into a
    /// component without running it; prints the component's path.
    Build(crate::build_app::BuildArgs),
    /// Serve deployments over HTTP on an embedded node.
    Serve(crate::serve::ServeArgs),
    /// Show a cluster's nodes, jobs and actors.
    Status(crate::status::StatusArgs),
    /// Stop the nodes started on this machine.
    Stop(crate::stop::StopArgs),
    /// Take a worker out of the cluster: its work finishes, its results move.
    Drain(crate::drain::DrainArgs),
    /// Manage tenants and see their usage.
    Tenant(crate::tenant::TenantArgs),
    /// Show the output of a job submitted to a cluster.
    Logs(crate::logs::LogsArgs),
    /// Stop or delete a job submitted to a cluster, or see its tasks.
    Job(crate::job::JobArgs),
    /// Write a Chrome trace of a job's tasks and actor calls.
    Timeline(crate::timeline::TimelineArgs),
    /// The bounded compiler process a node starts (internal).
    #[command(name = "__compile", hide = true)]
    Compile(crate::compile::CompileArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(args) => crate::run::run(args),
            Command::Start(args) => crate::start::start(args),
            Command::Submit(args) => crate::submit::submit(args),
            Command::Build(args) => crate::build_app::build(args),
            Command::Serve(args) => crate::serve::serve(args),
            Command::Status(args) => crate::status::status(args),
            Command::Stop(args) => crate::stop::stop(args),
            Command::Drain(args) => crate::drain::drain(args),
            Command::Tenant(args) => crate::tenant::tenant(args),
            Command::Logs(args) => crate::logs::logs(args),
            Command::Job(args) => crate::job::job(args),
            Command::Timeline(args) => crate::timeline::timeline(args),
            Command::Compile(args) => crate::compile::compile(args),
        }
    }
}

pub fn init_tracing(level: Option<&str>) {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Prints an error with its cause chain and, where one helps, a hint.
pub fn report(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(h) = hint(err) {
        eprintln!("hint: {h}");
    }
}

fn hint(err: &anyhow::Error) -> Option<&'static str> {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<LoadError>() {
            return Some(match e {
                LoadError::NotWasm => {
                    "pass the `.wasm` file that `cargo build --target wasm32-wasip2` wrote"
                }
                LoadError::CoreModule => {
                    "build with `cargo build --release --target wasm32-wasip2` (not wasm32-unknown-unknown or wasm32-wasip1)"
                }
                LoadError::WorldMismatch(_) => {
                    "build the application with the wasmfabric SDK (`fabric` crate) and mark its driver `#[fabric::main]`"
                }
                LoadError::NotHttpProxy(_) => {
                    "a deployment without `class` serves a `wasi:http/proxy` component (one that exports `wasi:http/incoming-handler`); give a wasmfabric application its actor `class`"
                }
                LoadError::Invalid(_) | LoadError::Compile(_) => {
                    "rebuild the component; the file may be truncated or corrupt"
                }
                LoadError::CompileBound(_) => {
                    "raise the bound in the node's settings file (`[compile]` time and memory) if you trust this component"
                }
                LoadError::Busy(_) => {
                    "every instance slot of the node is in use: try again when some work has finished, or raise `[instances] max`"
                }
            });
        }
        if cause
            .downcast_ref::<crate::head_client::Unreachable>()
            .is_some()
        {
            return Some(
                "check the address (`fabric start --head` prints it), or start a head with `fabric start --head`",
            );
        }
        if cause
            .downcast_ref::<crate::head_client::NoCredentials>()
            .is_some()
        {
            return Some(
                "on the head's machine the admin's credentials are found by default; elsewhere use the token `fabric tenant add` printed and the head's security/ca.crt",
            );
        }
        if cause.to_string().contains("(Unauthenticated)") {
            return Some("the token is wrong for this cluster: check FABRIC_TOKEN or --token");
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>()
            && e.kind() == std::io::ErrorKind::NotFound
        {
            return Some(
                "check the path; build the application first with `cargo build --release --target wasm32-wasip2`",
            );
        }
    }
    None
}

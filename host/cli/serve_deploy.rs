//! `fabric serve deploy CONFIG`: send a configuration's deployments to a
//! cluster's head, which keeps them (through its restarts) for every node
//! started with `--ingress`. The deployments are the caller's tenant's (its
//! token says which); a deployment of a name the tenant already has
//! replaces it (its replicas roll on each ingress without dropping a
//! request), and others stay. `fabric serve delete` removes them.
//!
//! What the file's deployments name is read here, not on the nodes: each
//! `component` (a `.py` file or a Cargo project is built first), each
//! `manifest`, each `token_file`. The file has no `[ingress]`: an ingress is
//! a node's, set where it starts (`fabric start --ingress FILE`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use fabric_host::serve::config::ServeConfig;
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};
use crate::serve_deployments::{Files, Sources};

#[derive(Args)]
pub struct ServeDeployArgs {
    /// The configuration (TOML): its `[[deployment]]`s.
    #[arg(value_name = "CONFIG")]
    pub file: PathBuf,

    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten)]
    pub python: crate::python::PythonArgs,
}

pub fn deploy(args: ServeDeployArgs) -> anyhow::Result<ExitCode> {
    let deployments = read_deployments(&args.file, &args.python)
        .with_context(|| format!("in {}", args.file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut head = head_client::connect(&args.client).await?;
        let names: Vec<String> = deployments.iter().map(|d| d.name.clone()).collect();
        let reply = head
            .serve_deploy(pb::ServeDeployRequest { deployments })
            .await
            .map_err(head_client::status_error)
            .context("the head refused the deployments (none of them was deployed)")?
            .into_inner();
        println!("deployed: {}", names.join(", "));
        crate::serve_list::print(&reply.deployments);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The file's deployments as the head keeps them: each one's own table of
/// the file, with what its files hold.
fn read_deployments(
    file: &Path,
    python: &crate::python::PythonArgs,
) -> anyhow::Result<Vec<pb::ServeDeployment>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let config = ServeConfig::parse(&text).map_err(anyhow::Error::msg)?;
    let tables = ServeConfig::deployment_tables(&text).map_err(anyhow::Error::msg)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let files = Files { base, python };
    let mut out = Vec::with_capacity(tables.len());
    for (d, table) in config.deployment.iter().zip(tables) {
        if d.tenant.is_some() {
            bail!(
                "deployment `{}`: `tenant` is your token's: leave it out",
                d.name
            );
        }
        let read = || -> anyhow::Result<pb::ServeDeployment> {
            Ok(pb::ServeDeployment {
                name: d.name.clone(),
                config: table.clone(),
                component: files.component(d)?,
                manifest: files.manifest(d)?,
                token_sha256: files
                    .token_sha256(d)?
                    .map(|t| bytes::Bytes::copy_from_slice(&t))
                    .unwrap_or_default(),
                ..Default::default()
            })
        };
        out.push(read().with_context(|| format!("deployment `{}`", d.name))?);
    }
    Ok(out)
}

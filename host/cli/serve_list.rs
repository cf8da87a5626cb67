//! `fabric serve list`: the deployments the head keeps (see
//! `serve_deploy`): yours, or every tenant's with the admin token.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};

#[derive(Args)]
pub struct ServeListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn list(args: ServeListArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut head = head_client::connect(&args.client).await?;
        let reply = head
            .serve_list(pb::ServeListRequest {})
            .await
            .map_err(head_client::status_error)
            .context("cannot list the deployments")?
            .into_inner();
        print(&reply.deployments);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// One line per deployment: tenant, name, host and route, digest.
pub fn print(deployments: &[pb::ServeSummary]) {
    if deployments.is_empty() {
        println!("no deployments");
        return;
    }
    println!("{:<16} {:<24} {:<40} DIGEST", "TENANT", "NAME", "ROUTE");
    for d in deployments {
        let host = if d.host.is_empty() { "*" } else { &d.host };
        let route = format!("{host}{}", if d.route.is_empty() { "/" } else { &d.route });
        let digest = d.digest.get(..12).unwrap_or(&d.digest);
        println!("{:<16} {:<24} {:<40} {digest}", d.tenant, d.name, route);
    }
}

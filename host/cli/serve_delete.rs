//! `fabric serve delete NAME...`: delete deployments the head keeps (see
//! `serve_deploy`); every node's ingress stops serving them once their
//! requests are answered.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};

#[derive(Args)]
pub struct ServeDeleteArgs {
    /// The deployments' names.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,

    /// Whose deployments (the admin token only; yours when unset).
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,

    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn delete(args: ServeDeleteArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut head = head_client::connect(&args.client).await?;
        let request = pb::ServeDeleteRequest {
            names: args.names.clone(),
            tenant: args.tenant.clone().unwrap_or_default(),
        };
        let reply = head
            .serve_delete(request)
            .await
            .map_err(head_client::status_error)
            .context("the head deleted nothing")?
            .into_inner();
        println!("deleted: {}", args.names.join(", "));
        crate::serve_list::print(&reply.deployments);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

//! `fabric drain NODE`: take a worker out of the cluster without losing work.
//!
//! No new work goes to the node; the tasks running there finish (queued
//! ones move to nodes with room); the large results it keeps for other
//! nodes move to them; then it leaves and its `fabric start` process exits.
//! Needs the admin token.
//!
//! ```text
//! fabric drain 3f2a9c1e            # a unique prefix of the node id will do
//! fabric drain 3f2a9c1e --timeout 60
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};

#[derive(Args)]
pub struct DrainArgs {
    /// The node's id, or a prefix of it that only it has (`fabric status`).
    pub node: String,

    /// Seconds to wait for the node to leave (it keeps draining after).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,

    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn drain(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let reply = runtime.block_on(async {
        let mut head = head_client::connect(&args.client).await?;
        let reply = head
            .drain_node(pb::DrainNodeRequest {
                node: args.node.clone(),
                timeout_ms: Duration::from_secs(args.timeout.max(1)).as_millis() as u64,
            })
            .await
            .map_err(head_client::status_error)
            .with_context(|| format!("cannot drain node `{}`", args.node))?;
        anyhow::Ok(reply.into_inner())
    })?;
    let id: String = reply.node_id.iter().map(|b| format!("{b:02x}")).collect();
    if reply.left {
        println!(
            "node {id} drained and left the cluster in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    } else if reply.died {
        eprintln!(
            "node {id} died while draining (it stopped heartbeating before it left): what it ran is retried elsewhere, results only it held are rebuilt where they can be"
        );
        Ok(ExitCode::FAILURE)
    } else {
        eprintln!(
            "node {id} is still draining after {} s (its running work has not finished); see `fabric status`",
            args.timeout
        );
        Ok(ExitCode::FAILURE)
    }
}

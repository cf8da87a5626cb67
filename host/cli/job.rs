//! `fabric job stop JOB` and `fabric job delete JOB`: end a running job
//! (its driver, tasks and actors, on every node), or forget a finished one
//! and its output, as `ray job stop` and `ray job delete` do.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};

#[derive(Args)]
pub struct JobArgs {
    #[command(subcommand)]
    pub action: JobAction,
}

#[derive(Subcommand)]
pub enum JobAction {
    /// Stop a running job; prints its status once it ended.
    Stop {
        /// The job id, as `fabric submit` and `fabric status` show it.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Forget a finished job and its output.
    Delete {
        /// The job id.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn job(args: JobArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.action {
            JobAction::Stop { job, client } => {
                let id = crate::logs::parse_id(&job)?;
                let mut head = head_client::connect(&client).await?;
                let record = head
                    .stop_job(pb::JobRequest { job_id: id.into() })
                    .await
                    .map_err(head_client::status_error)
                    .with_context(|| format!("cannot stop job {job}"))?
                    .into_inner();
                let status = match record.status() {
                    pb::job_record::Status::Running => "RUNNING (stopping)",
                    pb::job_record::Status::Succeeded => "SUCCEEDED",
                    pb::job_record::Status::Failed => "FAILED",
                    pb::job_record::Status::Stopped => "STOPPED",
                    pb::job_record::Status::Unspecified => "?",
                };
                println!("job {job}: {status}");
            }
            JobAction::Delete { job, client } => {
                let id = crate::logs::parse_id(&job)?;
                let mut head = head_client::connect(&client).await?;
                head.delete_job(pb::JobRequest { job_id: id.into() })
                    .await
                    .map_err(head_client::status_error)
                    .with_context(|| format!("cannot delete job {job}"))?;
                println!("job {job} deleted");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

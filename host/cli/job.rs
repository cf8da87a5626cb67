//! `fabric job stop JOB` and `fabric job delete JOB`: end a running job
//! (its driver, tasks and actors, on every node), or forget a finished one
//! and its output, as `ray job stop` and `ray job delete` do. `fabric job
//! tasks JOB` shows its tasks: counts by state, failures, the slowest.

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
    /// Show a job's tasks: counts by state, failures with their errors,
    /// the slowest (as every node kept them).
    Tasks {
        /// The job id.
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub fn job(args: JobArgs) -> anyhow::Result<ExitCode> {
    if let JobAction::Tasks { job, client } = &args.action {
        let nodes = crate::timeline::fetch(job, client)?;
        print_tasks(job, &fabric_host::task_view::TaskSummary::of(&nodes, 0));
        crate::timeline::warn_missing(&nodes);
        return Ok(ExitCode::SUCCESS);
    }
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
            JobAction::Tasks { .. } => unreachable!("answered above"),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `text` (a guest's names and errors) safe for a terminal: control
/// characters (escape sequences among them) are shown escaped.
fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

/// One line per call listed: how long it ran, what, where, how it ended.
fn print_calls(title: &str, calls: &[serde_json::Value]) {
    if calls.is_empty() {
        return;
    }
    println!("{title}:");
    for c in calls {
        let name = match c["class"].as_str() {
            Some(class) => format!("{class}.{}", c["function"].as_str().unwrap_or("?")),
            None => c["function"].as_str().unwrap_or("?").to_string(),
        };
        let ran = c["run_ms"]
            .as_f64()
            .map_or("-".into(), |ms| format!("{ms:.1} ms"));
        let node = c["node"].as_str().unwrap_or("?");
        let error = c["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let (name, error) = (shown(&name), shown(&error));
        println!(
            "  {ran:>10}  {name}  attempt {}  node {}  {}{error}",
            c["attempt"],
            &node[..node.len().min(8)],
            c["outcome"].as_str().unwrap_or("?"),
        );
    }
}

fn print_tasks(job: &str, s: &fabric_host::task_view::TaskSummary) {
    let t = &s.tasks;
    println!(
        "job {job}: {} tasks submitted: {} succeeded, {} failed, {} running, {} queued, {} pending",
        t.submitted, t.succeeded, t.failed, t.running, t.queued, t.pending
    );
    let ended: Vec<String> = t.ended.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if !ended.is_empty() {
        println!("ended: {}", ended.join(", "));
    }
    println!(
        "kept: {} attempts and calls ({} failed, {} actor calls){}",
        s.calls.ended,
        s.calls.failed,
        s.calls.actor_calls,
        if s.truncated {
            "; some are missing (see below)"
        } else {
            ""
        }
    );
    print_calls("failures (newest first)", &s.failures);
    print_calls("slowest", &s.slowest);
}

//! `fabric timeline JOB`: writes a Chrome trace of every task attempt and
//! actor call of a job (as `ray timeline` does), from what each node kept:
//! a process per node, a lane per task instance running at once and per
//! actor, each call from its start to its end with when it queued, its
//! bytes in and out and how it ended. Open the file in `chrome://tracing`
//! or <https://ui.perfetto.dev>.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use fabric_host::task_view::{NodeTasks, chrome_trace};
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};

#[derive(Args)]
pub struct TimelineArgs {
    /// The job id, as `fabric submit` and `fabric status` show it.
    pub job: String,
    /// Where to write the trace (default: `timeline-<job>.json`; `-` for
    /// standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn timeline(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let nodes = fetch(&args.job, &args.client)?;
    let trace = chrome_trace(&nodes, 0);
    let text = serde_json::to_string(&trace)?;
    let slices = trace["traceEvents"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|e| e["ph"] != "M").count());
    match &args.output {
        Some(p) if p.as_os_str() == "-" => println!("{text}"),
        out => {
            let path = out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("timeline-{}.json", short(&args.job))));
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write the trace to {}", path.display()))?;
            eprintln!(
                "wrote {slices} task and actor calls from {} nodes to {} (open it in \
                 chrome://tracing or https://ui.perfetto.dev)",
                nodes.len(),
                path.display()
            );
        }
    }
    warn_missing(&nodes);
    Ok(ExitCode::SUCCESS)
}

fn short(job: &str) -> &str {
    &job[..job.len().min(8)]
}

/// What every node kept of job `job`'s tasks.
pub fn fetch(job: &str, client: &ClientArgs) -> anyhow::Result<Vec<NodeTasks>> {
    let id = crate::logs::parse_id(job)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut head = head_client::connect(client).await?;
        let reply = head
            .job_tasks(pb::JobRequest { job_id: id.into() })
            .await
            .map_err(head_client::status_error)
            .with_context(|| format!("cannot read the tasks of job {job}"))?
            .into_inner();
        reply
            .nodes
            .into_iter()
            .map(|n| fabric_host::task_wire::from_pb(n).map_err(head_client::status_error))
            .collect()
    })
}

/// Says on stderr what the trace lacks: events nodes dropped past their
/// bounds, and nodes that could not be asked.
pub fn warn_missing(nodes: &[NodeTasks]) {
    for n in nodes {
        match &n.answer {
            Ok(here) => {
                let dropped = here.kept.as_ref().map_or(0, |k| k.dropped);
                if dropped > 0 {
                    eprintln!(
                        "note: node {} dropped {dropped} older events past its bounds \
                         (its `[task-events]` settings)",
                        n.node.short()
                    );
                }
            }
            Err(why) => eprintln!("note: node {} was not asked: {why}", n.node.short()),
        }
    }
}

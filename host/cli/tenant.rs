//! `fabric tenant`: manage tenants (admin token) and see what they used.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use fabric_host::resources::fmt_bytes;
use wasmfabric_proto::v1 as pb;

use crate::head_client::{self, ClientArgs};

#[derive(Args)]
pub struct TenantArgs {
    #[command(subcommand)]
    pub command: TenantCommand,

    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Make a tenant and print its token (shown only now).
    Add {
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Replace a tenant's quota (unset values become unlimited).
    Quota {
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Usage per tenant (all of them with the admin token, else your own):
    /// CPU seconds, memory and object-store byte-seconds, tasks, actors, jobs.
    Usage,
}

#[derive(Args, Clone, Debug, Default)]
pub struct QuotaArgs {
    /// CPUs its running tasks and actors may hold at once.
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// GPUs it may hold at once.
    #[arg(long, value_name = "N")]
    pub gpus: Option<f64>,
    /// Memory its tasks and actors may reserve at once, e.g. `8GiB`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Bytes its objects may occupy, e.g. `1GiB`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub object_store: Option<u64>,
    /// Jobs it may run at once.
    #[arg(long, value_name = "N")]
    pub jobs: Option<u32>,
    /// Instances it may hold alive at once across the cluster (tasks
    /// running, actors, drivers).
    #[arg(long, value_name = "N")]
    pub instances: Option<u64>,
    /// Actors it may hold alive at once across the cluster (detached ones
    /// count until killed).
    #[arg(long, value_name = "N")]
    pub actors: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    fabric_host::limits::size::parse(s)
}

impl QuotaArgs {
    fn to_pb(&self) -> pb::Quota {
        pb::Quota {
            cpus: self.cpus,
            gpus: self.gpus,
            memory: self.memory,
            object_store: self.object_store,
            jobs: self.jobs,
            instances: self.instances,
            actors: self.actors,
        }
    }
}

pub fn tenant(args: TenantArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut head = head_client::connect(&args.client).await?;
        match args.command {
            TenantCommand::Add { name, quota } => {
                let reply = head
                    .add_tenant(pb::AddTenantRequest {
                        name: name.clone(),
                        quota: Some(quota.to_pb()),
                    })
                    .await
                    .map_err(head_client::status_error)
                    .with_context(|| format!("cannot add tenant `{name}`"))?
                    .into_inner();
                println!("tenant `{name}` added; its token (shown only now):");
                println!("  {}", reply.token);
                println!("  it connects with: FABRIC_TOKEN=<token> FABRIC_CA_CERT=<the cluster's ca.crt> fabric submit ...");
            }
            TenantCommand::Quota { name, quota } => {
                head.set_quota(pb::SetQuotaRequest {
                    name: name.clone(),
                    quota: Some(quota.to_pb()),
                })
                .await
                .map_err(head_client::status_error)
                .with_context(|| format!("cannot set the quota of `{name}`"))?;
                println!("quota of `{name}` set");
            }
            TenantCommand::Usage => {
                let reply = head
                    .tenant_usage(pb::TenantUsageRequest {})
                    .await
                    .map_err(head_client::status_error)
                    .context("cannot read usage")?
                    .into_inner();
                print_usage(&reply.tenants);
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn print_usage(tenants: &[pb::TenantUsage]) {
    println!(
        "{:<16} {:>10} {:>14} {:>14} {:>8} {:>7} {:>5} {:>9} {:>12} {:>10} {:>11} {:<}",
        "TENANT",
        "CPU-S",
        "MEM-GIB-S",
        "OBJ-GIB-S",
        "TASKS",
        "ACTORS",
        "JOBS",
        "CPUS-NOW",
        "OBJECTS-NOW",
        "INST-NOW",
        "ACTORS-NOW",
        "QUOTA"
    );
    const GIB: f64 = (1u64 << 30) as f64;
    for t in tenants {
        println!(
            "{:<16} {:>10.3} {:>14.3} {:>14.3} {:>8} {:>7} {:>5} {:>9.2} {:>12} {:>10} {:>11} {}",
            t.tenant,
            t.cpu_seconds,
            t.memory_byte_seconds / GIB,
            t.object_byte_seconds / GIB,
            t.tasks,
            t.actors,
            t.jobs,
            t.cpus_in_use,
            fmt_bytes(t.object_bytes_in_use as i64),
            t.live_instances,
            t.live_actors,
            quota_text(&t.quota.unwrap_or_default())
        );
    }
}

/// A quota as `cpus=2,jobs=3`, or `-` when unlimited.
fn quota_text(q: &pb::Quota) -> String {
    let mut quota = Vec::new();
    if let Some(v) = q.cpus {
        quota.push(format!("cpus={v}"));
    }
    if let Some(v) = q.gpus {
        quota.push(format!("gpus={v}"));
    }
    if let Some(v) = q.memory {
        quota.push(format!("memory={}", fmt_bytes(v as i64)));
    }
    if let Some(v) = q.object_store {
        quota.push(format!("object-store={}", fmt_bytes(v as i64)));
    }
    if let Some(v) = q.jobs {
        quota.push(format!("jobs={v}"));
    }
    if let Some(v) = q.instances {
        quota.push(format!("instances={v}"));
    }
    if let Some(v) = q.actors {
        quota.push(format!("actors={v}"));
    }
    if quota.is_empty() {
        "-".to_string()
    } else {
        quota.join(",")
    }
}

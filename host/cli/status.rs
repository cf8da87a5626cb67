//! `fabric status`: the cluster's nodes, jobs and actors.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use fabric_host::resources::{ResourceSet, UNIT, fmt_bytes};
use wasmfabric_proto::v1 as pb;

use crate::head_client::ClientArgs;
use crate::{data_dir, head_client};

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn res(r: Option<&pb::Resources>) -> ResourceSet {
    let Some(r) = r else {
        return ResourceSet::default();
    };
    let mut s = ResourceSet {
        cpu: r.cpu,
        gpu: r.gpu,
        memory: r.memory,
        custom: Vec::new(),
    };
    for (k, v) in &r.custom {
        s = s.with_custom(k, *v as f64 / UNIT as f64);
    }
    s
}

fn amount(v: i64) -> String {
    let x = v as f64 / UNIT as f64;
    if v % UNIT == 0 {
        format!("{}", v / UNIT)
    } else {
        format!("{x:.2}")
    }
}

/// `used/total` for one resource.
fn used(total: i64, free: i64) -> String {
    format!("{}/{}", amount(total - free), amount(total))
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let address = data_dir::head_address(args.client.address.clone(), &args.client.data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let state = runtime.block_on(async {
        let mut head = head_client::connect(&args.client).await?;
        let reply = head
            .cluster_state(pb::ClusterStateRequest {})
            .await
            .map_err(head_client::status_error)
            .context("the head refused")?;
        anyhow::Ok(reply.into_inner())
    })?;
    print_nodes(&state, &address);
    print_jobs(&state);
    print_actors(&state);
    Ok(ExitCode::SUCCESS)
}

/// The table of nodes: state, resources used, memory, tasks, labels.
fn print_nodes(state: &pb::ClusterStateReply, address: &str) {
    let alive = state
        .nodes
        .iter()
        .filter(|n| n.state() == pb::NodeState::Alive)
        .count();
    println!(
        "cluster at {address}: {alive} of {} nodes alive",
        state.nodes.len()
    );
    println!();
    println!(
        "{:<10} {:<22} {:<6} {:>9} {:>7} {:>19} {:>19} {:>21} {:>6} {:>18} {:<16} {:<6}",
        "NODE",
        "ADDRESS",
        "STATE",
        "CPU",
        "GPU",
        "MEMORY",
        "OBJECT STORE",
        "RESIDENT/ACCOUNTED",
        "TASKS",
        "INSTANCES (PEAK)",
        "CUSTOM",
        "LABELS"
    );
    for n in &state.nodes {
        let total = res(n.total.as_ref());
        let free = res(n.free.as_ref());
        let state = match n.state() {
            pb::NodeState::Alive => "ALIVE",
            pb::NodeState::Dead => "DEAD",
            pb::NodeState::Draining => "DRAIN",
            pb::NodeState::Unspecified => "?",
        };
        let custom: Vec<String> = total
            .custom
            .iter()
            .map(|(k, v)| format!("{k}:{}", used(*v, free.custom(k))))
            .collect();
        let mut labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let id = hex(&n.node_id);
        let role = if n.is_head { " (head)" } else { "" };
        let memory = format!(
            "{}/{}",
            fmt_bytes(total.memory - free.memory),
            fmt_bytes(total.memory)
        );
        let store = format!(
            "{}/{}",
            fmt_bytes(n.object_store_used as i64),
            fmt_bytes(n.object_store_capacity as i64)
        );
        let custom = if custom.is_empty() {
            "-".to_string()
        } else {
            custom.join(",")
        };
        let labels = format!("{}{role}", labels.join(","));
        // The process's resident memory beside what the node accounts for
        // (objects, live instances, compiled components).
        let resident = format!(
            "{}/{}",
            fmt_bytes(n.resident_bytes as i64),
            fmt_bytes(n.accounted_bytes as i64)
        );
        println!(
            "{:<10} {:<22} {:<6} {:>9} {:>7} {:>19} {:>19} {:>21} {:>6} {:>18} {:<16} {}",
            &id[..8.min(id.len())],
            n.address,
            state,
            used(total.cpu, free.cpu),
            used(total.gpu, free.gpu),
            memory,
            store,
            resident,
            n.running_tasks + n.queued_tasks,
            instances(n),
            custom,
            labels,
        );
    }
}

/// Live instances out of the node's slots, and the most at once:
/// `12/10000 (58)`.
fn instances(n: &pb::NodeInfo) -> String {
    format!(
        "{}/{} ({})",
        n.live_instances, n.instance_slots, n.peak_instances
    )
}

/// How long ago `unix_ms` was, as `3d4h`, `5h12m`, `7m3s` or `42s`.
fn age(unix_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if unix_ms == 0 {
        return "-".into();
    }
    let s = now.saturating_sub(unix_ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The table of jobs the head remembers.
fn print_jobs(state: &pb::ClusterStateReply) {
    println!();
    println!(
        "{:<34} {:<12} {:<10} {:<5}",
        "JOB", "TENANT", "STATUS", "ERROR"
    );
    for j in &state.jobs {
        let status = match j.status() {
            pb::job_record::Status::Running => "RUNNING",
            pb::job_record::Status::Succeeded => "SUCCEEDED",
            pb::job_record::Status::Failed => "FAILED",
            pb::job_record::Status::Stopped => "STOPPED",
            pb::job_record::Status::Unspecified => "?",
        };
        println!(
            "{:<34} {:<12} {:<10} {}",
            hex(&j.job_id),
            j.tenant,
            status,
            j.error.lines().next().unwrap_or("")
        );
    }
}

/// The table of actors in the head's directory.
fn print_actors(state: &pb::ClusterStateReply) {
    println!();
    println!(
        "{:<10} {:<16} {:<12} {:<24} {:<10} {:<10} {:>8} {:<4}",
        "ACTOR", "CLASS", "TENANT", "NAME", "NODE", "STATE", "AGE", "NOTE"
    );
    for a in &state.actors {
        let name = if a.name.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{}", a.namespace, a.name)
        };
        let id = hex(&a.actor_id);
        let node = hex(&a.node_id);
        let state = match (a.dead, a.restarting) {
            (true, _) => "DEAD",
            (false, true) => "RESTARTING",
            (false, false) => "ALIVE",
        };
        let mut notes = Vec::new();
        if a.detached {
            notes.push("detached".to_string());
        }
        if a.max_restarts > 0 {
            notes.push(format!("max-restarts {}", a.max_restarts));
        }
        let note = notes.join(", ");
        println!(
            "{:<10} {:<16} {:<12} {:<24} {:<10} {:<10} {:>8} {}",
            &id[..8],
            a.class,
            a.tenant,
            name,
            &node[..8.min(node.len())],
            state,
            age(a.created_unix_ms),
            note
        );
    }
}

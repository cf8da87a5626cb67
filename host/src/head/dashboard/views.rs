//! The JSON views the dashboard's pages read (each also a plain API for
//! scripts): the caller's session, the cluster's overview, its nodes, its
//! actors and its tenants' usage, each filtered as `fabric status` filters.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::session::Session;
use crate::head::rest::{Api, Caller};
use crate::head::{ActorState, JobStatus, NodeState};
use crate::resources::{ResourceSet, UNIT};
use crate::security::Principal;

fn resources(r: &ResourceSet) -> Value {
    let custom: serde_json::Map<String, Value> = r
        .custom
        .iter()
        .filter(|(name, _)| !name.starts_with("@pg:"))
        .map(|(name, n)| (name.to_string(), json!(*n as f64 / UNIT as f64)))
        .collect();
    json!({
        "CPU": r.cpu as f64 / UNIT as f64,
        "GPU": r.gpu as f64 / UNIT as f64,
        "memory": r.memory,
        "custom": custom,
    })
}

fn visible(who: &Principal, tenant: &str) -> bool {
    who.is_admin() || who.tenant() == tenant
}

/// `GET /api/session`: who the caller is (and, for a browser session, the
/// CSRF token its page sends back).
pub(crate) async fn session(
    Extension(Caller(who)): Extension<Caller>,
    session: Option<Extension<Session>>,
) -> Response {
    Json(json!({
        "tenant": who.tenant(),
        "admin": who.is_admin(),
        "csrf": session.map(|Extension(s)| s.csrf().to_string()),
    }))
    .into_response()
}

/// `GET /api/cluster`: counts of nodes, and of the caller's jobs and
/// actors, by state.
pub(crate) async fn cluster(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
) -> Response {
    let mut nodes = json!({ "alive": 0, "draining": 0, "dead": 0 });
    for n in api.head.nodes() {
        let key = match n.state {
            NodeState::Alive => "alive",
            NodeState::Draining => "draining",
            NodeState::Dead => "dead",
        };
        nodes[key] = json!(nodes[key].as_u64().unwrap_or(0) + 1);
    }
    let mut jobs = json!({ "running": 0, "succeeded": 0, "failed": 0, "stopped": 0 });
    for j in api.head.jobs_for(&who) {
        let key = match j.status {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed(_) => "failed",
            JobStatus::Stopped => "stopped",
        };
        jobs[key] = json!(jobs[key].as_u64().unwrap_or(0) + 1);
    }
    let mut actors = json!({ "alive": 0, "restarting": 0, "dead": 0 });
    for a in api
        .head
        .actors()
        .iter()
        .filter(|a| visible(&who, &a.tenant))
    {
        let key = match a.state {
            ActorState::Alive => "alive",
            ActorState::Restarting => "restarting",
            ActorState::Dead(_) => "dead",
        };
        actors[key] = json!(actors[key].as_u64().unwrap_or(0) + 1);
    }
    Json(json!({ "nodes": nodes, "jobs": jobs, "actors": actors })).into_response()
}

/// `GET /api/nodes`: every node, its resources, load and memory (what
/// `fabric status` shows every caller).
pub(crate) async fn nodes(State(api): State<Api>) -> Response {
    let nodes: Vec<Value> = api
        .head
        .nodes()
        .iter()
        .map(|n| {
            let state = match n.state {
                NodeState::Alive => "ALIVE",
                NodeState::Draining => "DRAINING",
                NodeState::Dead => "DEAD",
            };
            let l = &n.load;
            json!({
                "node_id": n.id.to_string(),
                "address": n.address,
                "is_head": n.is_head,
                "state": state,
                "labels": n.labels,
                "total": resources(&n.total),
                "free": resources(&l.free),
                "queued_tasks": l.queued_tasks,
                "running_tasks": l.running_tasks,
                "object_store_used": l.object_store_used,
                "object_store_capacity": n.object_store_capacity,
                "resident_bytes": l.resident_bytes,
                "accounted_bytes": l.accounted_bytes,
                "live_instances": l.live_instances,
                "instance_slots": l.instance_slots,
            })
        })
        .collect();
    Json(nodes).into_response()
}

/// `GET /api/actors`: the caller's actors (every actor, for the admin).
pub(crate) async fn actors(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
) -> Response {
    let actors: Vec<Value> = api
        .head
        .actors()
        .iter()
        .filter(|a| visible(&who, &a.tenant))
        .map(|a| {
            let (state, reason) = match &a.state {
                ActorState::Alive => ("ALIVE", None),
                ActorState::Restarting => ("RESTARTING", None),
                ActorState::Dead(why) => ("DEAD", Some(why.as_str())),
            };
            json!({
                "actor_id": a.id.to_string(),
                "class": a.class,
                "name": a.name,
                "namespace": a.namespace,
                "node_id": a.node.to_string(),
                "job_id": a.job.to_string(),
                "tenant": a.tenant,
                "detached": a.detached,
                "state": state,
                "death_reason": reason,
                "restarts": a.restarts,
                "max_restarts": a.max_restarts,
                "created_ms": a.created_unix_ms,
            })
        })
        .collect();
    Json(actors).into_response()
}

/// `GET /api/tenants`: usage and quotas (the caller's own; all, for the
/// admin).
pub(crate) async fn tenants(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
) -> Response {
    let tenants: Vec<Value> = api
        .head
        .tenant_usage(&who)
        .iter()
        .map(|u| {
            json!({
                "tenant": u.tenant,
                "quota": u.quota,
                "cpu_seconds": u.cpu_seconds,
                "memory_byte_seconds": u.memory_byte_seconds,
                "object_byte_seconds": u.object_byte_seconds,
                "tasks": u.tasks,
                "actors": u.actors,
                "jobs": u.jobs,
                "jobs_running": u.jobs_running,
                "in_use": resources(&u.in_use),
                "object_bytes_in_use": u.object_bytes_in_use,
                "live_instances": u.live_instances,
                "live_actors": u.live_actors,
            })
        })
        .collect();
    Json(tenants).into_response()
}

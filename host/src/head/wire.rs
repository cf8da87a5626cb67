//! The head's records to and from protobuf: the only place the head's types
//! meet the protocol's (for the wire, and for the state file, which keeps
//! the protocol's encoding so state files stay readable across versions).

use std::time::Instant;

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::records::{
    ActorRecord, ActorState, JobRecord, JobStatus, LogLine, NodeLoad, NodeRecord, NodeState,
    TenantLoad,
};
use super::usage::{TenantLimit, TenantUsage};
use crate::wire::{
    actor_id, id_bytes, job_id, node_id, quota_to_pb, resources_from_pb, resources_to_pb,
};

pub(crate) fn node_to_pb(n: &NodeRecord) -> pb::NodeInfo {
    let mut info = pb::NodeInfo {
        node_id: id_bytes(n.id.as_u128()),
        address: n.address.clone(),
        total: Some(resources_to_pb(&n.total)),
        free: Some(resources_to_pb(&n.load.free)),
        labels: n.labels.clone(),
        queued_tasks: n.load.queued_tasks,
        running_tasks: n.load.running_tasks,
        object_store_used: n.load.object_store_used,
        object_store_capacity: n.object_store_capacity,
        last_seen_ms: n.last_seen.elapsed().as_millis() as u64,
        is_head: n.is_head,
        resident_bytes: n.load.resident_bytes,
        accounted_bytes: n.load.accounted_bytes,
        live_instances: n.load.live_instances,
        peak_instances: n.load.peak_instances,
        instance_slots: n.load.instance_slots,
        ..Default::default()
    };
    info.set_state(match n.state {
        NodeState::Alive => pb::NodeState::Alive,
        NodeState::Draining => pb::NodeState::Draining,
        NodeState::Dead => pb::NodeState::Dead,
    });
    info
}

pub(crate) fn node_from_pb(info: pb::NodeInfo) -> Result<NodeRecord, Status> {
    let state = match info.state() {
        pb::NodeState::Alive => NodeState::Alive,
        pb::NodeState::Draining => NodeState::Draining,
        pb::NodeState::Dead | pb::NodeState::Unspecified => NodeState::Dead,
    };
    Ok(NodeRecord {
        id: node_id(&info.node_id)?,
        load: NodeLoad {
            free: resources_from_pb(info.free.as_ref()),
            queued_tasks: info.queued_tasks,
            running_tasks: info.running_tasks,
            object_store_used: info.object_store_used,
            resident_bytes: info.resident_bytes,
            accounted_bytes: info.accounted_bytes,
            live_instances: info.live_instances,
            peak_instances: info.peak_instances,
            instance_slots: info.instance_slots,
        },
        total: resources_from_pb(info.total.as_ref()),
        address: info.address,
        labels: info.labels,
        object_store_capacity: info.object_store_capacity,
        is_head: info.is_head,
        state,
        last_seen: Instant::now(),
    })
}

pub(crate) fn actor_to_pb(a: &ActorRecord) -> pb::ActorInfo {
    let (dead, death) = match &a.state {
        ActorState::Dead(why) => (true, why.clone()),
        _ => (false, String::new()),
    };
    pb::ActorInfo {
        actor_id: id_bytes(a.id.as_u128()),
        class: a.class.clone(),
        name: a.name.clone(),
        namespace: a.namespace.clone(),
        node_id: id_bytes(a.node.as_u128()),
        job_id: id_bytes(a.job.as_u128()),
        detached: a.detached,
        dead,
        death,
        tenant: a.tenant.clone(),
        owner_node_id: id_bytes(a.owner.as_u128()),
        max_restarts: a.max_restarts,
        max_task_retries: a.max_task_retries,
        restarts: a.restarts,
        restarting: a.state == ActorState::Restarting,
        created_unix_ms: a.created_unix_ms,
    }
}

pub(crate) fn actor_from_pb(a: pb::ActorInfo) -> Result<ActorRecord, Status> {
    let state = if a.dead {
        ActorState::Dead(a.death)
    } else if a.restarting {
        ActorState::Restarting
    } else {
        ActorState::Alive
    };
    Ok(ActorRecord {
        id: actor_id(&a.actor_id)?,
        node: node_id(&a.node_id)?,
        owner: node_id(&a.owner_node_id)?,
        job: job_id(&a.job_id)?,
        class: a.class,
        name: a.name,
        namespace: a.namespace,
        detached: a.detached,
        tenant: a.tenant,
        max_restarts: a.max_restarts,
        max_task_retries: a.max_task_retries,
        restarts: a.restarts,
        state,
        created_unix_ms: match a.created_unix_ms {
            0 => super::records::unix_ms(),
            t => t,
        },
    })
}

pub(crate) fn job_to_pb(j: &JobRecord) -> pb::JobRecord {
    use pb::job_record::Status;
    let (status, error) = match &j.status {
        JobStatus::Running => (Status::Running, String::new()),
        JobStatus::Succeeded => (Status::Succeeded, String::new()),
        JobStatus::Failed(e) => (Status::Failed, e.clone()),
        JobStatus::Stopped => (Status::Stopped, String::new()),
    };
    let mut record = pb::JobRecord {
        job_id: id_bytes(j.id.as_u128()),
        digest: j.digest.clone(),
        driver_node: id_bytes(j.driver.as_u128()),
        error,
        started_ms: j.started_ms,
        ended_ms: j.ended_ms,
        tenant: j.tenant.clone(),
        ..Default::default()
    };
    record.set_status(status);
    record
}

pub(crate) fn job_from_pb(j: pb::JobRecord) -> Result<JobRecord, Status> {
    use pb::job_record::Status;
    let status = match j.status() {
        Status::Running => JobStatus::Running,
        Status::Succeeded => JobStatus::Succeeded,
        Status::Stopped => JobStatus::Stopped,
        Status::Failed | Status::Unspecified => JobStatus::Failed(j.error.clone()),
    };
    Ok(JobRecord {
        id: job_id(&j.job_id)?,
        driver: node_id(&j.driver_node)?,
        digest: j.digest,
        started_ms: j.started_ms,
        ended_ms: j.ended_ms,
        tenant: j.tenant,
        status,
    })
}

pub(crate) fn log_line_to_pb(l: &LogLine) -> pb::LogLine {
    pb::LogLine {
        prefix: l.prefix.clone(),
        stderr: l.stderr,
        line: l.line.clone(),
    }
}

pub(crate) fn tenant_load_from_pb(l: pb::TenantLoad) -> TenantLoad {
    TenantLoad {
        held: resources_from_pb(l.held.as_ref()),
        tenant: l.tenant,
        object_bytes: l.object_bytes,
        cpu_seconds: l.cpu_seconds,
        memory_byte_seconds: l.memory_byte_seconds,
        object_byte_seconds: l.object_byte_seconds,
        tasks: l.tasks,
        actors: l.actors,
        live_instances: l.live_instances,
        live_actors: l.live_actors,
    }
}

pub(crate) fn usage_to_pb(u: &TenantUsage) -> pb::TenantUsage {
    let unit = crate::resources::UNIT as f64;
    pb::TenantUsage {
        tenant: u.tenant.clone(),
        quota: Some(quota_to_pb(&u.quota)),
        cpu_seconds: u.cpu_seconds,
        memory_byte_seconds: u.memory_byte_seconds,
        object_byte_seconds: u.object_byte_seconds,
        tasks: u.tasks,
        actors: u.actors,
        jobs: u.jobs,
        cpus_in_use: u.in_use.cpu as f64 / unit,
        gpus_in_use: u.in_use.gpu as f64 / unit,
        memory_in_use: u.in_use.memory.max(0) as u64,
        object_bytes_in_use: u.object_bytes_in_use,
        jobs_running: u.jobs_running,
        live_instances: u.live_instances,
        live_actors: u.live_actors,
    }
}

pub(crate) fn limit_to_pb(l: &TenantLimit) -> pb::TenantLimit {
    pb::TenantLimit {
        tenant: l.tenant.clone(),
        quota: Some(quota_to_pb(&l.quota)),
        held_elsewhere: Some(resources_to_pb(&l.held_elsewhere)),
        object_bytes_elsewhere: l.object_bytes_elsewhere,
        instances_elsewhere: l.instances_elsewhere,
        actors_elsewhere: l.actors_elsewhere,
    }
}

pub(crate) fn serve_to_pb(d: &super::serve_dir::ServeRecord) -> pb::ServeDeployment {
    pb::ServeDeployment {
        tenant: d.tenant.clone(),
        name: d.name.clone(),
        config: d.config.clone(),
        component: d.component.clone(),
        manifest: d.manifest.clone(),
        token: String::new(),
        token_sha256: d
            .token_sha256
            .map(|t| bytes::Bytes::copy_from_slice(&t))
            .unwrap_or_default(),
        deployed_unix_ms: d.deployed_unix_ms,
        host: d.claim.host.clone().unwrap_or_default(),
        route: d.claim.prefix.clone(),
        digest: d.digest.clone(),
        revision: d.revision.clone(),
    }
}

/// A deployment as a client or the state file sent it (the head sets its
/// claim and digest again when a client deploys it). A route token sent
/// as itself (an older client's, or an older head's state file) is kept
/// as its SHA-256 only.
pub(crate) fn serve_from_pb(
    d: pb::ServeDeployment,
) -> Result<super::serve_dir::ServeRecord, Status> {
    let token_sha256 = route_token_sha256(&d.token, &d.token_sha256)?;
    Ok(super::serve_dir::ServeRecord {
        tenant: d.tenant,
        name: d.name,
        config: d.config,
        component: d.component,
        manifest: d.manifest,
        token_sha256,
        deployed_unix_ms: d.deployed_unix_ms,
        claim: super::serve_dir::RouteClaim {
            host: (!d.host.is_empty()).then_some(d.host),
            prefix: d.route,
        },
        digest: d.digest,
        revision: d.revision,
    })
}

/// The SHA-256 of a deployment's route token, from the token or from its
/// digest (never both); `None` for a public route. The token's length is
/// the client's to check where only the digest comes (`fabric serve
/// deploy` refuses tokens under 16 characters); the empty token's digest,
/// which a bare `Bearer` would match, is refused here.
fn route_token_sha256(token: &str, sha256: &[u8]) -> Result<Option<[u8; 32]>, Status> {
    use super::serve_dir::MAX_TOKEN_BYTES;
    match (token.is_empty(), sha256.len()) {
        (true, 0) => Ok(None),
        (true, 32) if sha256 == crate::serve::token_sha256("") => Err(Status::invalid_argument(
            "a route token is at least 16 characters (this is the empty token's digest)",
        )),
        (true, 32) => Ok(Some(sha256.try_into().expect("32 bytes"))),
        (false, 0) if token.len() > MAX_TOKEN_BYTES => Err(Status::invalid_argument(format!(
            "a route token is at most {MAX_TOKEN_BYTES} bytes"
        ))),
        (false, 0) if token.trim().len() < 16 => Err(Status::invalid_argument(
            "a route token is at least 16 characters",
        )),
        // Trimmed, as the ingress trims the token a request presents.
        (false, 0) => Ok(Some(crate::serve::token_sha256(token.trim()))),
        _ => Err(Status::invalid_argument(
            "a route token comes as its SHA-256 (32 bytes) or as itself, not both",
        )),
    }
}

pub(crate) fn serve_summary(d: &super::serve_dir::ServeRecord) -> pb::ServeSummary {
    pb::ServeSummary {
        tenant: d.tenant.clone(),
        name: d.name.clone(),
        host: d.claim.host.clone().unwrap_or_default(),
        route: d.claim.prefix.clone(),
        digest: d.digest.clone(),
        deployed_unix_ms: d.deployed_unix_ms,
    }
}

pub(crate) fn serve_load_to_pb(l: &super::records::ServeLoad) -> pb::ServeLoad {
    pb::ServeLoad {
        tenant: l.tenant.clone(),
        name: l.name.clone(),
        host: l.host.clone().unwrap_or_default(),
        route: l.route.clone(),
        stateless: l.stateless,
        replicas: l.replicas,
        starting: l.starting,
        ongoing: l.ongoing,
        queued: l.queued,
        requests: l.requests.to_vec(),
        p50_ms: l.p50_ms.unwrap_or(0.0),
        p99_ms: l.p99_ms.unwrap_or(0.0),
    }
}

/// A node's report: its counts as sent (at most four classes are read).
pub(crate) fn serve_load_from_pb(l: pb::ServeLoad) -> super::records::ServeLoad {
    let mut requests = [0u64; 4];
    for (slot, n) in requests.iter_mut().zip(&l.requests) {
        *slot = *n;
    }
    let ms = |v: f64| (v.is_finite() && v > 0.0).then_some(v);
    super::records::ServeLoad {
        tenant: l.tenant,
        name: l.name,
        host: (!l.host.is_empty()).then_some(l.host),
        route: l.route,
        stateless: l.stateless,
        replicas: l.replicas,
        starting: l.starting,
        ongoing: l.ongoing,
        queued: l.queued,
        requests,
        p50_ms: ms(l.p50_ms),
        p99_ms: ms(l.p99_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ActorId, JobId, NodeId};

    #[test]
    fn records_survive_the_wire() {
        let actor = ActorRecord {
            id: ActorId::random(),
            class: "Counter".into(),
            name: "c".into(),
            namespace: "ns".into(),
            node: NodeId::random(),
            owner: NodeId::random(),
            job: JobId::random(),
            detached: true,
            tenant: "acme".into(),
            max_restarts: 3,
            max_task_retries: 1,
            restarts: 2,
            state: ActorState::Dead("its node died".into()),
            created_unix_ms: 1_700_000_000_000,
        };
        assert_eq!(actor_from_pb(actor_to_pb(&actor)).unwrap(), actor);
        let job = JobRecord {
            id: JobId::random(),
            digest: "d".into(),
            driver: NodeId::random(),
            started_ms: 7,
            ended_ms: 9,
            tenant: "acme".into(),
            status: JobStatus::Failed("boom".into()),
        };
        assert_eq!(job_from_pb(job_to_pb(&job)).unwrap(), job);
        let bad = pb::ActorInfo {
            actor_id: vec![1; 3].into(),
            ..actor_to_pb(&actor)
        };
        assert!(actor_from_pb(bad).is_err(), "a malformed id is refused");
    }

    #[test]
    fn a_route_token_is_kept_as_its_digest_whichever_way_it_came() {
        let token = "a-route-token-of-16-or-more";
        let digest = crate::serve::token_sha256(token);
        let plain = pb::ServeDeployment {
            name: "x".into(),
            token: token.into(),
            ..Default::default()
        };
        let kept = serve_from_pb(plain.clone()).unwrap();
        assert_eq!(kept.token_sha256, Some(digest));
        let sent = serve_to_pb(&kept);
        assert!(sent.token.is_empty(), "the token itself is never sent on");
        assert_eq!(serve_from_pb(sent).unwrap().token_sha256, Some(digest));
        let short = pb::ServeDeployment {
            token: "short".into(),
            ..plain.clone()
        };
        assert!(serve_from_pb(short).is_err());
        let both = pb::ServeDeployment {
            token_sha256: digest.to_vec().into(),
            ..plain.clone()
        };
        assert!(serve_from_pb(both).is_err());
        let empty = pb::ServeDeployment {
            token: String::new(),
            token_sha256: crate::serve::token_sha256("").to_vec().into(),
            ..plain.clone()
        };
        assert!(
            serve_from_pb(empty).is_err(),
            "a bare `Bearer` would open it"
        );
        let padded = pb::ServeDeployment {
            token: format!(" {token}\n"),
            ..plain.clone()
        };
        assert_eq!(serve_from_pb(padded).unwrap().token_sha256, Some(digest));
        let cut = pb::ServeDeployment {
            token: String::new(),
            token_sha256: digest[..31].to_vec().into(),
            ..plain
        };
        assert!(serve_from_pb(cut).is_err());
    }
}

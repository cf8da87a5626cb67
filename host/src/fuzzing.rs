//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
//!
//! Each function takes untrusted input as it reaches a node (a peer's
//! protobuf bytes, a guest's arguments to a host call) and runs the same
//! decoding and validation the node runs before acting on it. None of them
//! may panic, whatever the input: that is what the fuzzers check.

use prost::Message;
use wasmfabric_proto::v1 as pb;

use crate::limits::Limits;
use crate::manifest::{JobManifest, Policy};
use crate::wire::{
    actor_id, error_from_pb, job_id, node_id, object_id, resources_checked, task_id,
};

pub use fabric_runtime::fuzzing::*;

fn check_refs(refs: &[pb::ObjectRef]) {
    for r in refs {
        let _ = object_id(&r.id);
        let _ = node_id(&r.owner);
    }
}

fn check_args(args: &[pb::Arg]) {
    for a in args {
        if let Some(pb::arg::Kind::Object(r)) = &a.kind {
            check_refs(std::slice::from_ref(r));
        }
    }
}

fn check_job(j: &pb::JobInfo) {
    let _ = job_id(&j.job_id);
    let _ = node_id(&j.driver_node);
    if let Ok(m) = JobManifest::parse(&j.manifest) {
        let _ = Limits::default().for_job(&Limits::max(), &m.limits);
        let _ = Policy::default().check(&m.capabilities);
        let _ = Policy::allow_all().check(&m.capabilities);
    }
}

/// A `Deliver` batch (or a lone message) from a peer.
pub fn peer_bytes(data: &[u8]) {
    let messages = match pb::DeliverRequest::decode(data) {
        Ok(req) => {
            let _ = node_id(&req.from);
            req.messages
        }
        Err(_) => match pb::PeerMessage::decode(data) {
            Ok(m) => vec![m],
            Err(_) => return,
        },
    };
    use pb::peer_message::Kind;
    for m in messages {
        match m.kind {
            Some(Kind::Task(t)) => {
                if let Some(j) = &t.job {
                    check_job(j);
                }
                let _ = task_id(&t.task_id);
                let _ = object_id(&t.result_id);
                check_args(&t.args);
                check_refs(&t.nested);
                let _ = resources_checked(t.demand.as_ref());
            }
            Some(Kind::Result(r)) => {
                let _ = object_id(&r.result_id);
                check_refs(&r.nested);
                match &r.outcome {
                    Some(pb::task_result::Outcome::StoredAt(n)) => {
                        let _ = node_id(n);
                    }
                    Some(pb::task_result::Outcome::Error(e)) => {
                        let _ = error_from_pb(e).to_string();
                    }
                    _ => {}
                }
            }
            Some(Kind::CreateActor(c)) => {
                if let Some(j) = &c.job {
                    check_job(j);
                }
                let _ = actor_id(&c.actor_id);
                check_args(&c.args);
                check_refs(&c.nested);
                let _ = resources_checked(c.demand.as_ref());
            }
            Some(Kind::ActorCall(c)) => {
                let _ = actor_id(&c.actor_id);
                let _ = object_id(&c.result_id);
                check_args(&c.args);
                check_refs(&c.nested);
            }
            Some(Kind::KillActor(k)) => {
                let _ = actor_id(&k.actor_id);
            }
            Some(Kind::ActorState(a)) => {
                let _ = actor_id(&a.actor_id);
            }
            Some(Kind::RemoveBorrower(r)) => {
                let _ = object_id(&r.object_id);
                let _ = node_id(&r.borrower);
            }
            Some(Kind::FreeObject(f)) => {
                let _ = object_id(&f.object_id);
            }
            Some(Kind::JobFinished(f)) => {
                let _ = job_id(&f.job_id);
            }
            Some(Kind::Logs(l)) => {
                let _ = job_id(&l.job_id);
            }
            Some(Kind::CancelTask(c)) => {
                let _ = object_id(&c.result_id);
            }
            None => {}
        }
    }
}

/// The head's and a client's messages: heartbeats, registrations, actor
/// lookups, job submissions, object chunks.
pub fn control_bytes(data: &[u8]) {
    if let Ok(h) = pb::HeartbeatRequest::decode(data) {
        let _ = node_id(&h.node_id);
        let _ = resources_checked(h.free.as_ref());
        for l in &h.tenants {
            let _ = resources_checked(l.held.as_ref());
        }
    }
    if let Ok(r) = pb::HeartbeatReply::decode(data) {
        for l in &r.tenants {
            let q = crate::wire::quota_from_pb(l.quota.as_ref());
            let _ = q.validate();
            let _ = q.resource_cap();
        }
    }
    if let Ok(r) = pb::RegisterActorRequest::decode(data)
        && let Some(a) = &r.actor
    {
        let _ = actor_id(&a.actor_id);
        let _ = node_id(&a.node_id);
        let _ = crate::runtime::job::shown_namespace(&a.namespace);
    }
    if let Ok(s) = pb::SubmitJobRequest::decode(data) {
        let _ = crate::runtime::component::check_header(&s.component);
        if let Ok(m) = JobManifest::parse(&s.manifest) {
            let _ = Limits::default().for_job(&Limits::default(), &m.limits);
        }
    }
    if let Ok(c) = pb::ObjectChunk::decode(data)
        && let Some(pb::object_chunk::Kind::Error(e)) = &c.kind
    {
        let _ = error_from_pb(e).to_string();
    }
    if let Ok(a) = pb::AddTenantRequest::decode(data) {
        let _ = crate::security::valid_tenant_name(&a.name);
    }
}

//! Conversions between the node's types and the protocol's messages: ids,
//! resources, errors, quotas. (The head's records convert in
//! [`crate::head`]'s own wire module.)

use bytes::Bytes;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use crate::error::{FabricError, FailureKind, TaskFailure};
use crate::resources::ResourceSet;

/// An id as the 16 bytes the protocol carries.
pub(crate) fn id_bytes(id: u128) -> Bytes {
    Bytes::copy_from_slice(&id.to_be_bytes())
}

/// Reads a 16-byte id; a malformed one is the peer's error.
pub(crate) fn parse_id(b: &[u8]) -> Result<u128, Status> {
    let raw: [u8; 16] = b.try_into().map_err(|_| {
        Status::invalid_argument(format!("an id must be 16 bytes, got {}", b.len()))
    })?;
    Ok(u128::from_be_bytes(raw))
}

macro_rules! id_conv {
    ($($name:ident => $ty:ty),*) => {$(
        pub(crate) fn $name(b: &[u8]) -> Result<$ty, Status> {
            parse_id(b).map(<$ty>::from_u128)
        }
    )*};
}
id_conv!(node_id => crate::ids::NodeId, object_id => crate::ids::ObjectId, actor_id => crate::ids::ActorId, job_id => crate::ids::JobId, task_id => crate::ids::TaskId);

pub(crate) fn resources_to_pb(r: &ResourceSet) -> pb::Resources {
    pb::Resources {
        cpu: r.cpu,
        gpu: r.gpu,
        memory: r.memory,
        custom: r.custom.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
    }
}

/// A demand from a peer: every amount must be sane (not negative, not
/// absurd), or a hostile peer could inflate a node's free resources.
pub(crate) fn resources_checked(r: Option<&pb::Resources>) -> Result<ResourceSet, FabricError> {
    const MAX: i64 = 1 << 50;
    let set = resources_from_pb(r);
    let ok = |v: i64| (0..=MAX).contains(&v);
    if ok(set.cpu) && ok(set.gpu) && ok(set.memory) && set.custom.iter().all(|(_, v)| ok(*v)) {
        Ok(set)
    } else {
        Err(FabricError::InvalidArgument(format!(
            "a peer sent an impossible demand: {set}"
        )))
    }
}

/// A protocol error from a peer's message, as a typed failure.
pub(crate) fn status_failure(s: Status) -> FabricError {
    match s.code() {
        tonic::Code::NotFound => FabricError::ObjectLost(s.message().to_string()),
        tonic::Code::InvalidArgument => FabricError::InvalidArgument(s.message().to_string()),
        _ => FabricError::failure(
            "peer",
            FailureKind::System,
            format!("{}: {}", s.code(), s.message()),
        ),
    }
}

pub(crate) fn resources_from_pb(r: Option<&pb::Resources>) -> ResourceSet {
    let Some(r) = r else {
        return ResourceSet::default();
    };
    let mut set = ResourceSet {
        cpu: r.cpu,
        gpu: r.gpu,
        memory: r.memory,
        custom: Vec::new(),
    };
    let mut custom: Vec<_> = r.custom.iter().collect();
    custom.sort();
    for (name, v) in custom {
        set.custom.push((name.as_str().into(), *v));
    }
    set
}

pub(crate) fn error_to_pb(e: &FabricError) -> pb::Error {
    use pb::error::{FailureKind as F, Kind as K};
    let mut out = pb::Error {
        message: String::new(),
        ..Default::default()
    };
    match e {
        FabricError::TaskFailed(t) => {
            out.set_kind(K::TaskFailed);
            out.function = t.function.clone();
            out.message = t.message.clone();
            out.retryable = t.retryable;
            out.value = t.value.clone();
            out.set_failure_kind(match t.kind {
                FailureKind::ApplicationError => F::ApplicationError,
                FailureKind::Panic => F::Panic,
                FailureKind::Trap => F::Trap,
                FailureKind::UnknownFunction => F::UnknownFunction,
                FailureKind::BadValue => F::BadValue,
                FailureKind::System => F::System,
            });
        }
        FabricError::ActorDied(m) => {
            out.set_kind(K::ActorDied);
            out.message = m.clone();
        }
        FabricError::ObjectLost(m) => {
            out.set_kind(K::ObjectLost);
            out.message = m.clone();
        }
        FabricError::Timeout => out.set_kind(K::Timeout),
        FabricError::Cancelled => out.set_kind(K::Cancelled),
        FabricError::ResourcesInfeasible(m) => {
            out.set_kind(K::ResourcesInfeasible);
            out.message = m.clone();
        }
        FabricError::LimitExceeded {
            name,
            value,
            message,
        } => {
            out.set_kind(K::LimitExceeded);
            out.limit_name = name.clone();
            out.limit_value = *value;
            out.message = message.clone();
        }
        FabricError::NotFound(m) => {
            out.set_kind(K::NotFound);
            out.message = m.clone();
        }
        FabricError::InvalidArgument(m) => {
            out.set_kind(K::InvalidArgument);
            out.message = m.clone();
        }
    }
    out
}

/// An error as it came over the wire, typed again.
pub fn error_from_pb(e: &pb::Error) -> FabricError {
    error_of_pb(e).bounded()
}

fn error_of_pb(e: &pb::Error) -> FabricError {
    use pb::error::{FailureKind as F, Kind as K};
    let m = e.message.clone();
    match e.kind() {
        K::TaskFailed => FabricError::TaskFailed(Box::new(TaskFailure {
            function: e.function.clone(),
            kind: match e.failure_kind() {
                F::ApplicationError => FailureKind::ApplicationError,
                F::Panic => FailureKind::Panic,
                F::Trap => FailureKind::Trap,
                F::UnknownFunction => FailureKind::UnknownFunction,
                F::BadValue => FailureKind::BadValue,
                F::System | F::Unspecified => FailureKind::System,
            },
            message: m,
            retryable: e.retryable,
            value: e.value.clone(),
        })),
        K::ActorDied => FabricError::ActorDied(m),
        K::ObjectLost => FabricError::ObjectLost(m),
        K::Timeout => FabricError::Timeout,
        K::Cancelled => FabricError::Cancelled,
        K::ResourcesInfeasible => FabricError::ResourcesInfeasible(m),
        K::LimitExceeded => FabricError::LimitExceeded {
            name: e.limit_name.clone(),
            value: e.limit_value,
            message: m,
        },
        K::NotFound => FabricError::NotFound(m),
        K::InvalidArgument => FabricError::InvalidArgument(m),
        K::Unspecified => FabricError::failure(
            "?",
            FailureKind::System,
            format!("a peer sent an untyped error: {m}"),
        ),
    }
}

/// A gRPC failure talking to `what`, as a retryable system failure.
pub(crate) fn rpc_failure(what: &str, s: &Status) -> FabricError {
    FabricError::failure(
        what,
        FailureKind::System,
        format!("{}: {}", s.code(), s.message()),
    )
}

pub(crate) fn quota_to_pb(q: &crate::quota::Quota) -> pb::Quota {
    pb::Quota {
        cpus: q.cpus,
        gpus: q.gpus,
        memory: q.memory,
        object_store: q.object_store,
        jobs: q.jobs,
        instances: q.instances,
        actors: q.actors,
    }
}

pub(crate) fn quota_from_pb(q: Option<&pb::Quota>) -> crate::quota::Quota {
    q.map(|q| crate::quota::Quota {
        cpus: q.cpus,
        gpus: q.gpus,
        memory: q.memory,
        object_store: q.object_store,
        jobs: q.jobs,
        instances: q.instances,
        actors: q.actors,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_resources_survive_the_wire() {
        let errors = [
            FabricError::failure("f", FailureKind::Panic, "p"),
            FabricError::failure("f", FailureKind::System, "lost"),
            FabricError::ActorDied("a".into()),
            FabricError::limit("object-store-memory", 8, "full"),
            FabricError::Timeout,
            FabricError::NotFound("x".into()),
        ];
        for e in errors {
            assert_eq!(error_from_pb(&error_to_pb(&e)), e);
        }
        let r = ResourceSet::default()
            .with_cpus(1.5)
            .with_gpus(1.0)
            .with_memory(7)
            .with_custom("ssd", 1.0)
            .with_custom("a", 2.0);
        assert_eq!(resources_from_pb(Some(&resources_to_pb(&r))), r);
        assert!(parse_id(b"short").is_err());
        assert_eq!(parse_id(&id_bytes(42)).unwrap(), 42);
    }
}

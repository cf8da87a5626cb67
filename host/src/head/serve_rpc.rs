//! The Serve calls on the head, both sides: what clients ask of the
//! `Control` service (`fabric serve deploy`, `delete`, `list`), and what a
//! node's ingress asks of the `Head` service to follow the deployments.
//! The trait impls in `control.rs` and `service.rs` delegate here.

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::{Head, wire};
use crate::security::Principal;

/// A name is at most this long here (the Serve layer checks the rest).
const MAX_NAME: usize = 64;

fn list_reply(head: &Head, tenant: Option<&str>) -> pb::ServeListReply {
    pb::ServeListReply {
        deployments: head
            .serve_deployments(tenant)
            .iter()
            .map(|d| wire::serve_summary(d))
            .collect(),
    }
}

/// Whose deployments the caller sees: its own, or every tenant's for the
/// admin.
fn visible(who: &Principal) -> Option<&str> {
    match who {
        Principal::Admin => None,
        Principal::Tenant(t) => Some(t),
    }
}

pub(crate) async fn deploy(
    head: &Head,
    who: &Principal,
    request: pb::ServeDeployRequest,
) -> Result<pb::ServeListReply, Status> {
    if request.deployments.is_empty() {
        return Err(Status::invalid_argument("no deployment to deploy"));
    }
    let now = super::records::unix_ms();
    let mut records = Vec::with_capacity(request.deployments.len());
    for d in request.deployments {
        // Names reach logs, metrics labels and handle names (`serve/NAME`)
        // on every ingress: plain characters only.
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if d.name.is_empty() || d.name.len() > MAX_NAME || !d.name.chars().all(plain) {
            return Err(Status::invalid_argument(
                "a deployment's name is 1 to 64 letters, digits, `-`, `_` or `.`",
            ));
        }
        let mut r = wire::serve_from_pb(d)?;
        r.deployed_unix_ms = now;
        records.push(r);
    }
    head.serve_deploy(who.tenant(), records).await?;
    Ok(list_reply(head, visible(who)))
}

pub(crate) async fn delete(
    head: &Head,
    who: &Principal,
    request: pb::ServeDeleteRequest,
) -> Result<pb::ServeListReply, Status> {
    let tenant = match (who, request.tenant.as_str()) {
        (_, "") => who.tenant(),
        (Principal::Admin, t) => t,
        (Principal::Tenant(_), _) => {
            return Err(Status::permission_denied(
                "only the admin token may delete another tenant's deployments",
            ));
        }
    };
    if request.names.is_empty() {
        return Err(Status::invalid_argument("no deployment named to delete"));
    }
    head.serve_delete(tenant, &request.names, !who.is_admin())
        .await?;
    Ok(list_reply(head, visible(who)))
}

pub(crate) fn list(head: &Head, who: &Principal) -> pb::ServeListReply {
    list_reply(head, visible(who))
}

/// A node's ingress asks what to run (held until something changes, or
/// its wait passed).
pub(crate) async fn watch(head: &Head, request: pb::ServeWatchRequest) -> pb::ServeWatchReply {
    let wait = std::time::Duration::from_millis(u64::from(request.wait_ms));
    match head.serve_watch(request.epoch, request.version, wait).await {
        None => pb::ServeWatchReply::default(),
        Some(set) => pb::ServeWatchReply {
            changed: true,
            epoch: set.epoch,
            version: set.version,
            deployments: set.deployments.iter().map(wire::serve_to_pb).collect(),
            reserved_hosts: set.reserved_hosts,
        },
    }
}

pub(crate) fn fetch(
    head: &Head,
    request: pb::ServeFetchRequest,
) -> Result<pb::ServeDeployment, Status> {
    match head.serve_fetch(&request.tenant, &request.name, &request.revision) {
        // A node that would take the missing token for a public route
        // keeps what it runs instead (a failed fetch changes nothing).
        Some(record) if record.token_sha256.is_some() && !request.reads_token_sha256 => {
            Err(Status::failed_precondition(
                "this node predates route token digests: upgrade it to serve this route",
            ))
        }
        Some(record) => Ok(wire::serve_to_pb(&record)),
        None => Err(Status::not_found(
            "no such deployment, or it was deployed again",
        )),
    }
}

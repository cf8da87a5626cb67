//! What the head refuses, typed; it becomes a gRPC status only at the edge
//! ([`HeadError::to_status`]).

use tonic::Status;

use super::nodes::FindError;
use crate::error::{FabricError, LoadError, NodeError};
use crate::ids::NodeId;

/// Why the head could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The change could not be made durable (and was not confirmed).
    #[error("the head could not save: {0}")]
    Unsaved(NodeError),
    /// A limit or quota refused it (a typed `limit-exceeded`).
    #[error("{0}")]
    Refused(FabricError),
    #[error("cannot load the component: {0}")]
    Load(LoadError),
    #[error(transparent)]
    Find(#[from] FindError),
    #[error("node {0} is not alive")]
    NotAlive(NodeId),
    #[error("the head cannot be drained: it runs the jobs' drivers and the cluster's directory")]
    HeadNotDrainable,
    /// Unknown, or another tenant's (which looks the same).
    #[error("no such job")]
    NoSuchJob,
    #[error("job {0} is still running: stop it first")]
    JobRunning(crate::ids::JobId),
    #[error(transparent)]
    Serve(#[from] super::ServeError),
}

impl HeadError {
    pub(crate) fn to_status(&self) -> Status {
        let text = self.to_string();
        match self {
            HeadError::Unsaved(_) => Status::unavailable(text),
            HeadError::Refused(_) => Status::resource_exhausted(text),
            HeadError::Load(_) => Status::invalid_argument(text),
            HeadError::Find(FindError::None(_)) | HeadError::NotAlive(_) => Status::not_found(text),
            HeadError::Find(_) => Status::invalid_argument(text),
            HeadError::HeadNotDrainable | HeadError::JobRunning(_) => {
                Status::failed_precondition(text)
            }
            HeadError::NoSuchJob => Status::not_found(text),
            HeadError::Serve(e) => serve_status(e, text),
        }
    }
}

fn serve_status(e: &super::ServeError, text: String) -> Status {
    use super::ServeError as E;
    match e {
        E::Unsupported => Status::unimplemented(text),
        E::Invalid(_) => Status::invalid_argument(text),
        E::Clash(_) => Status::already_exists(text),
        E::Reserved(_) => Status::permission_denied(text),
        E::NotFound(_) => Status::not_found(text),
        E::Limit { .. } => Status::resource_exhausted(text),
    }
}

impl From<HeadError> for Status {
    fn from(e: HeadError) -> Status {
        e.to_status()
    }
}

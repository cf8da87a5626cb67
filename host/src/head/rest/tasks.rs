//! A job's tasks over the API: `GET /api/jobs/{id}/tasks` (the summary the
//! dashboard shows: counts by state, failures with their errors, the
//! slowest) and `GET /api/jobs/{id}/timeline` (a Chrome trace, as `fabric
//! timeline` writes). Both ask every node (see
//! [`crate::head::Head::job_tasks`]); a tenant sees only its own jobs.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::jobs::{job_id, job_json};
use super::{Api, ApiError, Caller};
use crate::head::JobTasks;
use crate::task_view::{TaskSummary, chrome_trace};

/// `GET /api/jobs/{id}/tasks`.
pub(super) async fn summary(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = |tasks: JobTasks| {
        let summary = TaskSummary::of(&tasks.nodes, 0);
        let body = json!({ "job": job_json(&tasks.job), "tasks": summary });
        Json(body).into_response()
    };
    Ok(api.head.job_tasks(job_id(&id)?, &who, view).await?)
}

/// `GET /api/jobs/{id}/timeline`: a download.
pub(super) async fn timeline(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let file = format!("attachment; filename=\"timeline-{}.json\"", id.short());
    let view = move |tasks: JobTasks| {
        let trace = chrome_trace(&tasks.nodes, 0);
        ([(header::CONTENT_DISPOSITION, file)], Json(trace)).into_response()
    };
    Ok(api.head.job_tasks(id, &who, view).await?)
}

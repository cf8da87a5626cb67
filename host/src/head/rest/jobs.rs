//! The Jobs API's handlers: uploads, submit, list, status, logs (with
//! follow), stop, delete.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Api, ApiError, Caller, MAX_COMPONENT, MAX_JSON, error};
use crate::head::records::{JobRecord, JobStatus, LogLine};
use crate::head::submit::{Output, Submission};
use crate::ids::JobId;
use crate::security::Principal;

type Answer = Result<Response, ApiError>;

/// A job as the API shows it.
pub(crate) fn job_json(j: &JobRecord) -> Value {
    let (status, error) = match &j.status {
        JobStatus::Running => ("RUNNING", None),
        JobStatus::Succeeded => ("SUCCEEDED", None),
        JobStatus::Failed(e) => ("FAILED", Some(e.as_str())),
        JobStatus::Stopped => ("STOPPED", None),
    };
    json!({
        "job_id": j.id.to_string(),
        "tenant": j.tenant,
        "status": status,
        "error": error,
        "digest": j.digest,
        "driver_node": j.driver.to_string(),
        "start_time_ms": j.started_ms,
        "end_time_ms": (j.ended_ms > 0).then_some(j.ended_ms),
    })
}

fn line_json(l: &LogLine) -> Value {
    json!({
        "prefix": l.prefix,
        "stream": if l.stderr { "stderr" } else { "stdout" },
        "line": String::from_utf8_lossy(&l.line),
    })
}

/// A job id from the path; a malformed one is as unknown as a missing one.
pub(super) fn job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such job"))
}

/// The request's declared length, which must be there and at most `max`.
fn declared_length(request: &Request, max: u64) -> Result<u64, ApiError> {
    let len = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .ok_or_else(|| error(StatusCode::LENGTH_REQUIRED, "send a Content-Length"))?;
    if len > max {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body may be at most {max} bytes"),
        ));
    }
    Ok(len)
}

/// Reads exactly the declared body (at most `max` bytes), at a minimum
/// rate (see [`crate::https::read_body`]).
async fn body(request: Request, max: u64) -> Result<bytes::Bytes, ApiError> {
    let len = declared_length(&request, max)?;
    crate::https::read_body(request.into_body(), len)
        .await
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))
}

/// `POST /api/components`: keeps a component for later jobs.
pub(super) async fn upload(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    request: Request,
) -> Answer {
    let len = declared_length(&request, MAX_COMPONENT)?;
    let room = api
        .uploads
        .reserve(who.tenant(), len)
        .map_err(|e| error(StatusCode::TOO_MANY_REQUESTS, e.to_string()))?;
    let bytes = body(request, len).await?;
    if !bytes.starts_with(b"\0asm") {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "this is not a WebAssembly component",
        ));
    }
    let size = bytes.len();
    let (bytes, digest) = tokio::task::spawn_blocking(move || {
        let digest = super::uploads::digest_of(&bytes);
        (bytes, digest)
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    api.uploads.keep_digested(room, bytes, digest.clone());
    let reply = json!({ "digest": digest, "bytes": size });
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

/// `GET /api/components`: the caller's uploads.
pub(super) async fn uploads(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
) -> Response {
    let list: Vec<Value> = api
        .uploads
        .list(who.tenant())
        .into_iter()
        .map(|(digest, bytes)| json!({ "digest": digest, "bytes": bytes }))
        .collect();
    Json(list).into_response()
}

/// `DELETE /api/components/{digest}`.
pub(super) async fn remove_upload(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    Path(digest): Path<String>,
) -> Answer {
    if api.uploads.remove(who.tenant(), &digest) {
        Ok(Json(json!({ "deleted": digest })).into_response())
    } else {
        Err(error(StatusCode::NOT_FOUND, "no such component"))
    }
}

/// What `POST /api/jobs` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitRequest {
    /// The digest of an uploaded component: the driver's.
    component: String,
    #[serde(default)]
    args: Vec<String>,
    /// The job manifest (TOML).
    #[serde(default)]
    manifest: String,
    /// The job's other components: name to uploaded digest.
    #[serde(default)]
    components: BTreeMap<String, String>,
}

/// `POST /api/jobs`: starts a job; answers once it runs (its component
/// compiled), with its record.
pub(super) async fn submit(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    request: Request,
) -> Answer {
    let tenant = who.tenant().to_string();
    // The tenant's submissions in progress, and its jobs quota, decide
    // before the body is read.
    let _submitting = api
        .head
        .submissions
        .begin(&tenant.as_str().into())
        .map_err(|e| error(StatusCode::TOO_MANY_REQUESTS, e.to_string()))?;
    let slot = api.head.reserve_job(&tenant)?;
    let text = body(request, MAX_JSON as u64).await?;
    let asked: SubmitRequest = serde_json::from_slice(&text)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad request: {e}")))?;
    let find = |digest: &str| {
        api.uploads.get(&tenant, digest).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("no uploaded component {digest}: POST it to /api/components first"),
            )
        })
    };
    let component = find(&asked.component)?;
    let mut components = Vec::with_capacity(asked.components.len());
    for (name, digest) in &asked.components {
        components.push((name.clone(), find(digest)?));
    }
    let job = Submission {
        tenant,
        component,
        args: asked.args,
        manifest: asked.manifest,
        components,
    };
    // The output is kept at the head (`/logs`); no one streams it here.
    let nowhere: Output = std::sync::Arc::new(|_: &LogLine| {});
    let mut id = None;
    let _started = api
        .head
        .submit(slot, job, nowhere, |j| id = Some(j))
        .await?;
    let id = id.expect("a started job has an id");
    let record = api.head.job_for(id, &who)?;
    Ok(Json(job_json(&record)).into_response())
}

/// `GET /api/jobs`: the jobs the caller may see.
pub(super) async fn list(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
) -> Response {
    let jobs: Vec<Value> = api.head.jobs_for(&who).iter().map(job_json).collect();
    Json(jobs).into_response()
}

/// `GET /api/jobs/{id}`.
pub(super) async fn one(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let job = api.head.job_for(job_id(&id)?, &who)?;
    Ok(Json(job_json(&job)).into_response())
}

/// `POST /api/jobs/{id}/stop`: stops it (a finished job stays as it was)
/// and answers with its record once it ended.
pub(super) async fn stop(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let id = job_id(&id)?;
    let job = api.head.stop_job(id, &who).await?;
    Ok(Json(job_json(&job)).into_response())
}

/// `DELETE /api/jobs/{id}`: forgets a finished job and its output.
pub(super) async fn delete(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let id = job_id(&id)?;
    api.head.delete_job(id, &who).await?;
    Ok(Json(json!({ "deleted": id.to_string() })).into_response())
}

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    #[serde(default)]
    follow: bool,
}

/// `GET /api/jobs/{id}/logs`: the kept output as JSON, or with
/// `?follow=true` the output as text, line by line as it comes, until the
/// job ends.
pub(super) async fn logs(
    State(api): State<Api>,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Answer {
    let id = job_id(&id)?;
    api.head.job_for(id, &who)?;
    if !q.follow {
        let tenant = (!who.is_admin()).then(|| who.tenant());
        let (lines, dropped) = api.head.job_output(id, tenant).unwrap_or_default();
        let lines: Vec<Value> = lines.iter().map(line_json).collect();
        return Ok(Json(json!({ "lines": lines, "dropped": dropped })).into_response());
    }
    let place = Following::begin(&api, who.tenant())?;
    // One chunk in flight: a slow reader holds at most two chunks here.
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(1);
    tokio::spawn(async move {
        let _place = place;
        follow(api, who, id, tx).await
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// One of a tenant's followed logs; dropping it ends it.
struct Following {
    counts:
        std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<std::sync::Arc<str>, usize>>>,
    tenant: std::sync::Arc<str>,
}

impl Following {
    fn begin(api: &Api, tenant: &str) -> Result<Following, ApiError> {
        let mut counts = api.follows.lock();
        let n = counts.entry(tenant.into()).or_default();
        if *n >= super::FOLLOWS_PER_TENANT {
            return Err(error(
                StatusCode::TOO_MANY_REQUESTS,
                format!("tenant `{tenant}` follows {n} logs already"),
            ));
        }
        *n += 1;
        Ok(Following {
            counts: api.follows.clone(),
            tenant: tenant.into(),
        })
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

/// The most text one chunk of a followed log carries.
const CHUNK: usize = 64 << 10;

/// Sends job `id`'s output from its first kept line until it has ended
/// and all is sent, or the client went away.
async fn follow(
    api: Api,
    who: Principal,
    id: JobId,
    tx: mpsc::Sender<Result<String, std::io::Error>>,
) {
    let mut next = 0u64;
    loop {
        // Read the state first: output printed before it ended is in the log.
        let ended = api.head.job_for(id, &who).map(|j| j.status.is_finished());
        let (lines, first) = api.head.job_output_from(id, next).unwrap_or_default();
        let mut text = String::new();
        if first > next {
            text.push_str(&format!("[{} older lines were not kept]\n", first - next));
        }
        next = first;
        for l in &lines {
            text.push_str(&l.prefix);
            text.push_str(&String::from_utf8_lossy(&l.line));
            text.push('\n');
            next += 1;
            if text.len() >= CHUNK && tx.send(Ok(std::mem::take(&mut text))).await.is_err() {
                return;
            }
        }
        if !text.is_empty() && tx.send(Ok(text)).await.is_err() {
            return;
        }
        if !matches!(ended, Ok(false)) {
            return; // ended, or deleted
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tx.closed() => return,
        }
    }
}

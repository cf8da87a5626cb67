//! What a request names, checked before it is routed: its host (the URI's
//! authority and the `Host` header, which must agree) and whether its path
//! can be matched against a route's prefix as text.

use axum::extract::Request;
use axum::http::header;

/// The host a request is for, lower case and without its port: its URI's
/// authority (HTTP/2's `:authority`, HTTP/1.1's absolute form) and its
/// `Host` header, which must agree when both are there (else a route
/// could be chosen by one name and its handler shown another). An
/// authority with userinfo, several `Host` headers or one that is not
/// text are refused.
pub(super) fn request_host(request: &Request) -> Result<Option<String>, &'static str> {
    let from_uri = match request.uri().authority() {
        Some(a) if a.as_str().contains('@') => return Err("the request's authority has userinfo"),
        Some(a) => Some(a.host().to_ascii_lowercase()),
        None => None,
    };
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let from_header = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err("the request has several Host headers"),
        (Some(h), None) => Some(host_name(
            h.to_str().map_err(|_| "the Host header is not text")?,
        )),
        (None, _) => None,
    };
    match (from_uri, from_header) {
        (Some(u), Some(h)) if u != h => Err("the Host header and the request's authority differ"),
        (Some(u), _) => Ok(Some(u)),
        (None, h) => Ok(h),
    }
}

/// The name in a `Host` header, lower case, without its port
/// (`[::1]:8000` is `[::1]`).
fn host_name(host: &str) -> String {
    let name = match host.rfind(']') {
        Some(end) => &host[..=end],
        None => host.split(':').next().unwrap_or(host),
    };
    name.to_ascii_lowercase()
}

/// Whether a path can be matched against a prefix as text: no `.` or `..`
/// segments, no empty segments, no `\\`, and no percent-encoded `.`, `/`
/// or `\\` (any of which a replica might resolve into another route's
/// path).
pub(super) fn plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !(lower.contains("//")
        || lower.contains('\\')
        || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        || lower.split('/').any(|seg| seg == "." || seg == ".."))
}

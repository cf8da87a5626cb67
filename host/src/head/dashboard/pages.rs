//! The dashboard's pages and its login: `/` (the app, for a browser with a
//! session), `/login` (exchanges a token for a session cookie), `/logout`,
//! and the static files, all compiled into the binary.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, CSRF_HEADER};
use crate::head::rest::{Auth, error};

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The most a login request's body may be.
const MAX_LOGIN: usize = 8 << 10;

/// What every page's response carries: no framing by other sites, no
/// scripts or connections but its own, no caching of what a tenant sees.
fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /`: the app for a browser with a session, else the login page.
pub(crate) async fn index(State(auth): State<Auth>, request: Request) -> Response {
    let signed_in = session::cookie(request.headers()).and_then(|id| auth.sessions.find(id));
    match signed_in {
        Some(_) => page("text/html; charset=utf-8", INDEX),
        None => Redirect::to("/login").into_response(),
    }
}

pub(crate) async fn login_page() -> Response {
    page("text/html; charset=utf-8", LOGIN)
}

pub(crate) async fn app_js() -> Response {
    page("text/javascript; charset=utf-8", APP_JS)
}

pub(crate) async fn style() -> Response {
    page("text/css; charset=utf-8", STYLE)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

fn session_cookie(id: &str, max_age: u64) -> HeaderValue {
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}",
        session::COOKIE
    );
    HeaderValue::from_str(&cookie).expect("a token is ASCII")
}

/// `POST /login` with `{"token": "..."}` (JSON only: a form on another
/// site cannot send it): sets the session cookie.
pub(crate) async fn login(State(auth): State<Auth>, request: Request) -> Response {
    // A session the browser brought along ends: a login never continues
    // one (nor one another site planted).
    if let Some(old) = session::cookie(request.headers()) {
        auth.sessions.close(old);
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the token as JSON").into_response();
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_LOGIN).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "the login is too long").into_response();
    };
    let Ok(Login { token }) = serde_json::from_slice(&body) else {
        return error(StatusCode::BAD_REQUEST, "send {\"token\": \"...\"}").into_response();
    };
    let Some(who) = auth.head.tokens().authenticate(token.trim()) else {
        return error(StatusCode::UNAUTHORIZED, "that token is not valid here").into_response();
    };
    let (id, _) = auth.sessions.open(who.clone());
    tracing::info!(tenant = %who.tenant(), "dashboard login");
    let mut r = Json(serde_json::json!({ "tenant": who.tenant() })).into_response();
    let max_age = session::LIFETIME.as_secs();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id, max_age));
    r
}

/// `POST /logout` (with the session's CSRF token): ends the session.
pub(crate) async fn logout(State(auth): State<Auth>, request: Request) -> Response {
    let headers = request.headers();
    let Some(id) = session::cookie(headers) else {
        return Redirect::to("/login").into_response();
    };
    let csrf = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth.sessions.find(id).is_some_and(|s| s.csrf_is(csrf)) {
        auth.sessions.close(id);
    } else {
        return error(
            StatusCode::FORBIDDEN,
            "a logout needs the session's CSRF token",
        )
        .into_response();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    r
}

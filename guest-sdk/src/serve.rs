//! Serve's request and response, as a deployment's method takes and
//! returns them (`fabric serve`: each HTTP request is one call of the
//! replica's method, whose return value is the response).
//!
//! ```no_run
//! use fabric::serve::{Request, Response};
//!
//! #[fabric::actor]
//! struct Greeter {
//!     served: u64,
//! }
//!
//! #[fabric::actor]
//! impl Greeter {
//!     fn new() -> Self {
//!         Greeter { served: 0 }
//!     }
//!
//!     fn call(&mut self, request: Request) -> Response {
//!         self.served += 1;
//!         Response::text(200, format!("hello {} (#{})", request.path, self.served))
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! A method may also return bytes (the body), a `String` (a `text/plain`
//! body) or any other serializable value (sent as JSON).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AnyActor, Result};

/// A handle to the deployment `name` of this tenant (Ray Serve's
/// `DeploymentHandle`): `deployment("model")?.method::<Response>("call")
/// .arg(&request).remote()?` calls one of its replicas, chosen as the
/// ingress chooses one for a request, after waiting (within the
/// deployment's `request_timeout`) for a place in its bounded queue; a
/// full queue fails the call with [`crate::Error::LimitExceeded`].
pub fn deployment(name: &str) -> Result<AnyActor> {
    AnyActor::named(name, NAMESPACE)
}

/// The namespace deployments are found in (as named actors are); no
/// actor may be named in it.
pub const NAMESPACE: &str = "serve";

/// One HTTP request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, as the client sent it (the route's prefix included).
    pub path: String,
    /// What follows `?` (empty when nothing does).
    pub query: String,
    /// Lower-case names; a repeated header's values joined with `, `.
    pub headers: BTreeMap<String, String>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// An HTTP response: a status from 200 to 599, headers (the ingress sets
/// the framing ones), a body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of bytes (`application/octet-stream` unless
    /// a `content-type` header says otherwise).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Response::new(status, text.into().into_bytes())
            .header("content-type", "text/plain; charset=utf-8")
    }

    /// This response with one more header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

#[cfg(feature = "json")]
impl Request {
    /// The body, as the JSON of a `T` (feature `json`).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }
}

#[cfg(feature = "json")]
impl Response {
    /// A response whose body is `value` as JSON (`application/json`;
    /// feature `json`).
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(status, body).header("content-type", "application/json"),
            Err(e) => Response::text(500, format!("the answer is not JSON: {e}")),
        }
    }
}

/// A typed JSON handler (feature `json`): the request's body as an `I`,
/// `handler`'s `O` as a 200 JSON answer; a body that is no `I` is a 400
/// that says why, and `handler` is not called.
///
/// ```ignore
/// fn call(&mut self, request: Request) -> Response {
///     fabric::serve::handle_json(&request, |numbers: Vec<i64>| numbers.iter().sum::<i64>())
/// }
/// ```
#[cfg(feature = "json")]
pub fn handle_json<I, O>(request: &Request, handler: impl FnOnce(I) -> O) -> Response
where
    I: serde::de::DeserializeOwned,
    O: Serialize,
{
    match request.json::<I>() {
        Ok(input) => Response::json(200, &handler(input)),
        Err(e) => Response::text(
            400,
            format!("the body is not the JSON this route takes: {e}"),
        ),
    }
}

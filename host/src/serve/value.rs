//! Requests as the values a replica's method takes, and its return values
//! as responses.
//!
//! A request is one MessagePack map: `method`, `path`, `query` (the text
//! after `?`, empty when none), `headers` (lower-case names to values; a
//! repeated header's values joined with `, `) and `body` (bytes). In Python
//! it is a `dict`; in Rust a struct with those fields.
//!
//! What the method returns becomes the response:
//! - a map with an integer `status` is a response record: `status`,
//!   `headers` (a map of text to text, optional) and `body` (bytes or text,
//!   optional; anything else is sent as JSON);
//! - bytes are the body (`application/octet-stream`), text is the body
//!   (`text/plain`), anything else is sent as JSON (`application/json`).
//!
//! ```
//! use fabric_host::serve::value::{Incoming, response_of};
//! let request = Incoming { method: "GET".into(), path: "/a".into(), query: String::new(),
//!     headers: vec![], body: bytes::Bytes::new() }.encode();
//! assert!(!request.is_empty());
//! let reply = response_of(&[0xa2, b'h', b'i']).unwrap(); // the text "hi"
//! assert_eq!(reply.status, 200);
//! assert_eq!(&reply.body[..], b"hi");
//! ```

use bytes::Bytes;
use rmpv::Value;

/// How deep a returned value may nest (deeper: the replica's answer is
/// refused, not walked).
pub const MAX_DEPTH: usize = 64;

/// A request as the ingress read it.
pub struct Incoming {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names, in the order they came.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Incoming {
    /// The request as the method's one argument.
    pub fn encode(self) -> Bytes {
        let mut headers: Vec<(Value, Value)> = Vec::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            match headers.iter_mut().find(|(n, _)| n.as_str() == Some(&name)) {
                Some((_, joined)) => {
                    let text = format!("{}, {value}", joined.as_str().unwrap_or_default());
                    *joined = Value::from(text);
                }
                None => headers.push((Value::from(name), Value::from(value))),
            }
        }
        let map = Value::Map(vec![
            (Value::from("method"), Value::from(self.method)),
            (Value::from("path"), Value::from(self.path)),
            (Value::from("query"), Value::from(self.query)),
            (Value::from("headers"), Value::Map(headers)),
            (Value::from("body"), Value::Binary(self.body.to_vec())),
        ]);
        let mut out = Vec::with_capacity(64);
        rmpv::encode::write_value(&mut out, &map).expect("writing to a Vec cannot fail");
        Bytes::from(out)
    }
}

/// A response made of a replica's return value.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The response `value` (a method's encoded return value) stands for, or
/// why it stands for none.
pub fn response_of(value: &[u8]) -> Result<Reply, String> {
    let mut read = value;
    let value = rmpv::decode::read_value_with_max_depth(&mut read, MAX_DEPTH).map_err(|e| {
        format!("the handler's value is not MessagePack within {MAX_DEPTH} levels: {e}")
    })?;
    match value {
        Value::Map(fields) if fields.iter().any(|(k, _)| k.as_str() == Some("status")) => {
            record(fields)
        }
        other => body_of(other, Vec::new(), 200),
    }
}

/// A response record: `status`, `headers`, `body`.
fn record(fields: Vec<(Value, Value)>) -> Result<Reply, String> {
    let (mut status, mut headers, mut body) = (None, Vec::new(), Value::Nil);
    for (key, value) in fields {
        match key.as_str() {
            Some("status") => status = value.as_u64(),
            Some("headers") => headers = header_list(value)?,
            Some("body") => body = value,
            _ => return Err(format!("a response has no field {key}")),
        }
    }
    let status = status
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=999).contains(s))
        .ok_or("a response's `status` must be an integer from 100 to 999")?;
    body_of(body, headers, status)
}

fn header_list(value: Value) -> Result<Vec<(String, String)>, String> {
    let Value::Map(pairs) = value else {
        return Err("a response's `headers` must be a map of text to text".into());
    };
    pairs
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::String(k), Value::String(v)) => match (k.into_str(), v.into_str()) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err("a header is not UTF-8".to_string()),
            },
            _ => Err("a response's `headers` must be a map of text to text".into()),
        })
        .collect()
}

/// The body `value` stands for, with the content type it implies unless
/// the headers name one.
fn body_of(value: Value, mut headers: Vec<(String, String)>, status: u16) -> Result<Reply, String> {
    let (kind, body) = match value {
        Value::Nil if status != 200 => ("text/plain; charset=utf-8", Bytes::new()),
        Value::Binary(b) => ("application/octet-stream", Bytes::from(b)),
        Value::String(s) => match s.into_str() {
            Some(text) => ("text/plain; charset=utf-8", Bytes::from(text)),
            None => return Err("the handler returned text that is not UTF-8".into()),
        },
        other => ("application/json", Bytes::from(json_of(other)?.to_string())),
    };
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), kind.into()));
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// `value` as JSON. Depth is bounded by the read (`MAX_DEPTH`), so the
/// recursion here is too.
fn json_of(value: Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(b),
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => J::from(n),
            (None, Some(n)) => J::from(n),
            _ => return Err("an integer out of range".into()),
        },
        Value::F32(f) => J::from(f64::from(f)),
        Value::F64(f) => J::from(f),
        Value::String(s) => J::String(s.into_str().ok_or("text that is not UTF-8")?),
        Value::Binary(_) => return Err("bytes inside a value cannot be sent as JSON".into()),
        Value::Array(items) => J::Array(items.into_iter().map(json_of).collect::<Result<_, _>>()?),
        Value::Map(pairs) => {
            let mut object = serde_json::Map::with_capacity(pairs.len());
            for (k, v) in pairs {
                let key = match k {
                    Value::String(s) => s.into_str().ok_or("a key that is not UTF-8")?,
                    other => other.to_string(),
                };
                object.insert(key, json_of(v)?);
            }
            J::Object(object)
        }
        Value::Ext(..) => {
            return Err("a reference or handle cannot be sent as JSON".into());
        }
    })
}

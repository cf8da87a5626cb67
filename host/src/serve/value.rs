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
//!   optional; anything else is sent as JSON); `status` is 200 to 599;
//! - bytes are the body (`application/octet-stream`), text is the body
//!   (`text/plain`), anything else is sent as JSON (`application/json`).
//!
//! ```
//! use fabric_host::serve::value::{Incoming, response_of};
//! let request = Incoming { method: "GET".into(), path: "/a".into(), query: String::new(),
//!     headers: vec![], body: bytes::Bytes::new() }.encode();
//! assert!(!request.is_empty());
//! let reply = response_of(&bytes::Bytes::from_static(&[0xa2, b'h', b'i']), 1 << 20).unwrap(); // "hi"
//! assert_eq!(reply.status, 200);
//! assert_eq!(&reply.body[..], b"hi");
//! ```

use bytes::Bytes;
use rmpv::Value;

/// How deep a returned value may nest (deeper: the replica's answer is
/// refused, not walked). rmpv counts a container twice: 64 levels.
pub const MAX_DEPTH: usize = 128;
/// The most values (containers' items counted) a returned value may hold
/// before it is turned into a response: counted on its bytes first, so a
/// small value that declares millions of items builds nothing.
pub const MAX_VALUES: u64 = 100_000;

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
pub fn response_of(value: &Bytes, max_body: usize) -> Result<Reply, String> {
    // Bytes and text, the common answers, are the body as they are.
    if let Some((start, text)) = raw_body(value) {
        let kind = match text {
            true => "text/plain; charset=utf-8",
            false => "application/octet-stream",
        };
        let body = value.slice(start..);
        if text && std::str::from_utf8(&body).is_err() {
            return Err("the handler returned text that is not UTF-8".into());
        }
        return Ok(Reply {
            status: 200,
            headers: vec![("content-type".into(), kind.into())],
            body,
        });
    }
    count_values(value, MAX_VALUES)?;
    let mut read = &value[..];
    let value = rmpv::decode::read_value_with_max_depth(&mut read, MAX_DEPTH)
        .map_err(|e| format!("the handler's value is not MessagePack within 64 levels: {e}"))?;
    match value {
        Value::Map(fields)
            if fields
                .iter()
                .any(|(k, v)| k.as_str() == Some("status") && v.is_u64()) =>
        {
            record(fields, max_body)
        }
        other => body_of(other, Vec::new(), 200, max_body),
    }
}

/// Where the body of a value that is one `bin` or `str` starts, and
/// whether it is text; `None` for any other value (or a malformed one).
fn raw_body(value: &[u8]) -> Option<(usize, bool)> {
    let (&first, rest) = value.split_first()?;
    let (header, len, text) = match first {
        0xa0..=0xbf => (1, u64::from(first & 0x1f), true),
        0xc4 | 0xd9 => (2, be(rest, 1)?, first == 0xd9),
        0xc5 | 0xda => (3, be(rest, 2)?, first == 0xda),
        0xc6 | 0xdb => (5, be(rest, 4)?, first == 0xdb),
        _ => return None,
    };
    (value.len() as u64 == header as u64 + len).then_some((header, text))
}

/// The big-endian number in the first `n` bytes of `data`.
fn be(data: &[u8], n: usize) -> Option<u64> {
    let bytes = data.get(..n)?;
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Refuses a value that holds more than `max` values, reading only its
/// markers and lengths (a loop, not a recursion).
fn count_values(data: &[u8], max: u64) -> Result<(), String> {
    walk(data, 0, max).map(|_| ())
}

/// A batch's requests as the method's one argument: a list of them.
pub fn request_list(requests: Vec<Bytes>) -> Bytes {
    let n = requests.len();
    let mut out = Vec::with_capacity(5 + requests.iter().map(Bytes::len).sum::<usize>());
    match n {
        0..=15 => out.push(0x90 | n as u8),
        16..=0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdd);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    for r in requests {
        out.extend_from_slice(&r);
    }
    Bytes::from(out)
}

/// A batch handler's answer split into its `n` items, each still encoded
/// (slices of `value`, nothing copied), or why it is not a list of `n`.
/// Walks markers and lengths only, in a loop.
pub fn answer_list(value: &Bytes, n: usize) -> Result<Vec<Bytes>, String> {
    let not_a_list = || "the batch handler did not return a list".to_string();
    let (&marker, rest) = value.split_first().ok_or_else(not_a_list)?;
    let (header, count) = match marker {
        0x90..=0x9f => (0, u64::from(marker & 0x0f)),
        0xdc => (2, be(rest, 2).ok_or_else(not_a_list)?),
        0xdd => (4, be(rest, 4).ok_or_else(not_a_list)?),
        _ => return Err(not_a_list()),
    };
    if count != n as u64 {
        return Err(format!(
            "the batch handler returned {count} answers for {n} requests"
        ));
    }
    let mut items = Vec::with_capacity(n);
    let mut pos = 1 + header;
    for _ in 0..n {
        let end = value_end(value, pos)?;
        items.push(value.slice(pos..end));
        pos = end;
    }
    match pos == value.len() {
        true => Ok(items),
        false => Err("the batch handler's list has bytes after it".into()),
    }
}

/// Where the value that starts at `start` in `data` ends.
fn value_end(data: &[u8], start: usize) -> Result<usize, String> {
    walk(data, start, u64::MAX)
}

/// Walks the value that starts at `start` by its markers and lengths (a
/// loop, not a recursion): where it ends, or an error when it is cut
/// short or holds more than `max` values.
fn walk(data: &[u8], start: usize, max: u64) -> Result<usize, String> {
    let truncated = || "the handler's value is not MessagePack".to_string();
    let (mut pos, mut pending, mut seen) = (start, 1u64, 0u64);
    while pending > 0 {
        pending -= 1;
        seen += 1;
        let &marker = data.get(pos).ok_or_else(truncated)?;
        pos += 1;
        let (header, payload, items) = sizes(marker, &data[pos..]).ok_or_else(truncated)?;
        let skip = (header as u64).saturating_add(payload);
        if skip > (data.len() - pos) as u64 {
            return Err(truncated());
        }
        pos += skip as usize;
        pending = pending.saturating_add(items);
        if seen.saturating_add(pending) > max {
            return Err(format!("the handler's value holds more than {max} values"));
        }
        // Each item takes a byte at least: more than are left is a lie.
        if items > (data.len() - pos) as u64 {
            return Err(truncated());
        }
    }
    Ok(pos)
}

/// For a MessagePack marker and what follows it: the bytes of its length
/// header, of its payload, and the values inside it (a container's items).
fn sizes(marker: u8, rest: &[u8]) -> Option<(usize, u64, u64)> {
    let len = |n: usize| be(rest, n);
    Some(match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0),
        0x80..=0x8f => (0, 0, 2 * u64::from(marker & 0x0f)),
        0x90..=0x9f => (0, 0, u64::from(marker & 0x0f)),
        0xa0..=0xbf => (0, u64::from(marker & 0x1f), 0),
        0xc4 | 0xd9 => (1, len(1)?, 0),
        0xc5 | 0xda => (2, len(2)?, 0),
        0xc6 | 0xdb => (4, len(4)?, 0),
        // ext 8/16/32: the length, then the type byte and the data.
        0xc7 => (1, len(1)? + 1, 0),
        0xc8 => (2, len(2)? + 1, 0),
        0xc9 => (4, len(4)? + 1, 0),
        0xcc | 0xd0 => (0, 1, 0),
        0xcd | 0xd1 => (0, 2, 0),
        0xca | 0xce | 0xd2 => (0, 4, 0),
        0xcb | 0xcf | 0xd3 => (0, 8, 0),
        // fixext 1/2/4/8/16: the type byte and the data.
        0xd4 => (0, 2, 0),
        0xd5 => (0, 3, 0),
        0xd6 => (0, 5, 0),
        0xd7 => (0, 9, 0),
        0xd8 => (0, 17, 0),
        0xdc => (2, 0, len(2)?),
        0xdd => (4, 0, len(4)?),
        0xde => (2, 0, 2 * len(2)?),
        0xdf => (4, 0, 2 * len(4)?),
        0xc1 => return None,
    })
}

/// A response record: `status`, `headers`, `body`.
fn record(fields: Vec<(Value, Value)>, max_body: usize) -> Result<Reply, String> {
    let (mut status, mut headers, mut body) = (None, Vec::new(), Value::Nil);
    for (key, value) in fields {
        match key.as_str() {
            Some("status") => status = value.as_u64(),
            Some("headers") => headers = header_list(value)?,
            Some("body") => body = value,
            _ => return Err(format!("a response has no field {key}")),
        }
    }
    // No 1xx: an interim or protocol-switching status is the ingress's.
    let status = status
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (200..=599).contains(s))
        .ok_or("a response's `status` must be an integer from 200 to 599")?;
    body_of(body, headers, status, max_body)
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
fn body_of(
    value: Value,
    mut headers: Vec<(String, String)>,
    status: u16,
    max_body: usize,
) -> Result<Reply, String> {
    let (kind, body) = match value {
        Value::Nil if status != 200 => ("text/plain; charset=utf-8", Bytes::new()),
        Value::Binary(b) => ("application/octet-stream", Bytes::from(b)),
        Value::String(s) => match s.into_str() {
            Some(text) => ("text/plain; charset=utf-8", Bytes::from(text)),
            None => return Err("the handler returned text that is not UTF-8".into()),
        },
        other => ("application/json", json_text(json_of(other)?, max_body)?),
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
                    Value::Integer(i) => i.to_string(),
                    Value::Boolean(b) => b.to_string(),
                    _ => return Err("a map key that is not text, a number or a bool".into()),
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

/// `json` as text, refused once it passes `max` bytes (escaping can make
/// JSON several times the size of the value it came from).
fn json_text(json: serde_json::Value, max: usize) -> Result<Bytes, String> {
    struct Capped {
        out: Vec<u8>,
        max: usize,
    }
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.out.len() + buf.len() > self.max {
                return Err(std::io::Error::other("over"));
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut capped = Capped {
        out: Vec::new(),
        max,
    };
    serde_json::to_writer(&mut capped, &json)
        .map_err(|_| format!("the handler's value is over {max} bytes as JSON"))?;
    Ok(Bytes::from(capped.out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_as_one_list_and_comes_back_as_its_items() {
        let requests: Vec<Bytes> = (0..20).map(|i| encode(&Value::from(i))).collect();
        let list = request_list(requests);
        let decoded = rmpv::decode::read_value(&mut &list[..]).unwrap();
        assert_eq!(decoded.as_array().map(Vec::len), Some(20));
        let answers = Value::Array(vec![
            Value::from("a"),
            Value::Map(vec![(Value::from("status"), Value::from(201))]),
            Value::Array(vec![Value::Nil; 3]),
        ]);
        let items = answer_list(&encode(&answers), 3).unwrap();
        assert_eq!(items[0], encode(&Value::from("a")));
        assert_eq!(items[2], encode(&Value::Array(vec![Value::Nil; 3])));
        assert!(
            answer_list(&encode(&answers), 2)
                .unwrap_err()
                .contains("3 answers for 2")
        );
        assert!(answer_list(&encode(&Value::from("no")), 1).is_err());
        // A list that claims more items than it has bytes.
        let lie = Bytes::from_static(&[0x91, 0xdd, 0xff, 0xff, 0xff, 0xff]);
        assert!(answer_list(&lie, 1).is_err());
        let mut trailing = encode(&Value::Array(vec![Value::Nil])).to_vec();
        trailing.push(0xc0);
        assert!(answer_list(&Bytes::from(trailing), 1).is_err());
    }

    fn encode(v: &Value) -> Bytes {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        Bytes::from(out)
    }

    #[test]
    fn bytes_and_text_pass_through_and_data_becomes_json() {
        let text = response_of(&encode(&Value::from("hi")), 1 << 20).unwrap();
        assert_eq!((&text.body[..], text.status), (&b"hi"[..], 200));
        let bin = response_of(&encode(&Value::Binary(vec![0, 1, 2])), 1 << 20).unwrap();
        assert_eq!(&bin.body[..], &[0, 1, 2]);
        let ext = Value::Array(vec![Value::from(1), Value::Ext(5, vec![7; 20])]);
        assert!(
            response_of(&encode(&ext), 1 << 20).is_err(),
            "a handle is no JSON"
        );
        let map = Value::Map(vec![(Value::from("a"), Value::from(true))]);
        assert_eq!(
            &response_of(&encode(&map), 1 << 20).unwrap().body[..],
            b"{\"a\":true}"
        );
    }

    #[test]
    fn a_record_needs_an_integer_status_from_200_to_599() {
        let record = |status: Value| {
            Value::Map(vec![
                (Value::from("status"), status),
                (Value::from("body"), Value::from("x")),
            ])
        };
        assert_eq!(
            response_of(&encode(&record(Value::from(201))), 64)
                .unwrap()
                .status,
            201
        );
        assert!(response_of(&encode(&record(Value::from(101))), 64).is_err());
        assert!(response_of(&encode(&record(Value::from(600))), 64).is_err());
        // A text `status` is data, not a record.
        let data = response_of(&encode(&record(Value::from("ok"))), 64).unwrap();
        assert_eq!(
            (data.status, &data.body[..]),
            (200, &br#"{"body":"x","status":"ok"}"#[..])
        );
    }

    #[test]
    fn declared_items_are_counted_before_anything_is_built() {
        // An array32 that declares 4 billion items, in 5 bytes.
        let huge = Bytes::from_static(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        let err = response_of(&huge, 1 << 20).unwrap_err();
        assert!(err.contains("more than"), "{err}");
        // Every ext and fixext form is skipped by its size.
        let mut ok = vec![0x96];
        ok.extend([0xd4, 1, 0]);
        ok.extend([0xd8, 1]);
        ok.extend([0; 16]);
        ok.extend([0xc7, 3, 1, 0, 0, 0]);
        ok.extend([0xc8, 0, 2, 1, 0, 0]);
        ok.extend([0xc9, 0, 0, 0, 1, 1, 0]);
        ok.extend([0xd9, 2, b'h', b'i']);
        assert_eq!(count_values(&ok, 100), Ok(()));
        assert!(count_values(&ok[..ok.len() - 1], 100).is_err(), "truncated");
        let many = encode(&Value::Array(vec![Value::Nil; 200_000]));
        assert!(response_of(&many, 1 << 30).is_err());
    }

    #[test]
    fn json_past_the_bound_is_refused() {
        // Control characters grow sixfold as JSON (`\u0001`).
        let v = Value::Array(vec![Value::from("\u{1}".repeat(1000))]);
        assert!(response_of(&encode(&v), 4096).is_err());
        assert!(response_of(&encode(&v), 8192).is_ok());
    }
}

//! A `wasi:http` proxy that knows nothing of wasmfabric: it answers from
//! the request alone, as a `wasmtime serve` or Spin app does. What it does
//! is its path's last segment:
//!
//! - anything else: `hello from wasi:http at <path>`, with `x-proxy: yes`.
//! - `POST .../echo`: the request's body back, read and written in chunks.
//! - `.../trap`: traps before it answers.
//! - `.../spin`: loops forever.
//! - `.../grow`: grows its memory without end.
//! - `.../fetch`: tries an outgoing request and answers what came of it.
//! - `.../cut`: sends part of its body, then traps.
//! - `.../switch`: answers 101 Switching Protocols.
//! - `.../error`: sets an error code carrying 512 KiB of text.

use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Proxy;

wasi::http::proxy::export!(Proxy);

impl wasi::exports::http::incoming_handler::Guest for Proxy {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        // What it does is the path's last segment: it answers the same
        // under any route prefix.
        let last = path
            .split('?')
            .next()
            .unwrap_or_default()
            .rsplit('/')
            .next();
        match (request.method(), last.unwrap_or_default()) {
            (Method::Post, "echo") => echo(request, out),
            (_, "trap") => panic!("asked to trap"),
            (_, "spin") => spin(),
            (_, "grow") => grow(),
            (_, "fetch") => answer(out, 200, &fetch()),
            (_, "cut") => cut(out),
            (_, "switch") => answer(out, 101, ""),
            (_, "error") => {
                let text = "\u{1}".repeat(512 << 10);
                ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(text))));
            }
            _ => answer(out, 200, &format!("hello from wasi:http at {path}")),
        }
    }
}

fn answer(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[
        ("content-type".into(), b"text/plain".to_vec()),
        ("x-proxy".into(), b"yes".to_vec()),
    ])
    .expect("plain headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("the body, once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the body's stream, once");
    stream
        .blocking_write_and_flush(text.as_bytes())
        .expect("written");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finished");
}

fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let incoming = request.consume().expect("the request body, once");
    let input = incoming.stream().expect("its stream, once");
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("the body, once");
    ResponseOutparam::set(out, Ok(response));
    let output = body.write().expect("the body's stream, once");
    // Until the stream is closed: the whole body was read. A blocking
    // write takes at most 4,096 bytes.
    while let Ok(chunk) = input.blocking_read(16 * 1024) {
        for part in chunk.chunks(4096) {
            output.blocking_write_and_flush(part).expect("written");
        }
    }
    drop(output);
    drop(input);
    OutgoingBody::finish(body, None).expect("finished");
}

fn cut(out: ResponseOutparam) {
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("the body, once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the body's stream, once");
    stream
        .blocking_write_and_flush(b"the first part")
        .expect("written");
    panic!("cut off after the first part");
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn grow() -> ! {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 16 << 20]);
        std::hint::black_box(&held);
    }
}

/// An outgoing request to a public address: what the host made of it.
fn fetch() -> String {
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Https));
    let _ = request.set_authority(Some("example.com"));
    let _ = request.set_path_with_query(Some("/"));
    match wasi::http::outgoing_handler::handle(request, None) {
        Err(e) => format!("refused: {e:?}"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("fetched: {}", response.status()),
                Some(Ok(Err(e))) => format!("refused: {e:?}"),
                other => format!("no answer: {other:?}"),
            }
        }
    }
}

//! Guest stdout and stderr, line by line, labelled by where they came from.
//!
//! Each instance's stdout and stderr are [`GuestOutput`] streams. They cut the
//! bytes a guest writes into lines and hand each line, with its
//! [`LogSource`], to the job's [`LogSink`]. The driver's lines go out as they
//! are; a task's or actor's lines carry a prefix such as
//! `(square task=1a2b3c4d)`, as Ray prefixes worker output.
//!
//! ```
//! use fabric_runtime::logs::{LogSink, MemorySink, LogSource, Stream};
//! let sink = MemorySink::default();
//! sink.line(&LogSource::task("add", "1a2b3c4d"), Stream::Stdout, b"3");
//! assert_eq!(sink.stdout(), "(add task=1a2b3c4d) 3\n");
//! ```

use parking_lot::Mutex;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Which standard stream a line was written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Who wrote a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    /// Empty for the driver, else e.g. `(square task=1a2b3c4d) `.
    pub prefix: Arc<str>,
}

impl LogSource {
    pub fn driver() -> Self {
        LogSource {
            prefix: Arc::from(""),
        }
    }

    pub fn task(function: &str, task_id: &str) -> Self {
        LogSource {
            prefix: Arc::from(format!("({function} task={task_id}) ")),
        }
    }

    pub fn actor(class: &str, actor_id: &str) -> Self {
        LogSource {
            prefix: Arc::from(format!("({class} actor={actor_id}) ")),
        }
    }
}

/// Where a job's output goes: the terminal of `fabric run`, a client stream,
/// or memory in tests.
pub trait LogSink: Send + Sync {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]);
}

/// Writes lines to this process's stdout and stderr.
#[derive(Default)]
pub struct TerminalSink;

impl LogSink for TerminalSink {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]) {
        // Errors writing to our own terminal (a closed pipe) are not the
        // guest's problem; drop the line.
        let _ = match stream {
            Stream::Stdout => write_line(&mut std::io::stdout().lock(), source, line),
            Stream::Stderr => write_line(&mut std::io::stderr().lock(), source, line),
        };
    }
}

fn write_line(out: &mut impl Write, source: &LogSource, line: &[u8]) -> std::io::Result<()> {
    out.write_all(source.prefix.as_bytes())?;
    out.write_all(line)?;
    out.write_all(b"\n")
}

/// Keeps lines in memory, for tests and for jobs whose output is collected.
#[derive(Default)]
pub struct MemorySink {
    out: Mutex<Vec<u8>>,
    err: Mutex<Vec<u8>>,
}

impl MemorySink {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock()).into_owned()
    }
}

impl LogSink for MemorySink {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]) {
        let buf = match stream {
            Stream::Stdout => &self.out,
            Stream::Stderr => &self.err,
        };
        let _ = write_line(&mut *buf.lock(), source, line);
    }
}

impl<T: LogSink + ?Sized> LogSink for Arc<T> {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]) {
        (**self).line(source, stream, line)
    }
}

/// Longest line kept whole; longer ones are cut into pieces of this size.
const MAX_LINE: usize = 64 * 1024;

/// The line buffer behind one instance's stdout or stderr. Every stream the
/// guest opens on it shares the buffer, so lines stay whole.
struct LineBuffer {
    sink: Arc<dyn LogSink>,
    source: LogSource,
    stream: Stream,
    partial: Vec<u8>,
    /// Bytes this instance may still write; past it, output is dropped.
    budget: u64,
    /// The limit, for the line that says output was dropped.
    limit: u64,
    truncated: bool,
}

impl LineBuffer {
    fn write(&mut self, bytes: &[u8]) {
        if self.truncated {
            return;
        }
        let n = bytes.len() as u64;
        if n > self.budget {
            let keep = self.budget as usize;
            self.write_lines(&bytes[..keep]);
            self.flush_partial();
            self.truncated = true;
            let marker = format!(
                "[fabric: output dropped past {} bytes (log-bytes limit)]",
                self.limit
            );
            self.sink.line(&self.source, self.stream, marker.as_bytes());
            return;
        }
        self.budget -= n;
        self.write_lines(bytes);
    }

    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.sink.line(&self.source, self.stream, &rest);
        }
    }

    fn write_lines(&mut self, mut bytes: &[u8]) {
        while let Some(pos) = memchr(b'\n', bytes) {
            let (line, rest) = bytes.split_at(pos);
            if self.partial.is_empty() {
                self.sink.line(&self.source, self.stream, strip_cr(line));
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                self.sink.line(&self.source, self.stream, strip_cr(&whole));
            }
            bytes = &rest[1..];
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            let piece = std::mem::replace(&mut self.partial, rest);
            self.sink.line(&self.source, self.stream, &piece);
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

/// One instance's stdout or stderr, as given to WASI.
#[derive(Clone)]
pub struct GuestOutput {
    buffer: Arc<Mutex<LineBuffer>>,
}

impl GuestOutput {
    /// An output stream that forwards at most `limit` bytes.
    pub fn new(sink: Arc<dyn LogSink>, source: LogSource, stream: Stream, limit: u64) -> Self {
        GuestOutput {
            buffer: Arc::new(Mutex::new(LineBuffer {
                sink,
                source,
                stream,
                partial: Vec::new(),
                budget: limit,
                limit,
                truncated: false,
            })),
        }
    }

    pub(crate) fn write_bytes(&self, bytes: &[u8]) {
        self.buffer.lock().write(bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Writes never block: a line goes to the sink at once.
const WRITE_BUDGET: usize = 1 << 20;

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > WRITE_BUDGET {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write larger than the permitted budget"
            )));
        }
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_joined_and_flushed_on_drop() {
        let sink = Arc::new(MemorySink::default());
        let out = GuestOutput::new(
            sink.clone(),
            LogSource::actor("Counter", "abcd0123"),
            Stream::Stdout,
            u64::MAX,
        );
        out.write_bytes(b"hel");
        out.write_bytes(b"lo\r\nwor");
        out.write_bytes(b"ld\npartial");
        assert_eq!(
            sink.stdout(),
            "(Counter actor=abcd0123) hello\n(Counter actor=abcd0123) world\n"
        );
        drop(out);
        assert!(
            sink.stdout()
                .ends_with("(Counter actor=abcd0123) partial\n")
        );
    }

    #[test]
    fn output_past_the_limit_is_dropped_with_a_marker() {
        let sink = Arc::new(MemorySink::default());
        let out = GuestOutput::new(sink.clone(), LogSource::driver(), Stream::Stderr, 10);
        out.write_bytes(b"12345\n");
        out.write_bytes(b"6789\nabcdef\n");
        out.write_bytes(b"more\n");
        assert_eq!(
            sink.stderr(),
            "12345\n6789\n[fabric: output dropped past 10 bytes (log-bytes limit)]\n"
        );
    }
}

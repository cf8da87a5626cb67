//! Live progress of a job on a terminal (`fabric run`, `fabric submit`):
//! one status line on stderr, redrawn in place and cleared while the job's
//! own output is printed, so the two never mix. When stderr is not a
//! terminal (a pipe, a file, CI) nothing is drawn at all.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fabric_host::logs::{LogSink, LogSource, Stream, TerminalSink};

/// Tasks a job submitted so far, and how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub submitted: u64,
    pub succeeded: u64,
    pub failed: u64,
}

struct Line {
    started: Instant,
    counts: Counts,
    shown: bool,
    /// Finished: nothing is drawn again.
    done: bool,
}

/// The status line (`None` inside: not a terminal, nothing is drawn).
pub struct Progress(Option<Mutex<Line>>);

impl Progress {
    /// Draws only when stderr is a terminal.
    pub fn on_terminal() -> Arc<Progress> {
        // Both: with stdout piped (`fabric run app | grep x`) what reads the
        // output may print to this terminal between redraws.
        let terminal = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
        let line = terminal.then(|| {
            Mutex::new(Line {
                started: Instant::now(),
                counts: Counts::default(),
                shown: false,
                done: false,
            })
        });
        Arc::new(Progress(line))
    }

    /// Whether anything is drawn.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    pub fn update(&self, counts: Counts) {
        if let Some(line) = &self.0 {
            let mut l = line.lock().unwrap_or_else(|p| p.into_inner());
            l.counts = counts;
            if !l.done {
                draw(&mut l);
            }
        }
    }

    /// Runs `print` (which writes the job's output) with the line cleared,
    /// then draws it again.
    pub fn around(&self, print: impl FnOnce()) {
        let Some(line) = &self.0 else {
            return print();
        };
        let mut l = line.lock().unwrap_or_else(|p| p.into_inner());
        if l.shown {
            clear();
        }
        print();
        if l.shown && !l.done {
            draw(&mut l);
        }
    }

    /// Clears the line for good (the job ended).
    pub fn finish(&self) {
        if let Some(line) = &self.0 {
            let mut l = line.lock().unwrap_or_else(|p| p.into_inner());
            l.done = true;
            if l.shown {
                clear();
                l.shown = false;
            }
        }
    }
}

impl Drop for Progress {
    /// However the command ends (an error, say), its message does not
    /// land on the end of the progress line.
    fn drop(&mut self) {
        self.finish();
    }
}

fn clear() {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\r\x1b[2K");
    let _ = err.flush();
}

fn draw(l: &mut Line) {
    let c = l.counts;
    let ended = c.succeeded + c.failed;
    let text = format!(
        "\r\x1b[2Ktasks: {ended} finished, {} pending, {} failed  ({:.1} s)",
        c.submitted.saturating_sub(ended),
        c.failed,
        l.started.elapsed().as_secs_f64()
    );
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
    l.shown = true;
}

/// A job's output to this terminal, printed around the progress line.
pub struct ProgressSink(pub Arc<Progress>);

impl LogSink for ProgressSink {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]) {
        self.0.around(|| TerminalSink.line(source, stream, line));
    }
}

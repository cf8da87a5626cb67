//! Objects between nodes on one machine: a Unix socket beside gRPC.
//!
//! Over TLS a value is encrypted, framed by HTTP/2, copied through the
//! loopback TCP stack and decrypted: about 1 GB/s here. Between two node
//! processes on the same machine none of that buys anything, so each node
//! also listens on a Unix socket in a private directory of its own, and a
//! holder answers a `FetchObject` from a requester that names the same
//! machine (kernel boot id) with a one-time ticket instead of data chunks.
//! The requester connects, presents the ticket (which it got over the
//! authenticated gRPC stream), and reads the bytes straight into its store's
//! buffer; the holder writes them straight from the object's own buffer. A
//! large value travels as several streams at once, each its own share of
//! the buffer, so both ends copy on several cores.
//!
//! Both ends check the other through the kernel (`SO_PEERCRED`): the holder
//! serves only processes of its own user, and the requester talks only to
//! the holder's own process (the pid in the offer), at a path of the form
//! this module makes, in a directory of its user's that no one else may
//! enter. A requester that cannot reach a holder's socket (another mount
//! namespace, another user) fetches from that node over gRPC for a minute;
//! one whose transfer fails for any other reason (a busy holder, a lapsed
//! ticket) takes that one value over gRPC.
//!
//! ```
//! use fabric_host::cluster::same_host::{LocalChannel, receive};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let (_stop, stop_rx) = tokio::sync::watch::channel(false);
//! let channel = LocalChannel::start(Default::default(), stop_rx).unwrap();
//! let value = bytes::Bytes::from(vec![7u8; 8 << 20]);
//! let offer = channel.offer(&value, channel.machine()).expect("same machine");
//! let got = receive(offer, value.len(), Vec::with_capacity(value.len())).await.unwrap();
//! assert_eq!(got, value);
//! # });
//! ```

mod receive;

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use wasmfabric_proto::v1 as pb;

use crate::ids::NodeId;
use crate::meters::ClusterMeters;

pub use receive::{LocalError, receive};

/// Values smaller than this go in gRPC chunks: a socket and threads per
/// transfer cost more than they save.
pub const LOCAL_MIN: usize = 4 << 20;
/// Each stream carries at least this much of a value.
const STREAM_SHARE: usize = 256 << 20;
/// Streams of one value, at most.
const MAX_STREAMS: usize = 4;
/// Offers not yet taken, at most; more are answered with chunks.
const MAX_TICKETS: usize = 256;
/// An offer not taken in this long lapses, and its value is let go.
const TICKET_TTL: Duration = Duration::from_secs(10);
/// Connections served at once, at most.
const MAX_CONNECTIONS: usize = 64;
/// A connection must name its ticket within this long.
const REQUEST_WAIT: Duration = Duration::from_secs(5);
/// A stream must move at least this many bytes a second (after a grace
/// of [`STALL`]), or it is given up.
const MIN_RATE: usize = 64 << 20;
/// The grace, and the longest wait for any one read or write.
const STALL: Duration = Duration::from_secs(30);
/// A node whose socket could not be reached is asked over gRPC this long.
const UNREACHABLE_FOR: Duration = Duration::from_secs(60);
/// A request: the 32-byte ticket and the stream's index (little-endian).
const REQUEST_LEN: usize = 36;
/// The names this module gives the socket and its directory.
const SOCKET_NAME: &str = "objects.sock";
const DIR_PREFIX: &str = "wasmfabric-";

/// This machine, as its kernel names the current boot: two processes that
/// read the same id share a kernel (so a Unix socket may join them). Empty
/// where it cannot be read. It only picks the path: anyone may claim it.
pub fn machine_id() -> Bytes {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| Bytes::copy_from_slice(s.trim().as_bytes()))
        .unwrap_or_default()
}

/// The share of a `size`-byte value that stream `index` of `streams`
/// carries: the same split on both ends.
fn share(size: usize, streams: usize, index: usize) -> std::ops::Range<usize> {
    let start = size / streams * index;
    let end = if index + 1 == streams {
        size
    } else {
        size / streams * (index + 1)
    };
    start..end
}

/// Streams for a value of `size` bytes.
fn streams_for(size: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (size / STREAM_SHARE).clamp(1, MAX_STREAMS.min(cores.max(1)))
}

/// When a stream of `len` bytes must be done.
fn deadline_for(len: usize) -> Instant {
    Instant::now() + STALL + Duration::from_secs((len / MIN_RATE) as u64)
}

/// This process's effective user.
fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// An offered value: what it is, which of its streams were taken, and
/// how many finished.
struct Ticket {
    value: Bytes,
    streams: u32,
    taken: u32,
    done: Arc<AtomicU32>,
    expires: Instant,
}

/// A node's local socket, the offers it holds, and the peers it could not
/// reach through theirs.
pub struct LocalChannel {
    dir: PathBuf,
    socket: String,
    machine: Bytes,
    tickets: Mutex<HashMap<[u8; 32], Ticket>>,
    /// Nodes whose sockets failed to connect, until when.
    unreachable: Mutex<HashMap<NodeId, Instant>>,
    meters: Arc<ClusterMeters>,
}

impl LocalChannel {
    /// Listens on a socket in a new private directory (mode 0700) under the
    /// system's temporary directory, until `stop` turns true. Directories
    /// left by nodes that died first are removed.
    pub fn start(
        meters: Arc<ClusterMeters>,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Self>> {
        let tmp = std::env::temp_dir();
        remove_stale_dirs(&tmp);
        let dir = tmp.join(format!("{DIR_PREFIX}{:016x}", rand::random::<u64>()));
        fabric_runtime::runtime::disk_cache::private_dir(&dir).map_err(std::io::Error::other)?;
        let bound = std::fs::write(dir.join("pid"), owner_line())
            .and_then(|_| UnixListener::bind(dir.join(SOCKET_NAME)));
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let channel = Arc::new(LocalChannel {
            socket: dir.join(SOCKET_NAME).to_string_lossy().into_owned(),
            dir,
            machine: machine_id(),
            tickets: Mutex::default(),
            unreachable: Mutex::default(),
            meters,
        });
        tokio::spawn(serve(Arc::downgrade(&channel), listener, stop));
        Ok(channel)
    }

    /// This machine's id (see [`machine_id`]).
    pub fn machine(&self) -> &[u8] {
        &self.machine
    }

    /// The machine id to send `node` with a fetch: empty while its socket
    /// counts as unreachable.
    pub(crate) fn machine_for(&self, node: NodeId) -> Bytes {
        let mut unreachable = self.unreachable.lock();
        match unreachable.get(&node) {
            Some(until) if *until > Instant::now() => Bytes::new(),
            Some(_) => {
                unreachable.remove(&node);
                self.machine.clone()
            }
            None => self.machine.clone(),
        }
    }

    /// `node`'s socket could not be reached: fetch from it over gRPC for a
    /// while.
    pub(crate) fn mark_unreachable(&self, node: NodeId) {
        self.unreachable
            .lock()
            .insert(node, Instant::now() + UNREACHABLE_FOR);
    }

    /// `node` left the cluster.
    pub(crate) fn forget(&self, node: NodeId) {
        self.unreachable.lock().remove(&node);
    }

    /// Offers `value` to a requester on `machine`: a ticket for its
    /// streams, or `None` (another machine, a small value, or too many
    /// offers outstanding) to send it in chunks.
    pub fn offer(&self, value: &Bytes, machine: &[u8]) -> Option<pb::object_chunk::Local> {
        if machine.is_empty() || machine != &self.machine[..] || value.len() < LOCAL_MIN {
            return None;
        }
        let mut tickets = self.tickets.lock();
        let now = Instant::now();
        tickets.retain(|_, t| t.expires > now);
        if tickets.len() >= MAX_TICKETS {
            return None;
        }
        let ticket: [u8; 32] = rand::random();
        let streams = streams_for(value.len()) as u32;
        tickets.insert(
            ticket,
            Ticket {
                value: value.clone(),
                streams,
                taken: 0,
                done: Arc::default(),
                expires: now + TICKET_TTL,
            },
        );
        Some(pb::object_chunk::Local {
            socket: self.socket.clone(),
            ticket: Bytes::copy_from_slice(&ticket),
            streams,
            pid: std::process::id(),
        })
    }

    /// The offer could not be sent: its value is let go now.
    pub(crate) fn withdraw(&self, offer: &pb::object_chunk::Local) {
        if let Ok(ticket) = <[u8; 32]>::try_from(&offer.ticket[..]) {
            self.tickets.lock().remove(&ticket);
        }
    }

    /// Lets go of offers that lapsed.
    fn sweep(&self) {
        let now = Instant::now();
        self.tickets.lock().retain(|_, t| t.expires > now);
    }

    /// Stream `index` of the offer `ticket`, once: its share of the value,
    /// the whole value's size, its stream count and the counter of streams
    /// finished.
    fn redeem(&self, ticket: &[u8; 32], index: u32) -> Option<(Bytes, usize, u32, Arc<AtomicU32>)> {
        let mut tickets = self.tickets.lock();
        let t = tickets.get_mut(ticket)?;
        if t.expires <= Instant::now() || index >= t.streams || t.taken & (1 << index) != 0 {
            return None;
        }
        t.taken |= 1 << index;
        let range = share(t.value.len(), t.streams as usize, index as usize);
        let taken = (
            t.value.slice(range),
            t.value.len(),
            t.streams,
            t.done.clone(),
        );
        if t.taken.count_ones() == t.streams {
            tickets.remove(ticket);
        }
        Some(taken)
    }
}

impl Drop for LocalChannel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pid namespace this process runs in (`pid:[inode]`), or "" where
/// `/proc` does not say, or is another namespace's (`/proc/self` is not
/// this process's pid there, so `/proc/PID` would name other processes).
fn pid_namespace() -> String {
    let own_proc = std::fs::read_link("/proc/self")
        .is_ok_and(|p| p.to_string_lossy() == std::process::id().to_string());
    match own_proc {
        true => std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        false => String::new(),
    }
}

/// What a channel's `pid` file holds: this process's pid and its pid
/// namespace. Containers may share one temporary directory while each
/// sees only its own processes; the namespace tells a node whether a pid
/// it cannot see is dead or merely someone else's.
fn owner_line() -> String {
    format!("{} {}", std::process::id(), pid_namespace())
}

/// Whether the process named by a `pid` file's text is known to be gone:
/// it ran in this process's pid namespace (`ours`, from [`pid_namespace`])
/// and its pid is no longer there. A file of another namespace, or one not
/// written yet, is never stale.
fn owner_is_gone(line: &str, ours: &str) -> bool {
    let mut parts = line.split_whitespace();
    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
    let namespace = parts.next().unwrap_or("");
    pid.is_some_and(|pid| {
        !ours.is_empty()
            && namespace == ours
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// Removes this module's directories under `tmp` that belong to this user
/// and whose node process is gone (it was killed before it could).
fn remove_stale_dirs(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let ours_ns = pid_namespace();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let path = entry.path();
        let ours =
            std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == my_uid());
        let gone =
            ours && read_pid_file(&path.join("pid")).is_some_and(|l| owner_is_gone(&l, &ours_ns));
        if gone {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The text of a stale directory's `pid` file, if it is a plain file of a
/// few bytes: nothing there can block or flood this node's start. What is
/// checked is the file opened (not followed through a link, not waited on
/// if it is a FIFO), so it cannot be swapped between the check and the
/// read.
fn read_pid_file(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() >= 256 {
        return None;
    }
    let mut line = String::new();
    file.take(256).read_to_string(&mut line).ok()?;
    Some(line)
}

/// Accepts connections until `stop` turns true or the channel goes, and
/// lets lapsed offers go meanwhile.
async fn serve(
    channel: Weak<LocalChannel>,
    listener: UnixListener,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut sweep = tokio::time::interval(TICKET_TTL / 2);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "the local object socket failed to accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = sweep.tick() => {
                match channel.upgrade() {
                    Some(c) => c.sweep(),
                    None => return,
                }
                continue;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        };
        // Another user's process is refused before it takes a slot.
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == my_uid() => {}
            _ => continue,
        }
        let Some(channel) = channel.upgrade() else {
            return;
        };
        // Over the bound: the connection is closed, and its requester takes
        // that value over gRPC.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = serve_one(&channel, stream).await {
                tracing::debug!(error = %e, "a local object stream failed");
            }
            drop(slot);
        });
    }
}

/// Serves one stream: reads its ticket, then writes the stream's share.
async fn serve_one(channel: &LocalChannel, mut stream: UnixStream) -> Result<(), String> {
    let mut request = [0u8; REQUEST_LEN];
    tokio::time::timeout(REQUEST_WAIT, stream.read_exact(&mut request))
        .await
        .map_err(|_| "no request in time".to_string())?
        .map_err(|e| e.to_string())?;
    let ticket: [u8; 32] = request[..32].try_into().expect("32 bytes");
    let index = u32::from_le_bytes(request[32..].try_into().expect("4 bytes"));
    let Some((part, size, streams, done)) = channel.redeem(&ticket, index) else {
        // No such offer: close without a byte, so the requester sees it.
        let _ = stream.shutdown().await;
        return Err("an unknown, lapsed or taken ticket".into());
    };
    let stream = stream.into_std().map_err(|e| e.to_string())?;
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    let deadline = deadline_for(part.len());
    tokio::task::spawn_blocking(move || write_all_by(&stream, &part, deadline))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if done.fetch_add(1, Ordering::AcqRel) + 1 == streams {
        channel.meters.sent_local(size);
    }
    Ok(())
}

/// Writes all of `data` to `stream`, giving up at `deadline`.
fn write_all_by(
    stream: &std::os::unix::net::UnixStream,
    data: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the requester reads too slowly",
            ));
        }
        let rest = &data[done..];
        // SAFETY: `rest` is a live slice of `rest.len()` bytes.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        } else {
            done += n as usize;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

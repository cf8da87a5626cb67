//! Objects between nodes on one machine: a Unix socket beside gRPC.
//!
//! Over TLS a value is encrypted, framed by HTTP/2, copied through the
//! loopback TCP stack and decrypted: about 1 GB/s here. Between two node
//! processes on the same machine none of that buys anything, so each node
//! also listens on a Unix socket in a private directory of its own, and a
//! holder answers a `FetchObject` from a requester on the same machine (same
//! kernel boot id) with a one-time ticket instead of data chunks. The
//! requester connects, proves nothing but the ticket (which it got over the
//! authenticated gRPC stream), and reads the bytes straight into its store's
//! buffer; the holder writes them straight from the object's own buffer. A
//! large value travels as several streams at once, each its own share of
//! the buffer, so both ends copy on several cores.
//!
//! Both ends check the other's user through the kernel (`SO_PEERCRED`):
//! only a process of the same user as the node can connect, and a requester
//! talks only to a socket served by its own user. A requester that cannot
//! reach the socket (another mount namespace, another user) remembers that
//! and fetches from that node over gRPC.
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

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
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

/// Values smaller than this go in gRPC chunks: a socket and threads per
/// transfer cost more than they save.
pub const LOCAL_MIN: usize = 4 << 20;
/// Each stream carries at least this much of a value.
const STREAM_SHARE: usize = 256 << 20;
/// Streams of one value, at most.
const MAX_STREAMS: usize = 4;
/// Offers not yet taken, at most; more are answered with chunks.
const MAX_TICKETS: usize = 256;
/// An offer not taken in this long lapses (and frees its value).
const TICKET_TTL: Duration = Duration::from_secs(10);
/// Connections served at once, at most.
const MAX_CONNECTIONS: usize = 64;
/// A connection must name its ticket within this long.
const REQUEST_WAIT: Duration = Duration::from_secs(5);
/// A reader or writer with no progress for this long gives up.
const STALL: Duration = Duration::from_secs(30);
/// A request: the 32-byte ticket and the stream's index (little-endian).
const REQUEST_LEN: usize = 36;

/// This machine, as its kernel names the current boot: two processes that
/// read the same id share a kernel (so a Unix socket may join them). Empty
/// where it cannot be read.
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
    unreachable: Mutex<HashSet<NodeId>>,
    meters: Arc<ClusterMeters>,
}

impl LocalChannel {
    /// Listens on a socket in a new private directory (mode 0700) under the
    /// system's temporary directory, until `stop` turns true.
    pub fn start(
        meters: Arc<ClusterMeters>,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Self>> {
        let dir = std::env::temp_dir().join(format!("wasmfabric-{:016x}", rand::random::<u64>()));
        fabric_runtime::runtime::disk_cache::private_dir(&dir).map_err(std::io::Error::other)?;
        let path = dir.join("objects.sock");
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let channel = Arc::new(LocalChannel {
            socket: path.to_string_lossy().into_owned(),
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

    /// The machine id to send `node` with a fetch: empty when its socket
    /// could not be reached before.
    pub(crate) fn machine_for(&self, node: NodeId) -> Bytes {
        if self.unreachable.lock().contains(&node) {
            Bytes::new()
        } else {
            self.machine.clone()
        }
    }

    /// `node`'s socket failed us: fetch from it over gRPC from now on.
    pub(crate) fn mark_unreachable(&self, node: NodeId) {
        self.unreachable.lock().insert(node);
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
        })
    }

    /// Stream `index` of the offer `ticket`, once: its share of the value,
    /// the whole value's size, and whether it is the last stream to finish
    /// (a counter shared by the streams).
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

/// This process's effective user.
fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Accepts connections until `stop` turns true or the channel goes.
async fn serve(
    channel: Weak<LocalChannel>,
    listener: UnixListener,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        };
        let Some(channel) = channel.upgrade() else {
            return;
        };
        // Over the bound: the connection is dropped, and its requester
        // fetches over gRPC.
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

/// Serves one stream: checks the peer's user, then its ticket, then writes
/// the stream's share.
async fn serve_one(channel: &LocalChannel, mut stream: UnixStream) -> Result<(), String> {
    let cred = stream.peer_cred().map_err(|e| e.to_string())?;
    if cred.uid() != my_uid() {
        return Err(format!("refused a connection from user {}", cred.uid()));
    }
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
    let written = tokio::task::spawn_blocking(move || (&stream).write_all(&part))
        .await
        .map_err(|e| e.to_string())?;
    written.map_err(|e| e.to_string())?;
    if done.fetch_add(1, Ordering::AcqRel) + 1 == streams {
        channel.meters.sent_local(size);
    }
    Ok(())
}

/// Reads the value offered in `local` (`size` bytes) into `buf` (empty,
/// with room for `size`), over the offer's streams at once.
pub async fn receive(
    local: pb::object_chunk::Local,
    size: usize,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let ticket: [u8; 32] = local.ticket[..]
        .try_into()
        .map_err(|_| "a malformed ticket".to_string())?;
    let streams = local.streams as usize;
    if streams == 0 || streams > MAX_STREAMS || streams > size.max(1) {
        return Err(format!("{streams} streams offered"));
    }
    if buf.capacity() < size || !buf.is_empty() {
        return Err("the buffer does not fit".into());
    }
    let mut connected = Vec::with_capacity(streams);
    for index in 0..streams as u32 {
        connected.push(connect(&local.socket, &ticket, index).await?);
    }
    tokio::task::spawn_blocking(move || {
        let spare = &mut buf.spare_capacity_mut()[..size];
        let mut parts = Vec::with_capacity(streams);
        let mut rest = spare;
        for index in 0..streams {
            let len = share(size, streams, index).len();
            let (part, tail) = rest.split_at_mut(len);
            parts.push(part);
            rest = tail;
        }
        let read = std::thread::scope(|scope| {
            let mut pairs = connected.iter().zip(parts);
            let (first_stream, first_part) = pairs.next().expect("one stream at least");
            let others: Vec<_> = pairs
                .map(|(s, part)| scope.spawn(move || read_full(s, part)))
                .collect();
            let mut result = read_full(first_stream, first_part);
            for h in others {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a reader panicked")));
                result = result.and(r);
            }
            result
        });
        read.map_err(|e| e.to_string())?;
        // SAFETY: every byte of the first `size` was written by `read_full`.
        unsafe { buf.set_len(size) };
        Ok(buf)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Connects stream `index` of `ticket` at `socket`, checking that the
/// socket is served by this process's user.
async fn connect(
    socket: &str,
    ticket: &[u8; 32],
    index: u32,
) -> Result<std::os::unix::net::UnixStream, String> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to {socket}: {e}"))?;
    let cred = stream.peer_cred().map_err(|e| e.to_string())?;
    if cred.uid() != my_uid() {
        return Err(format!(
            "{socket} is served by user {}, not ours",
            cred.uid()
        ));
    }
    let mut request = [0u8; REQUEST_LEN];
    request[..32].copy_from_slice(ticket);
    request[32..].copy_from_slice(&index.to_le_bytes());
    stream
        .write_all(&request)
        .await
        .map_err(|e| e.to_string())?;
    let stream = stream.into_std().map_err(|e| e.to_string())?;
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Fills `dst` from `stream`; an end before it is full is an error.
fn read_full(
    stream: &std::os::unix::net::UnixStream,
    dst: &mut [MaybeUninit<u8>],
) -> std::io::Result<()> {
    let mut done = 0;
    while done < dst.len() {
        let rest = &mut dst[done..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`,
        // which this function owns mutably.
        let n = unsafe { libc::read(stream.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the holder closed the stream after {done} of {} bytes",
                        dst.len()
                    ),
                ));
            }
            n if n < 0 => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n => done += n as usize,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_value_once() {
        for (size, streams) in [(10, 3), (1 << 30, 4), (5, 1), (7, 7)] {
            let mut next = 0;
            for i in 0..streams {
                let r = share(size, streams, i);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, size);
        }
    }

    #[tokio::test]
    async fn a_value_crosses_once_per_ticket() {
        let (_stop, stop_rx) = watch::channel(false);
        let channel = LocalChannel::start(Arc::default(), stop_rx).unwrap();
        let value = Bytes::from((0..(5usize << 20)).map(|i| i as u8).collect::<Vec<_>>());
        assert!(channel.offer(&value, b"another machine").is_none());
        assert!(
            channel
                .offer(&value.slice(..1024), channel.machine())
                .is_none()
        );
        let offer = channel.offer(&value, channel.machine()).expect("offered");
        let got = receive(offer.clone(), value.len(), Vec::with_capacity(value.len()))
            .await
            .unwrap();
        assert_eq!(got, value);
        // A ticket is spent: the same again gets nothing.
        let again = receive(offer, value.len(), Vec::with_capacity(value.len())).await;
        assert!(again.unwrap_err().contains("closed the stream after 0"));
        assert_eq!(
            channel
                .meters
                .local_object_bytes_sent
                .load(Ordering::Relaxed),
            5 << 20
        );
        // A forged ticket gets nothing either.
        let mut forged = channel.offer(&value, channel.machine()).unwrap();
        let mut ticket = forged.ticket.to_vec();
        ticket[0] ^= 1;
        forged.ticket = ticket.into();
        assert!(
            receive(forged, value.len(), Vec::with_capacity(value.len()))
                .await
                .is_err()
        );
    }
}

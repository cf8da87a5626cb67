//! The requester's side: connect to the holder's socket, check who serves
//! it, and read each stream's share straight into the store's buffer.

use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use wasmfabric_proto::v1 as pb;

use super::{
    DIR_PREFIX, MAX_STREAMS, REQUEST_LEN, SOCKET_NAME, STALL, deadline_for, my_uid, share,
};

/// Why a value could not be taken from a holder's socket.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The socket could not be reached, or is not the holder's: take values
    /// from that node over gRPC for a while.
    #[error("its local socket cannot be used: {0}")]
    Unreachable(String),
    /// This transfer failed (a busy holder, a lapsed ticket, a stall): take
    /// this value over gRPC.
    #[error("the transfer over its local socket failed: {0}")]
    Failed(String),
}

/// Reads the value offered in `local` (`size` bytes) into `buf` (empty,
/// with room for `size`), over the offer's streams at once.
pub async fn receive(
    local: pb::object_chunk::Local,
    size: usize,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, LocalError> {
    let failed = |m: String| LocalError::Failed(m);
    let ticket: [u8; 32] = local.ticket[..]
        .try_into()
        .map_err(|_| failed("a malformed ticket".into()))?;
    let streams = local.streams as usize;
    if streams == 0 || streams > MAX_STREAMS || streams > size.max(1) {
        return Err(failed(format!("{streams} streams offered")));
    }
    if buf.capacity() < size || !buf.is_empty() {
        return Err(failed("the buffer does not fit".into()));
    }
    check_path(&local.socket).map_err(LocalError::Unreachable)?;
    let mut connected = Vec::with_capacity(streams);
    for index in 0..streams as u32 {
        connected.push(connect(&local.socket, local.pid, &ticket, index).await?);
    }
    tokio::task::spawn_blocking(move || {
        let spare = &mut buf.spare_capacity_mut()[..size];
        let mut parts = Vec::with_capacity(streams);
        let mut rest = spare;
        for index in 0..streams {
            let (part, tail) = rest.split_at_mut(share(size, streams, index).len());
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
        read.map_err(|e| LocalError::Failed(e.to_string()))?;
        // SAFETY: every byte of the first `size` was written by `read_full`.
        unsafe { buf.set_len(size) };
        Ok(buf)
    })
    .await
    .map_err(|e| LocalError::Failed(e.to_string()))?
}

/// The socket must be one this module makes: `objects.sock` in a
/// `wasmfabric-` directory that this user owns and no one else may enter.
fn check_path(socket: &str) -> Result<(), String> {
    let path = Path::new(socket);
    let dir = path
        .parent()
        .filter(|_| path.is_absolute() && path.file_name() == Some(SOCKET_NAME.as_ref()))
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(DIR_PREFIX))
        })
        .ok_or_else(|| format!("`{socket}` is not a node's object socket"))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != my_uid() || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of this user",
            dir.display()
        ));
    }
    Ok(())
}

/// Connects stream `index` of `ticket` at `socket`, checking that the
/// socket is served by the holder's process `pid` (so by no other process
/// that took its place) and this user.
async fn connect(
    socket: &str,
    pid: u32,
    ticket: &[u8; 32],
    index: u32,
) -> Result<std::os::unix::net::UnixStream, LocalError> {
    let unreachable = |m: String| LocalError::Unreachable(m);
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| unreachable(format!("cannot connect to {socket}: {e}")))?;
    let cred = stream.peer_cred().map_err(|e| unreachable(e.to_string()))?;
    if cred.uid() != my_uid() || cred.pid() != Some(pid as i32) {
        return Err(unreachable(format!(
            "{socket} is served by process {:?} of user {}, not by the holder",
            cred.pid(),
            cred.uid()
        )));
    }
    let mut request = [0u8; REQUEST_LEN];
    request[..32].copy_from_slice(ticket);
    request[32..].copy_from_slice(&index.to_le_bytes());
    let failed = |e: std::io::Error| LocalError::Failed(e.to_string());
    stream.write_all(&request).await.map_err(failed)?;
    let stream = stream.into_std().map_err(failed)?;
    stream.set_nonblocking(false).map_err(failed)?;
    stream.set_read_timeout(Some(STALL)).map_err(failed)?;
    Ok(stream)
}

/// Fills `dst` from `stream`; an end before it is full, or a stream too
/// slow for its deadline, is an error.
fn read_full(
    stream: &std::os::unix::net::UnixStream,
    dst: &mut [MaybeUninit<u8>],
) -> std::io::Result<()> {
    let deadline = deadline_for(dst.len());
    let mut done = 0;
    while done < dst.len() {
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the holder writes too slowly",
            ));
        }
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

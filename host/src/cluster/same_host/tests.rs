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

fn patterned(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i ^ (i >> 11)) as u8).collect::<Vec<_>>())
}

#[tokio::test]
async fn a_value_crosses_once_per_ticket() {
    let (_stop, stop_rx) = watch::channel(false);
    let channel = LocalChannel::start(Arc::default(), stop_rx).unwrap();
    let value = patterned(5 << 20);
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
    // The holder counts it once its write returns, which may be just after
    // the requester read the last byte.
    let sent = || {
        channel
            .meters
            .local_object_bytes_sent
            .load(Ordering::Relaxed)
    };
    for _ in 0..100 {
        if sent() != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sent(), 5 << 20);
    // A ticket is spent: the same again gets nothing.
    let again = receive(offer, value.len(), Vec::with_capacity(value.len())).await;
    assert!(
        matches!(&again, Err(LocalError::Failed(m)) if m.contains("closed the stream after 0")),
        "{again:?}"
    );
    // A forged ticket gets nothing either.
    let mut forged = channel.offer(&value, channel.machine()).unwrap();
    let mut ticket = forged.ticket.to_vec();
    ticket[0] ^= 1;
    forged.ticket = ticket.into();
    let got = receive(forged, value.len(), Vec::with_capacity(value.len())).await;
    assert!(matches!(got, Err(LocalError::Failed(_))), "{got:?}");
}

/// A requester reads only from the holder's own process, at a path this
/// module made: an offer naming another process, or another socket, is
/// refused before the ticket is sent.
#[tokio::test]
async fn only_the_holders_socket_is_trusted() {
    let (_stop, stop_rx) = watch::channel(false);
    let channel = LocalChannel::start(Arc::default(), stop_rx).unwrap();
    let value = patterned(4 << 20);
    let mut offer = channel.offer(&value, channel.machine()).unwrap();
    offer.pid += 1;
    let got = receive(offer, value.len(), Vec::with_capacity(value.len())).await;
    assert!(
        matches!(&got, Err(LocalError::Unreachable(m)) if m.contains("not by the holder")),
        "{got:?}"
    );
    let mut offer = channel.offer(&value, channel.machine()).unwrap();
    offer.socket = "/run/some-other.sock".into();
    let got = receive(offer, value.len(), Vec::with_capacity(value.len())).await;
    assert!(matches!(got, Err(LocalError::Unreachable(_))), "{got:?}");
}

/// An offer whose sending failed, or that lapsed, lets its value go.
#[tokio::test]
async fn withdrawn_and_lapsed_offers_let_their_values_go() {
    let (_stop, stop_rx) = watch::channel(false);
    let channel = LocalChannel::start(Arc::default(), stop_rx).unwrap();
    let value = patterned(4 << 20);
    let offer = channel.offer(&value, channel.machine()).unwrap();
    assert_eq!(channel.tickets.lock().len(), 1);
    channel.withdraw(&offer);
    assert!(channel.tickets.lock().is_empty());
    channel.offer(&value, channel.machine()).unwrap();
    for t in channel.tickets.lock().values_mut() {
        t.expires = Instant::now();
    }
    channel.sweep();
    assert!(channel.tickets.lock().is_empty());
    drop(channel);
}

#[test]
fn only_a_dead_owner_of_this_pid_namespace_is_stale() {
    let ns = pid_namespace();
    assert!(ns.starts_with("pid:["), "{ns}");
    // A pid beyond the kernel's maximum is never alive.
    let dead = 1u32 << 30;
    assert!(owner_is_gone(&format!("{dead} {ns}"), &ns));
    assert!(!owner_is_gone(&owner_line(), &ns), "this process is alive");
    // Another container's node: its pid means nothing here.
    assert!(!owner_is_gone(&format!("{dead} pid:[1]"), &ns));
    // Files of older nodes (a pid alone) and half-written ones are kept.
    assert!(!owner_is_gone(&dead.to_string(), &ns));
    assert!(!owner_is_gone("", &ns));
}

#[test]
fn only_a_small_plain_pid_file_is_read() {
    let dir = std::env::temp_dir().join(format!("fabric-pidfile-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plain");
    std::fs::write(&plain, "42 pid:[1]").unwrap();
    assert_eq!(read_pid_file(&plain).as_deref(), Some("42 pid:[1]"));
    let big = dir.join("big");
    std::fs::write(&big, vec![b'1'; 4096]).unwrap();
    assert_eq!(read_pid_file(&big), None);
    // A link to a plain file is not followed; a FIFO is not waited on.
    let link = dir.join("link");
    std::os::unix::fs::symlink(&plain, &link).unwrap();
    assert_eq!(read_pid_file(&link), None);
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain system call on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert_eq!(read_pid_file(&fifo), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

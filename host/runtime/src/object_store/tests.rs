use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn refcount_frees_and_nested_refs_keep_alive() {
    let store = ObjectStore::new(10_000);
    let job = JobId::random();
    let inner = store.put(job, Bytes::from_static(b"abc"), vec![]).unwrap();
    let inner_id = inner.id();
    let outer = store
        .put(job, Bytes::from_static(b"xy"), vec![inner.clone()])
        .unwrap();
    drop(inner);
    assert!(store.contains(inner_id), "nested reference keeps it alive");
    assert_eq!(store.used_bytes(), 5 + 2 * OBJECT_OVERHEAD);
    let again = store.adopt(inner_id).unwrap();
    drop(outer);
    assert!(store.contains(inner_id));
    drop(again);
    assert!(!store.contains(inner_id));
    assert_eq!(store.used_bytes(), 0);
    assert!(matches!(
        store.adopt(inner_id),
        Err(FabricError::NotFound(_))
    ));
}

#[test]
fn full_store_refuses_with_a_named_limit() {
    let capacity = 10 + 2 * OBJECT_OVERHEAD;
    let store = ObjectStore::new(capacity);
    let _a = store
        .put(JobId::random(), Bytes::from(vec![0; 8]), vec![])
        .unwrap();
    let err = store
        .put(JobId::random(), Bytes::from(vec![0; 8]), vec![])
        .unwrap_err();
    assert!(
        matches!(&err, FabricError::LimitExceeded { name, value, .. } if name == "object-store-memory" && *value == capacity)
    );
    // A task result that does not fit becomes an error value.
    let p = store
        .create_pending(ObjectId::random(), JobId::random(), "f".into(), 0)
        .unwrap();
    store.fulfill(p.id(), Ok(Bytes::from(vec![0; 8])), vec![]);
    assert!(matches!(
        p.try_get(),
        Some(Err(FabricError::LimitExceeded { .. }))
    ));
    assert_eq!(store.used_bytes(), 8 + 2 * OBJECT_OVERHEAD);
    // A pending result is charged what its task holds, until it is done.
    drop(p);
    assert_eq!(store.used_bytes(), 8 + OBJECT_OVERHEAD);
    let held = store.create_pending(ObjectId::random(), JobId::random(), "f".into(), 10);
    assert!(held.is_err(), "its arguments do not fit");
    let q = store
        .create_pending(ObjectId::random(), JobId::random(), "f".into(), 2)
        .unwrap();
    assert_eq!(store.used_bytes(), 8 + 2 * OBJECT_OVERHEAD + 2);
    store.fulfill(q.id(), Ok(Bytes::from(vec![0; 1])), vec![]);
    assert_eq!(store.used_bytes(), 8 + 2 * OBJECT_OVERHEAD + 1);
    drop(q);
    // Empty objects are not free: each costs its overhead.
    let empties: Vec<ObjectRef> =
        std::iter::from_fn(|| store.put(JobId::random(), Bytes::new(), vec![]).ok())
            .take(100)
            .collect();
    assert_eq!(
        empties.len(),
        1,
        "room for one more object's overhead, no more"
    );
}

#[test]
fn get_waits_for_fulfil_and_times_out() {
    rt().block_on(async {
        let store = ObjectStore::new(1000);
        let p = store
            .create_pending(ObjectId::random(), JobId::random(), "f".into(), 0)
            .unwrap();
        assert_eq!(
            p.get(Some(Duration::from_millis(10))).await,
            Err(FabricError::Timeout)
        );
        let s2 = store.clone();
        let id = p.id();
        tokio::spawn(async move { s2.fulfill(id, Ok(Bytes::from_static(b"v")), vec![]) });
        assert_eq!(&p.get(None).await.unwrap()[..], b"v");
    });
}

#[test]
fn listeners_fire_once_on_ready() {
    let store = ObjectStore::new(1000);
    let p = store
        .create_pending(ObjectId::random(), JobId::random(), "f".into(), 0)
        .unwrap();
    let counter = ReadyCounter::new(0, 1);
    assert!(p.on_ready(counter.clone()));
    store.fulfill(p.id(), Err(FabricError::Cancelled), vec![]);
    store.fulfill(p.id(), Ok(Bytes::new()), vec![]);
    assert_eq!(counter.ready.load(Ordering::Acquire), 1);
    assert!(!p.on_ready(counter.clone()), "already ready");
    assert_eq!(p.try_get(), Some(Err(FabricError::Cancelled)));
}

#[test]
fn what_does_not_fit_spills_least_recently_used_first_and_comes_back() {
    let dir = std::env::temp_dir().join(format!("spill-unit-{:x}", rand::random::<u64>()));
    let store = ObjectStore::with_spill(4 << 20, Spill::Dir(dir.clone()));
    let job = JobId::random();
    let value = |i: u8| Bytes::from(vec![i; 1 << 20]);
    let refs: Vec<ObjectRef> = (0..12u8)
        .map(|i| store.put(job, value(i), vec![]).unwrap())
        .collect();
    assert!(store.used_bytes() <= 4 << 20, "{}", store.used_bytes());
    let files = || std::fs::read_dir(&dir).unwrap().count();
    assert!(files() >= 8, "{} spill files", files());
    // The oldest went first: the newest are still in memory.
    assert!(matches!(&*refs[11].entry.state.lock(), State::Ready { .. }));
    assert!(matches!(
        &*refs[0].entry.state.lock(),
        State::Spilled { .. }
    ));
    // Every value reads back right (loading some spills others).
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(r.try_get().unwrap().unwrap(), value(i as u8));
        assert!(r.is_ready());
    }
    assert!(store.used_bytes() <= 4 << 20);
    drop(refs);
    assert_eq!(files(), 0, "files of freed objects are deleted");
    assert_eq!(store.used_bytes(), 0);
    // Too big to ever fit: refused, nothing spilled for it.
    assert!(
        store
            .put(job, Bytes::from(vec![0u8; 5 << 20]), vec![])
            .is_err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_spilling_off_a_full_store_refuses() {
    let store = ObjectStore::new((2 << 20) + 2 * OBJECT_OVERHEAD);
    let job = JobId::random();
    let _a = store
        .put(job, Bytes::from(vec![1u8; 1 << 20]), vec![])
        .unwrap();
    let _b = store
        .put(job, Bytes::from(vec![2u8; 1 << 20]), vec![])
        .unwrap();
    let e = store
        .put(job, Bytes::from(vec![3u8; 1 << 20]), vec![])
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}

#[test]
fn waits_that_gave_up_do_not_pile_up_listeners() {
    let store = ObjectStore::new(1000);
    let p = store
        .create_pending(ObjectId::random(), JobId::random(), "f".into(), 0)
        .unwrap();
    // A guest polling `wait(.., timeout 0)` on an object that never
    // becomes ready: each wait registers, then gives up.
    for _ in 0..100_000 {
        let counter = ReadyCounter::new(0, 1);
        assert!(p.on_ready(counter.clone()));
        counter.close();
    }
    let listeners = match &*p.entry.state.lock() {
        State::Pending { listeners } => listeners.len(),
        _ => unreachable!("still pending"),
    };
    assert!(listeners <= 32, "{listeners} listeners kept");
    // A live waiter is never dropped.
    let live = ReadyCounter::new(0, 1);
    assert!(p.on_ready(live.clone()));
    for _ in 0..1000 {
        let counter = ReadyCounter::new(0, 1);
        p.on_ready(counter.clone());
        counter.close();
    }
    store.fulfill(p.id(), Ok(Bytes::new()), vec![]);
    assert_eq!(live.ready.load(Ordering::Acquire), 1);
}

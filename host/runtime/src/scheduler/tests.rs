//! The scheduler's tests: admission order, fairness, quotas, blocking.

use super::*;
use std::sync::mpsc;

fn tn() -> Tenant {
    "t".into()
}

fn cpus(n: f64) -> ResourceSet {
    ResourceSet::default().with_cpus(n)
}

#[test]
fn queued_work_starts_in_order_when_resources_return() {
    let sched = Scheduler::new(cpus(1.0), 0);
    let (tx, rx) = mpsc::channel();
    let first = sched.try_acquire(&cpus(1.0), &tn()).unwrap();
    for i in 0..3 {
        let tx = tx.clone();
        sched.submit(
            cpus(1.0),
            &tn(),
            Box::new(move |lease| tx.send((i, lease.unwrap())).unwrap()),
            None,
        );
    }
    assert_eq!(sched.queued(), 3);
    drop(first);
    let (i, lease) = rx.try_recv().unwrap();
    assert_eq!(i, 0);
    assert!(rx.try_recv().is_err(), "one CPU, one task");
    drop(lease);
    assert_eq!(rx.try_recv().unwrap().0, 1);
}

#[test]
fn deeper_work_goes_first_and_work_at_one_depth_keeps_its_order() {
    let sched = Scheduler::new(cpus(1.0), 0);
    let held = sched.try_acquire(&cpus(1.0), &tn()).unwrap();
    let (tx, rx) = mpsc::channel();
    for (name, depth) in [("a", 0), ("b", 2), ("c", 1), ("d", 2)] {
        let tx = tx.clone();
        sched.submit_at(
            Order { group: 1, depth },
            cpus(1.0),
            &tn(),
            Box::new(move |l| tx.send((name, l.unwrap())).unwrap()),
            None,
        );
    }
    drop(held);
    let mut order = Vec::new();
    while let Ok((name, lease)) = rx.try_recv() {
        order.push(name);
        drop(lease);
    }
    assert_eq!(order, ["b", "d", "c", "a"]);
}

#[test]
fn jobs_take_turns_however_deep_their_work() {
    let sched = Scheduler::new(cpus(1.0), 0);
    let held = sched.try_acquire(&cpus(1.0), &tn()).unwrap();
    let (tx, rx) = mpsc::channel();
    for (name, group, depth) in [("a1", 1, 9), ("a2", 1, 9), ("b", 2, 1), ("a3", 1, 10)] {
        let tx = tx.clone();
        sched.submit_at(
            Order { group, depth },
            cpus(1.0),
            &tn(),
            Box::new(move |l| tx.send((name, l.unwrap())).unwrap()),
            None,
        );
    }
    drop(held);
    let mut order = Vec::new();
    while let Ok((name, lease)) = rx.try_recv() {
        order.push(name);
        drop(lease);
    }
    assert_eq!(order, ["a3", "b", "a1", "a2"]);
}

#[test]
fn a_blocked_shape_does_not_hold_up_another() {
    let sched = Scheduler::new(cpus(2.0).with_gpus(1.0), 1);
    let gpu = cpus(1.0).with_gpus(1.0);
    let held = sched.try_acquire(&gpu, &tn()).unwrap();
    assert_eq!(held.gpu_ids(), &[0]);
    let (tx, rx) = mpsc::channel();
    let t = tx.clone();
    sched.submit(
        gpu.clone(),
        &tn(),
        Box::new(move |l| t.send(("gpu", l.unwrap())).unwrap()),
        None,
    );
    sched.submit(
        cpus(1.0),
        &tn(),
        Box::new(move |l| tx.send(("cpu", l.unwrap())).unwrap()),
        None,
    );
    assert_eq!(rx.try_recv().unwrap().0, "cpu");
    drop(held);
    let (what, lease) = rx.try_recv().unwrap();
    assert_eq!((what, lease.gpu_ids()), ("gpu", &[0u32][..]));
}

#[test]
fn blocking_hands_back_cpus_and_fractional_gpus_share() {
    let sched = Scheduler::new(cpus(1.0).with_gpus(1.0), 1);
    let lease = sched.try_acquire(&cpus(1.0), &tn()).unwrap();
    {
        let _b = lease.block().unwrap();
        let inner = sched
            .try_acquire(&cpus(1.0), &tn())
            .expect("CPU free while blocked");
        drop(inner);
    }
    assert_eq!(sched.free().cpu, 0);
    let half = ResourceSet::default().with_gpus(0.5);
    let a = sched.try_acquire(&half, &tn()).unwrap();
    let b = sched.try_acquire(&half, &tn()).unwrap();
    assert_eq!((a.gpu_ids(), b.gpu_ids()), (&[0u32][..], &[0u32][..]));
    assert!(sched.try_acquire(&half, &tn()).is_none());
}

#[test]
fn infeasible_demands_name_the_missing_resource() {
    let sched = Scheduler::new(cpus(2.0), 0);
    let err = sched
        .check_feasible(&ResourceSet::default().with_gpus(1.0))
        .unwrap_err();
    assert!(err.to_string().contains("GPU: 1 (node has 0)"), "{err}");
    assert!(
        sched
            .check_feasible(&ResourceSet::default().with_gpus(1.5))
            .is_err()
    );
    assert!(sched.check_feasible(&cpus(2.0)).is_ok());
}

#[test]
fn cancelled_waiters_are_dropped() {
    let sched = Scheduler::new(cpus(1.0), 0);
    let held = sched.try_acquire(&cpus(1.0), &tn()).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Lease>();
    sched.submit(
        cpus(1.0),
        &tn(),
        Box::new(move |l| tx.send(l.unwrap()).unwrap()),
        Some(flag.clone()),
    );
    flag.store(true, Ordering::Release);
    drop(held);
    assert!(rx.try_recv().is_err());
    assert_eq!(sched.queued(), 0);
}

#[test]
fn a_flooding_tenant_does_not_starve_another() {
    let sched = Scheduler::new(cpus(2.0), 0);
    let (a, b): (Tenant, Tenant) = ("a".into(), "b".into());
    let (tx, rx) = mpsc::channel();
    let held: Vec<Lease> = (0..2)
        .map(|_| sched.try_acquire(&cpus(1.0), &a).unwrap())
        .collect();
    for i in 0..10 {
        let tx = tx.clone();
        sched.submit(
            cpus(1.0),
            &a,
            Box::new(move |l| drop(tx.send((format!("a{i}"), l)))),
            None,
        );
    }
    let tx2 = tx.clone();
    sched.submit(
        cpus(1.0),
        &b,
        Box::new(move |l| drop(tx2.send(("b".into(), l)))),
        None,
    );
    drop(held);
    // Two CPUs came back: b (share 0) goes first, then a's oldest.
    let first = rx.try_recv().unwrap();
    let second = rx.try_recv().unwrap();
    assert_eq!((first.0.as_str(), second.0.as_str()), ("b", "a0"));
}

#[test]
fn work_over_a_tenants_quota_waits_until_the_quota_allows_it() {
    let sched = Scheduler::new(cpus(4.0), 0);
    let a: Tenant = "a".into();
    let cap = ResourceCap {
        cpu: Some(UNIT),
        ..ResourceCap::default()
    };
    sched.set_cap(&a, cap);
    let one = sched.try_acquire(&cpus(1.0), &a).unwrap();
    assert!(
        sched.try_acquire(&cpus(1.0), &a).is_none(),
        "quota of one CPU"
    );
    assert!(
        sched.try_acquire(&cpus(1.0), &"b".into()).is_some(),
        "others are not held up"
    );
    let (tx, rx) = mpsc::channel();
    sched.submit(
        cpus(1.0),
        &a,
        Box::new(move |l| tx.send(l.unwrap()).unwrap()),
        None,
    );
    assert!(rx.try_recv().is_err());
    sched.set_cap(
        &a,
        ResourceCap {
            cpu: Some(2 * UNIT),
            ..ResourceCap::default()
        },
    );
    assert!(
        rx.try_recv().is_ok(),
        "a larger quota admits the waiting work"
    );
    drop(one);
}

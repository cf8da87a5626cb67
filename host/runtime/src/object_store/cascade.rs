//! Cascades as loops, never as recursion.
//!
//! Freeing an object drops the references nested in it, which may free
//! those objects, and so on; completing an object wakes what waits on it,
//! which may start a task whose failure completes another object, and so
//! on. A guest shapes both chains (a million objects, each nesting the one
//! before), so following them with nested calls would let it overflow the
//! node's stack. Instead each thread runs at most one cascade of each kind
//! at a time, as a loop: a release or a wake-up that happens while the loop
//! runs (from inside it) is queued, and the loop takes it next. (The unit
//! test below runs a chain of a million steps this way.)

use std::cell::RefCell;
use std::thread::LocalKey;

/// The per-thread queue of one kind of cascade (`None`: no loop running).
pub(super) type Queue<T> = RefCell<Option<Vec<T>>>;

/// Runs `first`, then everything queued meanwhile on this thread, with `run`.
/// If a loop of this kind already runs on this thread, `first` is queued for
/// it instead and this returns at once.
pub(super) fn run<T: 'static>(
    queue: &'static LocalKey<Queue<T>>,
    first: T,
    mut run: impl FnMut(T),
) {
    let mut first = Some(first);
    let entered = queue.try_with(|q| {
        let mut q = q.borrow_mut();
        match q.as_mut() {
            Some(pending) => {
                pending.push(first.take().expect("not taken yet"));
                false
            }
            None => {
                *q = Some(Vec::new());
                true
            }
        }
    });
    match entered {
        Ok(false) => {}
        // The thread is exiting and its queue is gone: no loop can run here.
        Err(_) => run(first.take().expect("not queued")),
        Ok(true) => {
            let _leave = Leave(queue);
            let mut next = first.take();
            while let Some(item) = next {
                run(item);
                next = queue.with(|q| q.borrow_mut().as_mut().and_then(Vec::pop));
            }
        }
    }
}

/// Ends this thread's loop, even if `run` panicked (whatever was still
/// queued is dropped after the queue is closed, so its drops may start a
/// loop of their own).
struct Leave<T: 'static>(&'static LocalKey<Queue<T>>);

impl<T: 'static> Drop for Leave<T> {
    fn drop(&mut self) {
        let left = self.0.with(|q| q.borrow_mut().take());
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static DEPTH_TEST: Queue<u32> = const { RefCell::new(None) };
    }

    /// A chain where each step starts the next one from inside `run`: the
    /// loop takes each in turn at the same stack depth.
    fn step(n: u32, depths: &mut Vec<usize>, max: u32) {
        run(&DEPTH_TEST, n, |i| {
            let here = 0u8;
            depths.push(std::hint::black_box(&here) as *const u8 as usize);
            if i < max {
                // Would recurse; is queued instead.
                run(&DEPTH_TEST, i + 1, |_| unreachable!("queued, not run here"));
            }
        });
    }

    #[test]
    fn a_chain_started_from_inside_runs_as_a_loop() {
        let mut depths = Vec::new();
        step(0, &mut depths, 1_000_000);
        assert_eq!(depths.len(), 1_000_001);
        assert!(depths.iter().all(|d| *d == depths[0]), "same stack depth");
        // The loop ended: a new one starts.
        let mut again = Vec::new();
        step(0, &mut again, 0);
        assert_eq!(again.len(), 1);
    }
}

//! How many reconciles run at once, and in which order they start: first come, first
//! served, and work that may change IAM before routine re-checks of objects in sync.
//!
//! kube-runtime's own limit parks due objects in a hash set and takes whichever it finds
//! first: once re-checks are due faster than they run, some objects are never taken.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

/// Which queue a reconcile waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A new, changed or deleted object, or a retry: IAM may have to change.
    Work,
    /// A re-check of an object already in sync at its generation.
    Recheck,
}

#[derive(Clone)]
pub struct Gate {
    inner: Arc<Mutex<Slots>>,
}

struct Slots {
    free: usize,
    work: VecDeque<oneshot::Sender<()>>,
    recheck: VecDeque<oneshot::Sender<()>>,
}

impl Slots {
    /// Hands the slot being freed to the next waiter still waiting, or keeps it.
    fn release(&mut self) {
        while let Some(waiter) = self.work.pop_front().or_else(|| self.recheck.pop_front()) {
            if waiter.send(()).is_ok() {
                return;
            }
        }
        self.free += 1;
    }
}

/// A running reconcile's slot: freed when dropped.
pub struct Permit {
    inner: Arc<Mutex<Slots>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        lock(&self.inner).release();
    }
}

/// A place in a queue; a slot handed to it after it stopped waiting is passed on.
struct Waiting {
    turn: oneshot::Receiver<()>,
    inner: Arc<Mutex<Slots>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.turn.close();
        if self.turn.try_recv().is_ok() {
            lock(&self.inner).release();
        }
    }
}

fn lock(inner: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    // Slots hold no invariant a panic elsewhere could break halfway.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Gate {
    pub fn new(concurrency: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Slots {
                free: concurrency.max(1),
                work: VecDeque::new(),
                recheck: VecDeque::new(),
            })),
        }
    }

    /// Waits for a free slot, behind everyone of the same priority who came before.
    pub async fn enter(&self, priority: Priority) -> Permit {
        let turn = {
            let mut slots = lock(&self.inner);
            if slots.free > 0 {
                slots.free -= 1;
                return self.permit();
            }
            let (sender, turn) = oneshot::channel();
            match priority {
                Priority::Work => slots.work.push_back(sender),
                Priority::Recheck => slots.recheck.push_back(sender),
            }
            turn
        };
        let mut waiting = Waiting {
            turn,
            inner: self.inner.clone(),
        };
        // The sender is dropped only after a send: the gate outlives its waiters.
        let _ = (&mut waiting.turn).await;
        self.permit()
    }

    fn permit(&self) -> Permit {
        Permit {
            inner: self.inner.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// Starts a waiter that reports `label` once it holds a slot, then holds it until
    /// told to go.
    fn waiter(
        gate: &Gate,
        priority: Priority,
        label: &'static str,
        started: mpsc::UnboundedSender<&'static str>,
    ) -> oneshot::Sender<()> {
        let (done, finish) = oneshot::channel::<()>();
        let gate = gate.clone();
        tokio::spawn(async move {
            let _permit = gate.enter(priority).await;
            started.send(label).unwrap();
            let _ = finish.await;
        });
        done
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn work_goes_before_rechecks_and_each_queue_in_arrival_order() {
        let gate = Gate::new(1);
        let (started, mut order) = mpsc::unbounded_channel();
        let first = waiter(&gate, Priority::Recheck, "running", started.clone());
        settle().await;
        let mut done = vec![first];
        for (priority, label) in [
            (Priority::Recheck, "recheck-1"),
            (Priority::Work, "work-1"),
            (Priority::Recheck, "recheck-2"),
            (Priority::Work, "work-2"),
        ] {
            done.push(waiter(&gate, priority, label, started.clone()));
            settle().await;
        }
        assert_eq!(order.recv().await, Some("running"));
        assert!(
            order.try_recv().is_err(),
            "a waiter ran beside the running one"
        );
        // The waiters finish as soon as they start; the running one now lets go.
        for finish in done {
            finish.send(()).unwrap();
        }
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(order.recv().await.unwrap());
        }
        assert_eq!(seen, ["work-1", "work-2", "recheck-1", "recheck-2"]);
    }

    #[tokio::test]
    async fn no_more_than_the_concurrency_run_at_once() {
        let gate = Gate::new(2);
        let (started, mut order) = mpsc::unbounded_channel();
        let done: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|label| waiter(&gate, Priority::Work, label, started.clone()))
            .collect();
        settle().await;
        assert_eq!(order.recv().await, Some("a"));
        assert_eq!(order.recv().await, Some("b"));
        assert!(order.try_recv().is_err(), "a third ran beside two");
        drop(done);
        assert_eq!(order.recv().await, Some("c"));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_a_slot() {
        let gate = Gate::new(1);
        let held = gate.enter(Priority::Work).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), gate.enter(Priority::Work));
        assert!(gave_up.await.is_err());
        drop(held);
        // The slot went to nobody waiting, so it is free again.
        let again = tokio::time::timeout(Duration::from_secs(1), gate.enter(Priority::Recheck));
        assert!(again.await.is_ok());
    }
}

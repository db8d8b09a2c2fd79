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
    /// At shutdown: nothing more starts, and waiters give up their turn.
    closed: bool,
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
                closed: false,
                free: concurrency.max(1),
                work: VecDeque::new(),
                recheck: VecDeque::new(),
            })),
        }
    }

    /// Waits for a free slot, behind everyone of the same priority who came before;
    /// `None` once the gate is closed.
    pub async fn enter(&self, priority: Priority) -> Option<Permit> {
        let turn = {
            let mut slots = lock(&self.inner);
            if slots.closed {
                return None;
            }
            if slots.free > 0 {
                slots.free -= 1;
                return Some(self.permit());
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
        // A sender dropped without a send: the gate closed.
        (&mut waiting.turn).await.ok()?;
        Some(self.permit())
    }

    /// Lets nothing more start: the waiting reconciles return at once, so a shutdown
    /// waits only for those running.
    pub fn close(&self) {
        let mut slots = lock(&self.inner);
        slots.closed = true;
        slots.work.clear();
        slots.recheck.clear();
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
            let _permit = gate.enter(priority).await.expect("open");
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
        let held = gate.enter(Priority::Work).await.expect("open");
        let gave_up = tokio::time::timeout(Duration::from_millis(10), gate.enter(Priority::Work));
        assert!(gave_up.await.is_err());
        drop(held);
        // The slot went to nobody waiting, so it is free again.
        let again = tokio::time::timeout(Duration::from_secs(1), gate.enter(Priority::Recheck));
        assert!(again.await.is_ok_and(|permit| permit.is_some()));
    }

    #[tokio::test]
    async fn closing_sends_the_waiting_away_and_lets_none_start() {
        let gate = Gate::new(1);
        let running = gate.enter(Priority::Work).await.expect("open");
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(Priority::Recheck).await.is_none() }
        });
        settle().await;
        gate.close();
        assert!(waiting.await.unwrap(), "a waiter started after the close");
        drop(running);
        assert!(gate.enter(Priority::Work).await.is_none());
    }
}

//! Tells when a watch has listed once, from its own events.
//!
//! `Store::wait_until_ready` wakes only the latest of its waiters, and the Controller
//! waits on its store that way before it runs anything: a second waiter steals that
//! wake-up, and the Controller then sleeps until some later event. So nothing else
//! waits on a store; it waits on the flag its watch stream raises.

use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use tokio::sync::watch;

/// Raised once the watch it came from has listed; clones see the same flag.
#[derive(Clone)]
pub struct Listed(watch::Receiver<bool>);

impl Listed {
    /// True once listed; false if the watch ended first.
    pub async fn wait(&self) -> bool {
        self.0.clone().wait_for(|listed| *listed).await.is_ok()
    }

    /// Waits for every flag in turn; false as soon as one watch ends unlisted.
    pub async fn all(flags: &[Listed]) -> bool {
        for flag in flags {
            if !flag.wait().await {
                return false;
            }
        }
        true
    }
}

/// Passes `events` through and raises the flag at their first complete listing. Put it
/// after the reflector, so the store holds that listing by then.
pub fn flag_listed<K, S>(events: S) -> (impl Stream<Item = S::Item>, Listed)
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let (raise, flag) = watch::channel(false);
    let events = events.inspect(move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            raise.send_replace(true);
        }
    });
    (events, Listed(flag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[tokio::test]
    async fn raised_by_the_end_of_the_first_listing_and_not_before() {
        let events: Vec<Result<watcher::Event<ConfigMap>, watcher::Error>> = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(ConfigMap::default())),
            Ok(watcher::Event::InitDone),
        ];
        let (events, listed) = flag_listed(stream::iter(events));
        let mut events = Box::pin(events);
        events.next().await;
        events.next().await;
        assert!(!*listed.0.borrow());
        events.next().await;
        assert!(listed.wait().await);
    }

    #[tokio::test]
    async fn a_watch_that_ends_unlisted_reports_false() {
        let events: Vec<Result<watcher::Event<ConfigMap>, watcher::Error>> =
            vec![Ok(watcher::Event::Init)];
        let (events, listed) = flag_listed(stream::iter(events));
        events.for_each(|_| async {}).await;
        assert!(!listed.wait().await);
    }
}

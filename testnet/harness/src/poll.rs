//! Bounded waits for tests: [`eventually`] asks a probe every [`POLL_INTERVAL`] until it
//! succeeds, and panics when the bound passes, naming what it waited for, the bound and the
//! probe's last reason. [`eventually_async`] is the same wait for tokio tests, on tokio's clock.
//!
//! Tests wait for outcomes (a block, a peer, an inclusion) with it instead of sleeping a guessed
//! time: a wait ends as soon as its outcome holds, and a failure says what was still missing.
//!
//! What it does not do: interrupt a probe. A probe that blocks (or an async one that does not
//! complete) is bounded by its own timeouts (the RPC client's, for instance), and the wait can
//! then last up to one probe past the bound.
//!
//! Invariant: the probe runs at least once, and a wait that fails has probed once more at or
//! after the bound, so a bound is never cut short by the interval.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a wait sleeps between two probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `probe` every [`POLL_INTERVAL`] until it returns `Ok`, and returns that value.
///
/// Panics when `bound` has passed and the probe still fails, with `what`, the bound and the
/// probe's last `Err` (say there what is missing: "node 2 at 7", not "not yet"). A probe may
/// also panic itself, to fail the wait at once (a crashed process, a broken invariant).
pub fn eventually<T, E: Display>(what: &str, bound: Duration, mut probe: impl FnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        let reason = match probe() {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: not reached within {bound:?}; last: {reason}");
        std::thread::sleep(left.min(POLL_INTERVAL));
    }
}

/// [`eventually`] for async probes: awaits `probe()` every [`POLL_INTERVAL`] until it returns
/// `Ok`, sleeping on tokio's timer (so a current-thread runtime keeps driving other tasks).
/// Panics as [`eventually`] does.
pub async fn eventually_async<T, E, Probe, Fut>(what: &str, bound: Duration, mut probe: Probe) -> T
where
    E: Display,
    Probe: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let reason = match probe().await {
            Ok(value) => return value,
            Err(reason) => reason,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{what}: not reached within {bound:?}; last: {reason}");
        tokio::time::sleep(left.min(POLL_INTERVAL)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Short enough to keep the tests fast; only a lower bound on elapsed time is asserted.
    const SHORT: Duration = Duration::from_millis(300);

    /// The message of a panic payload (`panic!` with arguments carries a `String`).
    fn message(payload: Box<dyn std::any::Any + Send>) -> String {
        match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(payload) => payload.downcast::<&str>().map(|message| (*message).to_owned()).unwrap_or_default(),
        }
    }

    #[test]
    fn eventually_returns_the_first_success_without_probing_again() {
        let probes = Cell::new(0_u32);
        let value = eventually("the third probe", Duration::from_secs(60), || {
            probes.set(probes.get() + 1);
            if probes.get() < 3 { Err(format!("probe {}", probes.get())) } else { Ok(probes.get() * 10) }
        });
        assert_eq!(value, 30);
        assert_eq!(probes.get(), 3, "it stops at the first success");
    }

    #[test]
    fn eventually_panics_after_the_bound_with_what_the_bound_and_the_last_reason() {
        let probes = Cell::new(0_u32);
        let started = Instant::now();
        let failed = catch_unwind(AssertUnwindSafe(|| {
            eventually("the impossible", SHORT, || {
                probes.set(probes.get() + 1);
                Err::<(), _>(format!("probe {} failed", probes.get()))
            })
        }));
        let elapsed = started.elapsed();
        let message = message(failed.expect_err("a wait whose probe never succeeds fails"));
        assert_eq!(message, format!("the impossible: not reached within 300ms; last: probe {} failed", probes.get()));
        assert!(elapsed >= SHORT, "it failed after {elapsed:?}, before the bound");
        assert!(probes.get() >= 2, "it probed again at the bound, not only once ({})", probes.get());
    }

    #[test]
    fn a_zero_bound_still_probes_once() {
        let probes = Cell::new(0_u32);
        let failed = catch_unwind(AssertUnwindSafe(|| {
            eventually("nothing", Duration::ZERO, || {
                probes.set(probes.get() + 1);
                Err::<(), _>("no")
            })
        }));
        assert_eq!(message(failed.expect_err("fails")), "nothing: not reached within 0ns; last: no");
        assert_eq!(probes.get(), 1);
        assert_eq!(eventually("ready", Duration::ZERO, || Ok::<_, &str>(7)), 7);
    }

    #[tokio::test]
    async fn eventually_async_returns_the_first_success_without_probing_again() {
        let probes = Cell::new(0_u32);
        let value = eventually_async("the third probe", Duration::from_secs(60), || async {
            probes.set(probes.get() + 1);
            if probes.get() < 3 { Err(format!("probe {}", probes.get())) } else { Ok(probes.get() * 10) }
        })
        .await;
        assert_eq!(value, 30);
        assert_eq!(probes.get(), 3, "it stops at the first success");
    }

    #[tokio::test]
    async fn eventually_async_panics_after_the_bound_with_what_the_bound_and_the_last_reason() {
        let probes = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&probes);
        let started = Instant::now();
        // A spawned task's panic comes back as the JoinError, with its payload.
        let failed = tokio::spawn(async move {
            eventually_async("the impossible", SHORT, || {
                let probe = counted.fetch_add(1, Ordering::SeqCst) + 1;
                async move { Err::<(), _>(format!("probe {probe} failed")) }
            })
            .await
        })
        .await;
        let elapsed = started.elapsed();
        let error = failed.expect_err("a wait whose probe never succeeds fails");
        assert!(error.is_panic(), "{error}");
        let probes = probes.load(Ordering::SeqCst);
        assert_eq!(
            message(error.into_panic()),
            format!("the impossible: not reached within 300ms; last: probe {probes} failed")
        );
        assert!(elapsed >= SHORT, "it failed after {elapsed:?}, before the bound");
        assert!(probes >= 2, "it probed again at the bound, not only once ({probes})");
    }
}

//! A bounded pool for CPU-heavy work called from async code.
//!
//! Async worker threads must never compute for long: while one does, the tasks queued on it
//! (TLS handshakes, other sessions' messages, the writer that flushes an acknowledgement) wait.
//! [`ComputePool::run`] moves a closure onto tokio's blocking threads and lets at most
//! `threads` such closures run at once, so heavy work neither stalls the async workers nor
//! multiplies without bound (each running closure also holds its working memory).
//!
//! Why `spawn_blocking` behind a semaphore rather than a dedicated pool (rayon or owned
//! threads): the work comes in coarse pieces (one matrix product, or 64 Ki elements), so a
//! work-stealing scheduler buys nothing; tokio's blocking threads are created on demand and
//! reused, so no new dependency or thread management is needed; the semaphore is fair (first
//! come, first served), so concurrent sessions take turns piece by piece. A closure, once
//! started, runs to completion even if its caller is cancelled; it keeps its permit until then,
//! so the bound holds in that case too.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// At most `threads` CPU-heavy closures at once, off the async worker threads (see the module
/// docs). Cloning shares the bound.
#[derive(Clone, Debug)]
pub struct ComputePool {
    permits: Arc<Semaphore>,
    threads: usize,
}

impl Default for ComputePool {
    /// One thread per available core.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ComputePool::new(cores)
    }
}

impl ComputePool {
    /// A pool running at most `threads` closures at once (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        ComputePool {
            permits: Arc::new(Semaphore::new(threads)),
            threads,
        }
    }

    /// The bound on concurrent closures.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a blocking thread once a slot is free, and returns its result. A panic in
    /// `f` is resumed in the caller. Call inside a tokio runtime.
    pub async fn run<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let handle = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        });
        match handle.await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a compute task was cancelled by the runtime's shutdown: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Never more than `threads` closures at once, and the async workers stay free meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn bounds_concurrency_and_keeps_workers_free() {
        let pool = ComputePool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut jobs = Vec::new();
        for _ in 0..6 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            jobs.push(tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // The single async worker still runs timers while the closures block.
        let t = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(t.elapsed() < Duration::from_millis(40), "{:?}", t.elapsed());
        for j in jobs {
            j.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(pool.run(|| 6 * 7).await, 42);
    }
}

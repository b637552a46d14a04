//! The worker pool: units of work spread over `process-max` blocking threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Which of `workers` parallel workers are busy with a unit of work: fewer than all means the
/// work ran out for some, so one still working on a big file may use a second core.
pub(crate) struct Busy {
    workers: usize,
    active: AtomicUsize,
}

impl Busy {
    pub(crate) fn new(workers: usize) -> Busy {
        Busy {
            workers,
            active: Default::default(),
        }
    }

    /// Runs `unit` counted as busy.
    pub(crate) fn run<T>(&self, unit: impl FnOnce() -> T) -> T {
        self.active.fetch_add(1, Ordering::Relaxed);
        let out = unit();
        self.active.fetch_sub(1, Ordering::Relaxed);
        out
    }

    /// Whether a worker is idle.
    pub(crate) fn spare_core(&self) -> bool {
        self.active.load(Ordering::Relaxed) < self.workers
    }
}

/// Runs `work` over `jobs` on `workers` blocking threads, stopping at the first error.
pub(crate) async fn run_parallel<J, R, F>(jobs: Vec<J>, workers: usize, work: F) -> Result<Vec<R>>
where
    J: Send + 'static,
    R: Send + 'static,
    F: Fn(J) -> Result<R> + Send + Sync + 'static,
{
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let failed = Arc::new(AtomicBool::new(false));
    let work = Arc::new(work);
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        let queue = Arc::clone(&queue);
        let failed = Arc::clone(&failed);
        let work = Arc::clone(&work);
        handles.push(tokio::task::spawn_blocking(move || -> Result<Vec<R>> {
            let mut out = Vec::new();
            loop {
                if failed.load(Ordering::Relaxed) {
                    return Ok(out);
                }
                let job = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => return Err(Error::Internal("work queue poisoned".into())),
                };
                let Some(job) = job else {
                    return Ok(out);
                };
                match work(job) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }));
    }
    let mut results = Vec::new();
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(mut r)) => results.append(&mut r),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(Error::Internal(format!("worker failed: {e}")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

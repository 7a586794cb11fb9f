//! Bounded pools of compiled functions, one pool per kind of request, so that several threads can
//! predict on one shared model at once. A compiled function needs `&mut` to run (it writes its
//! workspace), so one instance serves one call at a time: a caller leases a free instance under
//! the lock, runs it outside the lock and hands it back when the lease drops. When every instance
//! is busy a new one is cloned from a never-run template (a clone, not a recompilation), up to
//! [`POOL_SIZE`] per request; beyond that callers wait for one to come back.
//!
//! A single thread always gets the instance it returned last, so single-threaded use keeps one
//! instance per request, exactly as before pooling.

use crate::error::Result;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The most compiled instances a network keeps per kind of request (each with its own plan cache
/// of at most `tape::Function::PLAN_CACHE_SIZE` plans), so memory stays bounded however many
/// threads predict at once.
pub const POOL_SIZE: usize = 4;

/// What a pool needs to know about the things it holds.
pub(crate) trait Pooled: Clone {
    /// Whether the instance draws from random streams (dropout, noise). Such a request keeps a
    /// single instance: its stream is then one sequence whatever the threads, as in a
    /// single-threaded program, instead of clones repeating the same draws.
    fn is_random(&self) -> bool;
}

impl Pooled for tape::Function {
    fn is_random(&self) -> bool {
        !self.rng_states().is_empty()
    }
}

/// The instances of one kind of request.
struct Entry<T> {
    key: String,
    /// A copy made before any run: new instances are cloned from it, so they start with no
    /// plans and with the random streams as first compiled.
    template: T,
    /// Instances not leased now; the last returned is handed out first.
    free: Vec<T>,
    /// Instances in existence, leased or free.
    made: usize,
    /// The most instances this request may have.
    bound: usize,
}

/// Compiled instances by request key.
pub(crate) struct Pool<T> {
    entries: Mutex<Vec<Entry<T>>>,
    returned: Condvar,
}

impl<T: Pooled> Pool<T> {
    /// An empty pool.
    pub(crate) fn new() -> Pool<T> {
        Pool {
            entries: Mutex::new(Vec::new()),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry<T>>> {
        // A panic while the lock was held cannot leave an entry half-updated (every change is
        // one push or one counter step), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An instance for `key`, compiled by `make` on the first request for that key.
    pub(crate) fn lease(
        &self,
        key: &str,
        make: impl FnOnce() -> Result<T>,
    ) -> Result<Lease<'_, T>> {
        let mut entries = self.lock();
        let index = match entries.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                // Compiling under the lock happens once per key; it keeps two threads from
                // compiling the same request side by side.
                let first = make()?;
                let bound = if first.is_random() { 1 } else { POOL_SIZE };
                entries.push(Entry {
                    key: key.to_string(),
                    template: first.clone(),
                    free: vec![first],
                    made: 1,
                    bound,
                });
                entries.len() - 1
            }
        };
        loop {
            let entry = &mut entries[index];
            if let Some(item) = entry.free.pop() {
                return Ok(self.lent(index, item));
            }
            if entry.made < entry.bound {
                entry.made += 1;
                let item = entry.template.clone();
                return Ok(self.lent(index, item));
            }
            entries = self
                .returned
                .wait(entries)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn lent(&self, index: usize, item: T) -> Lease<'_, T> {
        Lease {
            pool: self,
            index,
            item: Some(item),
        }
    }

    /// The number of distinct requests.
    pub(crate) fn requests(&self) -> usize {
        self.lock().len()
    }

    /// The number of instances over all requests, leased or free.
    pub(crate) fn instances(&self) -> usize {
        self.lock().iter().map(|e| e.made).sum()
    }
}

/// An instance taken from a pool; it goes back when the lease drops, even on an error path.
pub(crate) struct Lease<'a, T: Pooled> {
    pool: &'a Pool<T>,
    index: usize,
    item: Option<T>,
}

impl<T: Pooled> Deref for Lease<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item
            .as_ref()
            .expect("a lease holds its item until dropped")
    }
}

impl<T: Pooled> DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item
            .as_mut()
            .expect("a lease holds its item until dropped")
    }
}

impl<T: Pooled> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool.lock()[self.index].free.push(item);
            // All waiters, not one: they share the condition variable across requests, and a
            // single wake-up could go to a waiter for another request and be lost.
            self.pool.returned.notify_all();
        }
    }
}

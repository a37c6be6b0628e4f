//! One policy for poisoned locks: recover the value.
//!
//! A lock here is poisoned only when a thread panicked while holding it. Every state guarded in
//! hashsweep (a pause deadline, the reason lookups stopped, a claim table, a connection) is left
//! consistent between statements, so the value is still right; refusing it instead would
//! silently drop state that matters, such as the stop after a refused key.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `m`, recovering the guard if a panicking thread poisoned it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

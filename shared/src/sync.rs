//! Locks that survive a panic.
//!
//! A `std::sync` lock is poisoned when a thread panics while holding it.
//! Everywhere shop locks, a critical section only moves values between
//! maps, vectors and counters, and leaves them consistent even if it is cut
//! short; so a poisoned lock is taken anyway instead of spreading the panic.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes `lock` for reading, poisoned or not.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes `lock` for writing, poisoned or not.
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_still_hands_out_its_value() {
        let shared = std::sync::Arc::new((Mutex::new(vec![1]), RwLock::new(7)));
        let inside = shared.clone();
        let panicked = std::thread::spawn(move || {
            let _mutex = inside.0.lock().expect("first lock");
            let _rw = inside.1.write().expect("first write");
            panic!("holder panics");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.0.is_poisoned() && shared.1.is_poisoned());
        lock(&shared.0).push(2);
        assert_eq!(*lock(&shared.0), vec![1, 2]);
        *write(&shared.1) += 1;
        assert_eq!(*read(&shared.1), 8);
    }
}

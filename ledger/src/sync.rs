//! `lock`: the one way this workspace takes a std mutex. A poisoned mutex
//! (a thread panicked while holding it) is entered anyway, because every
//! critical section here leaves its data consistent at each step (counters,
//! maps and caches updated in place, nothing half-built), so the panic is
//! reported where it happened and the rest of the process keeps its
//! figures and keeps serving, instead of every later caller panicking too.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, entering it even when a panicking thread poisoned it.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_is_still_entered_with_its_data() {
        let mutex = Mutex::new(1);
        let _ = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut guard = mutex.lock().expect("not poisoned yet");
                    *guard = 2;
                    panic!("poison it");
                })
                .join()
        });
        assert!(mutex.is_poisoned());
        assert_eq!(*lock(&mutex), 2);
    }
}

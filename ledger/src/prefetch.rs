//! `prefetch`: a hint that a value will be read soon, so the CPU starts
//! loading its cache line now. It changes no result, only when the memory
//! arrives; the simulator uses it to fetch the state of the events it will
//! run next while it runs the current one. On targets without a safe
//! prefetch instruction it does nothing.

/// Asks the CPU to bring the cache line holding `value` into every cache
/// level. Never reads `value`, never faults.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::prefetch;

    #[test]
    fn a_prefetch_changes_nothing() {
        let values = vec![7u64; 64];
        prefetch(&values[63]);
        prefetch(&values);
        assert_eq!(values.iter().sum::<u64>(), 7 * 64);
    }
}

//! Fuzz target `chain_ops`: see `fuzz::TARGETS` and fuzz/README.md.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::run("chain_ops", data));

#[cfg(not(fuzzing))]
fn main() {
    fuzz::replay_main("chain_ops");
}

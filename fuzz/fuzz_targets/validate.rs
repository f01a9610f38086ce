//! Fuzz target `validate`: see `fuzz::TARGETS` and fuzz/README.md.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::run("validate", data));

#[cfg(not(fuzzing))]
fn main() {
    fuzz::replay_main("validate");
}

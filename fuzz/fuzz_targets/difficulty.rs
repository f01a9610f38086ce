//! Fuzz target `difficulty`: see `fuzz::TARGETS` and fuzz/README.md.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::run("difficulty", data));

#[cfg(not(fuzzing))]
fn main() {
    fuzz::replay_main("difficulty");
}

//! Fuzz target `p2p_noise`: see `fuzz::TARGETS` and fuzz/README.md.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::run("p2p_noise", data));

#[cfg(not(fuzzing))]
fn main() {
    fuzz::replay_main("p2p_noise");
}

//! The bodies of gossip-ledger's fuzz targets, as plain functions of the
//! input bytes. Each `fuzz_targets/NAME.rs` binary calls one of them, under
//! libFuzzer when `cargo fuzz` builds it (`--cfg fuzzing`) and as a replay
//! tool of the files it is given otherwise; `tests/replay.rs` runs every
//! file of `corpus/NAME/` through `run(NAME, ..)` in a normal `cargo test`,
//! so CI replays the corpora in seconds. A body panics exactly when it
//! found a bug: a crash, or a broken round trip or invariant.
//!
//! Targets, by what a stranger can reach: `noise` (the transport's
//! handshake and encrypted framing), `p2p` (frames split anywhere, every
//! message decoder, the handshake and session core), `codec` (tx and
//! block decoding with canonical round trips), `validate` (stateless tx and
//! block checks), `mempool` and `chain` (operation sequences checked after
//! each step), `rpc` (the real router), `wallet` (amount and address
//! parsing) and `difficulty` (compact targets, work and retargeting against
//! a `num-bigint` reference).

pub mod chain;
pub mod codec;
pub mod dev;
pub mod difficulty;
pub mod mempool;
pub mod noise;
pub mod p2p;
pub mod rpc;
pub mod validate;
pub mod wallet;

/// A target's body: panics exactly when it found a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (the binary, the corpus dir) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("p2p_frames", p2p::frames),
    ("p2p_message", p2p::message),
    ("p2p_session", p2p::session),
    ("p2p_noise", noise::transport),
    ("tx_decode", codec::tx_decode),
    ("block_decode", codec::block_decode),
    ("validate", validate::validate),
    ("mempool_ops", mempool::ops),
    ("chain_ops", chain::ops),
    ("rpc", rpc::request),
    ("wallet_parse", wallet::parse),
    ("difficulty", difficulty::check),
];

/// Runs target `name` on `data`. Panics for an unknown name.
pub fn run(name: &str, data: &[u8]) {
    let (_, body) = TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    body(data)
}

/// `main` of a target binary outside `cargo fuzz`: runs `name` on every
/// file named on the command line (a directory: every file in it), e.g. to
/// replay one crash under a debugger.
pub fn replay_main(name: &str) {
    let mut count = 0usize;
    for arg in std::env::args_os().skip(1) {
        for path in corpus_files(std::path::Path::new(&arg)) {
            let data = std::fs::read(&path).expect("readable input");
            run(name, &data);
            count += 1;
        }
    }
    eprintln!("{name}: {count} inputs ran without a failure");
}

/// The files of `path` (itself when it is a file), sorted.
pub fn corpus_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map(|dir| {
            dir.filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

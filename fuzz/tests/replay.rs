//! Replays every corpus file of every fuzz target (`fuzz/corpus/NAME/`)
//! through the target's body, in a normal build: real signatures and
//! proof-of-work, so a seed input may stop earlier than under the fuzzer,
//! but none may crash. This is how CI checks that nothing a fuzzer once
//! found comes back (`cargo test --workspace`, seconds).

use std::path::Path;

fn corpus_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

#[test]
fn every_target_has_a_corpus_and_replays_it() {
    for (name, body) in fuzz::TARGETS {
        let files = fuzz::corpus_files(&corpus_dir(name));
        assert!(!files.is_empty(), "no corpus for {name}");
        for path in files {
            let data = std::fs::read(&path).expect("readable");
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{name} failed on {}", path.display());
        }
    }
}

#[test]
fn every_target_has_a_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_targets");
    for (name, _) in fuzz::TARGETS {
        assert!(
            dir.join(format!("{name}.rs")).is_file(),
            "no binary for {name}"
        );
    }
}

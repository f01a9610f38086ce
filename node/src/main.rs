//! `ledger-node`: everything lives in the `node` library (`node::cli`).

// Fuzz builds accept stand-in signatures and skip proof-of-work
// (`ledger::keys`): such a build must never be a node.
#[cfg(fuzzing)]
compile_error!("ledger-node must never be built with --cfg fuzzing (see fuzz/README.md)");

fn main() -> std::process::ExitCode {
    node::cli::main_with_args(std::env::args_os())
}

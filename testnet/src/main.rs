//! The `testnet` binary: parses the command line and runs one command (see
//! `cmd`). Everything reusable lives in the `testnet` library.

// Fuzz builds accept stand-in signatures and skip proof-of-work
// (`ledger::keys`): such a build must never be a node.
#[cfg(fuzzing)]
compile_error!("testnet must never be built with --cfg fuzzing (see fuzz/README.md)");

mod cmd;

fn main() -> std::process::ExitCode {
    cmd::main_with_args(std::env::args_os())
}

//! The `testnet` binary: parses the command line and runs one command (see
//! `cmd`). Everything reusable lives in the `testnet` library.

mod cmd;

fn main() -> std::process::ExitCode {
    cmd::main_with_args(std::env::args_os())
}

//! The `wallet-cli` binary: everything lives in the library so that
//! `testnet wallet ...` runs exactly the same program.

fn main() -> std::process::ExitCode {
    wallet_cli::cli::main_with_args(std::env::args_os())
}

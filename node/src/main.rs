//! `ledger-node`: everything lives in the `node` library (`node::cli`).

fn main() -> std::process::ExitCode {
    node::cli::main_with_args(std::env::args_os())
}

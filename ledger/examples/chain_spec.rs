//! Prints a chain spec as JSON, as `--chain FILE` reads it: a built-in one
//! (`cargo run -p ledger --example chain_spec -- dev`), or a new chain made
//! from it with another name, address prefix and allocations
//! (`... -- dev mychain my`), which keeps the dev accounts' keys but writes
//! their addresses with the new prefix.

use ledger::chainspec::{dev_accounts, Allocation};
use ledger::{Amount, ChainSpec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args.first().map(String::as_str).unwrap_or("dev");
    let Some(mut spec) = ChainSpec::builtin(base) else {
        eprintln!("usage: chain_spec [dev|regtest] [NEW_NAME NEW_PREFIX]");
        std::process::exit(2);
    };
    if let (Some(name), Some(prefix)) = (args.get(1), args.get(2)) {
        spec.name = name.clone();
        spec.address_prefix = prefix.clone();
        spec.allocations = dev_accounts()
            .iter()
            .take(2)
            .map(|account| Allocation {
                address: account.address.to_bech32(prefix),
                balance: Amount::from_coins(21_000_000).expect("fits"),
            })
            .collect();
    }
    if let Err(error) = spec.validate() {
        eprintln!("{error}");
        std::process::exit(1);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&spec).expect("a spec always serializes")
    );
}

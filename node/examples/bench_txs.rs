//! Writes pre-signed dev-account transfers as a Lua table, for the
//! `POST /v1/txs` benchmark with `wrk` (see `node/bench/post_txs.lua`).
//!
//! `cargo run --release -p node --example bench_txs -- COUNT OUT.lua [json|raw] [CHAIN]`
//!
//! Transactions are ordered nonce-major (all ten senders at nonce 0, then
//! at nonce 1, ...), so wrk threads taking every k-th body each send every
//! sender's nonces in increasing order.

use ledger::chainspec::{dev_accounts, dev_secret_key, DEV_ACCOUNTS};
use ledger::json::TxJson;
use ledger::{Amount, ChainSpec, Transaction};
use std::io::Write;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args
        .first()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(50_000);
    let out = args.get(1).cloned().unwrap_or_else(|| "txs.lua".into());
    let raw = args.get(2).is_some_and(|format| format == "raw");
    let spec = ChainSpec::load(args.get(3).map_or("regtest", String::as_str))?;
    let genesis = spec.genesis_hash();
    let keys: Vec<_> = (0..DEV_ACCOUNTS).map(dev_secret_key).collect();
    let accounts = dev_accounts();
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    writeln!(file, "return {{")?;
    for index in 0..count {
        let sender = index % DEV_ACCOUNTS;
        let nonce = (index / DEV_ACCOUNTS) as u64;
        let tx = Transaction::new_signed(
            &keys[sender],
            &genesis,
            accounts[(sender + 1) % DEV_ACCOUNTS].address,
            Amount::from_base_units(1 + index as u64),
            spec.min_fee,
            nonce,
            String::new(),
        );
        let body = if raw {
            serde_json::json!({ "raw": hex::encode(ledger::encoding::encode(&tx)) }).to_string()
        } else {
            serde_json::to_string(&TxJson::from_tx(&tx, &spec))?
        };
        writeln!(file, "[==[{body}]==],")?;
    }
    writeln!(file, "}}")?;
    file.flush()?;
    eprintln!("wrote {count} transactions to {out}");
    Ok(())
}

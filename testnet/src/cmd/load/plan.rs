//! Set-up, phase 1 of a load run: every node must be on one chain, the
//! senders are picked (and, when derived, funded from the dev accounts and
//! confirmed on every node), their nonces read, and the flags turned into
//! one `Plan` that the later phases read. Nothing downstream reads
//! `LoadArgs`.

use super::{sender_keys, LoadArgs, Sender, WireFormat, TRANSFER_AMOUNT};
use anyhow::{bail, Context};
use ledger::chainspec::{dev_accounts, DEV_ACCOUNTS};
use ledger::json::StatusJson;
use ledger::Height;
use ledger::{Address, Amount, ChainSpec, Transaction};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use testnet::api::{Api, ApiError, TxFormat};

/// A load run as decided before it starts.
pub(super) struct Plan {
    pub(super) apis: Vec<Api>,
    pub(super) spec: ChainSpec,
    /// The fee of every transfer: the nodes' minimum.
    pub(super) fee: Amount,
    /// The lowest node height at the start: later blocks may hold ours.
    pub(super) start_height: u64,
    pub(super) n_senders: usize,
    pub(super) tps: u32,
    pub(super) duration: Duration,
    /// Most unconfirmed transactions one sender keeps in flight.
    pub(super) window: u64,
    pub(super) format: TxFormat,
    pub(super) drain_timeout: Duration,
    pub(super) json: bool,
}

/// Reads the nodes, checks they share the chain, picks and funds the
/// senders and reads their nonces.
pub(super) async fn prepare(args: &LoadArgs) -> anyhow::Result<(Plan, Vec<Sender>)> {
    let client = Api::client(Duration::from_secs(15))?;
    let apis: Vec<Api> = args
        .rpc_url
        .iter()
        .map(|url| Api::new(client.clone(), url))
        .collect();
    let n_urls = apis.len();
    let statuses: Vec<StatusJson> = futures::future::try_join_all(apis.iter().map(Api::status))
        .await
        .context("cannot read the status of every node")?;
    let first = &statuses[0];
    if let Some((api, other)) = apis
        .iter()
        .zip(&statuses)
        .find(|(_, status)| status.genesis_hash != first.genesis_hash)
    {
        bail!(
            "{} is on another chain ({} genesis {}) than {}",
            api.url(),
            other.chain,
            other.genesis_hash,
            apis[0].url()
        );
    }
    let spec = match &args.chain {
        Some(chain) => ChainSpec::load(chain)
            .with_context(|| format!("cannot use chain {chain:?}"))?,
        None => ChainSpec::builtin(&first.chain).with_context(|| {
            format!(
                "the nodes run chain {}: give its chain file with --chain (its genesis must pay the dev accounts)",
                first.chain
            )
        })?,
    };
    if spec.genesis_hash() != first.genesis_hash {
        bail!(
            "the nodes' genesis is {}, not chain {}'s {}",
            first.genesis_hash,
            spec.name,
            spec.genesis_hash()
        );
    }
    let fee = first.min_fee;
    let start_height = statuses
        .iter()
        .map(|status| status.height)
        .min()
        .unwrap_or(Height::ZERO);
    let senders_count = args
        .senders
        .map_or_else(|| default_senders(args.tps), |count| count as usize);
    progress!(
        "{n_urls} nodes on {} at height {}, {} senders, target {} tx/s for {} s",
        spec.name,
        start_height,
        senders_count,
        args.tps,
        args.duration
    );
    for limit in rate_limits(&spec, args.tps, senders_count, args.window) {
        progress!("note: {limit}");
    }

    let mut senders: Vec<Sender> = sender_keys(senders_count)
        .into_iter()
        .enumerate()
        .map(|(index, key)| Sender {
            address: Address::from_public_key(&key.public_key()),
            key,
            url: index % n_urls,
            nonce: 0,
        })
        .collect();
    // Each sender must afford its share with a wide margin (the pacer may
    // give one sender more than its share).
    let per_tx = TRANSFER_AMOUNT.checked_add(fee).context("fee too large")?;
    let share = (u64::from(args.tps) * args.duration).div_ceil(senders_count as u64) + args.window;
    let need = per_tx
        .checked_mul(share.saturating_mul(4))
        .and_then(|amount| amount.checked_add(Amount::from_coins(1)?))
        .context("funding amount overflows")?;
    if senders_count > DEV_ACCOUNTS {
        fund_senders(
            &apis,
            &spec,
            &senders,
            need,
            fee,
            args.window,
            Duration::from_secs(args.funding_timeout),
        )
        .await?;
    }
    for sender in &mut senders {
        let address = spec.format_address(&sender.address);
        let account = apis[sender.url].account(&address).await?;
        if account.balance < need && senders_count <= DEV_ACCOUNTS {
            bail!(
                "sender {address} holds {} coins, less than the {} this run needs",
                account.balance.to_coins_string(),
                need.to_coins_string()
            );
        }
        sender.nonce = account.next_nonce;
    }
    let plan = Plan {
        apis,
        spec,
        fee,
        start_height: start_height.0,
        n_senders: senders_count,
        tps: args.tps,
        duration: Duration::from_secs(args.duration),
        window: args.window,
        format: match args.tx_format {
            WireFormat::Raw => TxFormat::Raw,
            WireFormat::Json => TxFormat::Json,
        },
        drain_timeout: Duration::from_secs(args.drain_timeout),
        json: args.json,
    };
    Ok((plan, senders))
}

/// Senders when `--senders` is not given: one per 10 tx/s, at least 10. A
/// sender keeps at most `--window` txs unconfirmed, and a tx takes a block
/// interval or two to confirm, so fewer senders cannot reach the rate.
pub(super) fn default_senders(tps: u32) -> usize {
    (tps as usize).div_ceil(10).max(DEV_ACCOUNTS)
}

/// Why the run may fall short of `tps`, said before it starts: the senders'
/// windows, or the chain's block capacity (past which the nodes refuse
/// with `busy` and the run counts the refusals).
fn rate_limits(spec: &ChainSpec, tps: u32, senders: usize, window: u64) -> Vec<String> {
    let mut limits = Vec::new();
    let block_secs = (spec.block_time_ms as f64 / 1000.0).max(0.5);
    // About 1.5 block intervals from submission to confirmation.
    let by_windows = senders as f64 * window as f64 / (1.5 * block_secs);
    if by_windows < f64::from(tps) {
        limits.push(format!(
            "{senders} senders with {window} txs each in flight reach about {by_windows:.0} tx/s at {block_secs} s blocks; raise --senders to about {}",
            (f64::from(tps) * 1.5 * block_secs / window as f64).ceil()
        ));
    }
    // A transfer without memo is about 150 bytes on the chain.
    let by_blocks = spec.max_block_bytes as f64 / 150.0 / block_secs;
    if by_blocks < f64::from(tps) {
        limits.push(format!(
            "blocks of {} bytes every {block_secs} s confirm at most about {by_blocks:.0} tx/s; past that the nodes answer 429 busy and the refusals are counted by code",
            spec.max_block_bytes
        ));
    }
    limits
}

/// Funds derived senders from the dev accounts: each dev account pays every
/// tenth sender, at most `window` at a time (the nonce limit), and every
/// payment must be confirmed on every node before the run starts. Senders
/// that already hold enough (an earlier run) are skipped.
async fn fund_senders(
    apis: &[Api],
    spec: &ChainSpec,
    senders: &[Sender],
    need: Amount,
    fee: Amount,
    window: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let addresses: Vec<String> = senders
        .iter()
        .map(|sender| spec.format_address(&sender.address))
        .collect();
    let balances = balances_everywhere(apis, &addresses).await?;
    let mut unfunded: Vec<usize> = (0..senders.len())
        .filter(|&index| balances[index] < need)
        .collect();
    if unfunded.is_empty() {
        progress!("all {} senders already funded", senders.len());
        return Ok(());
    }
    progress!(
        "funding {} sender accounts with {} coins each...",
        unfunded.len(),
        need.to_coins_string()
    );
    let funders = dev_accounts();
    let genesis = spec.genesis_hash();
    while !unfunded.is_empty() {
        // One wave: up to `window` payments per dev account.
        let mut wave: Vec<usize> = Vec::new();
        let mut per_funder = vec![0u64; funders.len()];
        unfunded.retain(|&index| {
            let funder = index % funders.len();
            if per_funder[funder] < window {
                per_funder[funder] += 1;
                wave.push(index);
                false
            } else {
                true
            }
        });
        let mut next_nonce = HashMap::new();
        for &index in &wave {
            let funder = &funders[index % funders.len()];
            let nonce = match next_nonce.get(&funder.index) {
                Some(&nonce) => nonce,
                None => {
                    apis[0]
                        .account(&spec.format_address(&funder.address))
                        .await?
                        .next_nonce
                }
            };
            let tx = Transaction::new_signed(
                &funder.secret_key,
                &genesis,
                senders[index].address,
                need,
                fee,
                nonce,
                String::new(),
            );
            apis[0]
                .submit_tx(&tx, spec, TxFormat::Json)
                .await
                .with_context(|| {
                    format!("funding {} from dev:{}", addresses[index], funder.index)
                })?;
            next_nonce.insert(funder.index, nonce + 1);
        }
        loop {
            let balances = balances_everywhere(apis, &addresses).await?;
            if wave.iter().all(|&index| balances[index] >= need) {
                break;
            }
            if Instant::now() >= deadline {
                bail!("funding transactions not confirmed on every node within {} s (is any node mining?)", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        progress!("funded {} senders, {} to go", wave.len(), unfunded.len());
    }
    Ok(())
}

/// Each address's smallest confirmed balance across all nodes.
async fn balances_everywhere(apis: &[Api], addresses: &[String]) -> anyhow::Result<Vec<Amount>> {
    use futures::StreamExt;
    let mut lowest = vec![Amount::MAX; addresses.len()];
    for api in apis {
        let answers: Vec<(usize, Result<Amount, ApiError>)> =
            futures::stream::iter(addresses.iter().enumerate())
                .map(|(index, address)| async move {
                    (
                        index,
                        api.account(address).await.map(|account| account.balance),
                    )
                })
                .buffer_unordered(32)
                .collect()
                .await;
        for (index, answer) in answers {
            lowest[index] = lowest[index].min(answer?);
        }
    }
    Ok(lowest)
}

//! `testnet check`: polls `GET /v1/state` on every given node until all of
//! them report the same tip and the same state digest (exit 0), or the
//! timeout passes (exit 1, printing each node's height, tip and digest and
//! which ones differ from the rest).
//!
//! The state digest covers every account, so equal digests at equal tips
//! mean the nodes agree on the whole ledger, not just on a block hash.

use anyhow::Context;
use ledger::json::StateJson;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use testnet::api::{normalize_url, Api};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Node RPC URLs, comma-separated (or repeat the flag)
    #[arg(long, value_delimiter = ',', required = true, value_parser = parse_url)]
    pub rpc_url: Vec<String>,
    /// Seconds to wait for agreement before failing
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

pub(crate) fn parse_url(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty URL".to_string());
    }
    Ok(normalize_url(text))
}

/// What one node answered.
pub(crate) type Answer = Result<StateJson, String>;

/// Every node's `GET /v1/state`, asked at once, in the order of `apis`.
pub(crate) async fn states(apis: &[Api]) -> Vec<Answer> {
    futures::future::join_all(
        apis.iter()
            .map(|api| async move { api.state().await.map_err(|error| error.to_string()) }),
    )
    .await
}

/// True when every node answered with the same tip and digest.
pub(crate) fn all_agree(answers: &[Answer]) -> bool {
    let mut states = answers.iter().map(|answer| answer.as_ref().ok());
    match states.next() {
        Some(Some(first)) => states.all(|state| {
            state.is_some_and(|state| state.tip == first.tip && state.digest == first.digest)
        }),
        _ => false,
    }
}

/// One line per node, marking those outside the largest agreeing group.
pub(crate) fn describe(urls: &[String], answers: &[Answer]) -> Vec<String> {
    let key = |answer: &Answer| {
        answer
            .as_ref()
            .ok()
            .map(|state| (state.tip, state.digest.clone()))
    };
    // The largest group of identical (tip, digest) is "the majority"; ties
    // go to the group seen first, i.e. the earliest URL.
    let mut best: Option<(usize, usize)> = None; // (index of a member, size)
    for (index, answer) in answers.iter().enumerate() {
        if key(answer).is_none() {
            continue;
        }
        let size = answers
            .iter()
            .filter(|other| key(other) == key(answer))
            .count();
        let larger = match best {
            None => true,
            Some((_, best_size)) => size > best_size,
        };
        if larger {
            best = Some((index, size));
        }
    }
    let majority = best.and_then(|(index, _)| key(&answers[index]));
    urls.iter()
        .zip(answers)
        .map(|(url, answer)| match answer {
            Ok(state) => {
                let differs = majority.as_ref() != key(answer).as_ref();
                let same_tip_other_state = majority
                    .as_ref()
                    .is_some_and(|(tip, digest)| *tip == state.tip && *digest != state.digest);
                let mark = if same_tip_other_state {
                    "  <- DIFFERENT STATE AT THE SAME TIP"
                } else if differs {
                    "  <- differs"
                } else {
                    ""
                };
                format!(
                    "{url}  height {}  tip {}  digest {}{mark}",
                    state.height, state.tip, state.digest
                )
            }
            Err(error) => format!("{url}  unreachable: {error}  <- differs"),
        })
        .collect()
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(check(args))
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let client = Api::client(Duration::from_secs(5))?;
    let apis: Vec<Api> = args
        .rpc_url
        .iter()
        .map(|url| Api::new(client.clone(), url))
        .collect();
    let urls: Vec<String> = apis.iter().map(|api| api.url().to_string()).collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    loop {
        let answers = states(&apis).await;
        if all_agree(&answers) {
            if let Some(Ok(state)) = answers.first() {
                println!(
                    "converged: {} nodes at height {} tip {} digest {} ({} accounts) after {:.1} s",
                    apis.len(),
                    state.height,
                    state.tip,
                    state.digest,
                    state.accounts,
                    started.elapsed().as_secs_f64()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            println!("not converged after {} s:", args.timeout);
            for line in describe(&urls, &answers) {
                println!("  {line}");
            }
            return Ok(ExitCode::FAILURE);
        }
        // Poll again soon: tips move every block, so agreement is a
        // condition to catch when it holds, not a state to wait for once.
        tokio::time::sleep(
            Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::Height;
    use ledger::{Amount, BlockHash};

    fn state(tip: u8, digest: &str) -> Answer {
        Ok(StateJson {
            height: Height(u64::from(tip)),
            tip: BlockHash(ledger::Hash256([tip; 32])),
            accounts: 10,
            total_supply: Amount::from_base_units(1),
            digest: digest.to_string(),
        })
    }

    #[test]
    fn agreement_needs_equal_tips_and_digests_everywhere() {
        assert!(all_agree(&[state(1, "a"), state(1, "a")]));
        assert!(!all_agree(&[state(1, "a"), state(2, "a")]));
        assert!(!all_agree(&[state(1, "a"), state(1, "b")]));
        assert!(!all_agree(&[state(1, "a"), Err("down".into())]));
        assert!(!all_agree(&[]));
    }

    #[test]
    fn description_marks_the_odd_ones_out() {
        let urls: Vec<String> = (1..=4).map(|index| format!("http://n{index}")).collect();
        let lines = describe(
            &urls,
            &[state(1, "a"), state(2, "b"), state(1, "a"), state(1, "z")],
        );
        assert!(!lines[0].contains("<-"), "{}", lines[0]);
        assert!(lines[1].ends_with("<- differs"), "{}", lines[1]);
        assert!(lines[1].contains("height 2"));
        assert!(!lines[2].contains("<-"));
        assert!(lines[3].contains("DIFFERENT STATE"), "{}", lines[3]);
        let lines = describe(
            &urls[..2],
            &[Err("connection refused".into()), state(1, "a")],
        );
        assert!(lines[0].contains("unreachable: connection refused"));
        assert!(!lines[1].contains("<-"));
    }
}

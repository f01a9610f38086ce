//! Sending, phase 2 of a load run: one task per sender, pinned to one
//! URL so its nonces arrive in order at one node, keeping at most the
//! plan's window unconfirmed (nodes refuse nonces far ahead of the chain),
//! and a shared `Pacer` that spaces all submissions at the target rate.

use super::plan::Plan;
use super::watch::{Accepted, Run};
use super::{sink_address, Sender, TRANSFER_AMOUNT};
use anyhow::Context;
use ledger::{Address, Amount, Transaction};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testnet::api::{ApiError, TxFormat};

/// Spaces submissions `1/tps` apart. Falling behind (a stalled sender, a
/// slow node) lets at most `max_burst` of lag be made up at once, so a
/// stall is not followed by an unbounded burst.
pub(super) struct Pacer {
    interval: Duration,
    max_burst: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub(super) fn new(tps: u32, start: Instant) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / f64::from(tps.max(1))),
            max_burst: Duration::from_millis(100),
            next: Mutex::new(start),
        }
    }

    /// The instant the caller may send its next transaction.
    pub(super) fn reserve(&self, now: Instant) -> Instant {
        let mut next = ledger::sync::lock(&self.next);
        let floor = now.checked_sub(self.max_burst).unwrap_or(now);
        if *next < floor {
            *next = floor;
        }
        let due = *next;
        *next += self.interval;
        due
    }
}

/// What a sender does after a refusal.
enum Retry {
    /// Send the same nonce again after this long.
    After(Duration),
    /// Ask the node for the sender's next nonce first.
    Resync,
}

/// Runs every sender until `end`, with a progress line every 10 s.
pub(super) async fn send_all(
    plan: &Plan,
    run: &Arc<Run>,
    senders: Vec<Sender>,
    start: Instant,
    end: Instant,
) -> anyhow::Result<()> {
    let pacer = Arc::new(Pacer::new(plan.tps, start));
    let sends = Sends {
        end,
        window: plan.window,
        sink: sink_address(),
        fee: plan.fee,
        format: plan.format,
    };
    let mut tasks = Vec::with_capacity(senders.len());
    for (index, sender) in senders.into_iter().enumerate() {
        let run = Arc::clone(run);
        let pacer = Arc::clone(&pacer);
        tasks.push(tokio::spawn(async move {
            send_loop(&run, &pacer, sends, index, sender).await
        }));
    }
    let mut last_report = Instant::now();
    for task in tasks {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                let tracker = run.tracker();
                progress!(
                    "{:.0} s: submitted {}, accepted {}, confirmed {}",
                    start.elapsed().as_secs_f64(),
                    tracker.submitted,
                    tracker.accepted.len(),
                    tracker.confirmed
                );
            }
        }
        task.await.context("a sender task failed")?;
    }
    Ok(())
}

/// What every sender task shares besides the run and the pacer.
#[derive(Clone, Copy)]
struct Sends {
    /// When sending stops.
    end: Instant,
    /// Most unconfirmed transactions one sender keeps in flight.
    window: u64,
    /// Where every transfer goes.
    sink: Address,
    fee: Amount,
    format: TxFormat,
}

/// One sender's loop: wait for window room, wait for the pacer, sign, post.
async fn send_loop(run: &Run, pacer: &Pacer, sends: Sends, index: usize, sender: Sender) {
    let Sends {
        end,
        window,
        sink,
        fee,
        format,
    } = sends;
    let mut nonce = sender.nonce;
    let api = &run.apis[sender.url];
    let genesis = run.spec.genesis_hash();
    let address_text = run.spec.format_address(&sender.address);
    loop {
        // Room in the window: fewer than `window` of ours unconfirmed.
        loop {
            let notified = run.confirmations.notified();
            if run.tracker().outstanding(index) < window {
                break;
            }
            if Instant::now() >= end {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
        let due = pacer.reserve(Instant::now());
        if due >= end {
            return;
        }
        tokio::time::sleep_until(due.into()).await;
        let tx = Transaction::new_signed(
            &sender.key,
            &genesis,
            sink,
            TRANSFER_AMOUNT,
            fee,
            nonce,
            String::new(),
        );
        let txid = tx.txid();
        let submitted_at = Instant::now();
        let result = api.submit_tx(&tx, &run.spec, format).await;
        // What to do after a refusal; decided under the lock, done after.
        let recovery = {
            let mut tracker = run.tracker();
            tracker.submitted += 1;
            match result {
                Ok(answered) => {
                    if answered != txid {
                        tracker.txid_mismatches += 1;
                    }
                    let record = Accepted {
                        submitted_at,
                        url: sender.url,
                        sender: index,
                    };
                    tracker.accept(txid, record);
                    nonce += 1;
                    None
                }
                Err(error) => {
                    tracker.reject(error.code());
                    Some(match &error {
                        // Refused before it was taken: the same nonce again
                        // when the node says, or once a block makes room.
                        ApiError::Rejected {
                            retry_after: Some(wait),
                            ..
                        } => Retry::After(*wait),
                        _ if error.code() == "mempool_full" => {
                            Retry::After(Duration::from_millis(100))
                        }
                        _ => Retry::Resync,
                    })
                }
            }
        };
        match recovery {
            None => {}
            Some(Retry::After(wait)) => {
                let until = (Instant::now() + wait).min(end);
                tokio::time::sleep_until(until.into()).await;
            }
            Some(Retry::Resync) => {
                // Whether it was taken is unknown (a timeout) or our nonce
                // is off: ask the node where we stand.
                if let Ok(account) = api.account(&address_text).await {
                    nonce = account.next_nonce;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_sends_and_limits_catch_up() {
        let start = Instant::now();
        let pacer = Pacer::new(1000, start);
        let first = pacer.reserve(start);
        let second = pacer.reserve(start);
        assert_eq!(first, start);
        assert_eq!(second - first, Duration::from_millis(1));
        // After a 5 s stall, at most 100 ms of backlog is made up.
        let later = start + Duration::from_secs(5);
        let due = pacer.reserve(later);
        assert_eq!(due, later - Duration::from_millis(100));
        let mut count_past = 0;
        while pacer.reserve(later) < later {
            count_past += 1;
        }
        assert_eq!(count_past, 99);
    }
}

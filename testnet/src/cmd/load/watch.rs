//! Watching, alongside phases 2 and 3 of a load run: one task per URL
//! reads `/v1/events` (block arrivals start and stop propagation clocks,
//! reorgs undo confirmations), one polls each tip to catch blocks whose
//! events were missed, and one fetches each new block once to count our
//! transactions in it. All of it lands in the `Tracker`; `drain` waits
//! for the last confirmations and for the nodes to agree on one tip.

use super::plan::Plan;
use anyhow::bail;
use ledger::json::{BlockJson, ReorgJson};
use ledger::Height;
use ledger::{BlockHash, ChainSpec, TxId};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use testnet::api::Api;
use testnet::sse::SseParser;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// The watcher tasks of one run, started before the first send.
pub(super) struct Watchers {
    pub(super) run: Arc<Run>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    fetcher: JoinHandle<()>,
}

impl Watchers {
    /// Starts the watchers and waits until every node's event stream is
    /// open (at most 10 s).
    pub(super) async fn start(plan: &Plan, n_senders: usize) -> anyhow::Result<Watchers> {
        let n_urls = plan.apis.len();
        let (fetch_queue, fetch_receiver) = mpsc::unbounded_channel();
        let run = Arc::new(Run {
            apis: plan.apis.clone(),
            spec: plan.spec.clone(),
            tracker: Mutex::new(Tracker {
                n_urls,
                start_height: plan.start_height,
                sender_accepted: vec![0; n_senders],
                sender_confirmed: vec![0; n_senders],
                ..Tracker::default()
            }),
            confirmations: Notify::new(),
            fetch_queue,
            stream_client: Api::stream_client()?,
        });
        let (stop_sender, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        let connected: Vec<Arc<AtomicBool>> = (0..n_urls)
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        for (url, flag) in connected.iter().enumerate() {
            tasks.push(tokio::spawn(watch_events(
                run.clone(),
                url,
                flag.clone(),
                stop.clone(),
            )));
            tasks.push(tokio::spawn(poll_tips(run.clone(), url, stop.clone())));
        }
        let fetcher = tokio::spawn(fetch_blocks(run.clone(), fetch_receiver, stop.clone()));
        let watchers = Watchers {
            run,
            stop: stop_sender,
            tasks,
            fetcher,
        };
        let connect_deadline = Instant::now() + Duration::from_secs(10);
        while !connected.iter().all(|flag| flag.load(Ordering::Relaxed)) {
            if Instant::now() >= connect_deadline {
                bail!("could not open /v1/events on every node within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(watchers)
    }

    /// Phase 3: waits until every accepted tx is in a block, then until
    /// every node is on one tip (at least 10 s for that, even past
    /// `deadline`), and stops the watchers. The converged height, if any.
    pub(super) async fn drain(self, plan: &Plan, deadline: Instant) -> Option<u64> {
        let run = &self.run;
        loop {
            let notified = run.confirmations.notified();
            {
                let tracker = run.tracker();
                if tracker.confirmed >= tracker.accepted.len() as u64 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            // A `Notified` sees `notify_waiters` from its creation on, so
            // none is missed between the check and the wait; the timeout
            // rechecks the deadline.
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
        let converged_height = wait_converged(
            &plan.apis,
            deadline.max(Instant::now() + Duration::from_secs(10)),
        )
        .await;
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = self.fetcher.await;
        converged_height
    }
}

/// A block some node announced, with what we learned about it.
#[derive(Debug)]
pub(super) struct SeenBlock {
    /// When it arrived at each URL, and whether through an event (exact)
    /// or through polling (late, excluded from propagation figures).
    pub(super) arrivals: Vec<Option<(Instant, bool)>>,
    /// Its txids once fetched.
    pub(super) txids: Option<Vec<TxId>>,
}

impl SeenBlock {
    pub(super) fn first_arrival(&self) -> Option<Instant> {
        self.arrivals.iter().flatten().map(|(at, _)| *at).min()
    }
}

/// An accepted transaction.
#[derive(Debug, Clone, Copy)]
pub(super) struct Accepted {
    pub(super) submitted_at: Instant,
    pub(super) url: usize,
    pub(super) sender: usize,
}

/// Everything the run learns, behind one std mutex: every critical section
/// is a few map operations and none awaits.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    pub(super) n_urls: usize,
    pub(super) start_height: u64,
    pub(super) accepted: HashMap<TxId, Accepted>,
    /// Txid -> the block that holds it, for every fetched block still on a
    /// best chain as far as the events told us.
    pub(super) included: HashMap<TxId, BlockHash>,
    pub(super) blocks: HashMap<BlockHash, SeenBlock>,
    pub(super) sender_accepted: Vec<u64>,
    pub(super) sender_confirmed: Vec<u64>,
    pub(super) confirmed: u64,
    pub(super) submitted: u64,
    pub(super) rejected: BTreeMap<String, u64>,
    pub(super) txid_mismatches: u64,
    pub(super) reorgs: u64,
    /// Events the nodes dropped because we read too slowly (`lagged`).
    pub(super) events_missed: u64,
}

impl Tracker {
    /// Records that `hash` reached URL `url`. True when the block was
    /// unknown until now and must be fetched.
    pub(super) fn block_arrived(
        &mut self,
        hash: BlockHash,
        url: usize,
        at: Instant,
        via_event: bool,
    ) -> bool {
        let n_urls = self.n_urls;
        let mut new = false;
        let block = self.blocks.entry(hash).or_insert_with(|| {
            new = true;
            SeenBlock {
                arrivals: vec![None; n_urls],
                txids: None,
            }
        });
        if let Some(slot) = block.arrivals.get_mut(url) {
            if slot.is_none() {
                *slot = Some((at, via_event));
            }
        }
        new
    }

    pub(super) fn knows_block(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    pub(super) fn arrived_at(&self, hash: &BlockHash, url: usize) -> bool {
        self.blocks
            .get(hash)
            .and_then(|block| block.arrivals.get(url))
            .is_some_and(Option::is_some)
    }

    pub(super) fn block_fetched(&mut self, hash: BlockHash, txids: Vec<TxId>) {
        self.include(hash, &txids);
        if let Some(block) = self.blocks.get_mut(&hash) {
            block.txids = Some(txids);
        }
    }

    /// Marks `txids` as held by block `hash`, counting newly confirmed ones.
    pub(super) fn include(&mut self, hash: BlockHash, txids: &[TxId]) {
        for txid in txids {
            let previous = self.included.insert(*txid, hash);
            if previous.is_none() {
                if let Some(accepted) = self.accepted.get(txid) {
                    self.confirmed += 1;
                    self.sender_confirmed[accepted.sender] += 1;
                }
            }
        }
    }

    pub(super) fn accept(&mut self, txid: TxId, accepted: Accepted) {
        self.sender_accepted[accepted.sender] += 1;
        if self.accepted.insert(txid, accepted).is_none() && self.included.contains_key(&txid) {
            // Its block was fetched before the submission's answer came.
            self.confirmed += 1;
            self.sender_confirmed[accepted.sender] += 1;
        }
    }

    /// A node switched branches: the transactions of the blocks it
    /// disconnected are no longer confirmed (unless meanwhile seen in
    /// another block), and those of the blocks it connected are, which
    /// matters when those blocks were seen and fetched before, on another
    /// node, and so will not be fetched again. Different nodes may report
    /// opposite reorgs; each report leaves the counts consistent.
    pub(super) fn reorg(&mut self, disconnected: &[BlockHash], connected: &[BlockHash]) {
        self.reorgs += 1;
        for hash in disconnected {
            let Some(txids) = self.blocks.get(hash).and_then(|block| block.txids.clone()) else {
                continue;
            };
            for txid in txids {
                if self.included.get(&txid) == Some(hash) {
                    self.included.remove(&txid);
                    if let Some(accepted) = self.accepted.get(&txid) {
                        self.confirmed -= 1;
                        self.sender_confirmed[accepted.sender] -= 1;
                    }
                }
            }
        }
        for hash in connected {
            if let Some(txids) = self.blocks.get(hash).and_then(|block| block.txids.clone()) {
                self.include(*hash, &txids);
            }
        }
    }

    pub(super) fn outstanding(&self, sender: usize) -> u64 {
        self.sender_accepted[sender].saturating_sub(self.sender_confirmed[sender])
    }

    pub(super) fn reject(&mut self, code: &str) {
        *self.rejected.entry(code.to_string()).or_insert(0) += 1;
    }

    /// When an accepted tx counts as confirmed: when its block reached the
    /// node it was submitted to, else (that event missed) anywhere first.
    pub(super) fn confirmed_at(&self, txid: &TxId, accepted: &Accepted) -> Option<Instant> {
        let block = self.blocks.get(self.included.get(txid)?)?;
        block
            .arrivals
            .get(accepted.url)
            .copied()
            .flatten()
            .map(|(at, _)| at)
            .or_else(|| block.first_arrival())
    }
}

/// Shared by the tasks of one run.
pub(super) struct Run {
    pub(super) apis: Vec<Api>,
    pub(super) spec: ChainSpec,
    pub(super) tracker: Mutex<Tracker>,
    /// Woken whenever a block's transactions have been counted.
    pub(super) confirmations: Notify,
    pub(super) fetch_queue: mpsc::UnboundedSender<(BlockHash, usize)>,
    pub(super) stream_client: reqwest::Client,
}

impl Run {
    pub(super) fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // A panic elsewhere must not hide the figures gathered so far.
        ledger::sync::lock(&self.tracker)
    }

    pub(super) fn note_block(
        &self,
        hash: BlockHash,
        height: u64,
        url: usize,
        at: Instant,
        via_event: bool,
    ) {
        let start_height = self.tracker().start_height;
        if height <= start_height {
            return;
        }
        if self.tracker().block_arrived(hash, url, at, via_event) {
            // The receiver lives as long as the run; a send error only
            // happens during teardown.
            let _ = self.fetch_queue.send((hash, url));
        }
    }
}

/// Reads `/v1/events` of one URL until stopped, reconnecting when the
/// stream ends (a restarted node).
async fn watch_events(
    run: Arc<Run>,
    url: usize,
    connected: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let api = run.apis[url].clone();
    while !*stop.borrow() {
        if let Ok(mut response) = api.events(&run.stream_client, "block,reorg").await {
            connected.store(true, Ordering::Relaxed);
            let mut parser =
                SseParser::new(|name| matches!(name, "block" | "reorg" | "lagged"), 1 << 20);
            loop {
                let chunk = tokio::select! {
                    _ = stop.changed() => return,
                    chunk = response.chunk() => chunk,
                };
                let Ok(Some(bytes)) = chunk else { break };
                let at = Instant::now();
                let Ok(events) = parser.push(&bytes) else {
                    break;
                };
                for event in events {
                    match event.event.as_str() {
                        "block" => {
                            if let Ok(block) = serde_json::from_str::<BlockJson>(&event.data) {
                                run.note_block(block.hash, block.height.0, url, at, true);
                            }
                        }
                        "reorg" => {
                            if let Ok(reorg) = serde_json::from_str::<ReorgJson>(&event.data) {
                                run.tracker().reorg(&reorg.disconnected, &reorg.connected);
                            }
                        }
                        "lagged" => {
                            // We read too slowly and the node dropped events
                            // for us; the tip poller fills any block gap.
                            let missed = serde_json::from_str::<serde_json::Value>(&event.data)
                                .ok()
                                .and_then(|value| value["missed"].as_u64())
                                .unwrap_or(0);
                            run.tracker().events_missed += missed;
                        }
                        _ => {}
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Every second, compares a node's tip with what its events told us. A tip
/// still unknown one poll later means missed events (a status answer may
/// simply beat the event by a moment, hence the second look); the block is
/// then noted as a late arrival and the fetcher walks back from it.
async fn poll_tips(run: Arc<Run>, url: usize, mut stop: watch::Receiver<bool>) {
    let mut suspect: Option<BlockHash> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Ok(status) = run.apis[url].status().await else {
            continue;
        };
        if run.tracker().arrived_at(&status.tip, url) {
            suspect = None;
        } else if suspect == Some(status.tip) {
            run.note_block(status.tip, status.height.0, url, Instant::now(), false);
            suspect = None;
        } else {
            suspect = Some(status.tip);
        }
    }
}

/// Fetches each new block once (from the node that announced it, falling
/// back to the others), counts its transactions, and queues its parent when
/// that is unknown too.
async fn fetch_blocks(
    run: Arc<Run>,
    mut queue: mpsc::UnboundedReceiver<(BlockHash, usize)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            biased;
            next = queue.recv() => next,
            _ = stop.changed() => {
                // Finish what is queued, then stop.
                queue.close();
                queue.recv().await
            }
        };
        let Some((hash, url)) = next else { return };
        let n_urls = run.apis.len();
        let mut fetched = None;
        for attempt in 0..n_urls * 2 {
            match run.apis[(url + attempt) % n_urls]
                .block(&hash.to_string())
                .await
            {
                Ok(block) => {
                    fetched = Some(block);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let Some(block) = fetched else { continue };
        let txids: Vec<TxId> = block
            .txs
            .unwrap_or_default()
            .iter()
            .filter_map(|tx| {
                tx.txid
                    .or_else(|| tx.to_tx(&run.spec).ok().map(|tx| tx.txid()))
            })
            .collect();
        let parent_unknown = {
            let mut tracker = run.tracker();
            tracker.block_fetched(hash, txids);
            block.height > Height(tracker.start_height + 1)
                && !tracker.knows_block(&block.prev_hash)
        };
        run.confirmations.notify_waiters();
        if parent_unknown {
            run.note_block(
                block.prev_hash,
                (block.height - 1).0,
                url,
                Instant::now(),
                false,
            );
        }
    }
}

/// Waits until every node reports the same tip; its height, or `None` at
/// the deadline.
async fn wait_converged(apis: &[Api], deadline: Instant) -> Option<u64> {
    loop {
        let statuses = futures::future::join_all(apis.iter().map(Api::status)).await;
        let tips: Vec<_> = statuses
            .iter()
            .map(|status| {
                status
                    .as_ref()
                    .ok()
                    .map(|status| (status.tip, status.height))
            })
            .collect();
        if let Some(Some(first)) = tips.first() {
            if tips.iter().all(|tip| tip.as_ref() == Some(first)) {
                return Some(first.1 .0);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txid(byte: u8) -> TxId {
        TxId(ledger::Hash256([byte; 32]))
    }

    fn block_hash(byte: u8) -> BlockHash {
        BlockHash(ledger::Hash256([byte; 32]))
    }

    #[test]
    fn tracker_confirms_in_either_order_and_undoes_reorgs() {
        let now = Instant::now();
        let mut tracker = Tracker {
            n_urls: 2,
            sender_accepted: vec![0; 2],
            sender_confirmed: vec![0; 2],
            ..Tracker::default()
        };
        let accepted = |sender| Accepted {
            submitted_at: now,
            url: 0,
            sender,
        };
        // Accepted first, then included.
        tracker.accept(txid(1), accepted(0));
        assert_eq!(tracker.outstanding(0), 1);
        assert!(tracker.block_arrived(block_hash(10), 1, now + Duration::from_millis(30), true));
        assert!(!tracker.block_arrived(block_hash(10), 0, now + Duration::from_millis(50), true));
        tracker.block_fetched(block_hash(10), vec![txid(1), txid(2)]);
        assert_eq!(tracker.confirmed, 1);
        assert_eq!(tracker.outstanding(0), 0);
        // Included first (the block beat the submit answer), then accepted.
        tracker.accept(txid(2), accepted(1));
        assert_eq!(tracker.confirmed, 2);
        assert_eq!(tracker.outstanding(1), 0);
        // Latency is measured to the arrival on the submitting node (url 0).
        assert_eq!(
            tracker.confirmed_at(&txid(1), &accepted(0)),
            Some(now + Duration::from_millis(50))
        );
        // A reorg away from the block unconfirms both; re-inclusion counts once.
        tracker.reorg(&[block_hash(10)], &[]);
        assert_eq!(tracker.confirmed, 0);
        assert_eq!(tracker.outstanding(0), 1);
        tracker.block_arrived(block_hash(11), 0, now, true);
        tracker.block_fetched(block_hash(11), vec![txid(1), txid(2)]);
        assert_eq!(tracker.confirmed, 2);
        // A late reorg report naming the old block changes nothing now.
        tracker.reorg(&[block_hash(10)], &[]);
        assert_eq!(tracker.confirmed, 2);
        // Another node switching back to the first block, already fetched,
        // keeps both confirmed (no refetch will come for it).
        tracker.reorg(&[block_hash(11)], &[block_hash(10)]);
        assert_eq!(tracker.confirmed, 2);
        assert_eq!(tracker.included.get(&txid(1)), Some(&block_hash(10)));
    }
}

//! `GET /v1/events`: the node's `NodeEvent`s as server-sent events:
//! `block` (the block object without `txs`, with `tx_count`), `tx` (the tx
//! object) and `reorg` (`ReorgJson`), with a keep-alive comment every 15 s
//! so proxies keep the stream open. A subscriber too slow to keep up
//! skips what it missed and gets a `lagged` event saying how many; the
//! stream ends when the node shuts down, so graceful shutdown never waits
//! on it.

use super::RpcState;
use crate::events::NodeEvent;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use futures::StreamExt as _;
use ledger::json::{BlockJson, ReorgJson, TxJson};
use ledger::ChainSpec;
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream(
    State(state): State<RpcState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let spec = state.node.spec().clone();
    let shutdown = state.node.shutdown_token().clone();
    let events = BroadcastStream::new(state.node.subscribe_events())
        .filter_map(move |received| std::future::ready(to_sse(&spec, received).map(Ok)))
        .take_until(shutdown.cancelled_owned());
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The SSE event for a node event; `None` for the internal ones.
fn to_sse(
    spec: &ChainSpec,
    received: Result<NodeEvent, BroadcastStreamRecvError>,
) -> Option<Event> {
    let event = match received {
        Ok(event) => event,
        Err(BroadcastStreamRecvError::Lagged(missed)) => {
            return Some(
                Event::default()
                    .event("lagged")
                    .data(serde_json::json!({ "missed": missed }).to_string()),
            );
        }
    };
    let (name, data) = match event {
        NodeEvent::BlockValidated { .. } => return None,
        NodeEvent::BlockConnected { block, .. } => (
            "block",
            serde_json::to_string(&BlockJson::from_block(&block, spec, false)),
        ),
        NodeEvent::TxAccepted { tx } | NodeEvent::TxReadmitted { tx } => {
            ("tx", serde_json::to_string(&TxJson::from_tx(&tx, spec)))
        }
        NodeEvent::TxDropped { txid, reason } => (
            "dropped",
            serde_json::to_string(&serde_json::json!({ "txid": txid, "reason": reason })),
        ),
        NodeEvent::Reorg {
            old_tip,
            new_tip,
            fork_height,
            disconnected,
            connected,
        } => (
            "reorg",
            serde_json::to_string(&ReorgJson {
                old_tip,
                new_tip,
                fork_height,
                disconnected,
                connected,
            }),
        ),
    };
    // These types always serialize; an empty object beats dropping the stream.
    Some(
        Event::default()
            .event(name)
            .data(data.unwrap_or_else(|_| "{}".into())),
    )
}

//! `GET /v1/events`: the node's `NodeEvent`s as server-sent events:
//! `block` (the block object without `txs`, with `tx_count`), `tx` (the tx
//! object) and `reorg` (`ReorgJson`), with a keep-alive comment every 15 s
//! so proxies keep the stream open. A subscriber too slow to keep up
//! skips what it missed and gets a `lagged` event saying how many; the
//! stream ends when the node shuts down, so graceful shutdown never waits
//! on it. `?types=block,reorg` picks the event names a subscriber wants
//! (all by default): the others are never serialized for it, which
//! matters under load, when every accepted tx would be.

use super::error::ApiError;
use super::extract::ApiQuery;
use super::RpcState;
use crate::events::NodeEvent;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use futures::StreamExt as _;
use ledger::json::{BlockJson, ReorgJson, TxJson};
use ledger::ChainSpec;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    types: Option<String>,
}

/// The event names one subscriber asked for. `lagged` always comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wanted {
    block: bool,
    tx: bool,
    reorg: bool,
    dropped: bool,
}

impl Wanted {
    const ALL: Wanted = Wanted {
        block: true,
        tx: true,
        reorg: true,
        dropped: true,
    };

    /// `block,reorg` and the like; an unknown name is `malformed`.
    fn parse(types: Option<&str>) -> Result<Wanted, ApiError> {
        let Some(types) = types else {
            return Ok(Wanted::ALL);
        };
        let mut wanted = Wanted {
            block: false,
            tx: false,
            reorg: false,
            dropped: false,
        };
        for name in types.split(',') {
            match name {
                "block" => wanted.block = true,
                "tx" => wanted.tx = true,
                "reorg" => wanted.reorg = true,
                "dropped" => wanted.dropped = true,
                other => {
                    return Err(ApiError::Malformed(format!(
                        "unknown event type {other:?} in types (known: block, tx, reorg, dropped)"
                    )))
                }
            }
        }
        Ok(wanted)
    }

    fn admits(&self, event: &NodeEvent) -> bool {
        match event {
            NodeEvent::BlockValidated { .. } => false,
            NodeEvent::BlockConnected { .. } => self.block,
            NodeEvent::TxAccepted { .. } | NodeEvent::TxReadmitted { .. } => self.tx,
            NodeEvent::TxDropped { .. } => self.dropped,
            NodeEvent::Reorg { .. } => self.reorg,
        }
    }
}

pub async fn stream(
    State(state): State<RpcState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let wanted = Wanted::parse(query.types.as_deref())?;
    let spec = state.node.spec().clone();
    let shutdown = state.node.shutdown_token().clone();
    let events = BroadcastStream::new(state.node.subscribe_events())
        .filter_map(move |received| std::future::ready(to_sse(&spec, wanted, received).map(Ok)))
        .take_until(shutdown.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The SSE event for a node event; `None` for the internal ones and those
/// the subscriber did not ask for.
fn to_sse(
    spec: &ChainSpec,
    wanted: Wanted,
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
    if !wanted.admits(&event) {
        return None;
    }
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

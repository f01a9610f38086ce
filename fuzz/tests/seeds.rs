//! Writes the seed corpora from real data (run by hand, not in CI:
//! `cargo test -p gossip-ledger-fuzz --test seeds -- --ignored`): the
//! frames a real node sent over a real Noise session on loopback to a
//! peer that handshook, synced headers and blocks, asked for addresses,
//! pinged and fetched a tx; the blocks and transactions of that chain; the
//! golden vectors of `ledger/tests/chain/golden.rs`; amounts and addresses
//! as users type them; the built-in chains' compact targets. Files are
//! named `seed-*` and never overwrite the fuzzers' finds.

use ledger::chainspec::dev_accounts;
use ledger::{encoding, ChainSpec};
use node::p2p::codec::encode_message;
use node::p2p::message::{InvItem, Message};
use node::test_utils::p2p_net::{transfer, FakePeer, NodeOptions, TestNode};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The golden signed transaction (ledger/tests/chain/golden.rs).
const GOLDEN_TX: &str = "9c1ab1373695aaaa86aba8a16d05309e03f6752778abaf631ce54bedc0ffc71d0d9daf3d034cec2a6a2a33a3164ac87015ef16c900e1f50500000000e80300000000000000000000000000000000000000000000fae4498dcd4ac36933ce3e9b943ed097f52f04e389dae79269b4b6190c140a666e3c64e44d05383926e0b65433c8fdb10f13d7aff5359e2183e5ae725397a302";
const GOLDEN_ADDRESS: &str = "dev1q8h5u5rqvuj7kjwnrawd5g4vepwayf0f7xgu4kw";

fn dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    dir
}

fn write(target: &str, name: &str, data: &[u8]) {
    std::fs::write(dir(target).join(format!("seed-{name}")), data).expect("writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes fuzz/corpus; run by hand"]
async fn write_seed_corpora() {
    let temp = tempfile::tempdir().unwrap();
    let node = TestNode::start(temp.path(), NodeOptions::default()).await;
    let spec = node.backend.spec().clone();
    let genesis = spec.genesis_hash();
    let mut txs = Vec::new();
    for nonce in 0..3 {
        for from in 0..3 {
            let tx = transfer(&genesis, from, nonce, if from == 0 { "seed" } else { "" });
            node.backend.add_tx(tx.clone()).expect("admitted");
            txs.push(tx);
        }
        node.backend.mine(4);
    }
    let pending = transfer(&genesis, 4, 0, "pending");
    node.backend.add_tx(pending.clone()).expect("admitted");

    // A peer on a real Noise session: everything the node sends it.
    let mut peer = FakePeer::connect(node.socket_addr()).await;
    let mut received = Vec::new();
    let hello = peer.handshake(&spec).await;
    received.push(Message::Hello(Box::new(hello)));
    let asks = [
        Message::GetHeaders(vec![genesis]),
        Message::GetAddr,
        Message::Ping(7),
        Message::SendCompact {
            high_bandwidth: true,
        },
        Message::GetData(vec![InvItem::Tx(pending.txid())]),
    ];
    for ask in &asks {
        assert!(peer.send(ask).await);
    }
    let mut blocks = Vec::new();
    while let Some(message) = peer.recv(Duration::from_secs(2)).await {
        if let Message::Headers(headers) = &message {
            let items: Vec<InvItem> = headers
                .iter()
                .map(|header| InvItem::Block(header.hash()))
                .collect();
            assert!(peer.send(&Message::GetData(items)).await);
        }
        if let Message::Block(block) = &message {
            blocks.push((**block).clone());
        }
        received.push(message);
    }
    assert!(!blocks.is_empty(), "the node served its blocks");

    let mut stream = Vec::new();
    let all: Vec<&Message> = received.iter().chain(asks.iter()).collect();
    for (index, message) in all.iter().enumerate() {
        let payload = encode_message(message);
        write(
            "p2p_message",
            &format!("{index:02}-{}", message.kind()),
            &payload,
        );
        stream.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        stream.extend_from_slice(&payload);
    }
    // Frame cap 0 (4 MiB), 3 cuts at 5, 40 and 200 bytes, then the stream.
    let mut frames = vec![0u8, 3, 5, 40, 200];
    frames.extend_from_slice(&stream);
    write("p2p_frames", "node-session", &frames);
    write(
        "p2p_frames",
        "node-session-whole",
        &[&[0u8, 0][..], &stream].concat(),
    );

    let golden = hex_decode(GOLDEN_TX);
    write("tx_decode", "golden", &golden);
    write("validate", "golden-tx", &[&[0u8][..], &golden].concat());
    for (index, tx) in txs.iter().chain([&pending]).enumerate() {
        write(
            "tx_decode",
            &format!("chain-{index}"),
            &encoding::encode(tx),
        );
    }
    for name in ["dev", "regtest"] {
        let block = ChainSpec::builtin(name).unwrap().genesis_block();
        write(
            "block_decode",
            &format!("genesis-{name}"),
            &encoding::encode(&block),
        );
    }
    for block in &blocks {
        let bytes = encoding::encode(block);
        let height = block.header.height;
        write("block_decode", &format!("block-{height}"), &bytes);
        write(
            "validate",
            &format!("block-{height}"),
            &[&[0u8][..], &bytes].concat(),
        );
    }

    let mut texts = vec![
        "1.5".to_string(),
        "0.00000001".into(),
        "21000000".into(),
        "184467440737.09551615".into(),
        "dev:3".into(),
        "alice".into(),
        GOLDEN_ADDRESS.into(),
    ];
    texts.extend(
        dev_accounts()
            .iter()
            .take(3)
            .map(|account| spec.format_address(&account.address)),
    );
    for (index, text) in texts.iter().enumerate() {
        write("wallet_parse", &format!("{index:02}"), text.as_bytes());
    }

    // Difficulty: the built-in targets as the first fields.
    for name in ["dev", "regtest"] {
        let spec = ChainSpec::builtin(name).unwrap();
        let mut data = Vec::new();
        data.extend_from_slice(&spec.initial_target.0.to_be_bytes());
        data.extend_from_slice(&spec.easiest_target.0.to_be_bytes());
        data.extend_from_slice(&spec.initial_target.to_compact().0.to_le_bytes());
        data.extend_from_slice(&[0x10; 64]);
        write("difficulty", &format!("spec-{name}"), &data);
    }
    // Targets that read structure with `arbitrary`: bytes from a fixed
    // seed, until the fuzzers' minimized finds join them.
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    for target in ["p2p_session", "mempool_ops", "chain_ops", "rpc"] {
        for (index, len) in [64usize, 512, 2048].into_iter().enumerate() {
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            write(target, &format!("random-{index}"), &data);
        }
    }
    node.cancel.cancel();
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

use crate::common::*;
use ledger::chain::{Chain, ProcessOutcome};
use ledger::Height;

#[test]
fn open_connect_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let spec = regtest();
    let genesis = spec.genesis_hash();
    let mut chain = Chain::open(spec.clone(), dir.path()).unwrap();
    let mut parent = spec.genesis_block().header;
    for i in 0..5u64 {
        let txs = vec![transfer(&genesis, 0, dev_address(1), 100_000_000, 1000, i)];
        let block = block_on(&spec, &parent, parent.timestamp + 2000, dev_address(2), txs);
        parent = block.header.clone();
        match chain.process_block(block, parent.timestamp).unwrap() {
            ProcessOutcome::Connected(update) => assert_eq!(update.connected.len(), 1),
            other => panic!("{other:?}"),
        }
    }
    let reader = chain.reader();
    assert_eq!(reader.tip().height, Height(5));
    assert_eq!(reader.account(&dev_address(0)).nonce, 5);
    let summary = reader.state_summary();
    drop(reader);
    drop(chain);
    let chain = Chain::open(spec, dir.path()).unwrap();
    assert_eq!(chain.reader().state_summary(), summary);
    assert_eq!(
        chain.reader().address_txs(&dev_address(1), 3, None).len(),
        3
    );
}

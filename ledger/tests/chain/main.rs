//! Integration tests of the chain: one binary (faster to link, and the
//! crash test re-executes it as its worker process). Everything here
//! needs the store (sled, or the in-memory backend in `memory`), so it
//! builds only with the `storage` feature.
#![cfg(feature = "storage")]

mod common;
mod crash;
mod early_orphans;
mod fuzz_cfg;
mod golden;
mod held;
mod low_work;
mod memory;
mod open;
mod props;
mod rejections;
mod reorg;
mod smoke;
mod state_cost;

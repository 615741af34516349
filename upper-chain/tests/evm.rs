//! The interface tests against the `Registry` contract on a real EVM dev node: Hardhat's node
//! from npm (`scripts/install-devnode.sh`), started here on a free port, with a fresh contract
//! deployed from the committed bytecode for every test.
//!
//! Without Node.js the tests are skipped with a message, except under `CI=true`, where that
//! fails them.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::Harness;
use primitives::{AccountKey, Address, U256};
use upper_chain::{
    ChainConfig, ChainError, DepositStream, EvmChain, EvmConfig, UpperChain, connect,
    devnode::{CHAIN_ID, devnode, funded_key},
};

struct Evm {
    chain: Arc<EvmChain>,
}

impl Harness for Evm {
    fn chain(&self) -> Arc<dyn UpperChain> {
        self.chain.clone()
    }

    fn deposit(&self, recipient: Address, amount: U256) {
        self.chain.deposit(recipient, amount).unwrap();
    }
}

/// A fresh `Registry` on the dev node, with the interface tests' admin and stake cap, and
/// sequencer epochs of `epochs` sequences if given.
fn deploy_with(url: &str, epochs: Option<u64>) -> (EvmConfig, AccountKey) {
    let sender = funded_key();
    let (registry, block) = EvmChain::deploy(
        url,
        CHAIN_ID,
        &sender,
        common::admin_key().address(),
        common::STAKE_CAP,
        epochs,
    )
    .unwrap();
    let mut config = EvmConfig::new(url, CHAIN_ID, registry, sender.clone());
    config.deploy_block = block;
    (config, sender)
}

/// A fresh `Registry` without sequencer epochs.
fn deploy(url: &str) -> (EvmConfig, AccountKey) {
    deploy_with(url, None)
}

fn evm() -> Option<Evm> {
    let url = devnode()?;
    let (config, _) = deploy(url);
    Some(Evm {
        chain: Arc::new(EvmChain::connect(config).unwrap()),
    })
}

interface_tests!(skippable evm());

/// The epoch test the embedded and served chains pass, on a `Registry` deployed with sequencer
/// epochs whose first rotation fixed the same genesis set.
#[test]
fn sequencer_sets_change_only_at_epoch_boundaries() {
    let Some(url) = devnode() else {
        return;
    };
    let (config, _) = deploy_with(url, Some(common::EPOCH_LENGTH));
    let chain = EvmChain::connect(config).unwrap();
    assert_eq!(chain.sequencer_epoch(0).unwrap(), None);
    common::fix_epochs_genesis(&chain);
    common::sequencer_sets_change_only_at_epoch_boundaries(&chain);
}

#[test]
fn connect_checks_the_endpoint_the_chain_id_and_the_contract() {
    let Some(url) = devnode() else {
        return;
    };
    let (config, sender) = deploy(url);
    let mut chain = ChainConfig::new(url, CHAIN_ID);
    chain.registry = Some(config.registry);
    chain.sender = Some(sender.clone());
    let connected = connect(&chain).unwrap();
    assert_eq!(connected.epoch().unwrap(), 0);
    assert_eq!(connected.stake_cap().unwrap(), common::STAKE_CAP);

    let wrong = ChainConfig {
        chain_id: 1,
        ..chain.clone()
    };
    assert_eq!(
        connect(&wrong).err(),
        Some(ChainError::WrongChainId {
            expected: 1,
            got: CHAIN_ID
        })
    );
    let nowhere = Address::repeat_byte(0x77);
    let empty = ChainConfig {
        registry: Some(nowhere),
        ..chain.clone()
    };
    assert_eq!(connect(&empty).err(), Some(ChainError::NoContract(nowhere)));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = ChainConfig {
        url: format!("http://127.0.0.1:{port}"),
        ..chain
    };
    assert!(matches!(
        connect(&dead),
        Err(ChainError::Unreachable { .. })
    ));
}

/// Deposits made by other senders, in blocks the stream has not seen, each arrive once; a
/// second adapter on the same contract reads the same sequence.
#[test]
fn deposits_from_many_blocks_arrive_once_on_every_adapter() {
    let Some(url) = devnode() else {
        return;
    };
    let (mut config, _) = deploy(url);
    // Read logs a few blocks at a time, to cross range boundaries.
    config.log_range_blocks_max = 2;
    let first = Arc::new(EvmChain::connect(config.clone()).unwrap());
    let mut stream = DepositStream::new(first.clone());
    let other_sender = EvmConfig {
        sender: funded_key(),
        ..config.clone()
    };
    let other = EvmChain::connect(other_sender.clone()).unwrap();
    for amount in 1..=5u64 {
        first
            .deposit(Address::repeat_byte(1), U256::from(amount))
            .unwrap();
        other
            .deposit(Address::repeat_byte(2), U256::from(amount * 10))
            .unwrap();
    }
    let seen = stream.poll().unwrap();
    assert_eq!(
        seen.iter().map(|d| d.index).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(seen[1].from, other_sender.sender.address());
    assert_eq!(seen[1].amount, U256::from(10));
    assert!(stream.poll().unwrap().is_empty());
    let fresh = EvmChain::connect(config).unwrap();
    assert_eq!(fresh.deposits_since(0, usize::MAX).unwrap(), seen);
}

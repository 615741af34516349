//! Registry epochs in a network of 24 nodes: a node that joins late is handed its accounts and
//! serves the same roots as the members it joins; the switch is refused, changing nothing,
//! where it cannot happen.

use primitives::Address;

use super::{
    tests::{COUNTER, batch_moves, network, players, reference, reference_root, run},
    *,
};

const NODES: usize = 24;

/// The seed of a node, not yet registered, that would be in the counter's group once it is.
fn joiner_of_the_counters_group(network: &ShardNetwork) -> u64 {
    (NODES as u64..)
        .find(|seed| {
            let candidate = ShardNode::from_seed(*seed).id();
            let mut ids = network.ids.clone();
            ids.push(candidate);
            GroupMap::new(&ids, GROUP_SIZE)
                .group_of(&COUNTER)
                .members
                .contains(&candidate)
        })
        .expect("some seed lands near the counter")
}

#[test]
fn a_node_that_joins_late_is_handed_its_accounts_and_serves_the_same_roots() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut network, chain) = network(NODES, dir.path());
    let epoch = network.snapshot().epoch;
    let players = players(8);
    let mut bodies = Vec::new();
    for number in 1..=3 {
        let body = batch_moves(&players, number);
        run(&mut network, number, body.clone());
        bodies.push(body);
    }

    // A node registers during the epoch; it is added, and follows the batches serving nothing.
    let seed = joiner_of_the_counters_group(&network);
    let joiner = ShardNode::from_seed(seed);
    let id = joiner.id();
    assert_eq!(
        network.add_node(ShardNode::from_seed(seed)),
        Err(ShardError::NotRegistered(id)),
        "not before it registers"
    );
    let (registration, signature) = joiner.registration("test".into(), Address::ZERO, vec![]);
    chain
        .register_node(registration, &signature)
        .expect("registers");
    network.add_node(joiner).expect("a registered node");
    assert_eq!(
        network.add_node(ShardNode::from_seed(seed)),
        Err(ShardError::AlreadyMember(id))
    );
    let body = batch_moves(&players, 4);
    run(&mut network, 4, body.clone());
    bodies.push(body);
    assert_eq!(
        network.node_status(&id).map(|(height, _)| height),
        Some(Some(4))
    );
    assert!(!network.group_of(&COUNTER).contains(&id));
    assert_eq!(
        network.enter_epoch(),
        Ok(None),
        "the chain is still in its epoch"
    );

    chain.advance_epoch();
    let change = network
        .enter_epoch()
        .expect("switches at a commit batch")
        .expect("a new epoch");
    assert_eq!(change.epoch, epoch + 1);
    assert_eq!(change.joined, vec![id]);
    assert!(change.departed.is_empty());
    assert!(change.synced.get(&id).is_some_and(|accounts| *accounts > 0));
    assert_eq!(network.snapshot().epoch, epoch + 1);
    assert!(network.group_of(&COUNTER).contains(&id));
    assert_eq!(network.refused_slices(), 0);

    // Every group's members, the joiner among them, hold the reference root of its accounts.
    let state = reference(&bodies);
    let addresses: Vec<Address> = state.accounts().map(|(address, _)| *address).collect();
    for address in &addresses {
        let group = network.groups.group_of(address);
        let expected = reference_root(&state, &mut network, &group.id);
        let roots = network.member_roots(&group).expect("every member answers");
        assert!(
            roots.iter().all(|root| *root == expected),
            "group of {address}"
        );
    }
    let synced = chain
        .synced_root(&id)
        .expect("reads")
        .expect("the joiner reported its root");
    assert_eq!(
        (synced.node, synced.epoch, synced.batch),
        (id, epoch + 1, 4)
    );

    // The new groups run the next batches and certify the reference roots.
    for number in 5..=6 {
        let body = batch_moves(&players, number);
        run(&mut network, number, body.clone());
        bodies.push(body);
    }
    let state = reference(&bodies);
    let commitments = network.last_group_roots().to_vec();
    let counter_group = upper_chain::group_id(&network.group_of(&COUNTER));
    assert!(commitments.iter().any(|root| root.group == counter_group));
    for commitment in &commitments {
        assert_eq!(commitment.epoch, epoch + 1);
        assert_eq!(
            commitment.root,
            reference_root(&state, &mut network, &commitment.group)
        );
        assert_eq!(
            chain.group_root(&commitment.group).expect("reads").as_ref(),
            Some(commitment)
        );
    }
    for key in &players {
        assert_eq!(network.nonce(&key.address()), Ok(6));
    }
}

#[test]
fn an_epoch_switch_is_refused_where_it_cannot_happen_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut network, chain) = network(NODES, dir.path());
    network.set_root_commit_interval(2);
    let players = players(4);
    chain.advance_epoch();
    let next = network.snapshot().epoch + 1;
    assert_eq!(
        network.enter_epoch(),
        Err(ShardError::EpochSwitch {
            epoch: next,
            why: "no batch is stored yet"
        })
    );
    run(&mut network, 1, batch_moves(&players, 1));
    assert_eq!(
        network.enter_epoch(),
        Err(ShardError::EpochSwitch {
            epoch: next,
            why: "groups were touched since the last commit batch"
        })
    );
    assert_eq!(network.snapshot().epoch, next - 1);
    // A node the new snapshot names must be in the network first.
    let joiner = ShardNode::from_seed(joiner_of_the_counters_group(&network));
    let (registration, signature) = joiner.registration("test".into(), Address::ZERO, vec![]);
    chain
        .register_node(registration, &signature)
        .expect("registers");
    chain.advance_epoch();
    run(&mut network, 2, batch_moves(&players, 2));
    assert_eq!(
        network.enter_epoch(),
        Err(ShardError::NotRegistered(joiner.id()))
    );
    assert_eq!(network.snapshot().epoch, next - 1);
    network.add_node(joiner).expect("registered");
    let change = network.enter_epoch().expect("switches").expect("moves on");
    assert_eq!(change.epoch, next + 1, "straight to the chain's epoch");
}

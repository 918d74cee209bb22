//! The simulator in CI: every engine that exists, all fault kinds, many seeds.

use chorus_sim::{Faults, Sim, SimConfig, SimReport, combined_digest, run_seeds};

/// Every seed ran without a violation; the failures, one line per seed, otherwise.
fn no_violations(reports: &[SimReport]) {
    let failed: Vec<String> = reports
        .iter()
        .filter(|report| !report.violations.is_empty())
        .map(|report| format!("seed {}: {}", report.seed, report.violations.join("; ")))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn config(faults: Faults) -> SimConfig {
    SimConfig { engine: "pow".into(), nodes: 5, seed: 0, faults, steps: 1_500 }
}

#[test]
fn pow_five_nodes_all_faults_no_violations() {
    let reports = run_seeds(&config(Faults::ALL), 0..200, 2).unwrap();
    no_violations(&reports);
    // The runs did something: every seed grew a chain.
    for report in &reports {
        assert!(report.head_height >= 5, "seed {} only reached height {}", report.seed, report.head_height);
    }
}

#[test]
fn pow_a_late_node_catches_up_by_range_sync() {
    let faults = Faults { late: true, ..Faults::ALL };
    // Long enough for the others to build more than two sync ranges before the last node starts.
    let config = SimConfig { steps: 12_000, ..config(faults) };
    let reports = run_seeds(&config, 0..8, 2).unwrap();
    for report in &reports {
        assert!(report.violations.is_empty(), "seed {}: {}", report.seed, report.violations.join("; "));
        assert!(report.range_requests > 0, "seed {}: the late node did not range-sync", report.seed);
        assert!(report.head_height > 128, "seed {} only reached height {}", report.seed, report.head_height);
    }
}

#[test]
fn pow_same_seed_same_digest() {
    let first = Sim::new(SimConfig { seed: 7, ..config(Faults::ALL) }).unwrap().run();
    let second = Sim::new(SimConfig { seed: 7, ..config(Faults::ALL) }).unwrap().run();
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.events, second.events);
    let other = Sim::new(SimConfig { seed: 8, ..config(Faults::ALL) }).unwrap().run();
    assert_ne!(first.digest, other.digest, "different seeds take different runs");
    assert_eq!(combined_digest(std::slice::from_ref(&first)), combined_digest(&[second]));
}

/// Seed 6661 of a 10,000-seed run (`chorus-sim`'s 2,000 steps): node 0, mining alone after the quiet phase, found a block 22 ms
/// after node 2's block at the same height and on the same parent, before node 2's arrived. Mining
/// ended on that tie, which nothing was left to break, and the heads stayed split. Sole mining now
/// ends only on a block with more work than any released before. (Since transactions travel in
/// batches the seed takes another course; it stays as a run that once failed.)
#[test]
fn pow_sole_mining_goes_on_past_a_tie_with_a_block_in_flight() {
    let faults = Faults::parse("loss,partition,crash,skew").unwrap();
    let report = Sim::new(SimConfig { seed: 6661, steps: 2_000, ..config(faults) }).unwrap().run();
    no_violations(std::slice::from_ref(&report));
}

#[test]
fn engines_that_do_not_exist_are_refused_by_name() {
    let error = Sim::new(SimConfig { engine: "pbft".into(), ..config(Faults::default()) }).unwrap_err().to_string();
    assert!(error.contains("unknown engine `pbft`"), "{error}");
    let error =
        Sim::new(SimConfig { engine: "raft".into(), ..config(Faults { byzantine: true, ..Faults::default() }) })
            .unwrap_err()
            .to_string();
    assert!(error.contains("needs an engine with validators"), "{error}");
}

fn pos(faults: Faults) -> SimConfig {
    SimConfig { engine: "pos".into(), ..config(faults) }
}

#[test]
fn pos_five_validators_all_faults_and_a_byzantine_one_no_violations() {
    let faults = Faults { byzantine: true, ..Faults::ALL };
    let reports = run_seeds(&pos(faults), 0..200, 2).unwrap();
    no_violations(&reports);
    for report in &reports {
        assert!(report.final_height >= 5, "seed {} only finalized height {}", report.seed, report.final_height);
    }
    // The byzantine validator's equivocations reached honest nodes (and it was slashed) in
    // nearly every seed: the checks had something to check.
    let slashed = reports.iter().filter(|report| report.equivocators > 0).count();
    assert!(slashed >= 180, "equivocations reached honest nodes in only {slashed} of 200 seeds");
}

/// Seed 4573 of a 5,000-seed run (2,000 steps): the skew fault put two validators' clocks 1.3 and
/// 1.6 slots behind and one 1.5 slots ahead, and it did not stop with the others. The ahead
/// proposer built before the slots just behind its own had blocks, the ones behind came after
/// the next block, and in 40 slots no two consecutive ones were filled, which finality needs:
/// it stood at 22 while the heads reached 39. PoS clocks now come within a fraction of a slot of
/// each other when the faults stop (`SLOT_SKEW_MS_MAX`).
#[test]
fn pos_finality_resumes_once_clocks_more_than_a_slot_apart_are_corrected() {
    let faults = Faults { byzantine: true, ..Faults::ALL };
    let report = Sim::new(SimConfig { seed: 4573, steps: 2_000, ..pos(faults) }).unwrap().run();
    no_violations(std::slice::from_ref(&report));
    assert!(report.final_height > 22, "finality passed height 22, where it stood: {}", report.final_height);
}

#[test]
fn pos_a_late_validator_catches_up_and_finality_goes_on() {
    let faults = Faults { late: true, ..Faults::ALL };
    // Long enough for the others to build more than two sync ranges before the last starts.
    let config = SimConfig { steps: 15_000, ..pos(faults) };
    let reports = run_seeds(&config, 0..8, 2).unwrap();
    for report in &reports {
        assert!(report.violations.is_empty(), "seed {}: {}", report.seed, report.violations.join("; "));
        assert!(report.range_requests > 0, "seed {}: the late validator did not range-sync", report.seed);
        assert!(report.final_height > 136, "seed {} only finalized height {}", report.seed, report.final_height);
    }
}

#[test]
fn dpos_five_nodes_all_faults_and_a_byzantine_producer_no_violations() {
    let faults = Faults { byzantine: true, ..Faults::ALL };
    let config = SimConfig { engine: "dpos".into(), ..config(faults) };
    let reports = run_seeds(&config, 0..200, 2).unwrap();
    no_violations(&reports);
    for report in &reports {
        assert!(report.final_height >= 5, "seed {} only made height {} irreversible", report.seed, report.final_height);
    }
    // The approvals the simulator sends change schedules during runs (each change checked to
    // take effect at the same block on every node).
    let changed = reports.iter().filter(|report| report.schedule_changes > 0).count();
    assert!(changed >= reports.len() / 2, "only {changed} of {} seeds changed schedules", reports.len());
    let first = Sim::new(SimConfig { seed: 3, ..config.clone() }).unwrap().run();
    let second = Sim::new(SimConfig { seed: 3, ..config }).unwrap().run();
    assert_eq!((first.digest, first.events), (second.digest, second.events));
}

#[test]
fn pos_same_seed_same_digest_and_byzantine_needs_validators() {
    let faults = Faults { byzantine: true, ..Faults::ALL };
    let first = Sim::new(SimConfig { seed: 3, ..pos(faults) }).unwrap().run();
    let second = Sim::new(SimConfig { seed: 3, ..pos(faults) }).unwrap().run();
    assert_eq!((first.digest, first.events), (second.digest, second.events));
    let error = Sim::new(config(faults)).unwrap_err().to_string();
    assert!(error.contains("needs an engine with validators"), "{error}");
}

#[test]
fn raft_membership_changes_apply_through_faults_and_leaders() {
    // Four genesis members; the fifth node is added as a learner, promoted and a genesis member
    // removed (sometimes the leader, which hands leadership over first) while the network
    // loses, partitions, crashes and skews: every change applies, one leader per term, heads
    // final, the remaining members agree.
    let faults = Faults { membership: true, ..Faults::ALL };
    let config = SimConfig { engine: "raft".into(), ..config(faults) };
    let reports = run_seeds(&config, 0..100, 2).unwrap();
    no_violations(&reports);
    for report in &reports {
        assert_eq!(report.membership_changes, 3, "seed {}: {:?}", report.seed, report.membership_refusals);
        assert_eq!(report.head_height, report.final_height, "seed {}: a Raft head is final", report.seed);
    }
    let refused =
        |reason: &str| -> u32 { reports.iter().filter_map(|report| report.membership_refusals.get(reason)).sum() };
    assert!(refused("not_leader") > 0, "some request went to a follower first, then to the leader it named");
    assert!(refused("leader_leaving") > 0, "some removal was of the leader, which handed leadership over first");
}

#[test]
fn raft_five_members_all_faults_no_violations() {
    // Loss, partitions, crashes, skew and a member that joins late: one leader per term, heads
    // always final, final blocks agreed and never reverted, and every member converges after.
    let config = SimConfig { engine: "raft".into(), ..config(Faults::ALL) };
    let reports = run_seeds(&config, 0..100, 2).unwrap();
    no_violations(&reports);
    for report in &reports {
        assert!(report.final_height >= 5, "seed {} only committed height {}", report.seed, report.final_height);
        assert_eq!(report.head_height, report.final_height, "seed {}: a Raft head is final", report.seed);
    }
    let first = Sim::new(SimConfig { seed: 3, ..config.clone() }).unwrap().run();
    let second = Sim::new(SimConfig { seed: 3, ..config }).unwrap().run();
    assert_eq!((first.digest, first.events), (second.digest, second.events));
}

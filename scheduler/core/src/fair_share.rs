//! Worker slots shared between runs: weighted max-min fair share (water filling). Pure.
//!
//! Every run asks for some workers (its stages' `min(parallelism, backlog)` together) and has a
//! weight (its `priority`, default 1). A run never gets more than it asks; what it does not
//! take is shared among the others. So a run asking for little gets all it asks for, however
//! large the others, and runs that all want more than their share split the slots by weight.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// One run's claim on worker slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Workers the run could use now.
    pub wanted: u32,
    /// Its weight; 0 counts as 1.
    pub weight: u32,
}

/// Slots per run, summing to at most `slots`, each at most what the run wants.
///
/// Slots go out one at a time, each to the run still wanting more with the highest
/// `weight / (given + 1)` (D'Hondt with caps), ties to the heavier run and then by key order, so
/// the result is deterministic and no run below what it wants could take a slot from another
/// and end up with more per weight than that run had.
pub fn fair_share<K: Ord + Clone>(claims: &BTreeMap<K, Claim>, slots: u32) -> BTreeMap<K, u32> {
    let keys: Vec<&K> = claims.keys().collect();
    let mut given = vec![0u32; keys.len()];
    let mut heap: BinaryHeap<Next> = claims
        .values()
        .enumerate()
        .filter(|(_, claim)| claim.wanted > 0)
        .map(|(index, claim)| Next { weight: u64::from(claim.weight.max(1)), given: 0, index })
        .collect();
    for _ in 0..slots {
        let Some(mut next) = heap.pop() else { break };
        given[next.index] += 1;
        next.given += 1;
        if given[next.index] < claims[keys[next.index]].wanted {
            heap.push(next);
        }
    }
    keys.into_iter().cloned().zip(given).collect()
}

/// A run waiting for its next slot, ordered by `weight / (given + 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Next {
    weight: u64,
    given: u64,
    index: usize,
}

impl Ord for Next {
    fn cmp(&self, other: &Self) -> Ordering {
        // self.weight / (self.given + 1) against other.weight / (other.given + 1).
        (self.weight * (other.given + 1))
            .cmp(&(other.weight * (self.given + 1)))
            .then_with(|| self.weight.cmp(&other.weight))
            .then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(list: &[(&'static str, u32, u32)]) -> BTreeMap<&'static str, Claim> {
        list.iter().map(|(k, wanted, weight)| (*k, Claim { wanted: *wanted, weight: *weight })).collect()
    }

    #[test]
    fn a_small_run_gets_all_it_asks_beside_a_huge_one() {
        let share = fair_share(&claims(&[("huge", 2000, 1), ("small", 2, 1)]), 8);
        assert_eq!(share["small"], 2);
        assert_eq!(share["huge"], 6);
    }

    #[test]
    fn runs_wanting_more_than_their_share_split_by_weight() {
        let share = fair_share(&claims(&[("a", 100, 1), ("b", 100, 3)]), 8);
        assert_eq!((share["a"], share["b"]), (2, 6));
    }

    #[test]
    fn equal_runs_split_evenly_and_the_odd_slot_goes_somewhere() {
        let share = fair_share(&claims(&[("a", 10, 1), ("b", 10, 1), ("c", 10, 1)]), 4);
        let mut counts: Vec<u32> = share.values().copied().collect();
        counts.sort();
        assert_eq!(counts, [1, 1, 2]);
    }

    #[test]
    fn more_runs_than_slots_each_get_at_most_one() {
        let share = fair_share(&claims(&[("a", 5, 1), ("b", 5, 1), ("c", 5, 1)]), 2);
        assert_eq!(share.values().sum::<u32>(), 2);
        assert!(share.values().all(|n| *n <= 1));
    }

    #[test]
    fn nobody_wanting_anything_gets_nothing() {
        let share = fair_share(&claims(&[("a", 0, 1)]), 4);
        assert_eq!(share["a"], 0);
    }

    proptest! {
        #[test]
        fn shares_are_bounded_complete_and_fair(
            wants in proptest::collection::vec((0u32..50, 0u32..5), 1..8),
            slots in 0u32..64,
        ) {
            let claims: BTreeMap<usize, Claim> =
                wants.iter().enumerate().map(|(i, (w, p))| (i, Claim { wanted: *w, weight: *p })).collect();
            let share = fair_share(&claims, slots);
            let total: u32 = share.values().sum();
            let wanted: u32 = claims.values().map(|c| c.wanted).sum();
            // Never more than there is or than is asked; every slot used while someone wants it.
            prop_assert_eq!(total, slots.min(wanted));
            for (k, c) in &claims {
                prop_assert!(share[k] <= c.wanted);
            }
            // Max-min: a run below what it wants never has less per weight than any other run
            // has per weight, by more than one slot.
            for (a, ca) in &claims {
                if share[a] < ca.wanted {
                    for (b, cb) in &claims {
                        let (wa, wb) = (u64::from(ca.weight.max(1)), u64::from(cb.weight.max(1)));
                        prop_assert!(
                            (u64::from(share[a]) + 1) * wb >= u64::from(share[b]) * wa,
                            "{:?} got {} while {:?} got {}", ca, share[a], cb, share[b]
                        );
                    }
                }
            }
        }
    }
}

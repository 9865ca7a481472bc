//! Scale-in selection: which tasks of a group to stop when a service shrinks.
//!
//! It reads the strategies the way ECS describes them for termination, each one the mirror of its
//! placement rule, chained the same way (later strategies break the ties of earlier ones, a seeded
//! random rank breaks the rest):
//! - `spread` stops a task where the group has the most tasks (the value, or the instance, with the
//!   highest count), which keeps the balance;
//! - `binpack` stops a task on the instance that will have the most of the resource free once the task
//!   is gone, which empties the emptiest instances first;
//! - `random` stops a random task.
//!
//! On one instance the newest task of the group (the last in its list) goes first, so stopping what a
//! plan just placed, with [`crate::ClusterSnapshot::remove_task`], gives back the snapshot as it was.
//!
//! Cost: O((tasks + count) log instances) for the usual strategies. Instances are grouped into
//! buckets by the values of the leading `spread(attribute)` strategies (a handful: the zones), each
//! bucket a max-heap of its instances keyed by the other strategies. A pick compares the buckets'
//! counts, then the tops of the tied buckets. A stop only ever lowers the keys of the instances it
//! was not taken from (their attribute counts), so a heap entry is an upper bound of its instance's
//! key and is recomputed only when it reaches the top (lazy evaluation). The one-instance-at-a-time
//! definition is kept as the test reference (`naive`), and a property test holds the two equal.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::model::ClusterSnapshot;
use crate::pipeline::mix64;
use crate::strategy::{BinpackField, PlacementStrategy, SpreadField};

/// A task chosen to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskToStop {
    /// Index of its instance in [`ClusterSnapshot::instances`].
    pub instance_index: usize,
    /// Its instance's id.
    pub instance_id: String,
    /// The task's id.
    pub task_id: String,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    BinpackCpu,
    BinpackMemory,
    SpreadInstance,
    SpreadAttribute(usize),
    Random,
}

/// Picks `count` tasks of `group` to stop (fewer if the group has fewer), in stopping order.
/// `strategies` are the service's; empty means ECS's service default (spread over availability zones,
/// then instances).
pub fn select_tasks_to_stop<R: Rng + ?Sized>(
    snapshot: &ClusterSnapshot,
    group: &str,
    strategies: &[PlacementStrategy],
    count: u32,
    rng: &mut R,
) -> Vec<TaskToStop> {
    let mut st = State::new(snapshot, group, strategies, rng);
    // Leading spread(attribute) rules: their counts are shared by every instance with the same
    // values, so they rank buckets, not instances.
    let prefix = st
        .rules
        .iter()
        .take_while(|r| matches!(r, Rule::SpreadAttribute(_)))
        .count();
    let mut bucket_of: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut buckets: Vec<Bucket> = Vec::new();
    for c_idx in 0..st.cands.len() {
        let values = st.cands[c_idx].values[..prefix].to_vec();
        let b = *bucket_of.entry(values.clone()).or_insert_with(|| {
            buckets.push(Bucket {
                values,
                heap: BinaryHeap::new(),
            });
            buckets.len() - 1
        });
        if let Some(key) = st.key(c_idx, prefix) {
            buckets[b].heap.push(Entry {
                key,
                cand: Reverse(c_idx),
            });
        }
    }
    let mut out = Vec::new();
    let mut best_counts: Vec<u64> = Vec::with_capacity(prefix);
    let mut counts: Vec<u64> = Vec::with_capacity(prefix);
    for _ in 0..count {
        // The buckets whose counts are highest, then the best fresh top among them.
        let mut best: Option<(usize, Entry)> = None;
        best_counts.clear();
        for (b, bucket) in buckets.iter_mut().enumerate() {
            counts.clear();
            counts.extend(
                bucket
                    .values
                    .iter()
                    .enumerate()
                    .map(|(slot, v)| st.bucket_count(slot, *v)),
            );
            let cmp_counts = if best.is_none() {
                Ordering::Greater
            } else {
                counts.as_slice().cmp(best_counts.as_slice())
            };
            if cmp_counts == Ordering::Less {
                continue;
            }
            let Some(top) = fresh_top(&mut bucket.heap, &st, prefix) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some((_, e)) => cmp_counts == Ordering::Greater || top > *e,
            };
            if better {
                best = Some((b, top));
                std::mem::swap(&mut best_counts, &mut counts);
            }
        }
        let Some((b, _)) = best else { break };
        let Some(entry) = buckets[b].heap.pop() else {
            break;
        };
        let c_idx = entry.cand.0;
        let Some(stopped) = st.take(c_idx) else { break };
        out.push(stopped);
        if let Some(key) = st.key(c_idx, prefix) {
            buckets[b].heap.push(Entry {
                key,
                cand: Reverse(c_idx),
            });
        }
    }
    out
}

/// The top of a bucket's heap with its key up to date, left in the heap. Stale entries (keys only
/// fall while others are stopped) are recomputed and pushed back until the top is current.
fn fresh_top(heap: &mut BinaryHeap<Entry>, st: &State<'_>, prefix: usize) -> Option<Entry> {
    loop {
        let top = heap.peek()?;
        let c_idx = top.cand.0;
        match st.key(c_idx, prefix) {
            Some(key) if key == top.key => return Some(top.clone()),
            Some(key) => {
                heap.pop();
                heap.push(Entry {
                    key,
                    cand: Reverse(c_idx),
                });
            }
            None => {
                heap.pop();
            }
        }
    }
}

/// Instances sharing the values of the leading `spread(attribute)` strategies.
struct Bucket {
    values: Vec<u32>,
    heap: BinaryHeap<Entry>,
}

/// A heap entry: an instance's key (the rules after the bucket's, then its tie-break), greatest =
/// stop first; equal keys go to the instance that comes first in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: Vec<u64>,
    cand: Reverse<usize>,
}

/// Per instance: the group's tasks (newest last), and what the instance has free.
struct Cand {
    instance: usize,
    tasks: Vec<usize>,
    cpu: u64,
    mem: u64,
    values: Vec<u32>,
    tiebreak: u32,
    taken: u64,
}

/// What one selection run reads and updates.
struct State<'a> {
    snapshot: &'a ClusterSnapshot,
    rules: Vec<Rule>,
    cands: Vec<Cand>,
    attr_counts: Vec<Vec<u32>>,
    random_seed: u64,
}

impl<'a> State<'a> {
    fn new<R: Rng + ?Sized>(
        snapshot: &'a ClusterSnapshot,
        group: &str,
        strategies: &[PlacementStrategy],
        rng: &mut R,
    ) -> Self {
        let defaults;
        let strategies = if strategies.is_empty() {
            defaults = PlacementStrategy::service_defaults();
            &defaults[..]
        } else {
            strategies
        };
        let mut attr_names: Vec<&str> = Vec::new();
        let mut rules = Vec::new();
        for s in strategies {
            let rule = match s {
                PlacementStrategy::Binpack(BinpackField::Cpu) => Rule::BinpackCpu,
                PlacementStrategy::Binpack(BinpackField::Memory) => Rule::BinpackMemory,
                PlacementStrategy::Spread(SpreadField::InstanceId) => Rule::SpreadInstance,
                PlacementStrategy::Spread(SpreadField::Attribute(a)) => {
                    attr_names.push(a);
                    Rule::SpreadAttribute(attr_names.len() - 1)
                }
                PlacementStrategy::Random => Rule::Random,
            };
            rules.push(rule);
            if matches!(rule, Rule::Random) {
                break;
            }
        }
        let mut interned: Vec<HashMap<Option<&str>, u32>> = vec![HashMap::new(); attr_names.len()];
        let mut attr_counts: Vec<Vec<u32>> = vec![Vec::new(); attr_names.len()];
        let mut cands: Vec<Cand> = Vec::new();
        for (i, inst) in snapshot.instances.iter().enumerate() {
            let tasks: Vec<usize> = inst
                .tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.group == group)
                .map(|(k, _)| k)
                .collect();
            if tasks.is_empty() {
                continue;
            }
            let mut values = Vec::with_capacity(attr_names.len());
            for (slot, name) in attr_names.iter().enumerate() {
                let v = inst.attribute(name).flatten();
                let next = interned[slot].len() as u32;
                let id = *interned[slot].entry(v).or_insert(next);
                if id as usize == attr_counts[slot].len() {
                    attr_counts[slot].push(0);
                }
                attr_counts[slot][id as usize] += tasks.len() as u32;
                values.push(id);
            }
            cands.push(Cand {
                instance: i,
                tasks,
                cpu: u64::from(inst.remaining.cpu),
                mem: u64::from(inst.remaining.memory),
                values,
                tiebreak: rng.gen_range(0..u32::MAX),
                taken: 0,
            });
        }
        let random_seed = rng.next_u64();
        State {
            snapshot,
            rules,
            cands,
            attr_counts,
            random_seed,
        }
    }

    /// The count of the group's tasks on the attribute value `v` of leading spread rule `slot`.
    fn bucket_count(&self, slot: usize, v: u32) -> u64 {
        u64::from(self.attr_counts[slot][v as usize])
    }

    /// Candidate `c_idx`'s key over the rules from `from` on, then its tie-break; larger is "stop
    /// here first". None when it has no task of the group left.
    fn key(&self, c_idx: usize, from: usize) -> Option<Vec<u64>> {
        let c = &self.cands[c_idx];
        let &newest = c.tasks.last()?;
        let task = &self.snapshot.instances[c.instance].tasks[newest];
        let mut key = Vec::with_capacity(self.rules.len() + 1 - from);
        for rule in &self.rules[from..] {
            key.push(match *rule {
                Rule::BinpackCpu => c.cpu + u64::from(task.resources.cpu),
                Rule::BinpackMemory => c.mem + u64::from(task.resources.memory),
                Rule::SpreadInstance => c.tasks.len() as u64,
                Rule::SpreadAttribute(s) => u64::from(self.attr_counts[s][c.values[s] as usize]),
                Rule::Random => {
                    mix64(self.random_seed ^ mix64((c_idx as u64) << 32 | (c.taken & 0xFFFF_FFFF)))
                }
            });
        }
        key.push(u64::from(c.tiebreak));
        Some(key)
    }

    /// Stops candidate `c_idx`'s newest task of the group.
    fn take(&mut self, c_idx: usize) -> Option<TaskToStop> {
        let c = &mut self.cands[c_idx];
        let task_pos = c.tasks.pop()?;
        let inst = &self.snapshot.instances[c.instance];
        let task = &inst.tasks[task_pos];
        c.cpu += u64::from(task.resources.cpu);
        c.mem += u64::from(task.resources.memory);
        c.taken += 1;
        for (slot, v) in c.values.iter().enumerate() {
            self.attr_counts[slot][*v as usize] -= 1;
        }
        Some(TaskToStop {
            instance_index: c.instance,
            instance_id: inst.id.clone(),
            task_id: task.id.clone(),
        })
    }
}

/// The definition, one full pass over the instances per stop: the reference the heap-based
/// selection is held equal to.
#[cfg(test)]
fn naive<R: Rng + ?Sized>(
    snapshot: &ClusterSnapshot,
    group: &str,
    strategies: &[PlacementStrategy],
    count: u32,
    rng: &mut R,
) -> Vec<TaskToStop> {
    let mut st = State::new(snapshot, group, strategies, rng);
    let mut out = Vec::new();
    for _ in 0..count {
        let mut best: Option<(Vec<u64>, usize)> = None;
        for c_idx in 0..st.cands.len() {
            let Some(key) = st.key(c_idx, 0) else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| key > *b) {
                best = Some((key, c_idx));
            }
        }
        let Some((_, c_idx)) = best else { break };
        let Some(t) = st.take(c_idx) else { break };
        out.push(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerInstance, Resources, TaskOnInstance, ATTR_AVAILABILITY_ZONE};
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn arb_strategy() -> impl Strategy<Value = PlacementStrategy> {
        prop_oneof![
            Just(PlacementStrategy::Binpack(BinpackField::Cpu)),
            Just(PlacementStrategy::Binpack(BinpackField::Memory)),
            Just(PlacementStrategy::Spread(SpreadField::InstanceId)),
            Just(PlacementStrategy::Spread(SpreadField::Attribute(
                ATTR_AVAILABILITY_ZONE.into()
            ))),
            Just(PlacementStrategy::Spread(SpreadField::Attribute(
                "rack".into()
            ))),
            Just(PlacementStrategy::Random),
        ]
    }

    /// Instances: (zone, rack, free memory, [(group is ours, memory)]).
    fn arb_snapshot() -> impl Strategy<Value = ClusterSnapshot> {
        prop::collection::vec(
            (
                0u8..3,
                0u8..2,
                0u32..4,
                prop::collection::vec((any::<bool>(), 1u32..4), 0..6),
            ),
            0..12,
        )
        .prop_map(|insts| ClusterSnapshot {
            instances: insts
                .into_iter()
                .enumerate()
                .map(|(n, (zone, rack, free, tasks))| {
                    let mut i = ContainerInstance::new(
                        format!("ci-{n}"),
                        Resources {
                            cpu: 4096,
                            memory: 1 << 16,
                            gpus: 0,
                        },
                    )
                    .with_attribute(ATTR_AVAILABILITY_ZONE, &format!("zone-{zone}"));
                    if rack > 0 {
                        i = i.with_attribute("rack", &format!("rack-{rack}"));
                    }
                    for (k, (ours, mem)) in tasks.into_iter().enumerate() {
                        i.add_task(TaskOnInstance {
                            id: format!("t-{n}-{k}"),
                            group: if ours { "service:web" } else { "service:other" }.into(),
                            family: "web".into(),
                            resources: Resources {
                                cpu: mem * 8,
                                memory: mem * 16,
                                gpus: 0,
                            },
                            tcp_ports: Vec::new(),
                            udp_ports: Vec::new(),
                        });
                    }
                    i.remaining.memory = i.remaining.memory.saturating_sub(free * 100);
                    i
                })
                .collect(),
        })
    }

    proptest! {
        /// The heap-based selection stops exactly the tasks the one-pass-per-stop definition stops,
        /// in the same order, for any chain of strategies.
        #[test]
        fn heap_selection_matches_the_definition(
            snap in arb_snapshot(),
            strategies in prop::collection::vec(arb_strategy(), 0..4),
            count in 0u32..40,
            seed in any::<u64>(),
        ) {
            let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let fast = select_tasks_to_stop(&snap, "service:web", &strategies, count, &mut a);
            let slow = naive(&snap, "service:web", &strategies, count, &mut b);
            prop_assert_eq!(fast, slow);
        }
    }
}

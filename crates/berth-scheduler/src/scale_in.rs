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

use std::collections::HashMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::model::ClusterSnapshot;
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

    // Per instance: the group's tasks (newest last), and what the instance has free.
    struct Cand {
        instance: usize,
        tasks: Vec<usize>,
        cpu: u64,
        mem: u64,
        values: Vec<u32>,
        tiebreak: u32,
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
        });
    }

    let mut out = Vec::new();
    let mut key: Vec<u64> = Vec::with_capacity(rules.len() + 1);
    let mut best_key: Vec<u64> = Vec::with_capacity(rules.len() + 1);
    for _ in 0..count {
        let mut best: Option<usize> = None;
        best_key.clear();
        for (c_idx, c) in cands.iter().enumerate() {
            let Some(&newest) = c.tasks.last() else {
                continue;
            };
            let task = &snapshot.instances[c.instance].tasks[newest];
            key.clear();
            // Larger is "stop here first"; keys are compared largest-first.
            for rule in &rules {
                key.push(match *rule {
                    Rule::BinpackCpu => c.cpu + u64::from(task.resources.cpu),
                    Rule::BinpackMemory => c.mem + u64::from(task.resources.memory),
                    Rule::SpreadInstance => c.tasks.len() as u64,
                    Rule::SpreadAttribute(s) => u64::from(attr_counts[s][c.values[s] as usize]),
                    Rule::Random => u64::from(rng.gen::<u32>()),
                });
            }
            key.push(u64::from(c.tiebreak));
            if best.is_none() || key > best_key {
                best = Some(c_idx);
                std::mem::swap(&mut key, &mut best_key);
            }
        }
        let Some(c_idx) = best else { break };
        let c = &mut cands[c_idx];
        let Some(task_pos) = c.tasks.pop() else { break };
        let inst = &snapshot.instances[c.instance];
        let task = &inst.tasks[task_pos];
        c.cpu += u64::from(task.resources.cpu);
        c.mem += u64::from(task.resources.memory);
        for (slot, v) in c.values.iter().enumerate() {
            attr_counts[slot][*v as usize] -= 1;
        }
        out.push(TaskToStop {
            instance_index: c.instance,
            instance_id: inst.id.clone(),
            task_id: task.id.clone(),
        });
    }
    out
}

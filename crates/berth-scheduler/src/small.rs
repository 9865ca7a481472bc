//! The single-task path: a request for one task is planned with one pass over the snapshot.
//!
//! The general engine ([`crate::pipeline`]) first builds a working state for every instance (arrays of
//! resources, port states, verdicts, a tournament tree per spread group), which pays off when it then
//! places thousands of tasks, but is most of the cost of a run that places one. For one task, the
//! answer is simply the best-ranked instance that passes every feasibility stage, so this path reads
//! the snapshot once, in instance order, and keeps only the best candidate seen so far:
//!
//! - an instance is skipped as soon as a cheap stage rejects it (agent and status, distinctInstance,
//!   cpu, memory, gpu) or its rank is not better than the best candidate's;
//! - the costly stages (port lists, memberOf expressions) run only on an instance that would become
//!   the new best, so only a handful of instances in a large cluster are ever checked in full;
//! - a leading `spread` on an attribute is not read per instance (an attribute lookup costs more than
//!   the rest of the pass). The pass ranks by the strategies after it; if the winner's value holds
//!   no task of the group (always so for a group's first task), nothing can beat it. Otherwise a
//!   second pass reads every instance's value and keeps the best candidate per value, as the
//!   engine's groups do.
//!
//! It gives exactly the general engine's answer, not an approximation: the run makes the same one
//! seeded draw and derives each instance's tie-break (and random rank) from it and the instance index
//! as the engine does (`Draws`), computing it during the pass only for instances the cheap stages
//! keep; the RNG is left in the same state too. Candidates are ordered as the engine's trees order
//! them (strategy components, then the tie-break, then the group's first appearance, then the
//! instance index). `tests/small.rs` checks that both paths give the same plan
//! for random snapshots and requests. Requests it does not cover (more than one task, two or more
//! leading attribute spreads, an attribute spread after another strategy) go to the general engine,
//! as does a task that cannot be placed, whose [`crate::Diagnosis`] the engine writes, from the
//! draw already made.

use rand::Rng;

use crate::model::{
    ClusterSnapshot, ContainerInstance, InstanceStatus, Placement, PlacementOptions,
    PlacementRequest, Plan,
};
use crate::pipeline::{draw, Draws, Engine, Interner, Key, PortNeeds, Ranker, Ranking, KEY_LEN};
use crate::ports::PortState;
use crate::query::{Expr, InstanceView};
use crate::strategy::PlacementConstraint;

/// Whether the single-task path plans this request.
pub(crate) fn eligible(req: &PlacementRequest, ranking: &Ranking<'_>) -> bool {
    req.count == 1 && ranking.tree_mode && ranking.prefix <= 1
}

/// What one task needs, resolved once per run.
struct Needs<'a> {
    req: &'a PlacementRequest,
    /// The run's dynamic port range and what one task takes of it (an instance may have its own).
    ports: PortNeeds,
    /// The TCP and UDP port stages are wired.
    tcp_stage: bool,
    udp_stage: bool,
    distinct: bool,
    exprs: Vec<&'a Expr>,
}

impl Needs<'_> {
    /// The stages the engine defers (memberOf expressions, ports), on an instance with no task
    /// planned yet.
    fn deferred_pass(&self, inst: &ContainerInstance) -> bool {
        let need = &self.req.requirements;
        let ports = self.ports.on(inst, self.req);
        if self.tcp_stage {
            let tcp = PortState::new(
                &inst.used_tcp_ports,
                &need.static_tcp_ports,
                need.dynamic_tcp_ports,
                ports.range,
            );
            if tcp.static_conflict || tcp.free_dynamic < ports.tcp {
                return false;
            }
        }
        if self.udp_stage {
            let udp = PortState::new(
                &inst.used_udp_ports,
                &need.static_udp_ports,
                need.dynamic_udp_ports,
                ports.range,
            );
            if udp.static_conflict || udp.free_dynamic < ports.udp {
                return false;
            }
        }
        if !self.exprs.is_empty() {
            let view = InstanceView {
                instance: inst,
                planned_group: Some(&self.req.group),
                planned_count: 0,
            };
            if !self.exprs.iter().all(|e| e.eval(&view)) {
                return false;
            }
        }
        true
    }
}

impl Needs<'_> {
    /// Tasks of the request's group on the instance.
    #[inline]
    fn group_count(&self, inst: &ContainerInstance) -> u32 {
        if inst.tasks.is_empty() {
            0
        } else {
            inst.tasks
                .iter()
                .filter(|t| t.group == self.req.group)
                .count() as u32
        }
    }

    /// The stages the engine runs on every instance up front (agent and status, distinctInstance,
    /// cpu, memory, gpu), without short-circuits (measured a little faster in the pass).
    #[inline]
    fn cheap_pass(&self, inst: &ContainerInstance, group_count: u32) -> bool {
        let res = &self.req.requirements.resources;
        inst.agent_connected
            & (inst.status == InstanceStatus::Active)
            & !(self.distinct & (group_count > 0))
            & (inst.remaining.cpu >= res.cpu)
            & (inst.remaining.memory >= res.memory)
            & (inst.remaining.gpus >= res.gpus)
    }
}

/// How the first pass ranks an instance: by the rankers after the leading attribute spread (all of
/// them without one), then its tie-break, as the engine's tree key does. Smaller is better. The
/// usual one-strategy chains get a type of their own, so that the pass over every instance is a
/// straight line of code with the right figure built in.
trait Rank {
    type Key: Ord + Copy;
    /// The key of instance `i`, with `group_count` tasks of the group, and tie-break `tb`.
    fn key(&self, inst: &ContainerInstance, i: usize, group_count: u32, tb: u32) -> Self::Key;
}

/// One ranker (or none): its figure, then the tie-break, in one integer.
#[derive(Clone, Copy)]
struct One<F>(F);

impl<F: Fn(&ContainerInstance, usize, u32) -> u32> Rank for One<F> {
    type Key = u64;
    #[inline(always)]
    fn key(&self, inst: &ContainerInstance, i: usize, group_count: u32, tb: u32) -> u64 {
        (u64::from((self.0)(inst, i, group_count)) << 32) | u64::from(tb)
    }
}

/// Any chain: the engine's key itself.
struct Chain<'a> {
    rankers: &'a [Ranker],
    draws: Draws,
}

impl Rank for Chain<'_> {
    type Key = Key;
    #[inline]
    fn key(&self, inst: &ContainerInstance, i: usize, group_count: u32, tb: u32) -> Key {
        let mut key = [0u32; KEY_LEN];
        for (slot, r) in key.iter_mut().zip(self.rankers) {
            *slot = match *r {
                Ranker::BinpackCpu => inst.remaining.cpu,
                Ranker::BinpackMemory => inst.remaining.memory,
                Ranker::SpreadInstance => group_count,
                Ranker::Random => self.draws.random_rank(i),
                // Not after the prefix in tree mode (see `eligible`).
                Ranker::SpreadAttribute(_) => 0,
            };
        }
        key[KEY_LEN - 1] = tb;
        key
    }
}

/// Both passes for one way of ranking.
fn run<K: Rank>(
    snap: &ClusterSnapshot,
    needs: &Needs<'_>,
    rank: &K,
    spread_attr: Option<&str>,
    draws: &Draws,
) -> Option<usize> {
    // The loop is compiled twice so that the pass without a leading spread does not test for it on
    // every instance.
    let pass = if spread_attr.is_some() {
        choose::<K, true>(snap, needs, rank, spread_attr, draws)
    } else {
        choose::<K, false>(snap, needs, rank, spread_attr, draws)
    };
    match pass {
        Pass::Chosen(chosen) => chosen,
        Pass::ByValue(name) => by_value(snap, needs, rank, name, draws),
    }
}

/// Plans a one-task request (see [`eligible`]) with one pass over the snapshot.
pub(crate) fn place_one<'a, R: Rng + ?Sized>(
    snap: &'a ClusterSnapshot,
    req: &'a PlacementRequest,
    options: &PlacementOptions,
    rng: &'a mut R,
    ranking: Ranking<'a>,
    draws: Draws,
) -> Plan {
    let need = &req.requirements;
    let needs = Needs {
        req,
        ports: PortNeeds::of_run(req, options),
        tcp_stage: !need.static_tcp_ports.is_empty() || need.dynamic_tcp_ports > 0,
        udp_stage: !need.static_udp_ports.is_empty() || need.dynamic_udp_ports > 0,
        distinct: req
            .constraints
            .iter()
            .any(|c| matches!(c, PlacementConstraint::DistinctInstance)),
        exprs: req
            .constraints
            .iter()
            .filter_map(|c| match c {
                PlacementConstraint::MemberOf(e) => Some(e),
                PlacementConstraint::DistinctInstance => None,
            })
            .collect(),
    };
    let has_random = ranking.has_random();
    let suffix = &ranking.rankers[ranking.prefix..];
    // The attribute of a leading spread (tree mode puts no other attribute spread after it).
    let spread_attr = (ranking.prefix == 1).then(|| ranking.attr_names[0]);

    // The tie-breaks (and random ranks) are derived from the run's one draw during the pass, as the
    // engine derives them, so they need no array.
    let d = &draws;
    let chosen = match suffix {
        [] => run(
            snap,
            &needs,
            &One(|_: &ContainerInstance, _, _| 0),
            spread_attr,
            d,
        ),
        [Ranker::BinpackCpu] => {
            let rank = One(|inst: &ContainerInstance, _, _| inst.remaining.cpu);
            run(snap, &needs, &rank, spread_attr, d)
        }
        [Ranker::BinpackMemory] => {
            let rank = One(|inst: &ContainerInstance, _, _| inst.remaining.memory);
            run(snap, &needs, &rank, spread_attr, d)
        }
        [Ranker::SpreadInstance] => {
            let rank = One(|_: &ContainerInstance, _, group_count| group_count);
            run(snap, &needs, &rank, spread_attr, d)
        }
        [Ranker::Random] => {
            let rank = One(|_: &ContainerInstance, i: usize, _| d.random_rank(i));
            run(snap, &needs, &rank, spread_attr, d)
        }
        rankers => {
            let rank = Chain { rankers, draws };
            run(snap, &needs, &rank, spread_attr, d)
        }
    };
    let Some(i) = chosen else {
        // Nowhere to go: the engine writes the diagnosis, from the same draw.
        return Engine::with_draws(snap, req, options, rng, ranking, draws).run();
    };
    let inst = &snap.instances[i];
    let range = needs.ports.on(inst, req).range;
    let mut dynamic_tcp_ports = Vec::new();
    let mut dynamic_udp_ports = Vec::new();
    if needs.tcp_stage {
        PortState::new(
            &inst.used_tcp_ports,
            &need.static_tcp_ports,
            need.dynamic_tcp_ports,
            range,
        )
        .take(
            &inst.used_tcp_ports,
            &need.static_tcp_ports,
            need.dynamic_tcp_ports,
            range,
            &mut dynamic_tcp_ports,
        );
    }
    if needs.udp_stage {
        PortState::new(
            &inst.used_udp_ports,
            &need.static_udp_ports,
            need.dynamic_udp_ports,
            range,
        )
        .take(
            &inst.used_udp_ports,
            &need.static_udp_ports,
            need.dynamic_udp_ports,
            range,
            &mut dynamic_udp_ports,
        );
    }
    if has_random {
        // The engine draws a new random rank for the instance that received a task.
        draw(rng);
    }
    Plan {
        placements: vec![Placement {
            task_index: 0,
            instance_index: i,
            instance_id: inst.id.clone(),
            dynamic_tcp_ports,
            dynamic_udp_ports,
        }],
        unplaced: 0,
        diagnosis: None,
    }
}

/// What the first pass settled.
enum Pass<'a> {
    /// The instance the engine would choose, or `None` if no instance passes every stage.
    Chosen(Option<usize>),
    /// The leading spread on this attribute needs every instance's value: see [`by_value`].
    ByValue(&'a str),
}

/// The first pass (see the module docs).
fn choose<'a, K: Rank, const LEADING: bool>(
    snap: &ClusterSnapshot,
    needs: &Needs<'_>,
    rank: &K,
    spread_attr: Option<&'a str>,
    draws: &Draws,
) -> Pass<'a> {
    // The pass: the best fully feasible instance by the rankers after the leading spread (all of
    // them without one). Attribute values are not read here: a map lookup per instance would cost
    // more than the rest of the pass (see below for how the leading spread is settled).
    let mut best: Option<(K::Key, u32)> = None;
    // Whether another cheap-feasible instance has the same rank as `best`.
    let mut tied = false;
    // Instances holding tasks of the group (only needed for a leading spread).
    let mut holders: Vec<u32> = Vec::new();
    for (i, inst) in snap.instances.iter().enumerate() {
        let group_count = needs.group_count(inst);
        if LEADING && group_count > 0 {
            holders.push(i as u32);
        }
        if !needs.cheap_pass(inst, group_count) {
            continue;
        }
        // Only instances the cheap stages keep need their tie-break (derived, not drawn: see
        // `Draws`).
        let key = rank.key(inst, i, group_count, draws.tiebreak(i));
        if let Some((b, _)) = &best {
            // In instance order, only a strictly better rank replaces the candidate: the engine
            // keeps the lower index on equal keys.
            if key > *b {
                continue;
            }
            if key == *b {
                tied = true;
                continue;
            }
        }
        if needs.deferred_pass(inst) {
            best = Some((key, i as u32));
            tied = false;
        }
    }
    let Some((_, i)) = best else {
        return Pass::Chosen(None);
    };
    let Some(name) = spread_attr else {
        return Pass::Chosen(Some(i as usize));
    };
    // A leading spread ranks first by the tasks of the group in the instance's value. If the best
    // instance by the other rankers has a value holding none of them (always the case for a group's
    // first task), no instance can do better, and no other value needs to be read. Otherwise (or on
    // an exact tie, which the engine breaks by the order in which values first appear), every value
    // is needed: a second pass reads them.
    let value = snap.instances[i as usize].attribute(name).flatten();
    let occupied = holders
        .iter()
        .any(|j| snap.instances[*j as usize].attribute(name).flatten() == value);
    if tied || occupied {
        Pass::ByValue(name)
    } else {
        Pass::Chosen(Some(i as usize))
    }
}

/// The best instance under a leading spread on attribute `name`, reading every instance's value:
/// per value, the tasks of the group and the best fully feasible instance; then the value with the
/// fewest tasks, the best rank, and on a full tie the value that appeared first, as the engine's scan
/// over its groups does.
fn by_value<K: Rank>(
    snap: &ClusterSnapshot,
    needs: &Needs<'_>,
    rank: &K,
    name: &str,
    draws: &Draws,
) -> Option<usize> {
    let mut values = Interner::default();
    let mut counts: Vec<u32> = Vec::new();
    let mut best: Vec<Option<(K::Key, u32)>> = Vec::new();
    for (i, inst) in snap.instances.iter().enumerate() {
        let group_count = needs.group_count(inst);
        let g = values.id(inst.attribute(name).flatten()) as usize;
        if g == counts.len() {
            counts.push(0);
            best.push(None);
        }
        counts[g] += group_count;
        if !needs.cheap_pass(inst, group_count) {
            continue;
        }
        let key = rank.key(inst, i, group_count, draws.tiebreak(i));
        if matches!(&best[g], Some((b, _)) if key >= *b) {
            continue;
        }
        if needs.deferred_pass(inst) {
            best[g] = Some((key, i as u32));
        }
    }
    let mut chosen: Option<(u32, K::Key, u32)> = None;
    for (count, b) in counts.iter().zip(&best) {
        if let Some((key, i)) = b {
            if chosen.is_none_or(|(c, k, _)| (*count, *key) < (c, k)) {
                chosen = Some((*count, *key, *i));
            }
        }
    }
    chosen.map(|(_, _, i)| i as usize)
}

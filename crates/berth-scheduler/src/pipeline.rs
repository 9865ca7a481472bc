//! The placement pipeline: feasibility, then ranking, then selection.
//!
//! For each task of a request the engine keeps the instances that pass every feasibility stage, ranks
//! them by the strategies (later strategies break the ties of earlier ones, a seeded random rank
//! breaks what is left), takes the best, and records the placement in its working state so that the
//! next task sees the resources and ports the previous one took. When no instance passes, every
//! remaining task of the request fails for the same reasons: the engine stops, counts them, and
//! writes one [`Diagnosis`] (one record per rejected instance, not per task), so a request for
//! millions of tasks that fit nowhere costs no more than a request for one.
//!
//! How it stays fast (a planning run over `n` instances placing `k` tasks costs `O(n + k log n)` for
//! the usual strategies, with a small constant on the `n`):
//! - Feasibility only changes on the instance that just received a task: resources and ports only
//!   shrink, and the only state an expression can read that a placement changes (`task:group`,
//!   `runningTasksCount`) is that instance's own. So every instance is checked once, and after each
//!   placement only the chosen one is checked again. Expressions are parsed once, by
//!   [`crate::query::parse`], before the run.
//! - The checks are split: the cheap stages (agent and status, distinctInstance, cpu, memory, gpu)
//!   run on every instance at the start; the costly ones (memberOf expressions, port lists) are
//!   deferred until an instance reaches the top of the ranking, since most instances of a large
//!   cluster never do. A candidate that fails them leaves the ranking and the next one is tried. When
//!   a task cannot be placed, every stage runs on every instance for the [`Diagnosis`].
//! - Leading `spread` strategies on attributes rank by a count shared by every instance with the same
//!   value. The engine groups instances by those values; within a group, the remaining strategies
//!   (binpack, spread on instanceId, random) give each instance a key that only changes when it
//!   receives a task. Each group keeps its keys in a tournament tree (`MinTree`), so selection is a
//!   scan over the (few) groups plus an `O(log n)` update. Any other strategy chain (an attribute
//!   spread after a binpack, say) falls back to a linear scan of the feasible instances.
//! - A request for a single task (RunTask's usual case) skips all of that: the single-task path
//!   (`small.rs`) finds the same instance with one pass over the snapshot that keeps only the best
//!   candidate, which costs a few nanoseconds per instance instead of building the working state.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};

use crate::failure::{event_subject, ClosestInstance, Diagnosis, FailureReason, Rejection};
use crate::model::{
    ClusterSnapshot, ContainerInstance, InstanceStatus, Placement, PlacementOptions,
    PlacementRequest, Plan,
};
use crate::ports::{PortRange, PortState};
use crate::query::{Expr, InstanceView};
use crate::small;
use crate::strategy::{BinpackField, PlacementConstraint, PlacementStrategy, SpreadField};

/// ECS accepts at most five strategies; more are ignored.
pub const MAX_STRATEGIES: usize = 5;
pub(crate) const KEY_LEN: usize = MAX_STRATEGIES + 1;
/// A rank: strategy components in order, then the seeded tie-break. Smaller is better.
pub(crate) type Key = [u32; KEY_LEN];
const INFEASIBLE: Key = [u32::MAX; KEY_LEN];

/// Plans the placement of `request.count` tasks on `snapshot`.
///
/// Pure: the answer depends only on the arguments, and the same RNG state gives the same plan.
pub fn place<R: Rng + ?Sized>(
    snapshot: &ClusterSnapshot,
    request: &PlacementRequest,
    options: &PlacementOptions,
    rng: &mut R,
) -> Plan {
    plan_with(snapshot, request, options, rng, u32::MAX, false)
}

/// [`place`] without the single-task path (`small.rs`): every request goes through the
/// general engine. The two give the same plan and leave the RNG in the same state; this exists so
/// that tests and benchmarks can compare them.
#[doc(hidden)]
pub fn place_general<R: Rng + ?Sized>(
    snapshot: &ClusterSnapshot,
    request: &PlacementRequest,
    options: &PlacementOptions,
    rng: &mut R,
) -> Plan {
    plan_with(snapshot, request, options, rng, u32::MAX, true)
}

/// [`place`] (or [`place_general`] when `general`) with every tie-break masked by `tie_mask`, so
/// that tests can make tie-breaks collide and exercise the order on exact ties (group order, then
/// instance index). `u32::MAX` gives [`place`]'s own tie-breaks. Not for production use.
#[doc(hidden)]
pub fn place_with_tie_mask<R: Rng + ?Sized>(
    snapshot: &ClusterSnapshot,
    request: &PlacementRequest,
    options: &PlacementOptions,
    rng: &mut R,
    tie_mask: u32,
    general: bool,
) -> Plan {
    plan_with(snapshot, request, options, rng, tie_mask, general)
}

fn plan_with<R: Rng + ?Sized>(
    snapshot: &ClusterSnapshot,
    request: &PlacementRequest,
    options: &PlacementOptions,
    rng: &mut R,
    tie_mask: u32,
    general: bool,
) -> Plan {
    let ranking = Ranking::of(request);
    let draws = Draws::new(rng, tie_mask);
    if !general && small::eligible(request, &ranking) {
        return small::place_one(snapshot, request, options, rng, ranking, draws);
    }
    Engine::with_draws(snapshot, request, options, rng, ranking, draws).run()
}

/// Every feasibility stage that instance `instance_index` fails for one task of `request`, in
/// pipeline order; empty when the task fits. This is StartTask's check: the caller picked the
/// instances, so no strategy applies. Returns `None` if the index is out of range.
pub fn check_instance(
    snapshot: &ClusterSnapshot,
    instance_index: usize,
    request: &PlacementRequest,
    options: &PlacementOptions,
) -> Option<Vec<FailureReason>> {
    let instance = snapshot.instances.get(instance_index)?;
    let single = ClusterSnapshot {
        instances: vec![instance.clone()],
    };
    // The RNG only breaks ranking ties, which a feasibility check never reaches.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut engine = Engine::new(&single, request, options, &mut rng);
    engine.verify(0);
    Some(engine.all_failures(0))
}

/// One feasibility check. Each rejects with exactly one [`FailureReason`].
#[derive(Debug)]
pub(crate) enum Stage<'a> {
    /// The agent is connected and the instance is ACTIVE.
    AgentStatus,
    /// Every memberOf expression holds.
    Attributes { exprs: Vec<&'a Expr>, dynamic: bool },
    /// No task of the group runs there yet.
    DistinctInstance,
    /// Enough CPU units.
    Cpu,
    /// Enough memory.
    Memory,
    /// Enough GPUs.
    Gpu,
    /// Static TCP ports free and enough dynamic ones.
    PortsTcp,
    /// Static UDP ports free and enough dynamic ones.
    PortsUdp,
}

/// How much of the pipeline a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Only the cheap stages, over every instance at the start of a run.
    Cheap,
    /// Every stage.
    Full,
    /// After a placement on the instance: the stages whose verdict that placement can change.
    Recheck,
}

impl Stage<'_> {
    /// Stages put off until an instance is about to be chosen: they read port lists and evaluate
    /// expressions, and most instances of a large cluster never come near the top of the ranking.
    fn is_deferred(&self) -> bool {
        matches!(
            self,
            Self::Attributes { .. } | Self::PortsTcp | Self::PortsUdp
        )
    }

    fn reason(&self) -> FailureReason {
        match self {
            Self::AgentStatus => FailureReason::Agent,
            Self::Attributes { .. } => FailureReason::Attribute,
            Self::DistinctInstance => FailureReason::DistinctInstance,
            Self::Cpu => FailureReason::Cpu,
            Self::Memory => FailureReason::Memory,
            Self::Gpu => FailureReason::Gpu,
            Self::PortsTcp => FailureReason::PortsTcp,
            Self::PortsUdp => FailureReason::PortsUdp,
        }
    }
}

/// Wires the feasibility stages for a request.
///
/// The order matters twice: cheap checks go first, and an instance is reported under the first stage
/// that rejects it. So the stages that can never change during a run come first (a disconnected or
/// draining instance, or one outside a memberOf expression, is reported as `AGENT` or `ATTRIBUTE`
/// even if it is also full), then distinctInstance (one integer test), then resources from the most
/// to the least commonly short (cpu, memory, gpu), and the port checks last, which are the most
/// expensive and the most specific. Stages a request cannot fail (no GPUs, no ports, no constraint)
/// are left out.
pub(crate) fn feasibility_stages(request: &PlacementRequest) -> Vec<Stage<'_>> {
    let req = &request.requirements;
    let mut stages = vec![Stage::AgentStatus];
    let exprs: Vec<&Expr> = request
        .constraints
        .iter()
        .filter_map(|c| match c {
            PlacementConstraint::MemberOf(e) => Some(e),
            PlacementConstraint::DistinctInstance => None,
        })
        .collect();
    if !exprs.is_empty() {
        let dynamic = exprs.iter().any(|e| e.is_dynamic());
        stages.push(Stage::Attributes { exprs, dynamic });
    }
    if request
        .constraints
        .iter()
        .any(|c| matches!(c, PlacementConstraint::DistinctInstance))
    {
        stages.push(Stage::DistinctInstance);
    }
    stages.push(Stage::Cpu);
    stages.push(Stage::Memory);
    if req.resources.gpus > 0 {
        stages.push(Stage::Gpu);
    }
    if !req.static_tcp_ports.is_empty() || req.dynamic_tcp_ports > 0 {
        stages.push(Stage::PortsTcp);
    }
    if !req.static_udp_ports.is_empty() || req.dynamic_udp_ports > 0 {
        stages.push(Stage::PortsUdp);
    }
    stages
}

/// One ranking component, from one strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranker {
    BinpackCpu,
    BinpackMemory,
    SpreadInstance,
    /// Spread over the values of attribute slot `n`.
    SpreadAttribute(usize),
    Random,
}

/// Gives each distinct attribute value a small id. Attributes that placement spreads over usually
/// have a handful of values (zones, instance types), so a short list is searched before a map.
#[derive(Default)]
pub(crate) struct Interner<'a> {
    few: Vec<Option<&'a str>>,
    many: HashMap<Option<&'a str>, u32>,
}

impl<'a> Interner<'a> {
    const FEW: usize = 16;

    pub(crate) fn id(&mut self, v: Option<&'a str>) -> u32 {
        if let Some(pos) = self.few.iter().position(|x| *x == v) {
            return pos as u32;
        }
        if self.few.len() < Self::FEW {
            self.few.push(v);
            return (self.few.len() - 1) as u32;
        }
        let next = (Self::FEW + self.many.len()) as u32;
        *self.many.entry(v).or_insert(next)
    }
}

/// Tournament tree over fixed leaves: `O(1)` minimum, `O(log n)` update.
#[derive(Debug)]
pub(crate) struct MinTree {
    size: usize,
    keys: Vec<Key>,
    /// `node[k]` is the leaf with the smallest key under node `k`; leaves are `size..2*size`.
    node: Vec<u32>,
}

impl MinTree {
    fn new(keys_in: &[Key]) -> Self {
        let size = keys_in.len().max(1).next_power_of_two();
        let mut keys = vec![INFEASIBLE; size];
        keys[..keys_in.len()].copy_from_slice(keys_in);
        let mut node = vec![0u32; 2 * size];
        for (leaf, slot) in node[size..].iter_mut().enumerate() {
            *slot = leaf as u32;
        }
        for k in (1..size).rev() {
            node[k] = Self::better(&keys, node[2 * k], node[2 * k + 1]);
        }
        Self { size, keys, node }
    }

    #[inline]
    fn better(keys: &[Key], a: u32, b: u32) -> u32 {
        if keys[b as usize] < keys[a as usize] {
            b
        } else {
            a
        }
    }

    fn min(&self) -> (u32, &Key) {
        let leaf = self.node[1];
        (leaf, &self.keys[leaf as usize])
    }

    fn update(&mut self, leaf: u32, key: Key) {
        self.keys[leaf as usize] = key;
        let mut k = (leaf as usize + self.size) / 2;
        while k >= 1 {
            self.node[k] = Self::better(&self.keys, self.node[2 * k], self.node[2 * k + 1]);
            k /= 2;
        }
    }
}

/// Instances sharing the values of the leading attribute spreads.
#[derive(Debug)]
struct Group {
    /// Value id per leading attribute-spread slot.
    values: Vec<u32>,
    /// Instance index per leaf.
    members: Vec<u32>,
    tree: MinTree,
}

enum Selector {
    /// Grouped tournament trees (see the module docs).
    Tree {
        groups: Vec<Group>,
        leaf_of: Vec<(u32, u32)>,
    },
    /// The feasible instances, scanned in full for each task.
    Linear { live: Vec<u32> },
}

pub(crate) struct Engine<'a, R: ?Sized> {
    snap: &'a ClusterSnapshot,
    req: &'a PlacementRequest,
    rng: &'a mut R,
    stages: Vec<Stage<'a>>,
    rankers: Vec<Ranker>,
    /// How many leading rankers are attribute spreads handled by grouping (tree mode only).
    prefix: usize,
    /// The dynamic port range of the run and what one task takes of it; an instance with a range of
    /// its own has its own ([`PortNeeds::on`]).
    ports: PortNeeds,
    cpu: Vec<u32>,
    mem: Vec<u32>,
    gpu: Vec<u32>,
    /// Tasks of the request's group per instance, existing and planned.
    group_count: Vec<u32>,
    /// Tasks planned per instance in this run.
    planned: Vec<u32>,
    tcp: Vec<PortState>,
    udp: Vec<PortState>,
    /// Per-instance random rank for the `random` strategy (empty when unused).
    rand_key: Vec<u32>,
    /// The run's seeded draw, from which each instance's tie-break is derived.
    draws: Draws,
    /// First failing stage per instance, `None` while feasible (as far as it has been checked).
    reject: Vec<Option<FailureReason>>,
    /// Whether the deferred stages have run on the instance (and its port state is read).
    verified: Vec<bool>,
    /// Per attribute slot: value id per instance.
    attr_values: Vec<Vec<u32>>,
    /// Per attribute slot: tasks of the group per value id.
    attr_counts: Vec<Vec<u32>>,
}

/// The ranking a request asks for: ECS's strategies in order, as ranking components.
pub(crate) struct Ranking<'a> {
    pub(crate) rankers: Vec<Ranker>,
    /// Attribute name per spread slot, in strategy order.
    pub(crate) attr_names: Vec<&'a str>,
    /// How many leading rankers are attribute spreads.
    pub(crate) prefix: usize,
    /// Whether no attribute spread follows another kind of strategy (grouped trees can be used).
    pub(crate) tree_mode: bool,
}

impl<'a> Ranking<'a> {
    pub(crate) fn of(req: &'a PlacementRequest) -> Self {
        // Ranking: ECS's strategies in order. Nothing after `random` can break a tie, so it is
        // dropped; no strategy at all means random.
        let strategies: &[PlacementStrategy] = if req.strategies.is_empty() {
            &[PlacementStrategy::Random]
        } else {
            &req.strategies
        };
        let mut rankers = Vec::new();
        let mut attr_names: Vec<&str> = Vec::new();
        for s in strategies.iter().take(MAX_STRATEGIES) {
            let r = match s {
                PlacementStrategy::Binpack(BinpackField::Cpu) => Ranker::BinpackCpu,
                PlacementStrategy::Binpack(BinpackField::Memory) => Ranker::BinpackMemory,
                PlacementStrategy::Spread(SpreadField::InstanceId) => Ranker::SpreadInstance,
                PlacementStrategy::Spread(SpreadField::Attribute(a)) => {
                    attr_names.push(a);
                    Ranker::SpreadAttribute(attr_names.len() - 1)
                }
                PlacementStrategy::Random => Ranker::Random,
            };
            rankers.push(r);
            if r == Ranker::Random {
                break;
            }
        }
        let prefix = rankers
            .iter()
            .take_while(|r| matches!(r, Ranker::SpreadAttribute(_)))
            .count();
        let tree_mode = !rankers[prefix..]
            .iter()
            .any(|r| matches!(r, Ranker::SpreadAttribute(_)));
        Self {
            rankers,
            attr_names,
            prefix,
            tree_mode,
        }
    }

    pub(crate) fn has_random(&self) -> bool {
        self.rankers.contains(&Ranker::Random)
    }
}

/// The seeded draws of a planning run: exactly one, made before anything else, from which every
/// instance's tie-break (and, with the `random` strategy, its first random rank) is derived by a
/// stateless mix of that draw and the instance index (the `index`-th output of a splitmix64 stream
/// seeded with it). Deriving a value costs about a nanosecond, against about two for a draw from
/// the RNG, and lets the single-task path compute them as it goes instead of filling arrays. With
/// `random`, each placement then makes one more draw: the new random rank of the instance that
/// received the task. Every path through the engine makes exactly these draws, so the RNG is left in
/// the same state whichever path planned, and the same seed gives the same plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draws {
    /// Seed of the tie-breaks.
    tie_seed: u64,
    /// Seed of the first random ranks: a second stream, derived from the same draw.
    rand_seed: u64,
    /// Mask applied to every tie-break: `u32::MAX` except in tests (see [`place_with_tie_mask`]).
    tie_mask: u32,
}

/// splitmix64's increment (the golden ratio in 64 bits).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's finaliser: a bijection of `u64` whose outputs for consecutive inputs look
/// independent.
#[inline(always)]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Output `index` of the splitmix64 stream seeded with `seed`, reduced to `0..u32::MAX` as [`draw`]
/// is (a tie-break of `u32::MAX` could make a feasible key equal to `INFEASIBLE`).
#[inline(always)]
fn stream(seed: u64, index: usize) -> u32 {
    let z = mix64(seed.wrapping_add((index as u64).wrapping_add(1).wrapping_mul(GOLDEN)));
    (((z >> 32) * u64::from(u32::MAX)) >> 32) as u32
}

impl Draws {
    /// Makes the run's one draw.
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R, tie_mask: u32) -> Self {
        let seed = rng.next_u64();
        Self {
            tie_seed: seed,
            rand_seed: mix64(seed ^ 0x5241_4E44_4F4D_5F4B),
            tie_mask,
        }
    }

    /// The seeded tie-break of instance `i`.
    #[inline(always)]
    pub(crate) fn tiebreak(&self, i: usize) -> u32 {
        stream(self.tie_seed, i) & self.tie_mask
    }

    /// The first random rank of instance `i` (the `random` strategy).
    #[inline(always)]
    pub(crate) fn random_rank(&self, i: usize) -> u32 {
        stream(self.rand_seed, i)
    }
}

/// One seeded draw: the new random rank of an instance that received a task.
#[inline]
pub(crate) fn draw<R: Rng + ?Sized>(rng: &mut R) -> u32 {
    rng.gen_range(0..u32::MAX)
}

/// A dynamic host port range and the ports of it that one task takes (its dynamic ports plus its
/// static ports inside the range), per protocol.
///
/// A run resolves it once for the range of [`PlacementOptions`]; an instance with a range of its own
/// ([`crate::ContainerInstance::dynamic_ports`]) gets its own, computed when one of its port stages
/// runs (see [`PortNeeds::on`]), so the common case costs one test of that field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortNeeds {
    pub(crate) range: PortRange,
    pub(crate) tcp: u32,
    pub(crate) udp: u32,
}

impl PortNeeds {
    /// The needs of one task of `req` in `range`.
    pub(crate) fn new(req: &PlacementRequest, range: PortRange) -> Self {
        let need = &req.requirements;
        let in_range = |ports: &[u16]| ports.iter().filter(|p| range.contains(**p)).count() as u32;
        let tcp = if need.dynamic_tcp_ports > 0 {
            u32::from(need.dynamic_tcp_ports) + in_range(&need.static_tcp_ports)
        } else {
            0
        };
        let udp = if need.dynamic_udp_ports > 0 {
            u32::from(need.dynamic_udp_ports) + in_range(&need.static_udp_ports)
        } else {
            0
        };
        Self { range, tcp, udp }
    }

    /// The run's needs (`PlacementOptions`' range).
    pub(crate) fn of_run(req: &PlacementRequest, options: &PlacementOptions) -> Self {
        Self::new(
            req,
            PortRange {
                first: options.dynamic_port_first,
                last: options.dynamic_port_last,
            },
        )
    }

    /// The needs on `inst`: these, unless the instance has a range of its own.
    #[inline]
    pub(crate) fn on(self, inst: &ContainerInstance, req: &PlacementRequest) -> Self {
        match inst.dynamic_ports {
            None => self,
            Some((first, last)) => Self::new(req, PortRange { first, last }),
        }
    }
}

impl<'a, R: Rng + ?Sized> Engine<'a, R> {
    fn new(
        snap: &'a ClusterSnapshot,
        req: &'a PlacementRequest,
        options: &PlacementOptions,
        rng: &'a mut R,
    ) -> Self {
        let ranking = Ranking::of(req);
        let draws = Draws::new(rng, u32::MAX);
        Self::with_draws(snap, req, options, rng, ranking, draws)
    }

    /// The engine for a run whose seeded draw is already made.
    pub(crate) fn with_draws(
        snap: &'a ClusterSnapshot,
        req: &'a PlacementRequest,
        options: &PlacementOptions,
        rng: &'a mut R,
        ranking: Ranking<'a>,
        draws: Draws,
    ) -> Self {
        let n = snap.instances.len();
        let ports = PortNeeds::of_run(req, options);
        let Ranking {
            rankers,
            attr_names,
            prefix,
            tree_mode,
        } = ranking;
        let rand_key = if rankers.contains(&Ranker::Random) {
            (0..n).map(|i| draws.random_rank(i)).collect()
        } else {
            Vec::new()
        };

        let group_count: Vec<u32> = snap
            .instances
            .iter()
            .map(|inst| inst.tasks.iter().filter(|t| t.group == req.group).count() as u32)
            .collect();

        // Intern attribute values per spread slot and count the group's tasks per value, over every
        // instance of the cluster (draining and full ones included: their tasks still count).
        let mut attr_values = Vec::with_capacity(attr_names.len());
        let mut attr_counts = Vec::with_capacity(attr_names.len());
        for name in &attr_names {
            let mut ids = Interner::default();
            let mut values = Vec::with_capacity(n);
            let mut counts: Vec<u32> = Vec::new();
            for (i, inst) in snap.instances.iter().enumerate() {
                let id = ids.id(inst.attribute(name).flatten());
                if id as usize == counts.len() {
                    counts.push(0);
                }
                counts[id as usize] += group_count[i];
                values.push(id);
            }
            attr_values.push(values);
            attr_counts.push(counts);
        }

        let mut engine = Self {
            snap,
            req,
            rng,
            stages: feasibility_stages(req),
            rankers,
            prefix: if tree_mode { prefix } else { 0 },
            ports,
            cpu: snap.instances.iter().map(|i| i.remaining.cpu).collect(),
            mem: snap.instances.iter().map(|i| i.remaining.memory).collect(),
            gpu: snap.instances.iter().map(|i| i.remaining.gpus).collect(),
            group_count,
            planned: vec![0; n],
            tcp: vec![PortState::default(); n],
            udp: vec![PortState::default(); n],
            rand_key,
            draws,
            reject: Vec::with_capacity(n),
            verified: vec![false; n],
            attr_values,
            attr_counts,
        };
        engine.reject = (0..n)
            .map(|i| engine.first_failure(i, Check::Cheap))
            .collect();
        engine
    }

    /// Runs the deferred stages on instance `i` once (reading its ports first) and returns its
    /// verdict.
    fn verify(&mut self, i: usize) -> Option<FailureReason> {
        if !self.verified[i] {
            let need = &self.req.requirements;
            let inst = &self.snap.instances[i];
            let range = self.ports.on(inst, self.req).range;
            self.tcp[i] = PortState::new(
                &inst.used_tcp_ports,
                &need.static_tcp_ports,
                need.dynamic_tcp_ports,
                range,
            );
            self.udp[i] = PortState::new(
                &inst.used_udp_ports,
                &need.static_udp_ports,
                need.dynamic_udp_ports,
                range,
            );
            self.verified[i] = true;
            self.reject[i] = self.first_failure(i, Check::Full);
        }
        self.reject[i]
    }

    /// The first stage that rejects instance `i`, among those `check` runs.
    fn first_failure(&self, i: usize, check: Check) -> Option<FailureReason> {
        self.stages
            .iter()
            .find(|s| !self.passes(s, i, check))
            .map(Stage::reason)
    }

    /// Every stage that rejects instance `i`, in order.
    fn all_failures(&self, i: usize) -> Vec<FailureReason> {
        self.stages
            .iter()
            .filter(|s| !self.passes(s, i, Check::Full))
            .map(Stage::reason)
            .collect()
    }

    #[inline]
    fn passes(&self, stage: &Stage<'_>, i: usize, check: Check) -> bool {
        if check == Check::Cheap && stage.is_deferred() {
            return true;
        }
        let need = &self.req.requirements;
        let inst = &self.snap.instances[i];
        match stage {
            Stage::AgentStatus => {
                check == Check::Recheck
                    || (inst.agent_connected && inst.status == InstanceStatus::Active)
            }
            Stage::Attributes { exprs, dynamic } => {
                if check == Check::Recheck && !dynamic {
                    return true;
                }
                let view = InstanceView {
                    instance: inst,
                    planned_group: Some(&self.req.group),
                    planned_count: self.planned[i],
                };
                exprs.iter().all(|e| e.eval(&view))
            }
            Stage::DistinctInstance => self.group_count[i] == 0,
            Stage::Cpu => self.cpu[i] >= need.resources.cpu,
            Stage::Memory => self.mem[i] >= need.resources.memory,
            Stage::Gpu => self.gpu[i] >= need.resources.gpus,
            Stage::PortsTcp => {
                !self.tcp[i].static_conflict
                    && self.tcp[i].free_dynamic >= self.ports.on(inst, self.req).tcp
            }
            Stage::PortsUdp => {
                !self.udp[i].static_conflict
                    && self.udp[i].free_dynamic >= self.ports.on(inst, self.req).udp
            }
        }
    }

    /// The rank of instance `i` from ranker `from` on, then the tie-break.
    #[inline]
    fn key(&self, i: usize, from: usize) -> Key {
        let mut key = [0u32; KEY_LEN];
        for (slot, r) in key.iter_mut().zip(&self.rankers[from..]) {
            *slot = match *r {
                Ranker::BinpackCpu => self.cpu[i],
                Ranker::BinpackMemory => self.mem[i],
                Ranker::SpreadInstance => self.group_count[i],
                Ranker::SpreadAttribute(s) => self.attr_counts[s][self.attr_values[s][i] as usize],
                Ranker::Random => self.rand_key[i],
            };
        }
        key[KEY_LEN - 1] = self.draws.tiebreak(i);
        key
    }

    fn leaf_key(&self, i: usize) -> Key {
        if self.reject[i].is_some() {
            INFEASIBLE
        } else {
            self.key(i, self.prefix)
        }
    }

    fn build_selector(&mut self) -> Selector {
        let n = self.snap.instances.len();
        let tree_mode = !self.rankers[self.prefix..]
            .iter()
            .any(|r| matches!(r, Ranker::SpreadAttribute(_)));
        if !tree_mode {
            // The linear scan looks at every candidate anyway: verify them all now.
            for i in 0..n {
                if self.reject[i].is_none() {
                    self.verify(i);
                }
            }
            let live = (0..n as u32)
                .filter(|i| self.reject[*i as usize].is_none())
                .collect();
            return Selector::Linear { live };
        }
        let mut members: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
        let mut leaf_of = vec![(0u32, 0u32); n];
        if self.prefix == 0 {
            // One group holding every instance.
            members.push((Vec::new(), (0..n as u32).collect()));
            for (i, leaf) in leaf_of.iter_mut().enumerate() {
                *leaf = (0, i as u32);
            }
        } else if self.prefix == 1 {
            // One spread attribute (the usual availability-zone spread): value ids are group ids.
            let values = &self.attr_values[0];
            let groups = values.iter().max().map_or(0, |m| *m as usize + 1);
            members = (0..groups as u32).map(|v| (vec![v], Vec::new())).collect();
            for (i, leaf) in leaf_of.iter_mut().enumerate() {
                let g = values[i] as usize;
                *leaf = (g as u32, members[g].1.len() as u32);
                members[g].1.push(i as u32);
            }
        } else {
            let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
            let mut values: Vec<u32> = Vec::with_capacity(self.prefix);
            for (i, leaf) in leaf_of.iter_mut().enumerate() {
                values.clear();
                values.extend((0..self.prefix).map(|s| self.attr_values[s][i]));
                let g = match index.get(&values) {
                    Some(g) => *g,
                    None => {
                        members.push((values.clone(), Vec::new()));
                        index.insert(values.clone(), members.len() - 1);
                        members.len() - 1
                    }
                };
                *leaf = (g as u32, members[g].1.len() as u32);
                members[g].1.push(i as u32);
            }
        }
        let groups = members
            .into_iter()
            .map(|(values, members)| {
                let keys: Vec<Key> = members.iter().map(|i| self.leaf_key(*i as usize)).collect();
                Group {
                    values,
                    tree: MinTree::new(&keys),
                    members,
                }
            })
            .collect();
        Selector::Tree { groups, leaf_of }
    }

    /// The best feasible instance, if any. In tree mode the best-ranked candidate is verified
    /// (deferred stages) before it is returned; one that fails leaves its tree and the next is tried.
    /// Each instance is verified at most once, so this ends.
    fn select(&mut self, selector: &mut Selector) -> Option<usize> {
        match selector {
            Selector::Linear { live } => live
                .iter()
                .map(|i| *i as usize)
                .min_by_key(|i| self.key(*i, 0)),
            Selector::Tree { groups, leaf_of } => loop {
                let i = self.best_ranked(groups)?;
                if self.verify(i).is_none() {
                    return Some(i);
                }
                let (g, leaf) = leaf_of[i];
                groups[g as usize].tree.update(leaf, INFEASIBLE);
            },
        }
    }

    /// The instance at the top of the grouped trees: the group with the lowest spread counts, then
    /// the lowest key inside it.
    fn best_ranked(&self, groups: &[Group]) -> Option<usize> {
        let mut best: Option<([u32; MAX_STRATEGIES], &Key, usize)> = None;
        for g in groups {
            let (leaf, key) = g.tree.min();
            if *key == INFEASIBLE {
                continue;
            }
            let mut pk = [0u32; MAX_STRATEGIES];
            for (s, v) in g.values.iter().enumerate() {
                pk[s] = self.attr_counts[s][*v as usize];
            }
            let i = g.members[leaf as usize] as usize;
            let better = match &best {
                None => true,
                Some((bp, bk, _)) => (pk, key) < (*bp, *bk),
            };
            if better {
                best = Some((pk, key, i));
            }
        }
        best.map(|(_, _, i)| i)
    }

    /// Records a task on instance `i` and re-checks it.
    fn commit(&mut self, i: usize, task_index: u32, selector: &mut Selector) -> Placement {
        let need = &self.req.requirements;
        let inst = &self.snap.instances[i];
        self.cpu[i] = self.cpu[i].saturating_sub(need.resources.cpu);
        self.mem[i] = self.mem[i].saturating_sub(need.resources.memory);
        self.gpu[i] = self.gpu[i].saturating_sub(need.resources.gpus);
        let mut dynamic_tcp_ports = Vec::new();
        let mut dynamic_udp_ports = Vec::new();
        let range = self.ports.on(inst, self.req).range;
        if !need.static_tcp_ports.is_empty() || need.dynamic_tcp_ports > 0 {
            self.tcp[i].take(
                &inst.used_tcp_ports,
                &need.static_tcp_ports,
                need.dynamic_tcp_ports,
                range,
                &mut dynamic_tcp_ports,
            );
        }
        if !need.static_udp_ports.is_empty() || need.dynamic_udp_ports > 0 {
            self.udp[i].take(
                &inst.used_udp_ports,
                &need.static_udp_ports,
                need.dynamic_udp_ports,
                range,
                &mut dynamic_udp_ports,
            );
        }
        self.group_count[i] += 1;
        self.planned[i] += 1;
        for (values, counts) in self.attr_values.iter().zip(self.attr_counts.iter_mut()) {
            counts[values[i] as usize] += 1;
        }
        if !self.rand_key.is_empty() {
            self.rand_key[i] = draw(self.rng);
        }
        self.reject[i] = self.first_failure(i, Check::Recheck);
        match selector {
            Selector::Tree { groups, leaf_of } => {
                let (g, leaf) = leaf_of[i];
                let key = self.leaf_key(i);
                groups[g as usize].tree.update(leaf, key);
            }
            Selector::Linear { live } => {
                if self.reject[i].is_some() {
                    live.retain(|x| *x as usize != i);
                }
            }
        }
        Placement {
            task_index,
            instance_index: i,
            instance_id: inst.id.clone(),
            dynamic_tcp_ports,
            dynamic_udp_ports,
        }
    }

    fn diagnose(&mut self) -> Diagnosis {
        // Some instances were only checked by the cheap stages: run every stage on all of them so
        // that each is reported under its first failing stage.
        for i in 0..self.snap.instances.len() {
            self.verify(i);
            self.reject[i] = self.first_failure(i, Check::Full);
        }
        let rejections = self
            .snap
            .instances
            .iter()
            .zip(&self.reject)
            .filter_map(|(inst, r)| {
                r.map(|reason| Rejection {
                    instance_id: inst.id.clone(),
                    reason,
                })
            })
            .collect();
        let mut closest: Option<(usize, Vec<FailureReason>)> = None;
        for i in 0..self.snap.instances.len() {
            let lacking = self.all_failures(i);
            let better = match &closest {
                None => true,
                Some((_, best)) => lacking.len() < best.len(),
            };
            if better {
                closest = Some((i, lacking));
            }
        }
        let closest = closest.map(|(i, lacking)| ClosestInstance {
            instance_id: self.snap.instances[i].id.clone(),
            lacking,
        });
        Diagnosis::new(&event_subject(&self.req.group), rejections, closest)
    }

    /// Places the request's tasks one after the other until all are placed or one finds no
    /// instance. Nothing a failed placement looks at changes, so the first task that fits nowhere
    /// settles every task after it: the run stops there and reports how many were left, with one
    /// diagnosis for all of them. The cost of a run is therefore that of the tasks placed plus
    /// one diagnosis, whatever the count asked for.
    pub(crate) fn run(mut self) -> Plan {
        let count = self.req.count;
        // Only a first guess: the count asked for says nothing of how many fit.
        let mut placements = Vec::with_capacity(count.min(1024) as usize);
        let mut selector = self.build_selector();
        for task_index in 0..count {
            match self.select(&mut selector) {
                Some(i) => placements.push(self.commit(i, task_index, &mut selector)),
                None => {
                    return Plan {
                        placements,
                        unplaced: count - task_index,
                        diagnosis: Some(self.diagnose()),
                    };
                }
            }
        }
        Plan {
            placements,
            unplaced: 0,
            diagnosis: None,
        }
    }
}

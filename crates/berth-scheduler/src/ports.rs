//! Host port bookkeeping for one instance during a planning run.
//!
//! The snapshot's port lists are read as they are until the first task is planned onto the instance;
//! only then is a sorted, owned copy made (most instances in a large cluster never get one).

/// An inclusive port range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(self) -> u32 {
        if self.first <= self.last {
            u32::from(self.last) - u32::from(self.first) + 1
        } else {
            0
        }
    }

    pub fn contains(self, p: u16) -> bool {
        self.first <= p && p <= self.last
    }
}

/// Ports of one protocol on one instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct PortState {
    /// Sorted, deduplicated used ports, once a task has been planned here.
    owned: Option<Vec<u16>>,
    /// Free ports left in the dynamic range.
    pub free_dynamic: u32,
    /// Whether a requested static port is taken.
    pub static_conflict: bool,
}

impl PortState {
    /// Reads the snapshot's used ports for a request with these static ports and `dynamic` dynamic
    /// ports.
    pub fn new(used: &[u16], statics: &[u16], dynamic: u16, range: PortRange) -> Self {
        let static_conflict = statics.iter().any(|p| used.contains(p));
        let free_dynamic = if dynamic == 0 {
            u32::MAX
        } else if used.len() <= 32 {
            // Small lists (the usual case): count distinct in-range ports without allocating.
            let mut taken = 0u32;
            for (k, p) in used.iter().enumerate() {
                if range.contains(*p) && !used[..k].contains(p) {
                    taken += 1;
                }
            }
            range.len().saturating_sub(taken)
        } else {
            let mut v: Vec<u16> = used
                .iter()
                .copied()
                .filter(|p| range.contains(*p))
                .collect();
            v.sort_unstable();
            v.dedup();
            range.len().saturating_sub(v.len() as u32)
        };
        Self {
            owned: None,
            free_dynamic,
            static_conflict,
        }
    }

    /// Takes the static ports and `dynamic` free ports from the range (lowest first), appending the
    /// dynamic ones to `out`. The caller has checked feasibility.
    pub fn take(
        &mut self,
        used_in_snapshot: &[u16],
        statics: &[u16],
        dynamic: u16,
        range: PortRange,
        out: &mut Vec<u16>,
    ) {
        let owned = self.owned.get_or_insert_with(|| {
            let mut v = used_in_snapshot.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        });
        for p in statics {
            if let Err(at) = owned.binary_search(p) {
                owned.insert(at, *p);
                if range.contains(*p) && self.free_dynamic != u32::MAX {
                    self.free_dynamic = self.free_dynamic.saturating_sub(1);
                }
            }
        }
        if !statics.is_empty() {
            // The same static ports are now taken: no second identical task fits here.
            self.static_conflict = true;
        }
        if dynamic == 0 {
            return;
        }
        let mut candidate = u32::from(range.first);
        let mut at = owned.partition_point(|p| *p < range.first);
        let mut assigned = 0;
        while assigned < dynamic && candidate <= u32::from(range.last) {
            let next_used = owned.get(at).map(|p| u32::from(*p));
            if next_used == Some(candidate) {
                candidate += 1;
                at += 1;
                continue;
            }
            // `candidate` is within u16 because it is <= range.last.
            let port = u16::try_from(candidate).unwrap_or(range.last);
            owned.insert(at, port);
            out.push(port);
            at += 1;
            candidate += 1;
            assigned += 1;
        }
        self.free_dynamic = self.free_dynamic.saturating_sub(u32::from(assigned));
    }
}

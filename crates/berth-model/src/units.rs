//! Task-level CPU and memory sizes as `RegisterTaskDefinition` accepts them.
//!
//! The task-level `cpu` and `memory` members are strings. CPU is either a
//! whole number of CPU units (`"1024"`) or a number of vCPUs (`"1 vCPU"`,
//! `"0.5 vcpu"`, `"2vCPU"`; 1 vCPU = 1024 units). Memory is either a whole
//! number of MiB (`"2048"`) or a number of GB (`"2 GB"`, `"0.5GB"`; ECS counts
//! 1 GB as 1024 MiB; `GiB`, `MB` and `MiB` suffixes are accepted too). Units
//! are case-insensitive and may be separated from the number by spaces.
//!
//! Fractions are allowed only when the result is a whole number of units or
//! MiB. Anything else is rejected with the message ECS gives for the member.

use crate::error::ApiError;

/// CPU units in one vCPU.
pub const CPU_UNITS_PER_VCPU: u32 = 1024;
/// MiB in one GB, as ECS counts them.
pub const MIB_PER_GB: u32 = 1024;

/// The message ECS returns for a task-level `cpu` it cannot use.
pub const INVALID_TASK_CPU: &str = "Invalid 'cpu' setting for task.";
/// The message ECS returns for a task-level `memory` it cannot use.
pub const INVALID_TASK_MEMORY: &str = "Invalid 'memory' setting for task.";

/// Parses a task-level `cpu` string into CPU units.
///
/// Errors are `ClientException` with ECS's message. Zero is
/// rejected; range checks against a launch type are the caller's concern.
pub fn parse_task_cpu(text: &str) -> Result<u32, ApiError> {
    parse_scaled(text, &[("vcpu", CPU_UNITS_PER_VCPU)])
        .filter(|units| *units > 0)
        .ok_or_else(|| ApiError::client(INVALID_TASK_CPU))
}

/// Parses a task-level `memory` string into MiB.
///
/// Errors are `ClientException` with ECS's message. Zero is
/// rejected; range checks against a launch type are the caller's concern.
pub fn parse_task_memory(text: &str) -> Result<u32, ApiError> {
    parse_scaled(
        text,
        &[
            ("gib", MIB_PER_GB),
            ("gb", MIB_PER_GB),
            ("mib", 1),
            ("mb", 1),
        ],
    )
    .filter(|mib| *mib > 0)
    .ok_or_else(|| ApiError::client(INVALID_TASK_MEMORY))
}

/// Splits `text` into a decimal number and an optional unit suffix from
/// `units` (matched case-insensitively), and returns the number scaled by the
/// unit's factor when the result is a whole number that fits in `u32`. A bare
/// number is taken as-is and must then be whole.
fn parse_scaled(text: &str, units: &[(&str, u32)]) -> Option<u32> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let (number, factor) = match units.iter().find(|(suffix, _)| lower.ends_with(suffix)) {
        Some((suffix, factor)) => (lower[..lower.len() - suffix.len()].trim_end(), *factor),
        None => (lower.as_str(), 1),
    };
    let (whole, frac) = match number.split_once('.') {
        Some((whole, frac)) => (whole, frac),
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if number.contains('.') && frac.is_empty() {
        return None;
    }
    // Exact decimal arithmetic: value = whole + frac / 10^len(frac); the
    // scaled result must be a whole number.
    let whole_value: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac = frac.trim_end_matches('0');
    if frac.len() > 9 {
        return None;
    }
    let denominator = 10u64.pow(frac.len() as u32);
    let frac_value: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scaled_whole = whole_value.checked_mul(u64::from(factor))?;
    let scaled_frac_numerator = frac_value.checked_mul(u64::from(factor))?;
    if scaled_frac_numerator % denominator != 0 {
        return None;
    }
    let total = scaled_whole.checked_add(scaled_frac_numerator / denominator)?;
    u32::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_task_cpu("1024").ok(), Some(1024));
        assert_eq!(parse_task_cpu(" 256 ").ok(), Some(256));
        assert_eq!(parse_task_cpu("1 vCPU").ok(), Some(1024));
        assert_eq!(parse_task_cpu("1vcpu").ok(), Some(1024));
        assert_eq!(parse_task_cpu("0.5 vCPU").ok(), Some(512));
        assert_eq!(parse_task_cpu(".25 VCPU").ok(), Some(256));
        assert_eq!(parse_task_cpu("16 vCPU").ok(), Some(16384));
        assert_eq!(parse_task_cpu("2.0 vCPU").ok(), Some(2048));
    }

    #[test]
    fn cpu_rejects() {
        for bad in [
            "",
            " ",
            "abc",
            "1.5",
            "-1",
            "0",
            "0 vCPU",
            "vCPU",
            "1 GB",
            "1..2 vCPU",
            "0.0001 vCPU",
            "1e3",
            "99999999999",
            "5. vCPU",
            "+1",
        ] {
            let err = parse_task_cpu(bad).err();
            assert_eq!(
                err.map(|e| e.message),
                Some(INVALID_TASK_CPU.to_string()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn memory_forms() {
        assert_eq!(parse_task_memory("2048").ok(), Some(2048));
        assert_eq!(parse_task_memory("2 GB").ok(), Some(2048));
        assert_eq!(parse_task_memory("2GB").ok(), Some(2048));
        assert_eq!(parse_task_memory("2gb").ok(), Some(2048));
        assert_eq!(parse_task_memory("0.5 GB").ok(), Some(512));
        assert_eq!(parse_task_memory("1 GiB").ok(), Some(1024));
        assert_eq!(parse_task_memory("512 MiB").ok(), Some(512));
        assert_eq!(parse_task_memory("512MB").ok(), Some(512));
    }

    #[test]
    fn memory_rejects() {
        for bad in [
            "",
            "GB",
            "x GB",
            "1.5",
            "0",
            "0 GB",
            "0.0001 GB",
            "2 TB",
            "1 vCPU",
            "-2GB",
        ] {
            let err = parse_task_memory(bad).err();
            assert_eq!(
                err.map(|e| e.message),
                Some(INVALID_TASK_MEMORY.to_string()),
                "{bad:?}"
            );
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,24}") {
            let _ = parse_task_cpu(&text);
            let _ = parse_task_memory(&text);
        }

        #[test]
        fn parsers_never_panic_on_plausible_input(
            number in "[0-9]{0,12}(\\.[0-9]{0,12})?",
            space in " {0,2}",
            unit in "(vcpu|vCPU|VCPU|gb|GB|GiB|mb|MiB|)",
        ) {
            let text = format!("{number}{space}{unit}");
            let _ = parse_task_cpu(&text);
            let _ = parse_task_memory(&text);
        }

        #[test]
        fn whole_numbers_round_trip(n in 1u32..=u32::MAX) {
            prop_assert_eq!(parse_task_cpu(&n.to_string()).ok(), Some(n));
            prop_assert_eq!(parse_task_memory(&n.to_string()).ok(), Some(n));
        }

        #[test]
        fn vcpus_scale(quarters in 1u32..=1024) {
            let text = format!("{} vCPU", f64::from(quarters) / 4.0);
            prop_assert_eq!(parse_task_cpu(&text).ok(), Some(quarters * 256));
        }
    }
}

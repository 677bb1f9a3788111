//! The rules a GPU scheduling policy must satisfy, and UpdatePolicy's field masks over
//! them: one violation per broken rule, so a caller fixes every field in one round.

use std::collections::HashSet;

use super::{model::PolicyRules, validate::Violations};
use crate::error::{Result, echo};

/// Highest priority a range may reach.
pub const MAX_PRIORITY: i64 = 1_000_000;
/// Longest exit duration a policy may allow, in microseconds (30 days).
pub const MAX_EXIT_DURATION_US: i64 = 30 * 24 * 3600 * 1_000_000;
/// Most GPU shapes a policy may list.
pub const MAX_GPU_SHAPES: usize = 64;

/// The paths UpdatePolicy accepts in its mask (besides `*`).
pub const UPDATABLE: [&str; 10] = [
    "priority_range",
    "max_gprs",
    "max_exit_duration_per_gpr",
    "enforce_idle_timeout",
    "requeue_on_failure",
    "enable_auto_eviction",
    "global_gpu_constraints",
    "global_gpu_constraints.gpu_shapes",
    "global_gpu_constraints.max_gpu_per_gpr",
    "global_gpu_constraints.max_memory_per_gpr_bytes",
];

/// The policy fields as a request carries them, before validation. Durations are in
/// microseconds; `None` marks a duration that is not a valid protobuf Duration.
#[derive(Debug, Clone, Default)]
pub struct PolicyInput {
    /// `priority_range.min`.
    pub priority_min: i64,
    /// `priority_range.max`.
    pub priority_max: i64,
    /// `max_gprs`.
    pub max_gprs: i64,
    /// `max_exit_duration_per_gpr` in microseconds.
    pub max_exit_duration_us: Option<i64>,
    /// `enforce_idle_timeout`.
    pub enforce_idle_timeout: bool,
    /// `requeue_on_failure`.
    pub requeue_on_failure: bool,
    /// `enable_auto_eviction`.
    pub enable_auto_eviction: bool,
    /// `global_gpu_constraints.gpu_shapes`.
    pub gpu_shapes: Vec<String>,
    /// `global_gpu_constraints.max_gpu_per_gpr`.
    pub max_gpu_per_gpr: i64,
    /// `global_gpu_constraints.max_memory_per_gpr_bytes`.
    pub max_memory_per_gpr_bytes: i64,
}

fn non_negative(v: &mut Violations, field: &str, n: i64) {
    if n < 0 {
        v.add(field, "must not be negative (0 means no limit)");
    }
}

/// A GPU shape in a policy's list: 1-63 characters of `[A-Za-z0-9._-]`.
fn gpu_shape(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1-63 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may contain only A-Z, a-z, 0-9, '.', '_' and '-'".into());
    }
    Ok(())
}

/// Applies the masked fields of `input` to `rules`, recording one violation per broken rule
/// under `prefix` (such as `policy.`). `paths` are validated mask paths; `*` is expanded.
pub(crate) fn apply(
    rules: &mut PolicyRules,
    input: &PolicyInput,
    paths: &[String],
    prefix: &str,
    v: &mut Violations,
) {
    let has = |p: &str| paths.iter().any(|q| q == "*" || q == p);
    let gpu_all = has("global_gpu_constraints");
    let f = |name: &str| format!("{prefix}{name}");
    if has("priority_range") {
        if input.priority_min < 0 {
            v.add(f("priority_range.min"), "must not be negative");
        }
        if input.priority_max > MAX_PRIORITY {
            v.add(
                f("priority_range.max"),
                format!("must be at most {MAX_PRIORITY}"),
            );
        }
        if input.priority_max < 0 {
            v.add(f("priority_range.max"), "must not be negative");
        }
        if input.priority_min > input.priority_max {
            v.add(f("priority_range"), "min must not be greater than max");
        }
        rules.priority_min = input.priority_min.clamp(0, MAX_PRIORITY) as i32;
        rules.priority_max = input.priority_max.clamp(0, MAX_PRIORITY) as i32;
    }
    if has("max_gprs") {
        non_negative(v, &f("max_gprs"), input.max_gprs);
        rules.max_gprs = input.max_gprs.clamp(0, i32::MAX as i64) as i32;
    }
    if has("max_exit_duration_per_gpr") {
        match input.max_exit_duration_us {
            Some(us) if (0..=MAX_EXIT_DURATION_US).contains(&us) => {
                rules.max_exit_duration_us = us;
            }
            Some(_) => v.add(
                f("max_exit_duration_per_gpr"),
                "must be between 0 (no limit) and 30 days",
            ),
            None => v.add(f("max_exit_duration_per_gpr"), "is not a valid duration"),
        }
    }
    if has("enforce_idle_timeout") {
        rules.enforce_idle_timeout = input.enforce_idle_timeout;
    }
    if has("requeue_on_failure") {
        rules.requeue_on_failure = input.requeue_on_failure;
    }
    if has("enable_auto_eviction") {
        rules.enable_auto_eviction = input.enable_auto_eviction;
    }
    if gpu_all || has("global_gpu_constraints.gpu_shapes") {
        let field = f("global_gpu_constraints.gpu_shapes");
        if input.gpu_shapes.len() > MAX_GPU_SHAPES {
            v.add(
                &field,
                format!("at most {MAX_GPU_SHAPES} shapes are allowed"),
            );
        }
        // A set, not a scan of the entries before: a request of 64 KiB holds thousands.
        let mut seen = HashSet::new();
        for (i, shape) in input.gpu_shapes.iter().enumerate() {
            if let Err(e) = gpu_shape(shape) {
                v.add(format!("{field}[{i}]"), e);
            } else if !seen.insert(shape.as_str()) {
                v.add(
                    format!("{field}[{i}]"),
                    format!("\"{}\" is listed twice", echo(shape)),
                );
            }
        }
        rules.gpu_shapes = input.gpu_shapes.clone();
    }
    if gpu_all || has("global_gpu_constraints.max_gpu_per_gpr") {
        non_negative(
            v,
            &f("global_gpu_constraints.max_gpu_per_gpr"),
            input.max_gpu_per_gpr,
        );
        rules.max_gpu_per_gpr = input.max_gpu_per_gpr.clamp(0, i32::MAX as i64) as i32;
    }
    if gpu_all || has("global_gpu_constraints.max_memory_per_gpr_bytes") {
        non_negative(
            v,
            &f("global_gpu_constraints.max_memory_per_gpr_bytes"),
            input.max_memory_per_gpr_bytes,
        );
        rules.max_memory_per_gpr_bytes = input.max_memory_per_gpr_bytes.max(0);
    }
}

/// Validates a complete set of rules, such as the server's defaults.
pub(crate) fn validate(input: &PolicyInput) -> Result<PolicyRules> {
    let mut rules = PolicyRules::default();
    let mut v = Violations::default();
    apply(&mut rules, input, &["*".to_string()], "", &mut v);
    v.finish()?;
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn input() -> PolicyInput {
        PolicyInput {
            priority_min: 10,
            priority_max: 100,
            max_gprs: 4,
            max_exit_duration_us: Some(3_600_000_000),
            gpu_shapes: vec!["a100".into(), "h100-80g".into()],
            max_gpu_per_gpr: 8,
            max_memory_per_gpr_bytes: 1 << 30,
            ..Default::default()
        }
    }

    #[test]
    fn every_broken_rule_is_its_own_violation() {
        let bad = PolicyInput {
            priority_min: 5,
            priority_max: 2_000_000,
            max_gprs: -1,
            max_exit_duration_us: Some(MAX_EXIT_DURATION_US + 1),
            gpu_shapes: vec!["ok".into(), "bad shape".into(), "ok".into()],
            max_gpu_per_gpr: -2,
            max_memory_per_gpr_bytes: -3,
            ..Default::default()
        };
        let Err(Error::InvalidArgument(fields)) = validate(&bad) else {
            panic!("accepted")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "priority_range.max",
                "max_gprs",
                "max_exit_duration_per_gpr",
                "global_gpu_constraints.gpu_shapes[1]",
                "global_gpu_constraints.gpu_shapes[2]",
                "global_gpu_constraints.max_gpu_per_gpr",
                "global_gpu_constraints.max_memory_per_gpr_bytes",
            ]
        );
        let inverted = PolicyInput {
            priority_min: 9,
            priority_max: 3,
            ..Default::default()
        };
        assert!(validate(&inverted).is_err());
        assert!(validate(&input()).is_ok());
    }
}

//! The quota check of one GPU pod request against a policy's rules (CheckGpuQuota).

use super::model::{GprSpec, PolicyRules};
use crate::error::echo;

/// One broken rule: the request field and a sentence about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaViolation {
    /// The request field, such as `gpu_count`.
    pub field: String,
    /// What rule it breaks.
    pub description: String,
}

fn human_duration(us: i64) -> String {
    humantime::format_duration(std::time::Duration::from_micros(us.max(0) as u64)).to_string()
}

/// Evaluates a GPU pod request: one violation per broken rule; zero limits mean no limit.
pub(crate) fn check_quota(rules: &PolicyRules, r: &GprSpec) -> Vec<QuotaViolation> {
    let mut out = Vec::new();
    let mut broken = |field: &str, description: String| {
        out.push(QuotaViolation {
            field: field.into(),
            description,
        })
    };
    if !rules.gpu_shapes.is_empty() && !rules.gpu_shapes.contains(&r.gpu_shape) {
        broken(
            "gpu_shape",
            format!(
                "GPU shape \"{}\" is not allowed; allowed shapes: {}",
                echo(&r.gpu_shape),
                rules.gpu_shapes.join(", ")
            ),
        );
    }
    if rules.max_gpu_per_gpr > 0 && r.gpu_count > rules.max_gpu_per_gpr {
        broken(
            "gpu_count",
            format!(
                "{} GPUs requested, at most {} are allowed per request",
                r.gpu_count, rules.max_gpu_per_gpr
            ),
        );
    }
    if rules.max_memory_per_gpr_bytes > 0 && r.memory_bytes > rules.max_memory_per_gpr_bytes {
        broken(
            "memory_bytes",
            format!(
                "{} bytes of memory requested, at most {} are allowed per request",
                r.memory_bytes, rules.max_memory_per_gpr_bytes
            ),
        );
    }
    if r.priority < rules.priority_min || r.priority > rules.priority_max {
        broken(
            "priority",
            format!(
                "priority {} is outside the allowed range {}..={}",
                r.priority, rules.priority_min, rules.priority_max
            ),
        );
    }
    if rules.max_exit_duration_us > 0 && r.exit_duration_us > rules.max_exit_duration_us {
        broken(
            "exit_duration",
            format!(
                "exit duration {} is longer than the allowed {}",
                human_duration(r.exit_duration_us),
                human_duration(rules.max_exit_duration_us)
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_reports_each_broken_rule_and_zero_means_no_limit() {
        let rules = PolicyRules {
            priority_min: 10,
            priority_max: 100,
            max_exit_duration_us: 3_600_000_000,
            gpu_shapes: vec!["a100".into(), "h100-80g".into()],
            max_gpu_per_gpr: 8,
            max_memory_per_gpr_bytes: 1 << 30,
            ..PolicyRules::default()
        };
        let ok = GprSpec {
            gpu_shape: "a100".into(),
            gpu_count: 8,
            memory_bytes: 1 << 30,
            priority: 10,
            exit_duration_us: 3_600_000_000,
        };
        assert!(check_quota(&rules, &ok).is_empty());
        let bad = GprSpec {
            gpu_shape: "t4".into(),
            gpu_count: 9,
            memory_bytes: (1 << 30) + 1,
            priority: 101,
            exit_duration_us: 3_600_000_001,
        };
        let fields: Vec<String> = check_quota(&rules, &bad)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "gpu_shape",
                "gpu_count",
                "memory_bytes",
                "priority",
                "exit_duration"
            ]
        );
        let unlimited = PolicyRules::default();
        let huge = GprSpec {
            gpu_shape: "anything".into(),
            gpu_count: 1 << 20,
            memory_bytes: i64::MAX,
            priority: 0,
            exit_duration_us: i64::MAX,
        };
        assert!(check_quota(&unlimited, &huge).is_empty());
    }
}

//! GPU scheduling policies: the rules a policy must satisfy, field masks over them, the
//! quota check of one GPU pod request, and the PolicyService use cases.

use chrono::{DateTime, Utc};

use super::{
    access::{Permission, Principal},
    model::{PolicyRules, now},
    page::{self, Page, PageRequest},
    validate::Violations,
    workspaces::{authorize, authorize_read},
};
use crate::{
    error::{Error, Result, echo},
    store::{Store, policies as q, workspaces::ListFilter},
};

/// Highest priority a range may reach.
pub const MAX_PRIORITY: i64 = 1_000_000;
/// Longest exit duration a policy may allow, in microseconds (30 days).
pub const MAX_EXIT_DURATION_US: i64 = 30 * 24 * 3600 * 1_000_000;
/// Most GPU shapes a policy may list.
pub const MAX_GPU_SHAPES: usize = 64;

/// A workspace's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The workspace's id.
    pub workspace_id: String,
    /// The workspace's name.
    pub workspace: String,
    /// The rules.
    pub rules: PolicyRules,
    /// Subject of the last principal that changed it.
    pub updated_by: String,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// Bumped on every change.
    pub version: i64,
}

impl Policy {
    /// The AIP-154 etag; `p`-prefixed so it never equals its workspace's.
    pub fn etag(&self) -> String {
        format!("p{}", super::model::etag(&self.workspace_id, self.version))
    }
}

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
pub fn apply(
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
        for (i, shape) in input.gpu_shapes.iter().enumerate() {
            if let Err(e) = gpu_shape(shape) {
                v.add(format!("{field}[{i}]"), e);
            } else if input.gpu_shapes[..i].contains(shape) {
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
pub fn validate(input: &PolicyInput) -> Result<PolicyRules> {
    let mut rules = PolicyRules::default();
    let mut v = Violations::default();
    apply(&mut rules, input, &["*".to_string()], "", &mut v);
    v.finish()?;
    Ok(rules)
}

/// One GPU pod request to check against a policy.
#[derive(Debug, Clone, Default)]
pub struct GpuRequest {
    /// The requested shape.
    pub gpu_shape: String,
    /// GPUs requested.
    pub gpu_count: i64,
    /// Memory requested, in bytes.
    pub memory_bytes: i64,
    /// The requested priority.
    pub priority: i64,
    /// The requested exit duration in microseconds.
    pub exit_duration_us: i64,
}

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
pub fn check_quota(rules: &PolicyRules, r: &GpuRequest) -> Vec<QuotaViolation> {
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
    if rules.max_gpu_per_gpr > 0 && r.gpu_count > rules.max_gpu_per_gpr as i64 {
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
    if r.priority < rules.priority_min as i64 || r.priority > rules.priority_max as i64 {
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

/// The PolicyService use cases.
#[derive(Clone, Debug)]
pub struct Policies {
    store: Store,
}

impl Policies {
    /// Use cases over `store`.
    pub fn new(store: Store) -> Self {
        Policies { store }
    }

    async fn read(&self, p: &Principal, name: &str) -> Result<Policy> {
        let ws = authorize_read(&self.store, p, name, Permission::PoliciesGet, false).await?;
        // Missing only when the workspace was deleted since this replica's view read it.
        q::find(self.store.conn(), &ws, false)
            .await?
            .ok_or_else(|| Error::workspace_not_found(name))
    }

    /// GetPolicy.
    pub async fn get(&self, p: &Principal, name: &str) -> Result<Policy> {
        self.read(p, name).await
    }

    /// ListPolicies: the policies of the workspaces the caller may read, by workspace name.
    pub async fn list(
        &self,
        p: &Principal,
        page: PageRequest,
        fingerprint: &str,
    ) -> Result<Page<Policy>> {
        let f = ListFilter {
            readable_by: (!p.platform.any()).then(|| p.subject.clone()),
            ..Default::default()
        };
        let after = page.after_key();
        let total = self.store.count_workspaces(&f).await?;
        let rows = q::list(self.store.conn(), &f, after, page.size + 1).await?;
        Ok(page::finish(rows, page.size, fingerprint, total, |p| {
            vec![p.workspace.clone()]
        }))
    }

    /// UpdatePolicy: platform admins only; `apply_changes` sets the masked fields and reports
    /// violations, which are answered before anything is written.
    pub async fn update(
        &self,
        p: &Principal,
        name: &str,
        etag: &str,
        apply_changes: impl FnOnce(&mut PolicyRules, &mut Violations),
    ) -> Result<Policy> {
        let tx = self.store.begin_write().await?;
        let ws = authorize(&tx, p, name, Permission::PoliciesUpdate, true).await?;
        let mut policy = q::find(&tx, &ws, true)
            .await?
            .ok_or_else(|| Error::Internal(format!("workspace \"{name}\" has no policy")))?;
        if !etag.is_empty() && etag != policy.etag() {
            return Err(Error::EtagMismatch);
        }
        ws.check_writable()?;
        let mut v = Violations::default();
        apply_changes(&mut policy.rules, &mut v);
        v.finish()?;
        policy.version += 1;
        policy.update_time = now();
        policy.updated_by = p.subject.clone();
        q::update(&tx, &policy).await?;
        tx.commit().await?;
        Ok(policy)
    }

    /// CheckGpuQuota.
    pub async fn check_quota(
        &self,
        p: &Principal,
        name: &str,
        request: &GpuRequest,
    ) -> Result<Vec<QuotaViolation>> {
        let policy = self.read(p, name).await?;
        Ok(check_quota(&policy.rules, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn quota_reports_each_broken_rule_and_zero_means_no_limit() {
        let rules = validate(&input()).unwrap();
        let ok = GpuRequest {
            gpu_shape: "a100".into(),
            gpu_count: 8,
            memory_bytes: 1 << 30,
            priority: 10,
            exit_duration_us: 3_600_000_000,
        };
        assert!(check_quota(&rules, &ok).is_empty());
        let bad = GpuRequest {
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
        let huge = GpuRequest {
            gpu_shape: "anything".into(),
            gpu_count: 1 << 20,
            memory_bytes: i64::MAX,
            priority: 0,
            exit_duration_us: i64::MAX,
        };
        assert!(check_quota(&unlimited, &huge).is_empty());
    }
}

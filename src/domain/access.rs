//! Who may do what: workspace roles, visibility, platform roles and permissions, as pure
//! functions, plus `authorize`, the one decision every RPC goes through.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, echo};

/// A principal's role in one workspace, ordered lowest to highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads the workspace and what is in it.
    Viewer,
    /// A viewer that also registers resources.
    Editor,
    /// An editor that also changes the workspace and its members.
    Admin,
}

impl Role {
    /// The role's name as stored in the database.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// Parses the stored name.
    pub(crate) fn from_db(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who besides members may use a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Visibility {
    /// Memberships only.
    #[default]
    Private,
    /// Every authenticated principal is at least a viewer.
    Internal,
    /// Every authenticated principal is at least an editor.
    Public,
}

impl Visibility {
    /// The role that this visibility grants every authenticated principal.
    pub(crate) fn granted_role(self) -> Option<Role> {
        match self {
            Visibility::Private => None,
            Visibility::Internal => Some(Role::Viewer),
            Visibility::Public => Some(Role::Editor),
        }
    }

    /// The visibility's name as stored in the database.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Internal => "internal",
            Visibility::Public => "public",
        }
    }

    /// Parses the stored name.
    pub(crate) fn from_db(s: &str) -> Option<Visibility> {
        match s {
            "private" => Some(Visibility::Private),
            "internal" => Some(Visibility::Internal),
            "public" => Some(Visibility::Public),
            _ => None,
        }
    }
}

/// The permissions of the contract, as accepted by `CheckAccess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Permission {
    WorkspacesGet,
    WorkspacesUpdate,
    WorkspacesDelete,
    WorkspacesArchive,
    MembersList,
    MembersManage,
    PoliciesGet,
    PoliciesUpdate,
    ResourcesList,
    ResourcesWrite,
    /// Reading a workspace's change history: admins, and platform principals.
    EventsList,
    /// Admitting, renewing and releasing GPU pod requests: schedulers, which hold a
    /// platform role. Not one of the contract's CheckAccess permissions (no workspace role
    /// holds it), so not in `ALL`.
    GpuRequestsAdmit,
}

impl Permission {
    /// Every permission, in the contract's order.
    pub const ALL: [Permission; 11] = [
        Permission::WorkspacesGet,
        Permission::WorkspacesUpdate,
        Permission::WorkspacesDelete,
        Permission::WorkspacesArchive,
        Permission::MembersList,
        Permission::MembersManage,
        Permission::PoliciesGet,
        Permission::PoliciesUpdate,
        Permission::ResourcesList,
        Permission::ResourcesWrite,
        Permission::EventsList,
    ];

    /// The permission's name in the contract, such as `workspaces.get`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Permission::WorkspacesGet => "workspaces.get",
            Permission::WorkspacesUpdate => "workspaces.update",
            Permission::WorkspacesDelete => "workspaces.delete",
            Permission::WorkspacesArchive => "workspaces.archive",
            Permission::MembersList => "members.list",
            Permission::MembersManage => "members.manage",
            Permission::PoliciesGet => "policies.get",
            Permission::PoliciesUpdate => "policies.update",
            Permission::ResourcesList => "resources.list",
            Permission::ResourcesWrite => "resources.write",
            Permission::EventsList => "events.list",
            Permission::GpuRequestsAdmit => "gpu_requests.admit",
        }
    }

    /// Parses a permission name; `None` for an unknown one.
    pub(crate) fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the permission only reads.
    pub(crate) fn is_read(self) -> bool {
        matches!(
            self,
            Permission::WorkspacesGet
                | Permission::MembersList
                | Permission::PoliciesGet
                | Permission::ResourcesList
                | Permission::EventsList
        )
    }

    /// The lowest workspace role that holds this permission; `None` when no workspace role
    /// does (policy updates are for platform admins only).
    pub(crate) fn min_role(self) -> Option<Role> {
        match self {
            Permission::WorkspacesGet
            | Permission::MembersList
            | Permission::PoliciesGet
            | Permission::ResourcesList => Some(Role::Viewer),
            Permission::ResourcesWrite => Some(Role::Editor),
            Permission::WorkspacesUpdate
            | Permission::WorkspacesDelete
            | Permission::WorkspacesArchive
            | Permission::MembersManage
            | Permission::EventsList => Some(Role::Admin),
            Permission::PoliciesUpdate | Permission::GpuRequestsAdmit => None,
        }
    }
}

/// The platform roles a token may carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlatformRoles {
    /// `platform-admin`: everything, everywhere.
    pub admin: bool,
    /// `platform-service`: reads everything, registers resources anywhere, checks access and
    /// quotas for anyone.
    pub service: bool,
}

impl PlatformRoles {
    /// The role name that grants `admin`.
    pub const ADMIN: &'static str = "platform-admin";
    /// The role name that grants `service`.
    pub const SERVICE: &'static str = "platform-service";

    /// Reads the platform roles out of a token's roles claim; unknown roles are ignored.
    pub(crate) fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let has = |r: &str| names.iter().any(|n| n.as_ref() == r);
        PlatformRoles {
            admin: has(Self::ADMIN),
            service: has(Self::SERVICE),
        }
    }

    /// Whether the principal holds any platform role.
    pub(crate) fn any(self) -> bool {
        self.admin || self.service
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub` claim.
    pub subject: String,
    /// The token's `email` claim, if any.
    pub email: Option<String>,
    /// The groups of the token's groups claim, sorted and without repeats; shared, since a
    /// principal is cloned for every call.
    pub groups: std::sync::Arc<[String]>,
    /// The platform roles of the token's roles claim.
    pub platform: PlatformRoles,
    /// When the token stops being valid, in seconds since the epoch (its `exp`); `None`
    /// without tokens (`--insecure-no-auth`). A call that outlives it (a watch) ends then.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// A principal of `subject` with `groups` (in any order, repeats allowed) and no email.
    pub fn new(subject: String, groups: Vec<String>, platform: PlatformRoles) -> Self {
        Principal {
            subject,
            email: None,
            groups: normalize_groups(groups).into(),
            platform,
            expires_at: None,
        }
    }
}

/// Groups sorted and without repeats, as `Principal::groups` holds them.
pub(crate) fn normalize_groups(mut groups: Vec<String>) -> Vec<String> {
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// What gave a principal a permission, as `CheckAccess` explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Its own membership.
    Membership,
    /// A membership of one of its groups.
    Group,
    /// The workspace's visibility.
    Visibility,
    /// A platform role, when no workspace grant allows the permission.
    PlatformRole,
}

/// Which grant allows `permission` (`None` when none does). Of the workspace grants that
/// allow it, the one giving the highest role wins, and between equals the first of
/// membership, group, visibility; a platform role is named only when no workspace grant
/// allows it.
pub(crate) fn granted_by(
    principal: &Principal,
    ws: &WorkspaceAccess,
    permission: Permission,
) -> Option<Grant> {
    if !allows(principal, ws, permission) {
        return None;
    }
    let candidates = [
        (Grant::Membership, ws.member_role),
        (Grant::Group, ws.group_role),
        (Grant::Visibility, ws.visibility.granted_role()),
    ];
    let mut best: Option<(Grant, Role)> = None;
    for (grant, role) in candidates {
        let Some(role) = role else { continue };
        // Strictly higher only: between equals the earlier grant stays.
        if role_allows(ws, Some(role), permission) && best.is_none_or(|(_, r)| role > r) {
            best = Some((grant, role));
        }
    }
    Some(best.map_or(Grant::PlatformRole, |(g, _)| g))
}

/// What authorization needs to know of a workspace and of the caller's place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceAccess {
    /// The workspace's visibility.
    pub visibility: Visibility,
    /// Whether this is the built-in `system` workspace, which only platform principals change.
    pub is_system: bool,
    /// The caller's own membership role, if it is a member.
    pub member_role: Option<Role>,
    /// The highest role the caller's groups hold, if any does.
    pub group_role: Option<Role>,
}

/// The effective workspace role: the highest of the caller's own membership role, its
/// groups' and what visibility grants.
pub(crate) fn effective_role(ws: &WorkspaceAccess) -> Option<Role> {
    ws.member_role
        .max(ws.group_role)
        .max(ws.visibility.granted_role())
}

/// Whether `principal` holds `permission` in the workspace described by `ws`.
pub(crate) fn allows(principal: &Principal, ws: &WorkspaceAccess, permission: Permission) -> bool {
    if principal.platform.admin {
        return true;
    }
    if principal.platform.service
        && (permission.is_read()
            || permission == Permission::ResourcesWrite
            || permission == Permission::GpuRequestsAdmit)
    {
        return true;
    }
    role_allows(ws, effective_role(ws), permission)
}

/// Whether `role`, held in the workspace described by `ws`, gives `permission`: the rule
/// for everyone without a platform role.
fn role_allows(ws: &WorkspaceAccess, role: Option<Role>, permission: Permission) -> bool {
    // Nothing in or about `system` changes but by platform principals.
    if ws.is_system && !permission.is_read() {
        return false;
    }
    match (permission.min_role(), role) {
        (Some(needed), Some(role)) => role >= needed,
        _ => false,
    }
}

/// What a request needs in a workspace: a permission, or, for RemoveMember, the permission
/// that the member it names decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// This permission.
    Permission(Permission),
    /// Removing a member; `names_self` when the request names the caller (see `names_self`).
    Removal {
        /// Whether the request names the caller itself.
        names_self: bool,
    },
}

impl From<Permission> for Need {
    fn from(p: Permission) -> Self {
        Need::Permission(p)
    }
}

impl Need {
    /// The permission this need comes to in the workspace `ws`. A member may always leave,
    /// with nothing but the right to read, except `system`, which only platform principals
    /// change; removing anyone else is `members.manage`.
    pub fn permission(self, ws: &WorkspaceAccess) -> Permission {
        match self {
            Need::Permission(p) => p,
            Need::Removal { names_self: true } if ws.member_role.is_some() && !ws.is_system => {
                Permission::WorkspacesGet
            }
            Need::Removal { .. } => Permission::MembersManage,
        }
    }
}

/// Whether a request that names a member by `subject` or by `email` names the caller: its
/// own subject, or its token's email. Decided from the request alone, before any email is
/// looked up, so that only member managers learn whether an email has signed in.
pub fn names_self(principal: &Principal, subject: Option<&str>, email: Option<&str>) -> bool {
    match (subject, email) {
        (Some(s), _) => s == principal.subject,
        (None, Some(e)) => principal.email.as_deref() == Some(e),
        (None, None) => false,
    }
}

/// Whether `principal` may ask about another subject: its access (CheckAccess with a
/// `subject`) or its workspaces (ListWorkspaces with a `member`). Services that act on
/// others' behalf hold a platform role; anyone else asks only about itself.
pub fn may_act_for_others(principal: &Principal) -> bool {
    principal.platform.any()
}

/// Whether `principal` may list the workspaces of `group` (ListWorkspaces with a
/// `member_group`): a group of its own token, or any group with a platform role.
pub fn may_ask_about_group(principal: &Principal, group: &str) -> bool {
    principal.platform.any()
        || principal
            .groups
            .binary_search_by(|g| g.as_str().cmp(group))
            .is_ok()
}

/// The principal whose readable workspaces a listing is limited to, or `None` when the
/// caller reads every workspace (a platform role). A listing shows exactly what `allows`
/// lets the principal read with `workspaces.get`: every workspace whose visibility grants a
/// role (see `Visibility::granted_role`) and those where it or one of its groups is a
/// member; `store::workspaces` writes the same rule as SQL.
pub fn listing_scope(principal: &Principal) -> Option<&Principal> {
    (!principal.platform.any()).then_some(principal)
}

/// The AIP-211 decision for one request on a named workspace. `ws` is `None` when the
/// workspace does not exist. A caller that could not read the workspace learns nothing of
/// whether it exists: it gets PERMISSION_DENIED either way. One that can read it is told
/// plainly what it lacks.
pub fn authorize(
    principal: &Principal,
    name: &str,
    ws: Option<&WorkspaceAccess>,
    need: impl Into<Need>,
) -> Result<()> {
    let Some(ws) = ws else {
        return Err(if principal.platform.any() {
            Error::workspace_not_found(name)
        } else {
            hidden(name, Permission::WorkspacesGet)
        });
    };
    if !allows(principal, ws, Permission::WorkspacesGet) {
        return Err(hidden(name, Permission::WorkspacesGet));
    }
    let permission = need.into().permission(ws);
    if !allows(principal, ws, permission) {
        return Err(denied(name, ws, permission));
    }
    Ok(())
}

/// Denied on a workspace the caller may not know exists.
fn hidden(name: &str, permission: Permission) -> Error {
    Error::denied(format!(
        "permission \"{}\" denied on workspace \"{}\" (or it does not exist)",
        permission.as_str(),
        echo(name)
    ))
    .with("workspace", name)
    .with("permission", permission.as_str())
}

/// Denied on a workspace the caller can read, with the rule that denies it.
fn denied(name: &str, ws: &WorkspaceAccess, permission: Permission) -> Error {
    let why = match permission.min_role() {
        None if permission == Permission::GpuRequestsAdmit => {
            "only platform principals (schedulers) have it".to_owned()
        }
        None => "only platform admins have it".to_owned(),
        Some(_) if ws.is_system => "only platform principals change this workspace".to_owned(),
        Some(role) => format!("it needs the {} role", role.as_str()),
    };
    Error::denied(format!(
        "permission \"{}\" denied on workspace \"{}\": {why}",
        permission.as_str(),
        echo(name)
    ))
    .with("workspace", name)
    .with("permission", permission.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each platform role alone.
    const BOTH_PLATFORM_ROLES: [PlatformRoles; 2] = [
        PlatformRoles {
            admin: true,
            service: false,
        },
        PlatformRoles {
            admin: false,
            service: true,
        },
    ];

    fn principal(platform: PlatformRoles) -> Principal {
        Principal::new("alice".into(), Vec::new(), platform)
    }

    fn ws(visibility: Visibility, member_role: Option<Role>) -> WorkspaceAccess {
        WorkspaceAccess {
            visibility,
            is_system: false,
            member_role,
            group_role: None,
        }
    }

    #[test]
    fn visibility_grants_at_least_its_role() {
        let p = principal(PlatformRoles::default());
        assert!(!allows(
            &p,
            &ws(Visibility::Private, None),
            Permission::WorkspacesGet
        ));
        assert!(allows(
            &p,
            &ws(Visibility::Internal, None),
            Permission::WorkspacesGet
        ));
        assert!(!allows(
            &p,
            &ws(Visibility::Internal, None),
            Permission::ResourcesWrite
        ));
        assert!(allows(
            &p,
            &ws(Visibility::Public, None),
            Permission::ResourcesWrite
        ));
        assert!(!allows(
            &p,
            &ws(Visibility::Public, None),
            Permission::WorkspacesUpdate
        ));
        // A membership above the visibility's grant wins.
        assert!(allows(
            &p,
            &ws(Visibility::Public, Some(Role::Admin)),
            Permission::WorkspacesUpdate
        ));
    }

    #[test]
    fn roles_follow_the_permission_table() {
        let p = principal(PlatformRoles::default());
        for perm in Permission::ALL {
            for role in [Role::Viewer, Role::Editor, Role::Admin] {
                let expected = match perm {
                    Permission::PoliciesUpdate => false,
                    Permission::ResourcesWrite => role >= Role::Editor,
                    // A read, but of who changed what: admins only.
                    Permission::EventsList => role == Role::Admin,
                    p if p.is_read() => true,
                    _ => role == Role::Admin,
                };
                assert_eq!(
                    allows(&p, &ws(Visibility::Private, Some(role)), perm),
                    expected,
                    "{perm:?} for {role:?}"
                );
            }
        }
    }

    #[test]
    fn only_platform_principals_change_system() {
        let system = WorkspaceAccess {
            visibility: Visibility::Internal,
            is_system: true,
            member_role: Some(Role::Admin),
            group_role: None,
        };
        let member = principal(PlatformRoles::default());
        assert!(allows(&member, &system, Permission::WorkspacesGet));
        assert!(!allows(&member, &system, Permission::WorkspacesUpdate));
        assert!(!allows(&member, &system, Permission::ResourcesWrite));
        let service = principal(PlatformRoles {
            admin: false,
            service: true,
        });
        assert!(allows(&service, &system, Permission::ResourcesWrite));
        assert!(!allows(&service, &system, Permission::MembersManage));
        let admin = principal(PlatformRoles {
            admin: true,
            service: false,
        });
        assert!(allows(&admin, &system, Permission::PoliciesUpdate));
    }

    #[test]
    fn only_platform_principals_admit_gpu_requests_whatever_their_role() {
        let admin_member = ws(Visibility::Public, Some(Role::Admin));
        let member = principal(PlatformRoles::default());
        assert!(!allows(
            &member,
            &admin_member,
            Permission::GpuRequestsAdmit
        ));
        let err = authorize(
            &member,
            "w",
            Some(&admin_member),
            Permission::GpuRequestsAdmit,
        )
        .unwrap_err();
        assert!(err.to_string().contains("schedulers"), "{err}");
        for platform in BOTH_PLATFORM_ROLES {
            let system = WorkspaceAccess {
                is_system: true,
                ..ws(Visibility::Internal, None)
            };
            let p = principal(platform);
            assert!(allows(&p, &system, Permission::GpuRequestsAdmit));
            assert!(allows(
                &p,
                &ws(Visibility::Private, None),
                Permission::GpuRequestsAdmit
            ));
        }
        assert_eq!(Permission::parse("gpu_requests.admit"), None);
    }

    #[test]
    fn missing_and_unreadable_workspaces_look_the_same_to_outsiders() {
        let p = principal(PlatformRoles::default());
        let missing = authorize(&p, "w", None, Permission::WorkspacesGet).unwrap_err();
        let private = authorize(
            &p,
            "w",
            Some(&ws(Visibility::Private, None)),
            Permission::WorkspacesGet,
        )
        .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::PermissionDenied);
        assert_eq!(missing.to_string(), private.to_string());
        let platform = principal(PlatformRoles {
            admin: false,
            service: true,
        });
        let err = authorize(&platform, "w", None, Permission::WorkspacesGet).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }

    #[test]
    fn a_member_may_remove_itself_but_not_from_system_and_not_others() {
        let member = |is_system| WorkspaceAccess {
            visibility: Visibility::Private,
            is_system,
            member_role: Some(Role::Viewer),
            group_role: None,
        };
        let outsider = ws(Visibility::Public, None);
        let cases = [
            (true, member(false), Permission::WorkspacesGet),
            (true, member(true), Permission::MembersManage),
            (true, outsider, Permission::MembersManage),
            (false, member(false), Permission::MembersManage),
        ];
        for (names_self, ws, expected) in cases {
            assert_eq!(
                Need::Removal { names_self }.permission(&ws),
                expected,
                "names_self {names_self}, {ws:?}"
            );
        }
        let p = principal(PlatformRoles::default());
        assert!(
            authorize(
                &p,
                "w",
                Some(&member(false)),
                Need::Removal { names_self: true }
            )
            .is_ok()
        );
        assert!(
            authorize(
                &p,
                "w",
                Some(&member(false)),
                Need::Removal { names_self: false }
            )
            .is_err()
        );
    }

    #[test]
    fn a_request_names_the_caller_by_its_subject_or_its_tokens_email() {
        let mut p = principal(PlatformRoles::default());
        p.email = Some("alice@example.com".into());
        let cases = [
            (Some("alice"), None, true),
            (Some("bob"), None, false),
            (None, Some("alice@example.com"), true),
            (None, Some("bob@example.com"), false),
            (None, None, false),
        ];
        for (subject, email, expected) in cases {
            assert_eq!(
                names_self(&p, subject, email),
                expected,
                "{subject:?} {email:?}"
            );
        }
        p.email = None;
        assert!(!names_self(&p, None, Some("alice@example.com")));
    }

    #[test]
    fn only_platform_principals_check_others_and_list_everything() {
        let user = Principal::new(
            "alice".into(),
            vec!["ml".into(), "data".into(), "ml".into()],
            PlatformRoles::default(),
        );
        assert_eq!(&*user.groups, ["data", "ml"]);
        assert!(!may_act_for_others(&user));
        assert_eq!(listing_scope(&user), Some(&user));
        assert!(may_ask_about_group(&user, "ml"));
        assert!(!may_ask_about_group(&user, "ops"));
        for platform in BOTH_PLATFORM_ROLES {
            let p = principal(platform);
            assert!(may_act_for_others(&p));
            assert!(may_ask_about_group(&p, "ops"));
            assert_eq!(listing_scope(&p), None);
        }
    }

    #[test]
    fn a_reader_is_told_what_it_lacks_and_an_outsider_is_not() {
        let p = principal(PlatformRoles::default());
        let reader = ws(Visibility::Private, Some(Role::Viewer));
        let policy = authorize(&p, "w", Some(&reader), Permission::PoliciesUpdate).unwrap_err();
        assert!(
            policy.to_string().contains("only platform admins"),
            "{policy}"
        );
        assert!(!policy.to_string().contains("does not exist"), "{policy}");
        let update = authorize(&p, "w", Some(&reader), Permission::WorkspacesUpdate).unwrap_err();
        assert!(update.to_string().contains("admin role"), "{update}");
        let system = WorkspaceAccess {
            is_system: true,
            ..ws(Visibility::Internal, Some(Role::Admin))
        };
        let err = authorize(&p, "system", Some(&system), Permission::MembersManage).unwrap_err();
        assert!(
            err.to_string().contains("only platform principals"),
            "{err}"
        );
        let outsider = ws(Visibility::Private, None);
        let hidden = authorize(&p, "w", Some(&outsider), Permission::PoliciesUpdate).unwrap_err();
        assert!(
            hidden.to_string().contains("(or it does not exist)"),
            "{hidden}"
        );
    }

    /// `store::workspaces` lists what a subject may read as "visibility other than private,
    /// or a membership": that holds only while exactly the non-private visibilities grant a
    /// role.
    #[test]
    fn exactly_the_non_private_visibilities_grant_a_role() {
        for v in [
            Visibility::Private,
            Visibility::Internal,
            Visibility::Public,
        ] {
            assert_eq!(
                v.granted_role().is_some(),
                v != Visibility::Private,
                "{v:?}"
            );
        }
    }

    #[test]
    fn a_group_role_counts_like_a_membership_but_does_not_let_the_caller_leave() {
        let p = principal(PlatformRoles::default());
        let by_group = WorkspaceAccess {
            group_role: Some(Role::Admin),
            ..ws(Visibility::Private, Some(Role::Viewer))
        };
        assert_eq!(effective_role(&by_group), Some(Role::Admin));
        assert!(allows(&p, &by_group, Permission::MembersManage));
        let only_group = WorkspaceAccess {
            group_role: Some(Role::Viewer),
            ..ws(Visibility::Private, None)
        };
        assert!(allows(&p, &only_group, Permission::WorkspacesGet));
        assert_eq!(
            Need::Removal { names_self: true }.permission(&only_group),
            Permission::MembersManage
        );
    }

    #[test]
    fn the_highest_grant_explains_an_answer_and_ties_go_to_the_first_kind() {
        let user = principal(PlatformRoles::default());
        let admin = principal(BOTH_PLATFORM_ROLES[0]);
        let access = |member, group, visibility| WorkspaceAccess {
            group_role: group,
            ..ws(visibility, member)
        };
        use Grant::{Group, Membership, PlatformRole};
        use Role::*;
        #[rustfmt::skip]
        let cases = [
            // (member, group, visibility, permission, caller, expected)
            (Some(Viewer), Some(Admin), Visibility::Private, Permission::WorkspacesGet, &user, Some(Group)),
            (Some(Admin), Some(Admin), Visibility::Private, Permission::WorkspacesGet, &user, Some(Membership)),
            (None, Some(Editor), Visibility::Public, Permission::ResourcesWrite, &user, Some(Group)),
            (None, Some(Viewer), Visibility::Public, Permission::ResourcesWrite, &user, Some(Grant::Visibility)),
            (Some(Viewer), None, Visibility::Internal, Permission::WorkspacesGet, &user, Some(Membership)),
            (None, None, Visibility::Internal, Permission::WorkspacesGet, &user, Some(Grant::Visibility)),
            (Some(Viewer), None, Visibility::Private, Permission::WorkspacesUpdate, &user, None),
            (None, None, Visibility::Private, Permission::WorkspacesGet, &user, None),
            (Some(Admin), None, Visibility::Private, Permission::PoliciesUpdate, &user, None),
            (Some(Admin), None, Visibility::Private, Permission::PoliciesUpdate, &admin, Some(PlatformRole)),
            (Some(Viewer), None, Visibility::Private, Permission::WorkspacesUpdate, &admin, Some(PlatformRole)),
            (Some(Admin), None, Visibility::Private, Permission::WorkspacesUpdate, &admin, Some(Membership)),
        ];
        for (member, group, visibility, permission, caller, expected) in cases {
            assert_eq!(
                granted_by(caller, &access(member, group, visibility), permission),
                expected,
                "{member:?} {group:?} {visibility:?} {permission:?} {:?}",
                caller.platform
            );
        }
        // In `system` no workspace role changes anything: a platform role does.
        let system = WorkspaceAccess {
            is_system: true,
            ..ws(Visibility::Internal, Some(Admin))
        };
        assert_eq!(
            granted_by(&admin, &system, Permission::WorkspacesUpdate),
            Some(PlatformRole)
        );
        assert_eq!(
            granted_by(&admin, &system, Permission::WorkspacesGet),
            Some(Membership)
        );
    }

    #[test]
    fn stored_names_round_trip() {
        for role in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(Role::from_db(role.as_str()), Some(role));
        }
        for v in [
            Visibility::Private,
            Visibility::Internal,
            Visibility::Public,
        ] {
            assert_eq!(Visibility::from_db(v.as_str()), Some(v));
        }
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Role::from_db("owner"), None);
        assert_eq!(Visibility::from_db("secret"), None);
        assert_eq!(Permission::parse("workspaces.GET"), None);
    }
}

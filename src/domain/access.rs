//! Who may do what: workspace roles, visibility, platform roles and permissions, as pure
//! functions, plus `authorize`, the one decision every RPC goes through.

use crate::error::{Error, Result, echo};

/// A principal's role in one workspace, ordered lowest to highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// Parses the stored name.
    pub fn from_db(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who besides members may use a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Members only.
    #[default]
    Private,
    /// Every authenticated principal is at least a viewer.
    Internal,
    /// Every authenticated principal is at least an editor.
    Public,
}

impl Visibility {
    /// The role that this visibility grants every authenticated principal.
    pub fn granted_role(self) -> Option<Role> {
        match self {
            Visibility::Private => None,
            Visibility::Internal => Some(Role::Viewer),
            Visibility::Public => Some(Role::Editor),
        }
    }

    /// The visibility's name as stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Internal => "internal",
            Visibility::Public => "public",
        }
    }

    /// Parses the stored name.
    pub fn from_db(s: &str) -> Option<Visibility> {
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
}

impl Permission {
    /// Every permission, in the contract's order.
    pub const ALL: [Permission; 10] = [
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
    ];

    /// The permission's name in the contract, such as `workspaces.get`.
    pub fn as_str(self) -> &'static str {
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
        }
    }

    /// Parses a permission name; `None` for an unknown one.
    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the permission only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Permission::WorkspacesGet
                | Permission::MembersList
                | Permission::PoliciesGet
                | Permission::ResourcesList
        )
    }

    /// The lowest workspace role that holds this permission; `None` when no workspace role
    /// does (policy updates are for platform admins only).
    pub fn min_role(self) -> Option<Role> {
        match self {
            Permission::WorkspacesGet
            | Permission::MembersList
            | Permission::PoliciesGet
            | Permission::ResourcesList => Some(Role::Viewer),
            Permission::ResourcesWrite => Some(Role::Editor),
            Permission::WorkspacesUpdate
            | Permission::WorkspacesDelete
            | Permission::WorkspacesArchive
            | Permission::MembersManage => Some(Role::Admin),
            Permission::PoliciesUpdate => None,
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
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let has = |r: &str| names.iter().any(|n| n.as_ref() == r);
        PlatformRoles {
            admin: has(Self::ADMIN),
            service: has(Self::SERVICE),
        }
    }

    /// Whether the principal holds any platform role.
    pub fn any(self) -> bool {
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
    /// The platform roles of the token's roles claim.
    pub platform: PlatformRoles,
}

/// What authorization needs to know of a workspace and of the caller's place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceAccess {
    /// The workspace's visibility.
    pub visibility: Visibility,
    /// Whether this is the built-in `system` workspace, which only platform principals change.
    pub is_system: bool,
    /// The caller's membership role, if it is a member.
    pub member_role: Option<Role>,
}

/// The effective workspace role: the higher of the membership role and what visibility grants.
pub fn effective_role(ws: &WorkspaceAccess) -> Option<Role> {
    ws.member_role.max(ws.visibility.granted_role())
}

/// Whether `principal` holds `permission` in the workspace described by `ws`.
pub fn allows(principal: &Principal, ws: &WorkspaceAccess, permission: Permission) -> bool {
    if principal.platform.admin {
        return true;
    }
    if principal.platform.service
        && (permission.is_read() || permission == Permission::ResourcesWrite)
    {
        return true;
    }
    // Nothing in or about `system` changes but by platform principals.
    if ws.is_system && !permission.is_read() {
        return false;
    }
    match (permission.min_role(), effective_role(ws)) {
        (Some(needed), Some(role)) => role >= needed,
        _ => false,
    }
}

/// The AIP-211 decision for one request on a named workspace. `ws` is `None` when the
/// workspace does not exist. A caller that could not read the workspace learns nothing of
/// whether it exists: it gets PERMISSION_DENIED either way.
pub fn authorize(
    principal: &Principal,
    name: &str,
    ws: Option<&WorkspaceAccess>,
    permission: Permission,
) -> Result<()> {
    let Some(ws) = ws else {
        return Err(if principal.platform.any() {
            Error::workspace_not_found(name)
        } else {
            denied(name, Permission::WorkspacesGet)
        });
    };
    if !allows(principal, ws, Permission::WorkspacesGet) {
        return Err(denied(name, Permission::WorkspacesGet));
    }
    if !allows(principal, ws, permission) {
        return Err(denied(name, permission));
    }
    Ok(())
}

fn denied(name: &str, permission: Permission) -> Error {
    Error::PermissionDenied(format!(
        "permission \"{}\" denied on workspace \"{}\" (or it does not exist)",
        permission.as_str(),
        echo(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(platform: PlatformRoles) -> Principal {
        Principal {
            subject: "alice".into(),
            email: None,
            platform,
        }
    }

    fn ws(visibility: Visibility, member_role: Option<Role>) -> WorkspaceAccess {
        WorkspaceAccess {
            visibility,
            is_system: false,
            member_role,
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
}

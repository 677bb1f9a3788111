//! The MembershipService use cases: adding, changing and removing members under the
//! workspace's row lock, so that the last-admin rule holds across replicas, and CheckAccess.

use sea_orm::ConnectionTrait;

use super::{
    access::{self, Need, Permission, Principal, Role},
    guard,
    model::{Member, Workspace, now},
    page::{self, Page, PageRequest},
    validate::WorkspaceName,
};
use crate::{
    error::{Error, Reason, Result, echo},
    store::{Store, memberships as m, principals},
};

/// Who a request names: a subject, or the email of a principal seen before.
#[derive(Debug, Clone)]
pub enum Who {
    /// By subject.
    Subject(String),
    /// By email.
    Email(String),
}

/// AddMember's input.
#[derive(Debug, Clone)]
pub struct AddMember {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The principal to add.
    pub who: Who,
    /// Its role.
    pub role: Role,
}

/// GetMember's input: one member of one workspace.
#[derive(Debug, Clone)]
pub struct MemberRef {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The member's subject.
    pub subject: String,
}

/// UpdateMember's input.
#[derive(Debug, Clone)]
pub struct UpdateMember {
    /// The member.
    pub member: MemberRef,
    /// Its new role.
    pub role: Role,
    /// The etag the change is made under; empty for none.
    pub etag: String,
}

/// RemoveMember's input.
#[derive(Debug, Clone)]
pub struct RemoveMember {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The member to remove.
    pub who: Who,
}

/// ListMembers' input.
#[derive(Debug, Clone)]
pub struct ListMembers {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// Only members with this role.
    pub role: Option<Role>,
    /// The page asked for.
    pub page: PageRequest,
    /// The filters the page token is bound to.
    pub fingerprint: String,
}

/// CheckAccess's input.
#[derive(Debug, Clone)]
pub struct CheckAccess {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The permission asked about.
    pub permission: Permission,
    /// Whose access; the caller's when `None`.
    pub subject: Option<String>,
    /// Read from the database rather than this replica's view.
    pub consistent: bool,
}

/// The MembershipService use cases.
#[derive(Clone, Debug)]
pub struct Memberships {
    store: Store,
}

fn member_not_found(workspace: &str, who: &str) -> Error {
    Error::NotFound {
        reason: Reason::MemberNotFound,
        message: format!(
            "{} is not a member of workspace \"{}\"",
            echo(who),
            echo(workspace)
        ),
    }
}

fn last_admin(workspace: &str) -> Error {
    Error::precondition(
        Reason::LastAdmin,
        format!("workspaces/{}", echo(workspace)),
        format!(
            "workspace \"{}\" must keep at least one admin; add another admin first",
            echo(workspace)
        ),
    )
}

/// The subject an email names, or PRINCIPAL_NOT_FOUND.
async fn resolve<C: ConnectionTrait>(c: &C, who: Who) -> Result<String> {
    match who {
        Who::Subject(s) => Ok(s),
        Who::Email(email) => principals::subject_by_email(c, &email)
            .await?
            .ok_or_else(|| Error::NotFound {
                reason: Reason::PrincipalNotFound,
                message: format!("no principal has signed in with email \"{}\"", echo(&email)),
            }),
    }
}

/// Whether removing or demoting `member` would leave the workspace without an admin. Called
/// under the workspace's row lock, so concurrent changes cannot both pass.
async fn leaves_no_admin<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    member: &Member,
) -> Result<bool> {
    Ok(member.role == Role::Admin && m::count_admins(c, ws).await? <= 1)
}

impl Memberships {
    /// Use cases over `store`.
    pub(crate) fn new(store: Store) -> Self {
        Memberships { store }
    }

    /// AddMember.
    pub(crate) async fn add(&self, p: &Principal, input: AddMember) -> Result<Member> {
        let AddMember {
            workspace: name,
            who,
            role,
        } = input;
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, p, &name, Permission::MembersManage).await?;
        ws.check_writable()?;
        let subject = resolve(&tx, who).await?;
        if m::find(&tx, &ws, &subject).await?.is_some() {
            return Err(Error::AlreadyExists {
                reason: Reason::MemberExists,
                message: format!(
                    "{} is already a member of workspace \"{}\"",
                    echo(&subject),
                    echo(&name)
                ),
            });
        }
        m::insert(&tx, &ws, &subject, role, &p.subject, now()).await?;
        let member = m::find(&tx, &ws, &subject).await?;
        self.store.commit_change(tx, &name).await?;
        member.ok_or_else(|| member_not_found(&name, &subject))
    }

    /// GetMember.
    pub(crate) async fn get(&self, p: &Principal, member: MemberRef) -> Result<Member> {
        let MemberRef {
            workspace: name,
            subject,
        } = member;
        let ws = guard::read(&self.store, p, &name, Permission::MembersList).await?;
        m::find(self.store.conn(), &ws, &subject)
            .await?
            .ok_or_else(|| member_not_found(&name, &subject))
    }

    /// UpdateMember: a new role under the etag; the last admin cannot be demoted.
    pub(crate) async fn update(&self, p: &Principal, input: UpdateMember) -> Result<Member> {
        let UpdateMember {
            member:
                MemberRef {
                    workspace: name,
                    subject,
                },
            role,
            etag,
        } = input;
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, p, &name, Permission::MembersManage).await?;
        ws.check_writable()?;
        let mut member = m::find(&tx, &ws, &subject)
            .await?
            .ok_or_else(|| member_not_found(&name, &subject))?;
        if !etag.is_empty() && etag != member.etag() {
            return Err(Error::EtagMismatch);
        }
        if role != Role::Admin && leaves_no_admin(&tx, &ws, &member).await? {
            return Err(last_admin(&name));
        }
        member.role = role;
        member.version += 1;
        member.update_time = now();
        m::update_role(&tx, &ws, &member).await?;
        self.store.commit_change(tx, &name).await?;
        Ok(member)
    }

    /// RemoveMember: needs members.manage, except that a member may remove itself (see
    /// `access::Need::Removal`).
    pub(crate) async fn remove(&self, p: &Principal, input: RemoveMember) -> Result<u64> {
        let RemoveMember {
            workspace: name,
            who,
        } = input;
        let names_self = match &who {
            Who::Subject(s) => access::names_self(p, Some(s), None),
            Who::Email(e) => access::names_self(p, None, Some(e)),
        };
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, p, &name, Need::Removal { names_self }).await?;
        // Admitted by its own membership, or as a member manager, who may name anyone.
        let subject = if names_self {
            p.subject.clone()
        } else {
            resolve(&tx, who).await?
        };
        ws.check_writable()?;
        let member = m::find(&tx, &ws, &subject)
            .await?
            .ok_or_else(|| member_not_found(&name, &subject))?;
        if leaves_no_admin(&tx, &ws, &member).await? {
            return Err(last_admin(&name));
        }
        let removed = m::delete(&tx, &ws, &subject).await?;
        self.store.commit_change(tx, &name).await?;
        Ok(removed)
    }

    /// ListMembers, ordered by subject.
    pub(crate) async fn list(&self, p: &Principal, input: ListMembers) -> Result<Page<Member>> {
        let ListMembers {
            workspace: name,
            role,
            page,
            fingerprint,
        } = input;
        let c = self.store.conn();
        let ws = guard::read(&self.store, p, &name, Permission::MembersList).await?;
        let after = page.after_key();
        let (rows, total) = m::list(c, &ws, role, after, page.size + 1).await?;
        Ok(page::finish(rows, page.size, &fingerprint, total, |m| {
            vec![m.subject.clone()]
        }))
    }

    /// CheckAccess: whether `subject` (the caller when `None`) holds `permission` in the
    /// workspace, and its effective role; read from the database when `consistent`.
    pub(crate) async fn check(
        &self,
        p: &Principal,
        input: CheckAccess,
    ) -> Result<(bool, Option<Role>)> {
        let CheckAccess {
            workspace: name,
            permission,
            subject,
            consistent,
        } = input;
        let other = subject.as_deref().filter(|s| *s != p.subject);
        if other.is_some() && !access::may_act_for_others(p) {
            return Err(Error::PermissionDenied(
                "checking another subject's access needs a platform role".into(),
            ));
        }
        let target = match other {
            // Another subject is judged by its memberships and the visibility alone.
            Some(s) => Principal {
                subject: s.to_owned(),
                email: None,
                platform: Default::default(),
            },
            None => p.clone(),
        };
        let Some((ws, role)) = self
            .store
            .find_access(&name, &target.subject, consistent)
            .await?
        else {
            return if p.platform.any() {
                Err(Error::workspace_not_found(&name))
            } else {
                Ok((false, None))
            };
        };
        let access = ws.access(role);
        if !access::allows(&target, &access, Permission::WorkspacesGet) {
            // Outsiders learn nothing, not even their own lack of a role's reason.
            return Ok((false, None));
        }
        Ok((
            access::allows(&target, &access, permission),
            access::effective_role(&access),
        ))
    }
}

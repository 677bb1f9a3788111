//! The MembershipService use cases: adding, changing and removing members under the
//! workspace's row lock, so that the last-admin rule holds across replicas, and CheckAccess.

use sea_orm::ConnectionTrait;

use super::{
    access::{self, Permission, Principal, Role},
    model::{Member, Workspace, now},
    page::{self, Page, PageRequest},
    workspaces::{authorize, authorize_read, commit_change},
};
use crate::{
    error::{Error, Reason, Result, echo},
    store::{Store, memberships as m, principals, workspaces as q},
};

/// Who a request names: a subject, or the email of a principal seen before.
#[derive(Debug, Clone)]
pub enum Who {
    /// By subject.
    Subject(String),
    /// By email.
    Email(String),
}

/// The MembershipService use cases.
#[derive(Clone, Debug)]
pub struct Members {
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
    Ok(member.role == Role::Admin && m::count_admins(c, &ws.id).await? <= 1)
}

impl Members {
    /// Use cases over `store`.
    pub fn new(store: Store) -> Self {
        Members { store }
    }

    /// AddMember.
    pub async fn add(&self, p: &Principal, name: &str, who: Who, role: Role) -> Result<Member> {
        let tx = self.store.begin_write().await?;
        let ws = authorize(&tx, p, name, Permission::MembersManage, true).await?;
        ws.check_writable()?;
        let subject = resolve(&tx, who).await?;
        if m::find(&tx, &ws.id, name, &subject).await?.is_some() {
            return Err(Error::AlreadyExists {
                reason: Reason::MemberExists,
                message: format!(
                    "{} is already a member of workspace \"{}\"",
                    echo(&subject),
                    echo(name)
                ),
            });
        }
        m::insert(&tx, &ws.id, &subject, role, &p.subject, now()).await?;
        let member = m::find(&tx, &ws.id, name, &subject).await?;
        commit_change(&self.store, tx, name).await?;
        member.ok_or_else(|| member_not_found(name, &subject))
    }

    /// GetMember.
    pub async fn get(&self, p: &Principal, name: &str, subject: &str) -> Result<Member> {
        let ws = authorize_read(&self.store, p, name, Permission::MembersList, false).await?;
        m::find(self.store.conn(), &ws.id, name, subject)
            .await?
            .ok_or_else(|| member_not_found(name, subject))
    }

    /// UpdateMember: a new role under the etag; the last admin cannot be demoted.
    pub async fn update(
        &self,
        p: &Principal,
        name: &str,
        subject: &str,
        role: Role,
        etag: &str,
    ) -> Result<Member> {
        let tx = self.store.begin_write().await?;
        let ws = authorize(&tx, p, name, Permission::MembersManage, true).await?;
        ws.check_writable()?;
        let mut member = m::find(&tx, &ws.id, name, subject)
            .await?
            .ok_or_else(|| member_not_found(name, subject))?;
        if !etag.is_empty() && etag != member.etag() {
            return Err(Error::EtagMismatch);
        }
        if role != Role::Admin && leaves_no_admin(&tx, &ws, &member).await? {
            return Err(last_admin(name));
        }
        member.role = role;
        member.version += 1;
        member.update_time = now();
        m::update_role(&tx, &ws.id, &member).await?;
        commit_change(&self.store, tx, name).await?;
        Ok(member)
    }

    /// RemoveMember: needs members.manage, except that a member may remove itself (but not
    /// from `system`, which only platform admins change).
    pub async fn remove(&self, p: &Principal, name: &str, who: Who) -> Result<u64> {
        let tx = self.store.begin_write().await?;
        let found = q::find_with_role(&tx, name, &p.subject, true).await?;
        let access = found.as_ref().map(|(ws, role)| ws.access(*role));
        access::authorize(p, name, access.as_ref(), Permission::WorkspacesGet)?;
        let (ws, role) = found.ok_or_else(|| Error::workspace_not_found(name))?;
        // Decided before an email is looked up, so that only member managers learn whether
        // an email has signed in.
        let names_self = match &who {
            Who::Subject(s) => *s == p.subject,
            Who::Email(e) => p.email.as_deref() == Some(e.as_str()),
        };
        let is_self = names_self && role.is_some() && !ws.access(role).is_system;
        if !is_self {
            access::authorize(p, name, access.as_ref(), Permission::MembersManage)?;
        }
        let subject = if is_self {
            p.subject.clone()
        } else {
            resolve(&tx, who).await?
        };
        ws.check_writable()?;
        let member = m::find(&tx, &ws.id, name, &subject)
            .await?
            .ok_or_else(|| member_not_found(name, &subject))?;
        if leaves_no_admin(&tx, &ws, &member).await? {
            return Err(last_admin(name));
        }
        let removed = m::delete(&tx, &ws.id, &subject).await?;
        commit_change(&self.store, tx, name).await?;
        Ok(removed)
    }

    /// ListMembers, ordered by subject.
    pub async fn list(
        &self,
        p: &Principal,
        name: &str,
        role: Option<Role>,
        page: PageRequest,
        fingerprint: &str,
    ) -> Result<Page<Member>> {
        let c = self.store.conn();
        let ws = authorize_read(&self.store, p, name, Permission::MembersList, false).await?;
        let after = page.after_key();
        let (rows, total) = m::list(c, &ws.id, name, role, after, page.size + 1).await?;
        Ok(page::finish(rows, page.size, fingerprint, total, |m| {
            vec![m.subject.clone()]
        }))
    }

    /// CheckAccess: whether `subject` (the caller when `None`) holds `permission` in the
    /// workspace, and its effective role; read from the database when `consistent`.
    pub async fn check(
        &self,
        p: &Principal,
        name: &str,
        permission: Permission,
        subject: Option<&str>,
        consistent: bool,
    ) -> Result<(bool, Option<Role>)> {
        let other = subject.filter(|s| *s != p.subject);
        if other.is_some() && !p.platform.any() {
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
            .find_access(name, &target.subject, consistent)
            .await?
        else {
            return if p.platform.any() {
                Err(Error::workspace_not_found(name))
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

//! The MembershipService use cases: adding, changing and removing members under the
//! workspace's row lock, so that the last-admin rule holds across replicas, and CheckAccess.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{
    access::{self, Grant, Need, Permission, Principal, Role},
    events::record,
    guard,
    model::{
        EventKind::{MemberAdded, MemberRemoved, MemberUpdated},
        EventObject as Object, Member, MemberKey, Workspace, now,
    },
    page::{self, Page, PageRequest},
    validate::WorkspaceName,
};
use crate::{
    error::{BadField, Error, Reason, Result, echo},
    store::{Store, cache::Found, memberships as m, principals},
};

/// Who a request names: a subject, the email of a principal seen before, or a group.
#[derive(Debug, Clone)]
pub enum Who {
    /// By subject.
    Subject(String),
    /// By email.
    Email(String),
    /// A group.
    Group(String),
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
    /// When the membership ends; `None` for never.
    pub expire_time: Option<DateTime<Utc>>,
}

/// GetMember's input: one member of one workspace.
#[derive(Debug, Clone)]
pub struct MemberRef {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The member.
    pub key: MemberKey,
}

/// What UpdateMember does to a membership's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireChange {
    /// Keeps it.
    Keep,
    /// Sets it.
    Set(DateTime<Utc>),
    /// Removes it: the membership never ends.
    Clear,
}

/// UpdateMember's input.
#[derive(Debug, Clone)]
pub struct UpdateMember {
    /// The member.
    pub member: MemberRef,
    /// Its new role.
    pub role: Role,
    /// Its new end.
    pub expire: ExpireChange,
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
    /// The groups of `subject`, when it is another's than the caller's.
    pub groups: Vec<String>,
    /// Read from the database rather than this replica's view.
    pub consistent: bool,
}

/// CheckAccess's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Whether the permission is held.
    pub allowed: bool,
    /// The effective role.
    pub role: Option<Role>,
    /// What allows the permission; `None` when not allowed.
    pub granted_by: Option<Grant>,
    /// The group whose membership allows it, with `Grant::Group`.
    pub group: Option<String>,
}

/// The MembershipService use cases.
#[derive(Clone, Debug)]
pub struct Memberships {
    store: Store,
}

fn member_not_found(workspace: &str, key: &MemberKey) -> Error {
    let e = Error::not_found(
        Reason::MemberNotFound,
        format!(
            "{} is not a member of workspace \"{}\"",
            key.describe(),
            echo(workspace)
        ),
    );
    naming(e.with("workspace", workspace), key)
}

/// `e` with the member `key` in its metadata, as `subject` or `group`.
fn naming(e: Error, key: &MemberKey) -> Error {
    match key {
        MemberKey::Subject(s) => e.with("subject", s),
        MemberKey::Group(g) => e.with("group", g),
    }
}

fn last_admin(workspace: &str) -> Error {
    Error::precondition(
        Reason::LastAdmin,
        format!("workspaces/{}", echo(workspace)),
        format!(
            "workspace \"{}\" must keep at least one admin membership without an expire_time; \
             add another first",
            echo(workspace)
        ),
    )
    .with("workspace", workspace)
}

/// The member an email names, or PRINCIPAL_NOT_FOUND.
async fn resolve<C: ConnectionTrait>(c: &C, who: Who) -> Result<MemberKey> {
    match who {
        Who::Subject(s) => Ok(MemberKey::Subject(s)),
        Who::Group(g) => Ok(MemberKey::Group(g)),
        Who::Email(email) => principals::subject_by_email(c, &email)
            .await?
            .map(MemberKey::Subject)
            .ok_or_else(|| {
                Error::not_found(
                    Reason::PrincipalNotFound,
                    format!("no principal has signed in with email \"{}\"", echo(&email)),
                )
                .with("email", &email)
            }),
    }
}

/// Whether a membership counts for the last-admin rule: an admin that never ends.
fn lasting_admin(role: Role, expire_time: Option<DateTime<Utc>>) -> bool {
    role == Role::Admin && expire_time.is_none()
}

/// Refuses a change that turns `member` from a lasting admin into anything else when it is
/// the workspace's last. Called under the workspace's row lock, so concurrent changes cannot
/// both pass.
async fn keep_an_admin<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    member: &Member,
    after: Option<(Role, Option<DateTime<Utc>>)>,
) -> Result<()> {
    let loses = lasting_admin(member.role, member.expire_time)
        && !after.is_some_and(|(role, end)| lasting_admin(role, end));
    if loses && m::count_lasting_admins(c, ws).await? <= 1 {
        return Err(last_admin(&ws.name));
    }
    Ok(())
}

impl Memberships {
    /// Use cases over `store`.
    pub(crate) fn new(store: Store) -> Self {
        Memberships { store }
    }

    /// AddMember: a membership that ended is replaced.
    pub(crate) async fn add(&self, p: &Principal, input: AddMember) -> Result<Member> {
        let AddMember {
            workspace: name,
            who,
            role,
            expire_time,
        } = input;
        let tx = self.store.begin_write().await?;
        // Adds into one workspace run at once: an add cannot take its last admin away.
        let ws = guard::write_shared(&tx, p, &name, Permission::MembersManage).await?;
        ws.check_writable()?;
        let key = resolve(&tx, who).await?;
        let at = now();
        let member = Member {
            workspace: ws.name.clone(),
            key,
            email: None,
            role,
            added_by: p.subject.clone(),
            create_time: at,
            update_time: at,
            expire_time,
            version: 1,
        };
        let member = m::with_email(&tx, member).await?;
        tx.record(record(
            MemberAdded,
            &ws,
            &p.subject,
            Object::Member(member.clone()),
        ));
        // In place of one that ended, whose end the sweep may not have reached yet.
        if !m::add(&tx, &ws, &member, at).await? {
            let e = Error::exists(
                Reason::MemberExists,
                format!(
                    "{} is already a member of workspace \"{}\"",
                    member.key.describe(),
                    echo(&name)
                ),
            );
            return Err(naming(e.with("workspace", &name), &member.key));
        }
        self.store.commit_change(tx, &name).await?;
        Ok(member)
    }

    /// GetMember.
    pub(crate) async fn get(&self, p: &Principal, member: MemberRef) -> Result<Member> {
        let MemberRef {
            workspace: name,
            key,
        } = member;
        let ws = guard::read(&self.store, p, &name, Permission::MembersList).await?;
        m::find(self.store.conn(), &ws, &key, now())
            .await?
            .ok_or_else(|| member_not_found(&name, &key))
    }

    /// UpdateMember: a new role and end under the etag; the last lasting admin keeps both.
    pub(crate) async fn update(&self, p: &Principal, input: UpdateMember) -> Result<Member> {
        let UpdateMember {
            member: MemberRef {
                workspace: name,
                key,
            },
            role,
            expire,
            etag,
        } = input;
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, p, &name, Permission::MembersManage).await?;
        ws.check_writable()?;
        let at = now();
        let mut member = m::find(&tx, &ws, &key, at)
            .await?
            .ok_or_else(|| member_not_found(&name, &key))?;
        if !etag.is_empty() && etag != member.etag() {
            return Err(Error::EtagMismatch);
        }
        let expire_time = match expire {
            ExpireChange::Keep => member.expire_time,
            ExpireChange::Set(t) => Some(t),
            ExpireChange::Clear => None,
        };
        keep_an_admin(&tx, &ws, &member, Some((role, expire_time))).await?;
        member.role = role;
        member.expire_time = expire_time;
        member.version += 1;
        member.update_time = at;
        tx.record(record(
            MemberUpdated,
            &ws,
            &p.subject,
            Object::Member(member.clone()),
        ));
        // None when the sweep deleted it since it was read, having ended meanwhile.
        if m::update(&tx, &ws, &member).await? == 0 {
            return Err(member_not_found(&name, &key));
        }
        self.store.commit_change(tx, &name).await?;
        Ok(member)
    }

    /// RemoveMember: needs members.manage, except that a member may remove its own subject
    /// membership (see `access::Need::Removal`).
    pub(crate) async fn remove(&self, p: &Principal, input: RemoveMember) -> Result<u64> {
        let RemoveMember {
            workspace: name,
            who,
        } = input;
        let names_self = match &who {
            Who::Subject(s) => access::names_self(p, Some(s), None),
            Who::Email(e) => access::names_self(p, None, Some(e)),
            Who::Group(_) => false,
        };
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, p, &name, Need::Removal { names_self }).await?;
        // Admitted by its own membership, or as a member manager, who may name anyone.
        let key = if names_self {
            MemberKey::Subject(p.subject.clone())
        } else {
            resolve(&tx, who).await?
        };
        ws.check_writable()?;
        let member = m::find(&tx, &ws, &key, now())
            .await?
            .ok_or_else(|| member_not_found(&name, &key))?;
        keep_an_admin(&tx, &ws, &member, None).await?;
        tx.record(record(
            MemberRemoved,
            &ws,
            &p.subject,
            Object::Member(member),
        ));
        let removed = m::delete(&tx, &ws, &key).await?;
        if removed == 0 {
            // The sweep deleted it since it was read, having ended meanwhile.
            return Err(member_not_found(&name, &key));
        }
        self.store.commit_change(tx, &name).await?;
        Ok(removed)
    }

    /// ListMembers: subjects in subject order, then groups in group order.
    pub(crate) async fn list(&self, p: &Principal, input: ListMembers) -> Result<Page<Member>> {
        let ListMembers {
            workspace: name,
            role,
            page,
            fingerprint,
        } = input;
        let c = self.store.conn();
        let ws = guard::read(&self.store, p, &name, Permission::MembersList).await?;
        // A page key is the last member's kind ("s" or "g") and name.
        // A one-part key is a subject's, from before groups were members.
        let after = match page.after.as_deref() {
            None => None,
            Some([kind, name]) if kind == "g" => Some(MemberKey::Group(name.clone())),
            Some([kind, name]) if kind == "s" => Some(MemberKey::Subject(name.clone())),
            Some([name]) => Some(MemberKey::Subject(name.clone())),
            Some(_) => {
                return Err(Error::InvalidArgument(vec![BadField {
                    field: "page_token".into(),
                    description: "is not a page token of this listing".into(),
                }]));
            }
        };
        let (rows, total) = m::list(c, &ws, role, after.as_ref(), page.size + 1, now()).await?;
        Ok(page::finish(rows, page.size, &fingerprint, total, |m| {
            let (is_group, name) = m.key.parts();
            vec![if is_group { "g" } else { "s" }.to_owned(), name.to_owned()]
        }))
    }

    /// CheckAccess: whether `subject` (the caller when `None`) holds `permission` in the
    /// workspace, its effective role and which grant gives the permission; read from the
    /// database when `consistent`.
    pub(crate) async fn check(&self, p: &Principal, input: CheckAccess) -> Result<Decision> {
        let CheckAccess {
            workspace: name,
            permission,
            subject,
            groups,
            consistent,
        } = input;
        let other = check_target(p, subject, groups)?;
        let target = other.as_ref().unwrap_or(p);
        let found = self
            .store
            .find_access(&name, &target.subject, &target.groups, consistent)
            .await?;
        decide_check(p, target, &name, permission, found)
    }

    /// Deletes the memberships that have ended; returns how many.
    pub(crate) async fn sweep(&self) -> Result<u64> {
        Ok(m::delete_expired(self.store.write_conn(), now()).await?)
    }

    /// BatchCheckAccess: each check answered as `check` answers it alone, except that one
    /// it would refuse (another subject without a platform role, a missing workspace) is
    /// answered not allowed. The checks about one subject (and groups) that read alike
    /// (`consistent` or not) are looked up together (`Store::find_access_many`). A failure
    /// of the database fails the whole batch.
    pub(crate) async fn check_batch(
        &self,
        p: &Principal,
        checks: Vec<CheckAccess>,
    ) -> Result<Vec<Decision>> {
        let mut out = vec![Decision::default(); checks.len()];
        // The checks by whom they are about and how they are read, in order of first use.
        let mut asks: Vec<Asks> = Vec::new();
        for (i, check) in checks.into_iter().enumerate() {
            let other = match check_target(p, check.subject, check.groups) {
                Ok(other) => other,
                Err(Error::PermissionDenied { .. }) => continue,
                Err(e) => return Err(e),
            };
            let same = |a: &&mut Asks| {
                a.consistent == check.consistent
                    && a.other.as_ref().map(|o| (&o.subject, &o.groups))
                        == other.as_ref().map(|o| (&o.subject, &o.groups))
            };
            let item = (i, check.workspace, check.permission);
            match asks.iter_mut().find(same) {
                Some(a) => a.items.push(item),
                None => asks.push(Asks {
                    other,
                    consistent: check.consistent,
                    items: vec![item],
                }),
            }
        }
        for Asks {
            other,
            consistent,
            items,
        } in asks
        {
            let target = other.as_ref().unwrap_or(p);
            let names: Vec<&str> = items.iter().map(|(_, name, _)| name.as_str()).collect();
            let found = self
                .store
                .find_access_many(&names, &target.subject, &target.groups, consistent)
                .await?;
            for ((i, name, permission), found) in items.into_iter().zip(found) {
                out[i] = match decide_check(p, target, &name, permission, found) {
                    Ok(d) => d,
                    Err(Error::PermissionDenied { .. } | Error::NotFound { .. }) => {
                        Decision::default()
                    }
                    Err(e) => return Err(e),
                };
            }
        }
        Ok(out)
    }
}

/// BatchCheckAccess's checks about one subject (and groups), read alike.
struct Asks {
    /// Whom they are about: `None` for the caller.
    other: Option<Principal>,
    /// Read from the database rather than the view.
    consistent: bool,
    /// Each check's place in the batch, workspace and permission.
    items: Vec<(usize, WorkspaceName, Permission)>,
}

/// Whom a check is about: `None` for the caller, else another subject (judged by its
/// memberships, its groups' and the visibility), which only a platform role may ask about.
fn check_target(
    p: &Principal,
    subject: Option<String>,
    groups: Vec<String>,
) -> Result<Option<Principal>> {
    let Some(other) = subject.filter(|s| *s != p.subject) else {
        return Ok(None);
    };
    if !access::may_act_for_others(p) {
        return Err(Error::denied(
            "checking another subject's access needs a platform role",
        ));
    }
    Ok(Some(Principal::new(other, groups, Default::default())))
}

/// CheckAccess's answer for `target` asked by `p`, from what the lookup `found` of the
/// workspace `name` read.
fn decide_check(
    p: &Principal,
    target: &Principal,
    name: &WorkspaceName,
    permission: Permission,
    found: Found,
) -> Result<Decision> {
    let Some((ws, held)) = found else {
        return if p.platform.any() {
            Err(Error::workspace_not_found(name))
        } else {
            Ok(Decision::default())
        };
    };
    let at = now();
    let access = ws.access(&held, at);
    if !access::allows(target, &access, Permission::WorkspacesGet) {
        // Outsiders learn nothing, not even their own lack of a role's reason.
        return Ok(Decision::default());
    }
    let granted_by = access::granted_by(target, &access, permission);
    let group = match granted_by {
        Some(Grant::Group) => held.at(at).1.map(|(_, g)| g.to_owned()),
        _ => None,
    };
    Ok(Decision {
        allowed: granted_by.is_some(),
        role: access::effective_role(&access),
        granted_by,
        group,
    })
}

//! The WorkspaceService use cases: validated input in, a decision by the rules of
//! `access` and `model`, and the writes in one transaction.

use std::collections::BTreeMap;

use sea_orm::SqlErr;
use uuid::Uuid;

use super::{
    access::{self, Permission, Principal, Role, Visibility},
    events::record,
    guard,
    model::{
        DEFAULT_WORKSPACE, EventKind as Kind, EventObject as Object, Member, MemberKey,
        PolicyRules, Resource, SYSTEM_WORKSPACE, Workspace, WorkspaceState, now,
    },
    page::{self, Page, PageRequest},
    validate::WorkspaceName,
};
use crate::{
    error::{Error, Precondition, Reason, Result, echo},
    store::{
        Inserts, Store, create_requests, gpu_requests, memberships, policies, resources,
        workspaces as q,
    },
};

/// The most kinds of resources a workspace holds at once. Each answer holding the workspace
/// lists its counts by kind (about 75 bytes a kind at most), and a page holds 100
/// workspaces: at 100 kinds and every other field at its longest a full page is about
/// 2 MiB, within the 4 MiB a response may be, and far above the handful of kinds (models,
/// datasets, jobs) a platform registers.
pub const MAX_RESOURCE_KINDS: usize = 100;

/// What an earlier CreateWorkspace with a caller's request id made.
enum Replay {
    /// Nothing that still exists: the id is free.
    Fresh,
    /// This workspace, which the caller may read: a retry answers it.
    Made(Box<Workspace>),
    /// A workspace the caller may no longer read: the id is taken.
    Unseen,
}

/// What the workspace use cases need: the store and the server's defaults.
#[derive(Clone, Debug)]
pub struct Workspaces {
    store: Store,
    defaults: PolicyRules,
}

/// Fields of a workspace to create, validated.
#[derive(Debug, Clone)]
pub struct NewWorkspace {
    /// RFC 1035 name.
    pub name: WorkspaceName,
    /// Human-readable name.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Visibility; private when unset.
    pub visibility: Visibility,
}

/// Fields to change by UpdateWorkspace; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceChanges {
    /// New display name.
    pub display_name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New labels (all of them).
    pub labels: Option<BTreeMap<String, String>>,
    /// New visibility.
    pub visibility: Option<Visibility>,
}

/// CreateWorkspace's input.
#[derive(Debug, Clone)]
pub struct CreateWorkspace {
    /// The workspace to create.
    pub workspace: NewWorkspace,
    /// The caller's id of this request, so that a retry answers the same workspace; empty
    /// for none.
    pub request_id: String,
}

/// UpdateWorkspace's input.
#[derive(Debug, Clone)]
pub struct UpdateWorkspace {
    /// The workspace.
    pub name: WorkspaceName,
    /// The fields to change.
    pub changes: WorkspaceChanges,
    /// The etag the change is made under; empty for none.
    pub etag: String,
}

/// The input of DeleteWorkspace, ArchiveWorkspace and UnarchiveWorkspace: a workspace and
/// the etag the change is made under (empty for none).
#[derive(Debug, Clone)]
pub struct WorkspaceEtag {
    /// The workspace.
    pub name: WorkspaceName,
    /// The etag; empty for none.
    pub etag: String,
}

/// The input of RegisterResource and UnregisterResource.
#[derive(Debug, Clone)]
pub struct ResourceRef {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The resource's kind.
    pub kind: String,
    /// The resource's id within its kind.
    pub resource_id: String,
}

/// ListResources' input.
#[derive(Debug, Clone)]
pub struct ListResources {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// Only this kind.
    pub kind: Option<String>,
    /// The page asked for.
    pub page: PageRequest,
    /// The filters the page token is bound to.
    pub fingerprint: String,
}

/// ListWorkspaces' input: the filters and the page asked for.
#[derive(Debug, Clone)]
pub struct WorkspaceListing {
    /// The filters.
    pub filter: ListWorkspaces,
    /// The page.
    pub page: PageRequest,
}

/// How a workspace is named in a GetWorkspace request.
#[derive(Debug, Clone)]
pub enum WorkspaceRef {
    /// By its name.
    Name(WorkspaceName),
    /// By its id.
    Id(Uuid),
}

/// The filters of ListWorkspaces, validated.
#[derive(Debug, Clone, Default)]
pub struct ListWorkspaces {
    /// Only this state.
    pub state: Option<WorkspaceState>,
    /// Only workspaces where this subject is a member.
    pub member: Option<String>,
    /// Only workspaces where this group is a member.
    pub member_group: Option<String>,
    /// Only workspaces carrying all these labels.
    pub labels: BTreeMap<String, String>,
}

impl ListWorkspaces {
    /// The fixed form of the filters that a page token is bound to.
    pub fn fingerprint(&self) -> String {
        serde_json::json!({
            "rpc": "ListWorkspaces",
            "state": self.state.map(|s| s.as_str()),
            "member": self.member,
            "member_group": self.member_group,
            "labels": self.labels,
        })
        .to_string()
    }
}

impl Workspaces {
    /// Use cases over `store`, creating policies from `defaults`.
    pub(crate) fn new(store: Store, defaults: PolicyRules) -> Self {
        Workspaces { store, defaults }
    }

    /// Creates `default` and `system` if absent. Safe when several replicas start at once.
    pub(crate) async fn ensure_built_ins(&self) -> Result<()> {
        for (name, visibility, description) in [
            (
                DEFAULT_WORKSPACE,
                Visibility::Public,
                "Every authenticated principal can read and write here.",
            ),
            (
                SYSTEM_WORKSPACE,
                Visibility::Internal,
                "Platform-provided models, templates and targets.",
            ),
        ] {
            let t = now();
            let ws = Workspace {
                id: Uuid::new_v4().to_string(),
                name: name.to_owned(),
                display_name: name.to_owned(),
                description: description.to_owned(),
                labels: BTreeMap::new(),
                visibility,
                state: WorkspaceState::Active,
                built_in: true,
                created_by: "system".to_owned(),
                create_time: t,
                update_time: t,
                version: 1,
                resource_counts: BTreeMap::new(),
            };
            let tx = self.store.begin_write().await?;
            if q::insert_if_absent(&tx, &ws).await? {
                // The server's own change: no actor.
                tx.record(record(
                    Kind::WorkspaceCreated,
                    &ws,
                    "",
                    Object::Workspace(ws.clone()),
                ));
                policies::insert_default(&tx, &ws.id, &self.defaults, "system", t).await?;
            }
            self.store.commit_change(tx, name).await?;
        }
        Ok(())
    }

    /// CreateWorkspace: the caller becomes its admin; the default policy comes with it.
    pub(crate) async fn create(
        &self,
        principal: &Principal,
        input: CreateWorkspace,
    ) -> Result<Workspace> {
        let CreateWorkspace {
            workspace: new,
            request_id,
        } = input;
        let request_id = request_id.as_str();
        if !request_id.is_empty()
            && let Replay::Made(ws) = self.replay(principal, request_id).await?
        {
            return Ok(*ws);
        }
        let t = now();
        let ws = Workspace {
            id: Uuid::new_v4().to_string(),
            name: new.name.as_str().to_owned(),
            display_name: new.display_name,
            description: new.description,
            labels: new.labels,
            visibility: new.visibility,
            state: WorkspaceState::Active,
            built_in: false,
            created_by: principal.subject.clone(),
            create_time: t,
            update_time: t,
            version: 1,
            resource_counts: BTreeMap::new(),
        };
        let creator = Member {
            workspace: ws.name.clone(),
            key: MemberKey::Subject(principal.subject.clone()),
            email: None,
            role: Role::Admin,
            added_by: principal.subject.clone(),
            create_time: t,
            update_time: t,
            expire_time: None,
            version: 1,
        };
        // Nothing here reads, so the store writes it all at once (`store/together.rs`).
        let mut inserts = Inserts::default();
        q::add_insert(&mut inserts, &ws);
        memberships::add_insert(&mut inserts, &ws, &creator);
        policies::add_default_insert(&mut inserts, &ws.id, &self.defaults, &principal.subject, t)?;
        if !request_id.is_empty() {
            create_requests::add_insert(&mut inserts, &principal.subject, request_id, &ws.id, t);
        }
        let event = record(
            Kind::WorkspaceCreated,
            &ws,
            &principal.subject,
            Object::Workspace(ws.clone()),
        );
        // Also tells this replica's view, which may remember that no workspace had this name.
        let result = self.store.insert_together(&ws.name, inserts, event).await;
        match result {
            Ok(()) => Ok(ws),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                // A concurrent retry of the same request may have won the race; or the id
                // may be what was taken, its workspace one the caller may no longer see, so
                // that this is no retry and the name may well be free.
                let replay = if request_id.is_empty() {
                    Replay::Fresh
                } else {
                    self.replay(principal, request_id).await?
                };
                if let Replay::Made(ws) = replay {
                    return Ok(*ws);
                }
                // The id's workspace is not shown to a caller that may no longer read it.
                // A taken name is WORKSPACE_EXISTS, as the contract names it; only a free
                // one failed on the id alone.
                let id_alone = matches!(replay, Replay::Unseen)
                    && !q::name_taken(self.store.conn(), &ws.name).await?;
                Err(if id_alone {
                    Error::exists(
                        Reason::RequestIdExists,
                        format!(
                            "request_id \"{}\" was used by an earlier create of a workspace \
                             you may no longer read; use a new one",
                            echo(request_id)
                        ),
                    )
                    .with("requestId", request_id)
                } else {
                    Error::exists(
                        Reason::WorkspaceExists,
                        format!("workspace \"{}\" already exists", echo(&ws.name)),
                    )
                    .with("workspace", &ws.name)
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// What an earlier create with this request id made.
    async fn replay(&self, principal: &Principal, request_id: &str) -> Result<Replay> {
        let c = self.store.conn();
        let Some(id) = create_requests::find(c, &principal.subject, request_id).await? else {
            return Ok(Replay::Fresh);
        };
        let Some(ws) = q::find_by_id(c, &id).await? else {
            return Ok(Replay::Fresh);
        };
        // A retry returns the workspace only to a caller that may still read it.
        let name = ws.name.clone();
        match guard::found(c, principal, &name, Some(ws), Permission::WorkspacesGet).await {
            Ok(ws) => Ok(q::with_counts(c, vec![ws])
                .await?
                .pop()
                .map_or(Replay::Fresh, |ws| Replay::Made(Box::new(ws)))),
            Err(_) => Ok(Replay::Unseen),
        }
    }

    /// GetWorkspace by name or id.
    pub(crate) async fn get(&self, principal: &Principal, by: WorkspaceRef) -> Result<Workspace> {
        let c = self.store.conn();
        let mut ws = match by {
            WorkspaceRef::Name(name) => {
                let ws =
                    guard::read(&self.store, principal, &name, Permission::WorkspacesGet).await?;
                Workspace::clone(&ws)
            }
            WorkspaceRef::Id(id) => {
                // Named by the id in every answer, so that an id never reveals a name.
                let label = id.to_string();
                let ws = q::find_by_id(c, &label).await?;
                guard::found(c, principal, &label, ws, Permission::WorkspacesGet).await?
            }
        };
        ws.resource_counts = BTreeMap::clone(&*self.store.resource_counts(&ws).await?);
        Ok(ws)
    }

    /// ListWorkspaces: the workspaces the caller may read, ordered by name.
    pub(crate) async fn list(
        &self,
        principal: &Principal,
        input: WorkspaceListing,
    ) -> Result<Page<Workspace>> {
        let WorkspaceListing { filter, page } = input;
        if let Some(member) = &filter.member
            && *member != principal.subject
            && !access::may_act_for_others(principal)
        {
            return Err(Error::denied(
                "listing another subject's workspaces needs a platform role",
            ));
        }
        if let Some(group) = &filter.member_group
            && !access::may_ask_about_group(principal, group)
        {
            return Err(Error::denied(
                "listing the workspaces of a group not in the caller's token needs a platform role",
            ));
        }
        let fingerprint = filter.fingerprint();
        let f = q::ListFilter {
            state: filter.state,
            member: filter.member,
            member_group: filter.member_group,
            labels: filter.labels,
            readable_by: access::listing_scope(principal).map(q::Reader::of),
            now_us: memberships::micros(now()),
        };
        let after = page.after_key();
        let total = self.store.count_workspaces(&f).await?;
        let rows = q::list(self.store.conn(), &f, after, page.size + 1).await?;
        Ok(page::finish(rows, page.size, &fingerprint, total, |w| {
            vec![w.name.clone()]
        }))
    }

    /// UpdateWorkspace: applies `changes` under the etag.
    pub(crate) async fn update(
        &self,
        principal: &Principal,
        input: UpdateWorkspace,
    ) -> Result<Workspace> {
        let UpdateWorkspace {
            name,
            changes,
            etag,
        } = input;
        let (name, etag) = (&name, etag.as_str());
        let tx = self.store.begin_write().await?;
        let mut ws = guard::write(&tx, principal, name, Permission::WorkspacesUpdate).await?;
        // Built-in wins over every other precondition, the etag's included.
        if changes.visibility == Some(Visibility::Private) {
            ws.check_not_built_in("made private")?;
        }
        ws.check_etag(etag)?;
        ws.check_writable()?;
        let before = ws.clone();
        if let Some(v) = changes.display_name {
            ws.display_name = v;
        }
        if let Some(v) = changes.description {
            ws.description = v;
        }
        if let Some(v) = changes.labels {
            ws.labels = v;
        }
        if let Some(v) = changes.visibility {
            ws.visibility = v;
        }
        ws.version += 1;
        ws.update_time = now();
        // Counted before the update, under the row lock that registrations take too.
        let ws = q::with_counts(&tx, vec![ws])
            .await?
            .pop()
            .ok_or_else(|| unreachable_ws(name))?;
        tx.record(record(
            Kind::WorkspaceUpdated,
            &ws,
            &principal.subject,
            Object::Workspace(ws.clone()),
        ));
        q::update(&tx, &before, &ws).await?;
        self.store.commit_change(tx, name).await?;
        Ok(ws)
    }

    /// DeleteWorkspace: only when no resources are registered and no GPU pod request is
    /// active (the workspace's row lock keeps admissions out meanwhile).
    pub(crate) async fn delete(&self, principal: &Principal, input: WorkspaceEtag) -> Result<()> {
        let (name, etag) = (&input.name, input.etag.as_str());
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, principal, name, Permission::WorkspacesDelete).await?;
        // Built-in wins over every other precondition, the etag's included.
        ws.check_not_built_in("deleted")?;
        ws.check_etag(etag)?;
        let counts = resources::counts(&tx, &[ws.id.as_str()])
            .await?
            .remove(&ws.id)
            .unwrap_or_default();
        let now = now();
        let mut tally = gpu_requests::usage(&tx, &ws.id, now).await?;
        if tally.as_ref().is_some_and(|t| t.expired > 0) {
            // As an admission does (see `store::gpu_requests::delete_expired`): a lease this
            // delete counts as ended may be in a renewal on a replica whose clock runs
            // behind; deleting the ended ones waits for it, and the count after sees it.
            gpu_requests::delete_expired(&tx, &ws.id, now).await?;
            tally = gpu_requests::usage(&tx, &ws.id, now).await?;
        }
        let gprs = tally.map_or(0, |t| t.usage.active_gprs);
        if !counts.is_empty() || gprs > 0 {
            let mut violations: Vec<Precondition> = counts
                .into_iter()
                .map(|(kind, n)| Precondition {
                    kind: "RESOURCES".into(),
                    subject: echo(&kind),
                    description: format!("{n} resource(s) of kind \"{}\" registered", echo(&kind)),
                })
                .collect();
            // First: the details keep at most 20 violations, and up to 100 kinds may be
            // registered; a client draining GPU pods looks for this one.
            if gprs > 0 {
                violations.insert(
                    0,
                    Precondition {
                        kind: "gpu_requests".into(),
                        subject: echo(name),
                        description: format!("{gprs} active GPU pod request(s)"),
                    },
                );
            }
            let holds = match (gprs > 0, violations.len() > 1) {
                (false, _) => "registered resources; unregister them",
                (true, false) => "active GPU pod requests; release them",
                (true, true) => {
                    "registered resources and active GPU pod requests; unregister \
                                 and release them"
                }
            };
            return Err(Error::FailedPrecondition {
                reason: Reason::WorkspaceNotEmpty,
                message: format!("workspace \"{}\" still holds {holds} first", echo(name)),
                violations,
                meta: vec![("workspace", name.to_string())],
            });
        }
        q::delete(&tx, &ws.id).await?;
        // Recorded after the delete, so written at commit: the delete's cascade may wait for
        // a GPU pod request's release (which takes no workspace lock), and a carried event
        // would be queued before that wait (see `store/change.rs`).
        tx.record(record(
            Kind::WorkspaceDeleted,
            &ws,
            &principal.subject,
            Object::Workspace(ws.clone()),
        ));
        self.store.commit_change(tx, name).await?;
        Ok(())
    }

    /// ArchiveWorkspace (`archive`) or UnarchiveWorkspace.
    pub(crate) async fn set_archived(
        &self,
        principal: &Principal,
        input: WorkspaceEtag,
        archive: bool,
    ) -> Result<Workspace> {
        let (name, etag) = (&input.name, input.etag.as_str());
        let tx = self.store.begin_write().await?;
        let mut ws = guard::write(&tx, principal, name, Permission::WorkspacesArchive).await?;
        if archive {
            ws.check_not_built_in("archived")?;
        }
        ws.check_etag(etag)?;
        let before = ws.clone();
        if archive {
            // Archiving is a change, and an archived workspace takes none.
            ws.check_writable()?;
            ws.state = WorkspaceState::Archived;
        } else if ws.state == WorkspaceState::Archived {
            ws.state = WorkspaceState::Active;
        } else {
            // Unarchiving an active workspace changes nothing.
            self.store.commit(tx).await?;
            return self
                .get(principal, WorkspaceRef::Name(name.to_owned()))
                .await;
        }
        ws.version += 1;
        ws.update_time = now();
        // Counted before the update, under the row lock that registrations take too.
        let ws = q::with_counts(&tx, vec![ws])
            .await?
            .pop()
            .ok_or_else(|| unreachable_ws(name))?;
        let kind = if archive {
            Kind::WorkspaceArchived
        } else {
            Kind::WorkspaceUnarchived
        };
        tx.record(record(
            kind,
            &ws,
            &principal.subject,
            Object::Workspace(ws.clone()),
        ));
        q::update(&tx, &before, &ws).await?;
        self.store.commit_change(tx, name).await?;
        Ok(ws)
    }

    /// RegisterResource: idempotent.
    pub(crate) async fn register(
        &self,
        principal: &Principal,
        input: ResourceRef,
    ) -> Result<Resource> {
        let ResourceRef {
            workspace: name,
            kind,
            resource_id,
        } = input;
        let name = &name;
        let tx = self.store.begin_write().await?;
        let mut ws = guard::write(&tx, principal, name, Permission::ResourcesWrite).await?;
        ws.check_writable()?;
        if let Some(existing) = resources::find(&tx, &ws, &kind, &resource_id).await? {
            self.store.commit(tx).await?;
            return Ok(existing);
        }
        // Every answer holding the workspace carries its counts by kind: without a bound,
        // one caller's kinds would grow it past what a response may hold. Under the
        // workspace's lock, so that two new kinds cannot both take the last place.
        if !resources::has_kind(&tx, &ws.id, &kind).await?
            && resources::kinds(&tx, &ws.id, MAX_RESOURCE_KINDS).await? >= MAX_RESOURCE_KINDS
        {
            return Err(Error::precondition(
                Reason::TooManyResourceKinds,
                format!("workspaces/{}", ws.name),
                format!(
                    "workspace \"{}\" already holds resources of {MAX_RESOURCE_KINDS} kinds, the \
                     most it may; unregister every resource of a kind to free its place",
                    echo(name)
                ),
            )
            .with("workspace", name)
            .with("kind", &kind));
        }
        let r = Resource {
            workspace: ws.name.clone(),
            kind,
            resource_id,
            registered_by: principal.subject.clone(),
            create_time: now(),
        };
        resources::insert(&tx, &ws.id, &r).await?;
        // The workspace's resource_counts changed, so its etag does too.
        ws.version += 1;
        tx.record(record(
            Kind::ResourceRegistered,
            &ws,
            &principal.subject,
            Object::Resource(r.clone()),
        ));
        q::touch(&tx, &ws.id, ws.version, r.create_time).await?;
        self.store.commit_change(tx, name).await?;
        Ok(r)
    }

    /// UnregisterResource.
    pub(crate) async fn unregister(&self, principal: &Principal, input: ResourceRef) -> Result<()> {
        let (name, kind, resource_id) = (
            &input.workspace,
            input.kind.as_str(),
            input.resource_id.as_str(),
        );
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, principal, name, Permission::ResourcesWrite).await?;
        ws.check_writable()?;
        let not_found = || {
            Error::not_found(
                Reason::ResourceNotFound,
                format!(
                    "resource {}/{} is not registered in workspace \"{}\"",
                    echo(kind),
                    echo(resource_id),
                    echo(name)
                ),
            )
            .with("workspace", name)
            .with("kind", kind)
            .with("resourceId", resource_id)
        };
        // Read under the workspace's row lock, which every registration takes too.
        let Some(r) = resources::find(&tx, &ws, kind, resource_id).await? else {
            return Err(not_found());
        };
        if resources::delete(&tx, &ws.id, kind, resource_id).await? == 0 {
            return Err(not_found());
        }
        tx.record(record(
            Kind::ResourceUnregistered,
            &ws,
            &principal.subject,
            Object::Resource(r),
        ));
        q::touch(&tx, &ws.id, ws.version + 1, now()).await?;
        self.store.commit_change(tx, name).await?;
        Ok(())
    }

    /// ListResources, ordered by (kind, resource_id).
    pub(crate) async fn list_resources(
        &self,
        principal: &Principal,
        input: ListResources,
    ) -> Result<Page<Resource>> {
        let ListResources {
            workspace: name,
            kind,
            page,
            fingerprint,
        } = input;
        let (name, fingerprint) = (&name, fingerprint.as_str());
        let c = self.store.conn();
        let ws = guard::read(&self.store, principal, name, Permission::ResourcesList).await?;
        let after = match page.after.as_deref() {
            Some([k, r]) => Some((k.as_str(), r.as_str())),
            Some(_) => return Err(Error::invalid("page_token", "is malformed")),
            None => None,
        };
        let (rows, total) = resources::list(c, &ws, kind.as_deref(), after, page.size + 1).await?;
        Ok(page::finish(rows, page.size, fingerprint, total, |r| {
            vec![r.kind.clone(), r.resource_id.clone()]
        }))
    }
}

/// `with_counts` returns as many workspaces as it is given; this names the impossible case.
fn unreachable_ws(name: &str) -> Error {
    Error::Internal(format!(
        "workspace \"{name}\" vanished within its own request"
    ))
}

//! The two doors to a workspace: every workspace-scoped use case first looks the workspace
//! up with the caller's role in it and applies `access::authorize`, through `read` (this
//! replica's view) or `write` (the row, locked for the transaction).

use std::{borrow::Borrow, sync::Arc};

use sea_orm::ConnectionTrait;

use super::{
    access::{self, Need, Principal},
    model::{Holdings, Workspace, now},
    validate::WorkspaceName,
};
use crate::{
    error::{Error, Result},
    store::{
        Store, memberships,
        workspaces::{self, RowLock},
    },
};

/// The workspace `name`, if `principal` may act on it as `need` says, from this replica's
/// view of workspaces and roles: exact for changes made here, and within milliseconds for
/// changes made on other replicas (see `store::cache`).
pub(crate) async fn read(
    store: &Store,
    principal: &Principal,
    name: &WorkspaceName,
    need: impl Into<Need>,
) -> Result<Arc<Workspace>> {
    let found = store
        .find_access(name, &principal.subject, &principal.groups, false)
        .await?;
    decide(principal, name, found, need)
}

/// Like `read`, for a workspace known by its id: `None` when no workspace of that id bears
/// `name` any more (deleted, or another created under the name). Read from the database:
/// its caller asks about changes newer than this replica's view may know.
pub(crate) async fn read_same(
    store: &Store,
    principal: &Principal,
    name: &WorkspaceName,
    id: &str,
    need: impl Into<Need>,
) -> Result<Option<Arc<Workspace>>> {
    let found = store
        .find_access(name, &principal.subject, &principal.groups, true)
        .await?;
    match found {
        Some((ws, held)) if ws.id == id => {
            decide(principal, name, Some((ws, held)), need).map(Some)
        }
        _ => Ok(None),
    }
}

/// The workspace `name`, if `principal` may act on it as `need` says, read in the write
/// transaction `tx` with its row locked until the transaction ends, so that the decision
/// and the writes after it see the same workspace and members on every replica.
pub(crate) async fn write<C: ConnectionTrait>(
    tx: &C,
    principal: &Principal,
    name: &WorkspaceName,
    need: impl Into<Need>,
) -> Result<Workspace> {
    locked(tx, principal, name, need, RowLock::Exclusive).await
}

/// Like `write`, with the row shared with other such writers (see `RowLock::Shared`): for a
/// change that no rule of the workspace forbids because of another such change (adding a
/// member: only removals and demotions can leave it without an admin). The caller's role and
/// the workspace's state still cannot change before the transaction ends.
pub(crate) async fn write_shared<C: ConnectionTrait>(
    tx: &C,
    principal: &Principal,
    name: &WorkspaceName,
    need: impl Into<Need>,
) -> Result<Workspace> {
    locked(tx, principal, name, need, RowLock::Shared).await
}

async fn locked<C: ConnectionTrait>(
    tx: &C,
    principal: &Principal,
    name: &WorkspaceName,
    need: impl Into<Need>,
    lock: RowLock,
) -> Result<Workspace> {
    let found =
        workspaces::find_with_holdings(tx, name, &principal.subject, &principal.groups, lock)
            .await?;
    decide(principal, name, found, need)
}

/// The decision for a workspace already looked up some other way (by id, or by a create
/// request's id), `None` when missing; answers name it `label`.
pub(crate) async fn found<C: ConnectionTrait>(
    c: &C,
    principal: &Principal,
    label: &str,
    ws: Option<Workspace>,
    need: impl Into<Need>,
) -> Result<Workspace> {
    let found = match ws {
        Some(ws) => {
            let held =
                memberships::holdings(c, &ws.id, &principal.subject, &principal.groups).await?;
            Some((ws, held))
        }
        None => None,
    };
    decide(principal, label, found, need)
}

/// `access::authorize` on a workspace found (or not) with the memberships of the caller and
/// its groups in it, as they stand now.
fn decide<W: Borrow<Workspace>>(
    principal: &Principal,
    label: &str,
    found: Option<(W, Holdings)>,
    need: impl Into<Need>,
) -> Result<W> {
    let at = now();
    let access = found
        .as_ref()
        .map(|(ws, held)| ws.borrow().access(held, at));
    access::authorize(principal, label, access.as_ref(), need)?;
    // authorize() fails when the workspace is missing.
    found
        .map(|(ws, _)| ws)
        .ok_or_else(|| Error::workspace_not_found(label))
}

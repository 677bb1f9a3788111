//! CreateWorkspace, GetWorkspace, UpdateWorkspace, DeleteWorkspace, Archive/Unarchive, the
//! built-in workspaces and the AIP-211 rules on them.

use std::collections::HashMap;

use tonic::Code;
use tonic_types::StatusExt;
use workspaced::pb::v1 as pb;

use crate::common::*;

#[tokio::test]
async fn create_returns_the_workspace_with_server_fields() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let ws = create(
        &s,
        &alice,
        pb::Workspace {
            name: "ml-team".into(),
            display_name: "ML team".into(),
            description: "Models of the ML team".into(),
            labels: HashMap::from([("team".into(), "ml".into())]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ws.name, "ml-team");
    assert!(uuid::Uuid::parse_str(&ws.id).is_ok());
    assert_eq!(ws.display_name, "ML team");
    assert_eq!(ws.labels.get("team").map(String::as_str), Some("ml"));
    // Unset visibility is stored and returned as private.
    assert_eq!(ws.visibility, pb::Visibility::Private as i32);
    assert_eq!(ws.state, pb::WorkspaceState::Active as i32);
    assert!(!ws.built_in);
    assert_eq!(ws.created_by, "alice");
    assert!(!ws.etag.is_empty());
    assert!(ws.create_time.is_some() && ws.update_time.is_some());
    assert!(ws.resource_counts.is_empty());
    // A later read returns exactly what the create returned.
    assert_eq!(s.get_workspace(&alice, "ml-team").await.unwrap(), ws);
    // The creator is its admin: it may update it.
    let mut changed = ws.clone();
    changed.description = "new".into();
    s.update_workspace(&alice, changed, &["description"], "")
        .await
        .unwrap();
}

#[tokio::test]
async fn create_refuses_a_taken_name() {
    let s = TestServer::spawn().await;
    create(&s, &token("alice"), new_ws("taken")).await;
    let err = s
        .create_workspace(&token("bob"), new_ws("taken"))
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "WORKSPACE_EXISTS");
    // Built-ins are taken names too.
    let err = s
        .create_workspace(&token("bob"), new_ws("default"))
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "WORKSPACE_EXISTS");
}

#[tokio::test]
async fn create_retried_with_its_request_id_returns_the_first_workspace() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let create_with = |name: &str, rid: &str, tok: String| {
        let (s, ws, rid) = (&s, new_ws(name), rid.to_owned());
        async move { s.create_workspace_with_request_id(&tok, ws, &rid).await }
    };
    let first = create_with("retry", "req-1", alice.clone()).await.unwrap();
    let again = create_with("retry", "req-1", alice.clone()).await.unwrap();
    assert_eq!(first, again);
    // A retry returns the workspace as it is now.
    let mut changed = new_ws("retry");
    changed.description = "since changed".into();
    let first = s
        .update_workspace(&alice, changed, &["description"], "")
        .await
        .unwrap();
    let again = create_with("retry", "req-1", alice.clone()).await.unwrap();
    assert_eq!(again, first);
    // A retry returns the first workspace even when the retried body differs.
    let other_body = create_with("retry-other", "req-1", alice.clone())
        .await
        .unwrap();
    assert_eq!(other_body, first);
    // Request ids are scoped to the caller: bob's same id is a new request.
    let err = create_with("retry", "req-1", token("bob"))
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "WORKSPACE_EXISTS");
    // Without a request id a repeat is a conflict.
    let err = create_with("retry", "", alice).await.unwrap_err();
    assert_status(&err, Code::AlreadyExists, "WORKSPACE_EXISTS");
}

/// A request id is 1-255 characters without control characters; a bad one creates nothing.
#[tokio::test]
async fn a_bad_request_id_is_invalid_argument() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let longest = "r".repeat(255);
    for bad in ["a\u{7}b", "line\nbreak", &"r".repeat(256)] {
        let err = s
            .create_workspace_with_request_id(&alice, new_ws("rid"), bad)
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["request_id"], "{bad:?}");
    }
    let ws = s
        .create_workspace_with_request_id(&alice, new_ws("rid"), &longest)
        .await
        .unwrap();
    assert_eq!(ws.name, "rid");
}

/// Output-only fields in a create are ignored: the server sets them.
#[tokio::test]
async fn a_create_ignores_output_only_fields() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let forged_id = "00000000-0000-4000-8000-000000000000";
    let long_ago = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: 0,
    });
    let forged = pb::Workspace {
        id: forged_id.into(),
        state: pb::WorkspaceState::Archived as i32,
        built_in: true,
        created_by: "root".into(),
        create_time: long_ago,
        update_time: long_ago,
        etag: "forged".into(),
        resource_counts: HashMap::from([("model".into(), 7)]),
        ..new_ws("forged")
    };
    let ws = create(&s, &alice, forged).await;
    assert_ne!(ws.id, forged_id);
    assert_eq!(ws.state, pb::WorkspaceState::Active as i32);
    assert!(!ws.built_in);
    assert_eq!(ws.created_by, "alice");
    assert!(ws.create_time.unwrap().seconds > now() - 3600);
    assert!(ws.update_time.unwrap().seconds > now() - 3600);
    assert_ne!(ws.etag, "forged");
    assert_eq!(ws.resource_counts.get("model").copied().unwrap_or(0), 0);
    assert_eq!(s.get_workspace(&alice, "forged").await.unwrap(), ws);
    // An ordinary workspace, then: not built in, and not archived.
    s.add_member(&alice, "forged", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    s.delete_workspace(&alice, "forged", "").await.unwrap();
}

/// An etag names one version of one object: a workspace or member deleted and made again
/// under the same name never matches the etag of the one before.
#[tokio::test]
async fn an_etag_of_a_deleted_object_never_matches_its_successor() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let old = create(&s, &alice, new_ws("again")).await;
    let old_bob = s
        .add_member(&alice, "again", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    s.remove_member(&alice, "again", "bob").await.unwrap();
    let new_bob = s
        .add_member(&alice, "again", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    assert_ne!(new_bob.etag, old_bob.etag);
    let err = s
        .update_member(&alice, "again", "bob", pb::Role::Editor, &old_bob.etag)
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");

    let current = s.get_workspace(&alice, "again").await.unwrap();
    s.delete_workspace(&alice, "again", &current.etag)
        .await
        .unwrap();
    let new = create(&s, &alice, new_ws("again")).await;
    assert_ne!(new.etag, old.etag);
    for etag in [&old.etag, &current.etag] {
        let err = s.delete_workspace(&alice, "again", etag).await.unwrap_err();
        assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    }
    s.delete_workspace(&alice, "again", &new.etag)
        .await
        .unwrap();
}

#[tokio::test]
async fn create_reports_every_bad_field() {
    let s = TestServer::spawn().await;
    let bad = pb::Workspace {
        name: "Bad_Name".into(),
        display_name: "x".repeat(101),
        description: "é".repeat(1001),
        labels: HashMap::from([("Bad Key".into(), "v".into())]),
        visibility: 42,
        ..Default::default()
    };
    let err = s.create_workspace(&token("alice"), bad).await.unwrap_err();
    assert_eq!(
        bad_fields(&err),
        vec![
            "workspace.description",
            "workspace.display_name",
            "workspace.labels[\"Bad Key\"]",
            "workspace.name",
            "workspace.visibility",
        ]
    );
}

#[tokio::test]
async fn names_follow_rfc_1035_and_lengths_count_characters() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let too_long = "a".repeat(64);
    for bad in [
        "",
        "1abc",
        "-abc",
        "abc-",
        "ABC",
        "a_b",
        "a.b",
        "ä",
        too_long.as_str(),
    ] {
        let err = s.create_workspace(&alice, new_ws(bad)).await.unwrap_err();
        assert_eq!(bad_fields(&err), vec!["workspace.name"], "name {bad:?}");
    }
    let longest = "a".repeat(63);
    for good in ["a", "a-1", "x9", longest.as_str()] {
        create(&s, &alice, new_ws(good)).await;
    }
    // 100 and 1000 multi-byte characters fit; labels at their limits fit.
    let labels: HashMap<String, String> = (0..64)
        .map(|i| (format!("k{i}.a_b-c"), "v".repeat(63)))
        .collect();
    create(
        &s,
        &alice,
        pb::Workspace {
            name: "limits".into(),
            display_name: "ü".repeat(100),
            description: "ü".repeat(1000),
            labels,
            ..Default::default()
        },
    )
    .await;
    // A key starts and ends with a letter or digit and has at most 63 characters; a value
    // has at most 63 of the same characters, on its ends any of them.
    let bad_labels = pb::Workspace {
        name: "bad-labels".into(),
        labels: HashMap::from([
            ("x-".into(), "v".into()),
            ("k".repeat(64), "v".into()),
            ("long".into(), "v".repeat(64)),
            ("upper".into(), "V".into()),
            ("Both-".into(), "V".into()),
        ]),
        ..Default::default()
    };
    let err = s.create_workspace(&alice, bad_labels).await.unwrap_err();
    let long_key = format!("workspace.labels[\"{}\"]", "k".repeat(64));
    // A label whose key and value are both bad is one bad field, with both reasons.
    let both = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .find(|f| f.field == "workspace.labels[\"Both-\"]")
        .unwrap();
    assert!(
        both.description.starts_with("key ") && both.description.contains("; value "),
        "{both:?}"
    );
    assert_eq!(
        bad_fields(&err),
        vec![
            "workspace.labels[\"Both-\"]",
            long_key.as_str(),
            "workspace.labels[\"long\"]",
            "workspace.labels[\"upper\"]",
            "workspace.labels[\"x-\"]",
        ]
    );
    let ends = pb::Workspace {
        name: "label-ends".into(),
        labels: HashMap::from([("k".into(), "-v_".into()), ("e".into(), ".".into())]),
        ..Default::default()
    };
    assert_eq!(create(&s, &alice, ends.clone()).await.labels, ends.labels);
    let too_many = pb::Workspace {
        name: "too-many".into(),
        labels: (0..65).map(|i| (format!("k{i}"), String::new())).collect(),
        ..Default::default()
    };
    let err = s.create_workspace(&alice, too_many).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["workspace.labels"]);
}

#[tokio::test]
async fn get_by_name_or_id_and_no_existence_leaks() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("secret")).await;
    assert_eq!(s.get_workspace_by_id(&alice, &ws.id).await.unwrap(), ws);

    // A non-member gets the same answer for a private workspace and a missing one.
    let bob = token("bob");
    let private = s.get_workspace(&bob, "secret").await.unwrap_err();
    let missing = s.get_workspace(&bob, "nothing-here").await.unwrap_err();
    assert_status(&private, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_status(&missing, Code::PermissionDenied, "PERMISSION_DENIED");
    // By id too, and the answer does not reveal the name.
    let by_id = s.get_workspace_by_id(&bob, &ws.id).await.unwrap_err();
    assert_status(&by_id, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(!by_id.message().contains("secret"));
    // Platform principals read everything and learn what is missing.
    for platform in [platform_admin(), platform_service()] {
        assert_eq!(
            s.get_workspace(&platform, "secret").await.unwrap().id,
            ws.id
        );
        let err = s
            .get_workspace(&platform, "nothing-here")
            .await
            .unwrap_err();
        assert_status(&err, Code::NotFound, "WORKSPACE_NOT_FOUND");
    }
    // Exactly one of name and id.
    for (name, id) in [("", ""), ("secret", ws.id.as_str())] {
        let err = s.get_workspace_with(&alice, name, id).await.unwrap_err();
        assert_status(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    }
    let err = s
        .get_workspace_by_id(&alice, "not-a-uuid")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["id"]);
}

#[tokio::test]
async fn visibility_grants_roles_to_every_principal() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let bob = token("bob");
    for (name, vis) in [
        ("int", pb::Visibility::Internal),
        ("pub", pb::Visibility::Public),
    ] {
        create(
            &s,
            &alice,
            pb::Workspace {
                name: name.into(),
                visibility: vis as i32,
                ..Default::default()
            },
        )
        .await;
        // Every principal reads it.
        s.get_workspace(&bob, name).await.unwrap();
        // But only admins change it.
        let mut w = new_ws(name);
        w.description = "bob was here".into();
        let err = s
            .update_workspace(&bob, w, &["description"], "")
            .await
            .unwrap_err();
        assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    // Internal grants viewer: no writes; public grants editor: resources may be written.
    let err = s
        .register_resource(&bob, "int", "model", "m1")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    s.register_resource(&bob, "pub", "model", "m1")
        .await
        .unwrap();
}

#[tokio::test]
async fn update_applies_the_mask_and_checks_etags() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("upd")).await;
    let mut w = new_ws("upd");
    w.display_name = "Updated".into();
    w.description = "ignored: not in the mask".into();
    w.labels = HashMap::from([("env".into(), "prod".into())]);
    w.visibility = pb::Visibility::Internal as i32;
    let updated = s
        .update_workspace(
            &alice,
            w.clone(),
            &["display_name", "labels", "visibility"],
            &ws.etag,
        )
        .await
        .unwrap();
    assert_eq!(updated.display_name, "Updated");
    assert_eq!(updated.description, "");
    assert_eq!(updated.labels, w.labels);
    assert_eq!(updated.visibility, pb::Visibility::Internal as i32);
    assert_ne!(updated.etag, ws.etag);
    assert_eq!(updated.id, ws.id);
    assert_eq!(updated.create_time, ws.create_time);
    assert_ne!(updated.update_time, ws.update_time);

    // The old etag no longer matches.
    let err = s
        .update_workspace(&alice, w.clone(), &["display_name"], &ws.etag)
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");

    // Members and the policy have etags of their own: changing them leaves the workspace's.
    s.add_member(&alice, "upd", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let policy = pb::Policy {
        workspace: "upd".into(),
        max_gprs: 3,
        ..Default::default()
    };
    s.update_policy(&platform_admin(), policy, &["max_gprs"], "")
        .await
        .unwrap();
    assert_eq!(
        s.get_workspace(&alice, "upd").await.unwrap().etag,
        updated.etag
    );

    // `labels` in the mask replaces all labels, merging none.
    let mut other = new_ws("upd");
    other.labels = HashMap::from([("team".into(), "ml".into())]);
    let replaced = s
        .update_workspace(&alice, other.clone(), &["labels"], &updated.etag)
        .await
        .unwrap();
    assert_eq!(replaced.labels, other.labels);
    let updated = replaced;

    // `*` replaces every updatable field; unset visibility becomes private.
    let all = pb::Workspace {
        name: "upd".into(),
        description: "all".into(),
        ..Default::default()
    };
    let star = s
        .update_workspace(&alice, all, &["*"], &updated.etag)
        .await
        .unwrap();
    assert_eq!(star.description, "all");
    assert_eq!(star.display_name, "");
    assert!(star.labels.is_empty());
    assert_eq!(star.visibility, pb::Visibility::Private as i32);
}

#[tokio::test]
async fn update_rejects_bad_masks_and_values() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("mask")).await;
    // Empty mask.
    let err = s
        .update_workspace(&alice, new_ws("mask"), &[], "")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["update_mask"]);
    assert!(
        err.get_details_bad_request().unwrap().field_violations[0]
            .description
            .contains("at least one field must be provided")
    );
    // Immutable and unknown paths.
    for path in ["name", "id", "state", "created_by", "nonsense"] {
        let err = s
            .update_workspace(&alice, new_ws("mask"), &[path], "")
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["update_mask"], "path {path}");
    }
    // Bad values of masked fields, each its own violation.
    let bad = pb::Workspace {
        name: "mask".into(),
        display_name: "d".repeat(101),
        labels: HashMap::from([("-x".into(), "y".into())]),
        ..Default::default()
    };
    let err = s
        .update_workspace(&alice, bad, &["display_name", "labels"], "")
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&err),
        vec!["workspace.display_name", "workspace.labels[\"-x\"]"]
    );
    // A missing workspace name.
    let err = s
        .update_workspace(&alice, new_ws(""), &["description"], "")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["workspace.name"]);
}

#[tokio::test]
async fn delete_needs_an_empty_workspace_and_takes_everything_with_it() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("doomed")).await;
    let resources = [("model", "m1"), ("model", "m2"), ("dataset", "d1")];
    for (kind, id) in resources {
        s.register_resource(&alice, "doomed", kind, id)
            .await
            .unwrap();
    }
    let err = s.delete_workspace(&alice, "doomed", "").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_NOT_EMPTY");
    let mut violations: Vec<(String, String)> = err
        .get_details_precondition_failure()
        .expect("PreconditionFailure")
        .violations
        .into_iter()
        .map(|v| (v.subject, v.description))
        .collect();
    violations.sort();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert_eq!(violations[0].0, "dataset");
    assert!(violations[0].1.contains('1'));
    assert_eq!(violations[1].0, "model");
    assert!(violations[1].1.contains('2'));

    for (kind, id) in resources {
        s.unregister_resource(&alice, "doomed", kind, id)
            .await
            .unwrap();
    }
    // A stale etag is refused.
    let err = s
        .delete_workspace(&alice, "doomed", &ws.etag)
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let current = s.get_workspace(&alice, "doomed").await.unwrap();
    s.delete_workspace(&alice, "doomed", &current.etag)
        .await
        .unwrap();
    // Gone: the former admin is now an outsider, a platform admin sees NOT_FOUND.
    let err = s.get_workspace(&alice, "doomed").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let err = s
        .get_workspace(&platform_admin(), "doomed")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "WORKSPACE_NOT_FOUND");
    // The name is free again, and the new workspace has nothing of the old one.
    let again = create(&s, &token("bob"), new_ws("doomed")).await;
    assert_ne!(again.id, ws.id);
    let err = s.get_workspace(&alice, "doomed").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
}

#[tokio::test]
async fn only_admins_delete_and_archive() {
    let s = TestServer::spawn().await;
    create(
        &s,
        &token("alice"),
        pb::Workspace {
            name: "shared".into(),
            visibility: pb::Visibility::Public as i32,
            ..Default::default()
        },
    )
    .await;
    // bob is an editor through visibility: not enough.
    let bob = token("bob");
    let err = s.delete_workspace(&bob, "shared", "").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let err = s.archive_workspace(&bob, "shared", "").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    // A platform admin may.
    s.delete_workspace(&platform_admin(), "shared", "")
        .await
        .unwrap();
}

#[tokio::test]
async fn archived_workspaces_are_read_only_until_unarchived() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("old")).await;
    s.register_resource(&alice, "old", "model", "kept")
        .await
        .unwrap();
    let archived = s.archive_workspace(&alice, "old", "").await.unwrap();
    assert_eq!(archived.state, pb::WorkspaceState::Archived as i32);
    assert_ne!(archived.etag, ws.etag);
    // Reads still work.
    let read = s.get_workspace(&alice, "old").await.unwrap();
    assert_eq!(read.state, archived.state);
    // Every change is refused.
    let err = s
        .update_workspace(&alice, new_ws("old"), &["description"], "")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    let err = s
        .register_resource(&alice, "old", "model", "new")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    let err = s
        .unregister_resource(&alice, "old", "model", "kept")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    let err = s.archive_workspace(&alice, "old", "").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    // Unarchive with a stale etag fails, with the current one it works.
    let err = s
        .unarchive_workspace(&alice, "old", &ws.etag)
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let active = s
        .unarchive_workspace(&alice, "old", &archived.etag)
        .await
        .unwrap();
    assert_eq!(active.state, pb::WorkspaceState::Active as i32);
    s.register_resource(&alice, "old", "model", "new")
        .await
        .unwrap();
}

/// Where two rules break at once, the answer is the one each RPC lists first (docs/api.md
/// "Order of checks" and each RPC's "Rules, in order").
#[tokio::test]
async fn when_two_rules_break_the_first_listed_answers() {
    let s = TestServer::spawn().await;
    let (alice, root) = (token("alice"), platform_admin());
    // Authentication before validation.
    let err = s
        .get_workspace("not a token", "Bad_Name")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");

    let created = create(&s, &alice, new_ws("ord")).await;
    s.register_resource(&alice, "ord", "model", "m")
        .await
        .unwrap();
    // A registration changes the workspace's etag (its resource counts).
    let ws = s.get_workspace(&alice, "ord").await.unwrap();
    assert_ne!(ws.etag, created.etag);
    // DeleteWorkspace: the etag, then what the workspace holds.
    let err = s
        .delete_workspace(&alice, "ord", "stale")
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let err = s
        .delete_workspace(&alice, "ord", &ws.etag)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_NOT_EMPTY");

    s.add_member(&alice, "ord", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let archived = s.archive_workspace(&alice, "ord", "").await.unwrap();
    // ArchiveWorkspace and UpdateWorkspace: the etag, then the archived state.
    let err = s
        .archive_workspace(&alice, "ord", "stale")
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let err = s
        .update_workspace(&alice, new_ws("ord"), &["description"], "stale")
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    // UpdatePolicy: the etag, then the archived state.
    let policy = pb::Policy {
        workspace: "ord".into(),
        ..Default::default()
    };
    let err = s
        .update_policy(&root, policy.clone(), &["max_gprs"], "stale")
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let err = s
        .update_policy(&root, policy, &["max_gprs"], "")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    // AddMember: the archived state, then the email, then an existing member.
    for added in [
        s.add_member(&alice, "ord", "bob", pb::Role::Viewer).await,
        s.add_member_by_email(&alice, "ord", "ghost@example.com", pb::Role::Viewer)
            .await,
    ] {
        assert_status(
            &added.unwrap_err(),
            Code::FailedPrecondition,
            "WORKSPACE_ARCHIVED",
        );
    }
    // UpdateMember: the archived state, then membership, then the etag.
    let err = s
        .update_member(&alice, "ord", "nobody", pb::Role::Editor, "stale")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    // RemoveMember: the email, then the archived state, then membership.
    let err = s
        .remove_member_by_email(&alice, "ord", "ghost@example.com")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "PRINCIPAL_NOT_FOUND");
    let err = s.remove_member(&alice, "ord", "nobody").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");

    s.unarchive_workspace(&alice, "ord", &archived.etag)
        .await
        .unwrap();
    let err = s
        .update_member(&alice, "ord", "nobody", pb::Role::Editor, "stale")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    let err = s
        .update_member(&alice, "ord", "bob", pb::Role::Editor, "stale")
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
}

#[tokio::test]
async fn archived_workspaces_can_be_deleted() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("gone")).await;
    s.archive_workspace(&alice, "gone", "").await.unwrap();
    s.delete_workspace(&alice, "gone", "").await.unwrap();
}

#[tokio::test]
async fn built_in_workspaces_exist_and_are_protected() {
    let s = TestServer::spawn().await;
    let bob = token("bob");
    let default = s.get_workspace(&bob, "default").await.unwrap();
    assert!(default.built_in);
    assert_eq!(default.visibility, pb::Visibility::Public as i32);
    let system = s.get_workspace(&bob, "system").await.unwrap();
    assert!(system.built_in);
    assert_eq!(system.visibility, pb::Visibility::Internal as i32);
    // Everyone writes in default; only platform principals register in system.
    s.register_resource(&bob, "default", "model", "m")
        .await
        .unwrap();
    let err = s
        .register_resource(&bob, "system", "model", "m")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    s.register_resource(&platform_service(), "system", "model", "base")
        .await
        .unwrap();
    s.register_resource(&platform_admin(), "system", "template", "t")
        .await
        .unwrap();

    let admin = platform_admin();
    for name in ["default", "system"] {
        // Not deletable: BUILT_IN_WORKSPACE wins over WORKSPACE_NOT_EMPTY.
        let err = s.delete_workspace(&admin, name, "").await.unwrap_err();
        assert_status(&err, Code::FailedPrecondition, "BUILT_IN_WORKSPACE");
        let err = s.archive_workspace(&admin, name, "").await.unwrap_err();
        assert_status(&err, Code::FailedPrecondition, "BUILT_IN_WORKSPACE");
        let private = pb::Workspace {
            name: name.into(),
            visibility: pb::Visibility::Private as i32,
            ..Default::default()
        };
        let err = s
            .update_workspace(&admin, private, &["visibility"], "")
            .await
            .unwrap_err();
        assert_status(&err, Code::FailedPrecondition, "BUILT_IN_WORKSPACE");
        // Visibility unset, named in the mask or by `*`: private too.
        for paths in [&["visibility"][..], &["*"]] {
            let err = s
                .update_workspace(&admin, new_ws(name), paths, "")
                .await
                .unwrap_err();
            assert_status(&err, Code::FailedPrecondition, "BUILT_IN_WORKSPACE");
        }
    }
    // A platform admin may change system's description; nobody else may.
    let mut w = new_ws("system");
    w.description = "Platform things".into();
    s.update_workspace(&admin, w.clone(), &["description"], "")
        .await
        .unwrap();
    let err = s
        .update_workspace(&platform_service(), w, &["description"], "")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
}

#[tokio::test]
async fn concurrent_creates_of_one_name_let_exactly_one_win() {
    let s = TestServer::spawn().await;
    let results = futures::future::join_all((0..16).map(|i| {
        let (s, tok) = (&s, token(&format!("user{i}")));
        async move { s.create_workspace(&tok, new_ws("contested")).await }
    }))
    .await;
    let mut ok = 0;
    for result in results {
        match result {
            Ok(_) => ok += 1,
            Err(e) => assert_status(&e, Code::AlreadyExists, "WORKSPACE_EXISTS"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn retries_and_stale_etags_and_nul_characters() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    s.create_workspace_with_request_id(&alice, new_ws("left"), "once")
        .await
        .unwrap();
    // alice hands the workspace over and leaves it: a retry no longer shows it to her.
    s.add_member(&alice, "left", "bob", pb::Role::Admin)
        .await
        .unwrap();
    s.remove_member(&token("bob"), "left", "alice")
        .await
        .unwrap();
    // Its name is taken: that is the reason.
    let err = s
        .create_workspace_with_request_id(&alice, new_ws("left"), "once")
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "WORKSPACE_EXISTS");
    // Nor is a create with that id under a new name a retry: it fails on the id's row (and
    // says so), and writes all or none (on PostgreSQL one statement, see
    // `store/together.rs`), so no workspace is left behind.
    let err = s
        .create_workspace_with_request_id(&alice, new_ws("second"), "once")
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "REQUEST_ID_EXISTS");
    assert!(err.message().contains("request_id"), "{err:?}");
    let err = s
        .get_workspace(&platform_admin(), "second")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "WORKSPACE_NOT_FOUND");
    s.create_workspace(&alice, new_ws("second")).await.unwrap();
    // Once its workspace is deleted, the id is free: it creates anew, and is then a retry.
    s.delete_workspace(&token("bob"), "left", "").await.unwrap();
    let third = s
        .create_workspace_with_request_id(&alice, new_ws("third"), "once")
        .await
        .unwrap();
    assert_eq!(third.name, "third");
    let again = s
        .create_workspace_with_request_id(&alice, new_ws("fourth"), "once")
        .await
        .unwrap();
    assert_eq!(again, third);
    // On a built-in, BUILT_IN_WORKSPACE wins over a stale etag.
    let err = s
        .delete_workspace(&platform_admin(), "default", "stale")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "BUILT_IN_WORKSPACE");
    // NUL fits no database text column: bad input, never INTERNAL.
    let nul = pb::Workspace {
        name: "nul".into(),
        description: "a\u{0}b".into(),
        ..Default::default()
    };
    let err = s.create_workspace(&alice, nul).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["workspace.description"]);
}

/// AIP-193: what an error's message names is in its ErrorInfo's metadata too, so that a
/// client need not parse the message; values cut as every echoed value is.
#[tokio::test]
async fn errors_name_what_they_are_about_in_their_metadata() {
    let s = TestServer::spawn().await;
    let (alice, bob) = (token("alice"), token("bob"));
    create(&s, &alice, new_ws("team")).await;
    let meta = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    };
    let err = s
        .get_workspace(&platform_admin(), "nope")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "WORKSPACE_NOT_FOUND");
    assert_eq!(error_meta(&err), meta(&[("workspace", "nope")]));
    let err = s.get_workspace(&bob, "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(
        error_meta(&err),
        meta(&[("workspace", "team"), ("permission", "workspaces.get")])
    );
    let err = s.get_member(&alice, "team", "carol").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    assert_eq!(
        error_meta(&err),
        meta(&[("workspace", "team"), ("subject", "carol")])
    );
    let err = s
        .add_member(&alice, "team", "alice", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "MEMBER_EXISTS");
    assert_eq!(
        error_meta(&err),
        meta(&[("workspace", "team"), ("subject", "alice")])
    );
    let long_id = "r".repeat(200);
    let err = s
        .unregister_resource(&alice, "team", "model", &long_id)
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "RESOURCE_NOT_FOUND");
    let cut = format!("{}…", "r".repeat(63));
    assert_eq!(
        error_meta(&err),
        meta(&[
            ("workspace", "team"),
            ("kind", "model"),
            ("resourceId", cut.as_str())
        ])
    );
    s.archive_workspace(&alice, "team", "").await.unwrap();
    let err = s
        .add_member(&alice, "team", "carol", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    assert_eq!(error_meta(&err), meta(&[("workspace", "team")]));
}

//! RegisterResource, UnregisterResource, ListResources and resource_counts.

use tonic::Code;
use workspaced::pb::v1 as pb;

use crate::common::*;

/// ListResources of the workspace `res`.
async fn list(
    s: &TestServer,
    tok: &str,
    kind: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListResourcesResponse, tonic::Status> {
    let msg = pb::ListResourcesRequest {
        workspace: "res".into(),
        kind: kind.into(),
        page_size,
        page_token: page_token.into(),
    };
    s.list_resources(tok, msg).await
}

#[tokio::test]
async fn register_is_idempotent_and_counted() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("res")).await;
    let r = s
        .register_resource(&alice, "res", "model", "resnet-50")
        .await
        .unwrap();
    assert_eq!(r.workspace, "res");
    assert_eq!(r.kind, "model");
    assert_eq!(r.resource_id, "resnet-50");
    assert_eq!(r.registered_by, "alice");
    assert!(r.create_time.is_some());
    // Registering it again returns the first registration, even for another caller.
    let again = s
        .register_resource(&platform_service(), "res", "model", "resnet-50")
        .await
        .unwrap();
    assert_eq!(again, r);
    s.register_resource(&alice, "res", "dataset", "imagenet")
        .await
        .unwrap();
    let now = s.get_workspace(&alice, "res").await.unwrap();
    assert_eq!(now.resource_counts.get("model"), Some(&1));
    assert_eq!(now.resource_counts.get("dataset"), Some(&1));
    // The counts are part of the workspace, so its etag moved.
    assert_ne!(now.etag, ws.etag);
    // A listing carries the same counts (read in the page's own statement), and none for a
    // workspace without resources.
    s.register_resource(&alice, "res", "model", "bert")
        .await
        .unwrap();
    create(&s, &alice, new_ws("bare")).await;
    let page = s
        .list_workspaces(&alice, pb::ListWorkspacesRequest::default())
        .await
        .unwrap();
    let counts = |name: &str| {
        page.workspaces
            .iter()
            .find(|w| w.name == name)
            .map(|w| w.resource_counts.clone())
            .unwrap_or_else(|| panic!("{name} listed"))
    };
    assert_eq!(
        counts("res"),
        [("dataset".to_owned(), 1), ("model".to_owned(), 2)].into()
    );
    assert!(counts("bare").is_empty());
}

#[tokio::test]
async fn register_validates_kind_and_id() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("res")).await;
    let long = "x".repeat(256);
    let long_kind = format!("a{}", "b".repeat(63));
    for (kind, id, fields) in [
        ("Model", "m", vec!["kind"]),
        ("1model", "m", vec!["kind"]),
        (long_kind.as_str(), "m", vec!["kind"]),
        ("", "m", vec!["kind"]),
        ("model", "", vec!["resource_id"]),
        ("model", long.as_str(), vec!["resource_id"]),
        ("model", "tab\there", vec!["resource_id"]),
        ("Bad", "", vec!["kind", "resource_id"]),
    ] {
        let err = s
            .register_resource(&alice, "res", kind, id)
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), fields, "kind {kind:?} id {id:?}");
    }
    let err = s
        .register_resource(&alice, "Not A Name", "model", "m")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["workspace"]);
    // The longest valid values pass.
    let max_kind = format!("a{}", "b".repeat(62));
    s.register_resource(&alice, "res", &max_kind, &"y".repeat(255))
        .await
        .unwrap();
}

#[tokio::test]
async fn unregister_of_what_is_not_registered_is_not_found() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("res")).await;
    s.register_resource(&alice, "res", "model", "m")
        .await
        .unwrap();
    s.unregister_resource(&alice, "res", "model", "m")
        .await
        .unwrap();
    let err = s
        .unregister_resource(&alice, "res", "model", "m")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "RESOURCE_NOT_FOUND");
    let err = s
        .unregister_resource(&alice, "res", "model", "never")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "RESOURCE_NOT_FOUND");
    assert!(
        s.get_workspace(&alice, "res")
            .await
            .unwrap()
            .resource_counts
            .is_empty()
    );
}

#[tokio::test]
async fn resource_writes_need_editor_or_platform_service() {
    let s = TestServer::spawn().await;
    create(
        &s,
        &token("alice"),
        pb::Workspace {
            name: "res".into(),
            visibility: pb::Visibility::Internal as i32,
            ..Default::default()
        },
    )
    .await;
    // bob is a viewer through visibility: may list, may not register.
    let bob = token("bob");
    list(&s, &bob, "", 0, "").await.unwrap();
    let err = s
        .register_resource(&bob, "res", "model", "m")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    s.register_resource(&platform_service(), "res", "model", "m")
        .await
        .unwrap();
    // On a private workspace an outsider gets PERMISSION_DENIED, existing or not.
    create(&s, &token("alice"), new_ws("private")).await;
    for ws in ["private", "missing"] {
        let err = s
            .register_resource(&bob, ws, "model", "m")
            .await
            .unwrap_err();
        assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    let err = s
        .register_resource(&platform_service(), "missing", "model", "m")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "WORKSPACE_NOT_FOUND");
}

#[tokio::test]
async fn list_resources_orders_filters_and_pages() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("res")).await;
    let mut expected = Vec::new();
    for kind in ["model", "dataset", "job"] {
        for i in 0..5 {
            let id = format!("{kind}-{i}");
            s.register_resource(&alice, "res", kind, &id).await.unwrap();
            expected.push((kind.to_string(), id));
        }
    }
    expected.sort();
    let mut seen = Vec::new();
    let mut token_ = String::new();
    loop {
        let page = list(&s, &alice, "", 4, &token_).await.unwrap();
        assert_eq!(page.total_size, 15);
        assert!(page.resources.len() <= 4);
        seen.extend(page.resources.into_iter().map(|r| (r.kind, r.resource_id)));
        if page.next_page_token.is_empty() {
            break;
        }
        token_ = page.next_page_token;
    }
    assert_eq!(seen, expected);
    let models = list(&s, &alice, "model", 0, "").await.unwrap();
    assert_eq!(models.total_size, 5);
    assert!(models.resources.iter().all(|r| r.kind == "model"));
    assert!(models.next_page_token.is_empty());
    // A token is bound to its filter.
    let first = list(&s, &alice, "", 2, "").await.unwrap();
    let err = list(&s, &alice, "model", 2, &first.next_page_token)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_token"]);
    let err = list(&s, &alice, "", -1, "").await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_size"]);
    let err = list(&s, &alice, "", 0, "garbage").await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_token"]);
}

/// A workspace holds resources of at most 100 kinds (each answer holding the workspace
/// lists its counts by kind): more resources of a kind it holds are still registered, a new
/// kind is refused with the workspace as the precondition's subject, and a kind whose last
/// resource goes frees its place.
#[tokio::test]
async fn a_workspace_holds_resources_of_at_most_100_kinds() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("res")).await;
    for k in 0..100 {
        s.register_resource(&alice, "res", &format!("kind-{k:03}"), "a")
            .await
            .unwrap();
    }
    s.register_resource(&alice, "res", "kind-050", "b")
        .await
        .unwrap();
    // A 101st kind.
    let refused = || async {
        let err = s
            .register_resource(&alice, "res", "kind-100", "a")
            .await
            .unwrap_err();
        assert_status(&err, Code::FailedPrecondition, "TOO_MANY_RESOURCE_KINDS");
    };
    refused().await;
    // Registering again what is registered is still answered.
    s.register_resource(&alice, "res", "kind-099", "a")
        .await
        .unwrap();
    let ws = s.get_workspace(&alice, "res").await.unwrap();
    assert_eq!(ws.resource_counts.len(), 100);
    assert_eq!(ws.resource_counts["kind-050"], 2);
    s.unregister_resource(&alice, "res", "kind-050", "a")
        .await
        .unwrap();
    refused().await;
    s.unregister_resource(&alice, "res", "kind-050", "b")
        .await
        .unwrap();
    s.register_resource(&alice, "res", "kind-100", "a")
        .await
        .unwrap();
    // Another workspace counts its own kinds.
    create(&s, &alice, new_ws("other")).await;
    s.register_resource(&alice, "other", "kind-000", "a")
        .await
        .unwrap();
}

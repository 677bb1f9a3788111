//! Error answers to hostile input stay readable by stock clients: at most 8 KB of trailers,
//! echoed values cut to 64 characters, at most 20 field violations (the last counting the
//! rest), so that grpc-core clients see INVALID_ARGUMENT, not RESOURCE_EXHAUSTED.

use tonic::{Status, codegen::http::HeaderMap};
use tonic_types::StatusExt;
use workspaced::pb::v1 as pb;

use crate::common::*;

/// The limit of grpc-core clients (grpcio, grpc-node's native client) on a header list.
const STOCK_CLIENT_HEADER_LIST: usize = 8 * 1024;

/// The bytes of the header list `status` came in, as HTTP/2 counts them (name, value and 32
/// per entry), re-encoded as tonic writes it. Measured rather than left to the client to
/// refuse: the tonic client takes 16 KB, twice what grpc-core clients take.
fn header_list_bytes(status: &Status) -> usize {
    let mut headers = HeaderMap::new();
    status.add_header(&mut headers).expect("encodable status");
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// The parts of `s` between double quotes: the values an answer echoes.
fn quoted(s: &str) -> impl Iterator<Item = &str> {
    s.split('"').skip(1).step_by(2)
}

/// Asserts that `status` is the INVALID_ARGUMENT a stock client can read: at most 20 field
/// violations, the last counting the rest when `total` were bad, under 8 KB of headers, and
/// no echoed value over 64 characters. Returns the violations.
#[track_caller]
fn assert_readable(status: &Status, total: usize) -> Vec<(String, String)> {
    bad_fields(status); // INVALID_ARGUMENT with reason INVALID_ARGUMENT
    let size = header_list_bytes(status);
    assert!(
        size < STOCK_CLIENT_HEADER_LIST,
        "{size} bytes of headers: {}-byte message, {}-byte details",
        status.message().len(),
        status.details().len()
    );
    // The same from the parts, as the brief of the contract counts them: the message and
    // the base64 of the details.
    assert!(status.message().len() + status.details().len() * 4 / 3 < STOCK_CLIENT_HEADER_LIST);
    let violations: Vec<(String, String)> = status
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect();
    assert_eq!(violations.len(), total.min(20), "{violations:?}");
    if total > 20 {
        assert_eq!(
            violations[19],
            (
                "…".to_string(),
                format!("and {} more bad fields", total - 19)
            )
        );
    }
    let texts = violations
        .iter()
        .flat_map(|(f, d)| [f.as_str(), d.as_str()])
        .chain([status.message()]);
    for text in texts {
        for value in quoted(text) {
            assert!(
                value.chars().count() <= 64,
                "echoed {} characters: {value}",
                value.chars().count()
            );
        }
    }
    violations
}

#[tokio::test]
async fn fifty_upper_case_label_keys_get_a_readable_invalid_argument() {
    let s = TestServer::spawn().await;
    let ws = pb::Workspace {
        labels: (0..50)
            .map(|i| (format!("KEY-{i:02}-{}", "X".repeat(200)), "v".to_string()))
            .collect(),
        ..new_ws("limits")
    };
    let err = s.create_workspace(&token("alice"), ws).await.unwrap_err();
    let violations = assert_readable(&err, 50);
    // Each bad key keeps its own path, the key cut where it is echoed.
    assert_eq!(
        violations[0].0,
        format!("workspace.labels[\"KEY-00-{}…\"]", "X".repeat(56))
    );
}

#[tokio::test]
async fn sixty_four_bad_gpu_shapes_get_a_readable_invalid_argument() {
    let s = TestServer::spawn().await;
    create(&s, &token("alice"), new_ws("gpu")).await;
    let policy = pb::Policy {
        workspace: "gpu".into(),
        global_gpu_constraints: Some(pb::GpuConstraints {
            gpu_shapes: (0..64)
                .map(|i| format!("BAD SHAPE {i} {}", "!".repeat(200)))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = s
        .update_policy(
            &platform_admin(),
            policy,
            &["global_gpu_constraints.gpu_shapes"],
            "",
        )
        .await
        .unwrap_err();
    let violations = assert_readable(&err, 64);
    // The first 19 are the first shapes, in order.
    for (i, (field, _)) in violations.iter().take(19).enumerate() {
        assert_eq!(
            field,
            &format!("policy.global_gpu_constraints.gpu_shapes[{i}]")
        );
    }
}

#[tokio::test]
async fn a_twenty_kilobyte_unknown_permission_is_echoed_cut() {
    let s = TestServer::spawn().await;
    let permission = "p".repeat(20 * 1024);
    let err = s
        .check_access(&token("alice"), "limits", &permission, "")
        .await
        .unwrap_err();
    let violations = assert_readable(&err, 1);
    assert_eq!(violations[0].0, "permission");
    assert!(
        violations[0].1.starts_with(&format!(
            "unknown permission \"{}…\"; known: ",
            "p".repeat(63)
        )),
        "{}",
        violations[0].1
    );
}

#[tokio::test]
async fn thirty_long_unknown_mask_paths_get_a_readable_invalid_argument() {
    let s = TestServer::spawn().await;
    create(&s, &token("alice"), new_ws("gpu")).await;
    let paths: Vec<String> = (0..30)
        .map(|i| format!("{i}.{}", "x".repeat(500)))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let policy = pb::Policy {
        workspace: "gpu".into(),
        ..Default::default()
    };
    let err = s
        .update_policy(&platform_admin(), policy, &paths, "")
        .await
        .unwrap_err();
    // One bad field, naming the first ten paths, each cut, and counting the rest.
    let violations = assert_readable(&err, 1);
    assert_eq!(violations[0].0, "update_mask");
    assert!(
        violations[0]
            .1
            .contains("and 20 more are not updatable fields"),
        "{}",
        violations[0].1
    );
}

//! Bearer-token authentication: every token form of the contract and its UNAUTHENTICATED
//! reason, JWKS keys, issuer and audience, and the roles claim.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tonic::{Code, Request, metadata::MetadataValue};
use workspaced::pb::v1 as pb;

use crate::common::*;

/// Calls GetWorkspace("default") with this authorization metadata (none if `None`).
async fn call(s: &TestServer, authorization: Option<&str>) -> Result<pb::Workspace, tonic::Status> {
    let mut r = Request::new(pb::GetWorkspaceRequest {
        name: "default".into(),
        id: String::new(),
    });
    if let Some(a) = authorization {
        r.metadata_mut()
            .insert("authorization", MetadataValue::try_from(a).unwrap());
    }
    s.workspaces()
        .get_workspace(r)
        .await
        .map(|r| r.into_inner().workspace.unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

#[tokio::test]
async fn missing_or_non_bearer_credentials_are_token_missing() {
    let s = TestServer::spawn().await;
    let err = call(&s, None).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "TOKEN_MISSING");
    let err = call(&s, Some("Basic YWxpY2U6c2VjcmV0")).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "TOKEN_MISSING");
    let err = call(&s, Some(&token("alice"))).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "TOKEN_MISSING");
    // The scheme is case-insensitive.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        call(&s, Some(&format!("{scheme} {}", token("alice"))))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn expired_tokens_are_token_expired() {
    let s = TestServer::spawn().await;
    let expired = sign(&with(claims(), "exp", json!(now() - 3600)));
    let err = call(&s, Some(&bearer(&expired))).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "TOKEN_EXPIRED");
    assert!(!err.message().contains(&expired));
}

#[tokio::test]
async fn every_other_bad_token_is_token_invalid() {
    let s = TestServer::spawn().await;
    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    let alg_none = format!("{header_none}.{body}.");
    let other_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims(),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let good = sign(&claims());
    let (head, rest) = good.split_once('.').unwrap();
    let tampered = format!("{head}.{}x", rest);
    let cases = [
        ("malformed", "not.a.jwt".to_string()),
        ("garbage", "abc".to_string()),
        ("alg none", alg_none),
        ("bad signature", other_secret),
        ("another algorithm", hs384),
        ("tampered", tampered),
        (
            "nbf in the future",
            sign(&with(claims(), "nbf", json!(now() + 3600))),
        ),
        ("missing exp", sign(&without(claims(), "exp"))),
        ("missing sub", sign(&without(claims(), "sub"))),
        ("empty sub", sign(&with(claims(), "sub", json!("")))),
        ("sub not a string", sign(&with(claims(), "sub", json!(42)))),
        (
            "roles not an array",
            sign(&with(claims(), "roles", json!("platform-admin"))),
        ),
        (
            "roles not strings",
            sign(&with(claims(), "roles", json!([1, 2]))),
        ),
    ];
    for (what, tok) in cases {
        let err = call(&s, Some(&bearer(&tok))).await.unwrap_err();
        assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
        assert!(!err.message().contains(&tok), "{what}: token echoed");
    }
    // nbf and iat in the past are fine.
    let ok = sign(&with(
        with(claims(), "nbf", json!(now() - 60)),
        "iat",
        json!(now() - 60),
    ));
    call(&s, Some(&bearer(&ok))).await.unwrap();
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let s = TestServer::spawn_with(Options {
        issuer: Some("https://idp.example".into()),
        audience: Some("workspaced".into()),
        ..Default::default()
    })
    .await;
    let full = with(
        with(claims(), "iss", json!("https://idp.example")),
        "aud",
        json!("workspaced"),
    );
    call(&s, Some(&bearer(&sign(&full)))).await.unwrap();
    for bad in [
        without(full.clone(), "iss"),
        without(full.clone(), "aud"),
        with(full.clone(), "iss", json!("https://evil.example")),
        with(full.clone(), "aud", json!("another-service")),
    ] {
        let err = call(&s, Some(&bearer(&sign(&bad)))).await.unwrap_err();
        assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
    }
}

fn jwks_token(alg: Algorithm, kid: &str, pem: &[u8]) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
        _ => EncodingKey::from_ed_pem(pem),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims(), &key).unwrap()
}

#[tokio::test]
async fn jwks_keys_verify_rs256_es256_and_eddsa_by_kid() {
    let s = TestServer::spawn_with(Options {
        jwks: true,
        ..Default::default()
    })
    .await;
    let rsa = include_bytes!("fixtures/rsa.pem");
    let ec = include_bytes!("fixtures/ec.pem");
    let ed = include_bytes!("fixtures/ed25519.pem");
    for tok in [
        jwks_token(Algorithm::RS256, "rsa-1", rsa),
        jwks_token(Algorithm::ES256, "ec-1", ec),
        jwks_token(Algorithm::EdDSA, "ed-1", ed),
    ] {
        call(&s, Some(&bearer(&tok))).await.unwrap();
    }
    for tok in [
        // Unknown kid.
        jwks_token(Algorithm::RS256, "rsa-2", rsa),
        // The kid of another key type.
        jwks_token(Algorithm::RS256, "ec-1", rsa),
        // No kid at all.
        {
            jsonwebtoken::encode(
                &Header::new(Algorithm::RS256),
                &claims(),
                &EncodingKey::from_rsa_pem(rsa).unwrap(),
            )
            .unwrap()
        },
    ] {
        let err = call(&s, Some(&bearer(&tok))).await.unwrap_err();
        assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
    }
}

#[tokio::test]
async fn the_roles_claim_name_is_configurable() {
    let s = TestServer::spawn_with(Options {
        roles_claim: Some("groups".into()),
        ..Default::default()
    })
    .await;
    create(&s, &token("alice"), new_ws("private")).await;
    let tok = sign(&with(claims(), "groups", json!(["platform-admin"])));
    let tok = {
        let mut c: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(tok.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        c["sub"] = json!("root");
        sign(&c)
    };
    s.get_workspace(&tok, "private").await.unwrap();
    // Under the default name the roles are ignored.
    let err = s
        .get_workspace(&token_with_roles("eve", &["platform-admin"]), "private")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
}

#[tokio::test]
async fn a_bearer_credential_that_is_not_a_token_is_token_invalid() {
    let s = TestServer::spawn().await;
    for value in ["Bearer", "Bearer ", "bearer    "] {
        let err = call(&s, Some(value)).await.unwrap_err();
        assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
    }
    let nul = sign(&with(claims(), "sub", json!("ali\u{0}ce")));
    let err = call(&s, Some(&bearer(&nul))).await.unwrap_err();
    assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
}

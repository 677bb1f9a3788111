//! Bearer-token verification: HS256 with a shared secret, or RS256/ES256/EdDSA public keys
//! from a JWKS file looked up by `kid`, into a [`Principal`].

use std::{collections::HashMap, sync::RwLock};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
};
use serde_json::{Map, Value};

use crate::{
    domain::{
        access::{PlatformRoles, Principal},
        validate,
    },
    error::{Error, Reason},
};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// The longest token read: longer ones are refused unread (TOKEN_INVALID), so that judging
/// a token costs bounded work. Real tokens, JWKS-signed with a few dozen groups, stay far
/// below it.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Bytes of the principals of tokens remembered as verified, past which the memory starts
/// afresh: tens of thousands of callers, or a few thousand with hundreds of groups each.
const REMEMBERED_BYTES: usize = 8 * 1024 * 1024;

/// Tokens already verified, by the SHA-256 digest of the token, with the principal each
/// names and its `exp`. A token's answer depends only on the token, the keys and settings
/// (fixed for the server's life) and the clock, so a remembered token is answered as
/// verifying it again would answer it while its `exp` is ahead (`nbf`, checked when it was
/// verified, only falls further behind); from its `exp` on it is verified afresh. Spares
/// each call the signature, base64 and JSON work, which grows with the token's groups. The
/// digest keeps the tokens themselves out of memory and every key the same size; finding
/// another token with a remembered digest is finding a SHA-256 collision.
#[derive(Debug, Default)]
struct Remembered {
    tokens: HashMap<[u8; 32], (Principal, i64)>,
    bytes: usize,
}

/// The key `Remembered` keeps `token` under.
fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl Remembered {
    /// The principal of `token`, if it was verified and its `exp` is after `now`.
    fn get(&self, token: &str, now: i64) -> Option<Principal> {
        let (p, exp) = self.tokens.get(&digest(token))?;
        (now < *exp).then(|| p.clone())
    }

    fn put(&mut self, token: &str, p: &Principal, exp: i64) {
        let size = 32
            + p.subject.len()
            + p.email.as_ref().map_or(0, String::len)
            + p.groups.iter().map(|g| g.len() + 24).sum::<usize>()
            + 128;
        if self.bytes + size > REMEMBERED_BYTES {
            self.tokens.clear();
            self.bytes = 0;
        }
        if self
            .tokens
            .insert(digest(token), (p.clone(), exp))
            .is_none()
        {
            self.bytes += size;
        }
    }
}

/// What tokens are checked against.
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    /// The HS256 secret, if HS256 tokens are accepted.
    pub hs256_secret: Option<Vec<u8>>,
    /// Public keys, if asymmetric tokens are accepted.
    pub jwks: Option<JwkSet>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Name of the claim that carries platform roles.
    pub roles_claim: String,
    /// Name of the claim that carries the caller's groups.
    pub groups_claim: String,
}

/// Verifies tokens; built once at start-up.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
    roles_claim: String,
    groups_claim: String,
    remembered: RwLock<Remembered>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The answer to a bad signature. The usual cause is not a forged token but two key files:
/// `workspaced token` run in another directory than `serve`, or after `serve` created a new
/// `workspaced.key`.
const BAD_SIGNATURE: &str = "the token's signature is invalid: it was probably signed with \
                             another key than the server's (`workspaced token` signs with the \
                             key file of the directory it runs in, or --jwt-hs256-secret-file)";

fn invalid(message: impl Into<String>) -> Error {
    Error::Unauthenticated {
        reason: Reason::TokenInvalid,
        message: message.into(),
    }
}

impl Verifier {
    /// Builds a verifier; fails when a JWKS key is unusable.
    pub fn new(s: JwtSettings) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for jwk in s.jwks.iter().flat_map(|set| set.keys.iter()) {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or("every JWKS key needs a \"kid\"")?;
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    Algorithm::EdDSA
                }
                _ => {
                    return Err(format!(
                        "JWKS key \"{kid}\": only RSA, EC P-256 and Ed25519 keys are supported"
                    ));
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key \"{kid}\": {e}"))?;
            keys.insert(kid, (key, alg));
        }
        if s.hs256_secret.is_none() && keys.is_empty() {
            return Err("no token key is configured".into());
        }
        Ok(Verifier {
            hs256: s.hs256_secret.as_deref().map(DecodingKey::from_secret),
            keys,
            issuer: s.issuer,
            audience: s.audience,
            roles_claim: s.roles_claim,
            groups_claim: s.groups_claim,
            remembered: RwLock::default(),
        })
    }

    /// Verifies a token (without the `Bearer ` prefix) into the principal it names, from
    /// the tokens remembered as verified when it is one of them (see `Remembered`).
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        let now = chrono::Utc::now().timestamp();
        if let Ok(remembered) = self.remembered.read()
            && let Some(p) = remembered.get(token, now)
        {
            return Ok(p);
        }
        let (p, exp) = self.verify_afresh(token)?;
        if let Some(exp) = exp
            && let Ok(mut remembered) = self.remembered.write()
        {
            remembered.put(token, &p, exp);
        }
        Ok(p)
    }

    /// Verifies a token, with its `exp` as whole seconds when it is a number.
    fn verify_afresh(&self, token: &str) -> Result<(Principal, Option<i64>), Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "the token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let header = decode_header(token).map_err(|_| invalid("the token is malformed"))?;
        let (key, alg) = if header.alg == Algorithm::HS256 {
            let key = self
                .hs256
                .as_ref()
                .ok_or_else(|| invalid("HS256 tokens are not accepted"))?;
            (key, Algorithm::HS256)
        } else {
            let kid = header
                .kid
                .as_deref()
                .ok_or_else(|| invalid("the token names no key (kid)"))?;
            let (key, alg) = self
                .keys
                .get(kid)
                .ok_or_else(|| invalid("the token's key (kid) is unknown"))?;
            if header.alg != *alg {
                return Err(invalid("the token's algorithm does not match its key"));
            }
            (key, *alg)
        };
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        required.extend(self.issuer.as_ref().map(|_| "iss"));
        required.extend(self.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &self.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let claims = decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Error::Unauthenticated {
                    reason: Reason::TokenExpired,
                    message: "the token has expired".into(),
                },
                ErrorKind::ImmatureSignature => invalid("the token is not valid yet (nbf)"),
                ErrorKind::InvalidSignature => invalid(BAD_SIGNATURE),
                ErrorKind::MissingRequiredClaim(c) => invalid(format!("the token has no {c}")),
                ErrorKind::InvalidIssuer => invalid("the token's issuer is not accepted"),
                ErrorKind::InvalidAudience => invalid("the token's audience is not accepted"),
                _ => invalid("the token is invalid"),
            })?
            .claims;
        // Control characters would forge log lines and make a member that its co-admins
        // cannot name; the member RPCs' rule for subjects and emails applies here too.
        let subject = match claims.get("sub") {
            Some(Value::String(s)) => {
                validate::subject(s).map_err(|e| invalid(format!("the token's sub {e}")))?
            }
            _ => return Err(invalid("the token's sub must be a string")),
        };
        let email = match claims.get("email") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => {
                Some(validate::email(s).map_err(|e| invalid(format!("the token's email {e}")))?)
            }
            Some(_) => return Err(invalid("the token's email must be a string")),
        };
        // Checked whether or not an issuer is required: an `iss` of another type is a
        // malformed token, not one without an issuer.
        if claims.get("iss").is_some_and(|v| !v.is_string()) {
            return Err(invalid("the token's iss must be a string"));
        }
        // `iat` is respected as `nbf` is (the library reads neither its type nor its time):
        // a token issued later than now, beyond the leeway, is not valid yet.
        match claims.get("iat") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let now = chrono::Utc::now().timestamp() as f64;
                if n.as_f64().is_none_or(|iat| iat > now + LEEWAY_SECS as f64) {
                    return Err(invalid("the token was issued in the future (iat)"));
                }
            }
            Some(_) => return Err(invalid("the token's iat must be a number")),
        }
        let roles: Vec<&str> = match claims.get(&self.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .ok_or_else(|| invalid("the token's roles must be an array of strings"))?,
            Some(_) => return Err(invalid("the token's roles must be an array of strings")),
        };
        let groups: Vec<String> = match claims.get(&self.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|g| match g {
                    Value::String(g) => validate::group(g)
                        .map_err(|e| invalid(format!("each of the token's groups {e}"))),
                    _ => Err(invalid("the token's groups must be an array of strings")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("the token's groups must be an array of strings")),
        };
        let mut p = Principal::new(subject, groups, PlatformRoles::from_names(&roles));
        p.email = email;
        // Truncated: a fractional `exp` counts as over a little early, never late.
        let exp = claims.get("exp").and_then(Value::as_f64).map(|e| e as i64);
        p.expires_at = exp;
        Ok((p, exp))
    }
}

/// What a token signed by `sign_hs256` says of its principal.
#[derive(Debug, Clone, Default)]
pub struct Claims<'a> {
    /// `sub`.
    pub subject: &'a str,
    /// `email`, if any.
    pub email: Option<&'a str>,
    /// `roles`: platform roles.
    pub roles: &'a [String],
    /// `groups`, left out when empty.
    pub groups: &'a [String],
}

/// Signs an HS256 token, as `workspaced token` and the tests do.
pub fn sign_hs256(
    secret: &[u8],
    claims: &Claims<'_>,
    ttl: std::time::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let Claims {
        subject,
        email,
        roles,
        groups,
    } = *claims;
    let now = chrono::Utc::now().timestamp();
    // Saturating: a TTL of a trillion years is absurd, but must not wrap into an expired
    // token (or overflow).
    let exp = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    let mut claims = serde_json::json!({
        "sub": subject,
        "iat": now,
        "exp": exp,
        "roles": roles,
    });
    if let Some(email) = email {
        claims["email"] = Value::String(email.to_owned());
    }
    if !groups.is_empty() {
        claims["groups"] = serde_json::json!(groups);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(secret: &[u8]) -> Verifier {
        Verifier::new(JwtSettings {
            hs256_secret: Some(secret.to_vec()),
            roles_claim: "roles".into(),
            groups_claim: "groups".into(),
            ..JwtSettings::default()
        })
        .unwrap()
    }

    #[test]
    fn a_bad_signature_suggests_that_the_keys_differ() {
        let token = sign_hs256(b"the key of another directory", &alice(), ONE_HOUR);
        let err = verifier(b"the server's key").verify(&token.unwrap());
        match err {
            Err(Error::Unauthenticated { reason, message }) => {
                assert_eq!(reason, Reason::TokenInvalid);
                assert!(message.contains("another key"), "{message}");
                assert!(message.contains("workspaced token"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_signed_with_the_servers_key_is_accepted() {
        let token = sign_hs256(b"the server's key", &alice(), ONE_HOUR).unwrap();
        let p = verifier(b"the server's key").verify(&token).unwrap();
        assert_eq!(p.subject, "alice");
        assert!(p.groups.is_empty());
    }

    #[test]
    fn groups_come_sorted_without_repeats_and_bad_ones_make_the_token_invalid() {
        let key = b"the server's key";
        let groups = ["ml".to_owned(), "data".to_owned(), "ml".to_owned()];
        let claims = Claims {
            groups: &groups,
            ..alice()
        };
        let p = verifier(key)
            .verify(&sign_hs256(key, &claims, ONE_HOUR).unwrap())
            .unwrap();
        assert_eq!(&*p.groups, ["data", "ml"]);
        for bad in ["", "a\nb", &"g".repeat(256)] {
            let groups = [bad.to_owned()];
            let claims = Claims {
                groups: &groups,
                ..alice()
            };
            let err = verifier(key).verify(&sign_hs256(key, &claims, ONE_HOUR).unwrap());
            assert!(
                matches!(
                    err,
                    Err(Error::Unauthenticated {
                        reason: Reason::TokenInvalid,
                        ..
                    })
                ),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn a_remembered_token_is_answered_as_verifying_it_again_would() {
        let key = b"the server's key";
        let v = verifier(key);
        let groups = ["ml".to_owned()];
        let claims = Claims {
            groups: &groups,
            ..alice()
        };
        let token = sign_hs256(key, &claims, ONE_HOUR).unwrap();
        let first = v.verify(&token).unwrap();
        assert_eq!(v.remembered.read().unwrap().tokens.len(), 1);
        assert_eq!(v.verify(&token).unwrap(), first);
        // A forged token differs from a remembered one and is verified, and refused.
        let mut forged = token.clone();
        forged.pop();
        assert!(v.verify(&forged).is_err());
        assert_eq!(v.remembered.read().unwrap().tokens.len(), 1);
        // Past its remembered exp a token is verified afresh: what is remembered is not used.
        let now = chrono::Utc::now().timestamp();
        let mallory = Principal::new("mallory".into(), Vec::new(), PlatformRoles::default());
        v.remembered
            .write()
            .unwrap()
            .tokens
            .insert(digest(&token), (mallory.clone(), now));
        assert_eq!(v.verify(&token).unwrap(), first);
        v.remembered
            .write()
            .unwrap()
            .tokens
            .insert(digest(&token), (mallory.clone(), now + 60));
        assert_eq!(
            v.verify(&token).unwrap(),
            mallory,
            "served while remembered"
        );
        // The memory stays bounded, whatever the principals.
        let mut r = Remembered::default();
        let groups = (0..100).map(|g| format!("{g:050}")).collect();
        let big = Principal::new("big".into(), groups, PlatformRoles::default());
        for i in 0..2000 {
            r.put(&format!("token-{i}"), &big, now + 60);
            assert!(r.bytes <= REMEMBERED_BYTES);
        }
        assert!(r.tokens.len() < 2000);
    }

    /// An HS256 token of alice with `exp` and `nbf` (seconds from now) as given.
    fn timed(secret: &[u8], exp: i64, nbf: Option<i64>) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({"sub": "alice", "exp": now + exp});
        if let Some(nbf) = nbf {
            claims["nbf"] = (now + nbf).into();
        }
        signed(secret, &claims)
    }

    /// `claims` signed with HS256 and `secret`, whatever their shape.
    fn signed(secret: &[u8], claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn reason(r: Result<Principal, Error>) -> Option<Reason> {
        match r {
            Ok(_) => None,
            Err(Error::Unauthenticated { reason, .. }) => Some(reason),
            Err(e) => panic!("{e:?}"),
        }
    }

    /// Five seconds of clock skew, no more, on `exp` and `nbf`, on the first verification
    /// and on the next (from memory, for a token whose `exp` is ahead). The `nbf` refused is
    /// 7 s ahead, not 6: the clock's second may turn between signing and verifying.
    #[test]
    fn five_seconds_of_clock_skew_are_tolerated() {
        let v = verifier(b"k");
        let cases = [
            ("expired 4 s ago", timed(b"k", -4, None), None),
            (
                "expired 6 s ago",
                timed(b"k", -6, None),
                Some(Reason::TokenExpired),
            ),
            ("valid in 4 s", timed(b"k", 3600, Some(4)), None),
            (
                "valid in 7 s",
                timed(b"k", 3600, Some(7)),
                Some(Reason::TokenInvalid),
            ),
        ];
        for (what, token, want) in cases {
            assert_eq!(reason(v.verify(&token)), want, "{what}");
            assert_eq!(reason(v.verify(&token)), want, "{what}, again");
        }
    }

    /// An `iat` up to the leeway ahead is accepted; one further ahead, or not a number,
    /// is invalid.
    #[test]
    fn an_iat_ahead_of_the_clock_or_not_a_number_is_invalid() {
        let v = verifier(b"k");
        let issued = |iat: serde_json::Value| {
            let now = chrono::Utc::now().timestamp();
            let claims = serde_json::json!({"sub": "alice", "exp": now + 60, "iat": iat});
            reason(v.verify(&signed(b"k", &claims)))
        };
        let now = chrono::Utc::now().timestamp();
        assert_eq!(issued(serde_json::json!(now - 60)), None);
        assert_eq!(issued(serde_json::json!(now + 4)), None);
        for bad in [
            serde_json::json!(now + 60),
            serde_json::json!("yesterday"),
            serde_json::json!([now]),
        ] {
            assert_eq!(issued(bad.clone()), Some(Reason::TokenInvalid), "{bad}");
        }
    }

    /// A groups claim of `null` counts as absent; one that is not an array is invalid.
    #[test]
    fn a_null_groups_claim_is_no_groups() {
        let v = verifier(b"k");
        let with_groups = |groups: serde_json::Value| {
            let now = chrono::Utc::now().timestamp();
            let claims = serde_json::json!({"sub": "alice", "exp": now + 60, "groups": groups});
            v.verify(&signed(b"k", &claims))
        };
        let p = with_groups(serde_json::Value::Null).unwrap();
        assert!(p.groups.is_empty());
        for bad in [serde_json::json!("ml"), serde_json::json!({"ml": true})] {
            assert_eq!(reason(with_groups(bad)), Some(Reason::TokenInvalid));
        }
    }

    /// A server given only a JWKS refuses HS256 tokens, whatever their key.
    #[test]
    fn a_server_with_only_a_jwks_refuses_hs256() {
        let jwks = serde_json::from_str(include_str!("../../tests/api/fixtures/jwks.json"));
        let v = Verifier::new(JwtSettings {
            jwks: Some(jwks.unwrap()),
            roles_claim: "roles".into(),
            groups_claim: "groups".into(),
            ..JwtSettings::default()
        })
        .unwrap();
        for secret in [&b""[..], b"k", b"secret"] {
            let token = sign_hs256(secret, &alice(), ONE_HOUR).unwrap();
            match v.verify(&token) {
                Err(Error::Unauthenticated { reason, message }) => {
                    assert_eq!(reason, Reason::TokenInvalid);
                    assert!(
                        message.contains("HS256 tokens are not accepted"),
                        "{message}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn alice() -> Claims<'static> {
        Claims {
            subject: "alice",
            ..Claims::default()
        }
    }

    const ONE_HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
}

//! Authentication: the interceptor that turns `authorization: Bearer <JWT>` into a
//! [`Principal`] on the request.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

pub mod jwt;

use crate::{
    domain::access::{PlatformRoles, Principal},
    error::{Error, Reason},
};
pub use jwt::{JwtSettings, Verifier};

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum AuthMode {
    /// Bearer JWTs checked by the verifier.
    Jwt(Arc<Verifier>),
    /// Every caller is an anonymous platform admin (`--insecure-no-auth`).
    Insecure,
}

/// The tonic interceptor in front of every workspaced service (not Health or reflection).
#[derive(Clone, Debug)]
pub struct Authenticator {
    mode: AuthMode,
}

/// Where the request-log layer learns the caller's subject.
#[derive(Clone, Debug, Default)]
pub struct SubjectSlot(pub Arc<std::sync::Mutex<Option<String>>>);

impl Authenticator {
    /// An interceptor for `mode`.
    pub fn new(mode: AuthMode) -> Self {
        Authenticator { mode }
    }

    fn principal(&self, req: &Request<()>) -> Result<Principal, Error> {
        let verifier = match &self.mode {
            AuthMode::Insecure => {
                return Ok(Principal::new(
                    "anonymous".into(),
                    Vec::new(),
                    PlatformRoles {
                        admin: true,
                        service: false,
                    },
                ));
            }
            AuthMode::Jwt(v) => v,
        };
        let missing = |message: &str| Error::Unauthenticated {
            reason: Reason::TokenMissing,
            message: message.into(),
        };
        let mut entries = req.metadata().get_all("authorization").iter();
        let value = entries
            .next()
            .ok_or_else(|| missing("the authorization metadata is missing"))?
            .as_bytes();
        // Proxies and clients disagree on which of two credentials counts; refuse to guess.
        if entries.next().is_some() {
            return Err(Error::Unauthenticated {
                reason: Reason::TokenInvalid,
                message: "more than one authorization entry".into(),
            });
        }
        let (scheme, token) = match value.iter().position(|b| *b == b' ') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &[][..]),
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Err(missing(
                "the authorization metadata needs the Bearer scheme",
            ));
        }
        // A Bearer credential that is not a token is a bad token, not a missing one.
        let token = std::str::from_utf8(token)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthenticated {
                reason: Reason::TokenInvalid,
                message: "the Bearer token is malformed".into(),
            })?;
        verifier.verify(token)
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let principal = self.principal(&req)?;
        if let Some(slot) = req.extensions().get::<SubjectSlot>()
            && let Ok(mut s) = slot.0.lock()
        {
            *s = Some(principal.subject.clone());
        }
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

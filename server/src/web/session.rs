//! Web login and sessions.
//!
//! A web password belongs to an EXISTING user (`schoolfleet user
//! set-password`), so the user's role bindings apply unchanged: the
//! session yields the same `Principal` an API token would. The session id
//! (256 random bits) lives only in the cookie; the store keeps its SHA-256.
//! The CSRF token is derived from the id, so a form token is worthless
//! without the cookie and needs no storage.

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{PageError, WebState};
use crate::auth::Principal;
use crate::storage::{StorageError, Store, User, WebSessionRecord, now_millis};

/// `__Host-`: the browser keeps it only if Secure, Path=/ and no Domain.
pub const SESSION_COOKIE: &str = "__Host-sf_session";
/// The double-submit token of the login form (before there is a session).
pub const LOGIN_COOKIE: &str = "__Host-sf_login";
/// A login that passed the password and waits for the second factor: a
/// sealed (keyring) user id, expiry and the login form's token, so it is
/// worthless on another browser, after five minutes, or once used.
pub const SECOND_FACTOR_COOKIE: &str = "__Host-sf_2fa";
/// How long the code step may take, in seconds.
pub const SECOND_FACTOR_SECONDS: u64 = 300;
const SECOND_FACTOR_CONTEXT: &[u8] = b"web-login-second-factor";
/// The session is written back at most this often (idle accounting).
const TOUCH_EVERY_MS: i64 = 60_000;

/// What turns credentials into an existing user. Local passwords today; a
/// county's OIDC provider later returns the user it vouches for through
/// the same boundary (a redirect flow of its own, ending in `user`).
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// The user these credentials prove, or `None`. Takes the same time
    /// for an unknown user as for a wrong password.
    async fn authenticate(
        &self,
        store: &std::sync::Arc<dyn Store>,
        login: &str,
        password: &str,
    ) -> Result<Option<User>, StorageError>;
}

/// Web passwords (argon2id) stored with the user.
#[derive(Debug, Clone, Copy)]
pub struct LocalPasswords;

#[async_trait]
impl IdentityProvider for LocalPasswords {
    async fn authenticate(
        &self,
        store: &std::sync::Arc<dyn Store>,
        login: &str,
        password: &str,
    ) -> Result<Option<User>, StorageError> {
        let user = match login.trim() {
            "" => None,
            name => store.get_user(name).await?,
        };
        let stored = match &user {
            Some(user) => store.web_password(&user.id).await?,
            None => None,
        };
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| crate::auth::password::dummy_hash().to_owned());
        let password = password.to_owned();
        let ok =
            tokio::task::spawn_blocking(move || crate::auth::password::verify(&password, &stored))
                .await
                .unwrap_or(false);
        Ok(user.filter(|_| ok && known))
    }
}

pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The CSRF token of the session with this id.
fn csrf_of(id: &str) -> String {
    hex::encode(Sha256::digest(format!("schoolfleet-csrf:{id}").as_bytes()))
}

pub fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `name=value` of one cookie in the request.
pub fn cookie<'a>(parts: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    parts
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

pub fn set_cookie(name: &str, value: &str, max_age_seconds: Option<u64>) -> String {
    let age = match max_age_seconds {
        Some(s) => format!("; Max-Age={s}"),
        None => String::new(),
    };
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}")
}

pub fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", Some(0))
}

/// The cookie value of a login waiting for its code.
pub fn seal_pending(keys: &crate::keyring::Keyring, user_id: &str, login_token: &str) -> String {
    let expires = now_millis() + SECOND_FACTOR_SECONDS as i64 * 1000;
    hex::encode(keys.seal(
        SECOND_FACTOR_CONTEXT,
        format!("{user_id}\n{expires}\n{login_token}").as_bytes(),
    ))
}

/// The user id of a pending login, if the cookie is genuine, not expired,
/// and belongs to this browser's login form token.
pub fn open_pending(
    keys: &crate::keyring::Keyring,
    value: &str,
    login_token: &str,
) -> Option<String> {
    if value.len() > 1024 {
        return None;
    }
    let blob = hex::decode(value).ok()?;
    let plain = String::from_utf8(keys.open(SECOND_FACTOR_CONTEXT, &blob).ok()?).ok()?;
    let mut parts = plain.splitn(3, '\n');
    let (user_id, expires, token) = (parts.next()?, parts.next()?, parts.next()?);
    let expires: i64 = expires.parse().ok()?;
    (expires > now_millis() && !login_token.is_empty() && tokens_equal(token, login_token))
        .then(|| user_id.to_owned())
}

/// Starts a session for `user`; returns the cookie value.
pub async fn start(store: &std::sync::Arc<dyn Store>, user: &User) -> Result<String, PageError> {
    let id = random_hex();
    let now = now_millis();
    store
        .create_web_session(&WebSessionRecord {
            id_hash: hash_id(&id),
            user_id: user.id.clone(),
            created_at: now,
            last_seen_at: now,
        })
        .await?;
    Ok(id)
}

/// A logged-in caller: the same `Principal` as for an API token.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    pub id_hash: String,
}

impl Session {
    /// Refuses a form whose token is not this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        if tokens_equal(presented, &self.csrf) {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }
}

impl FromRequestParts<WebState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let id = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(PageError::Login)?
            .to_owned();
        let store = &state.app.store;
        let id_hash = hash_id(&id);
        let record = store.web_session(&id_hash).await?.ok_or(PageError::Login)?;
        let now = now_millis();
        let portal = &state.app.config.portal;
        let idle = portal.idle_timeout.as_millis() as i64;
        let max = portal.max_session.as_millis() as i64;
        if now - record.last_seen_at > idle || now - record.created_at > max {
            store.delete_web_session(&id_hash).await?;
            return Err(PageError::Login);
        }
        if now - record.last_seen_at > TOUCH_EVERY_MS {
            store.touch_web_session(&id_hash, now).await?;
        }
        // The bindings are read on every request: a changed role applies
        // at once, a deleted user has no session.
        let user = store
            .get_user(&record.user_id)
            .await?
            .ok_or(PageError::Login)?;
        Ok(Session {
            principal: Principal::from_user(&user),
            csrf: csrf_of(&id),
            id_hash,
        })
    }
}

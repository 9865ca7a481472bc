//! Registry passwords: self-verifying tokens, so no session state is kept.
//!
//! A token is `base64url(payload) "." base64url(hmac_sha256(key, base64url(payload)))`
//! where the payload is the JSON `{"k": access key id, "i": issue time,
//! "x": expiry}` (times in epoch milliseconds). The key is the server
//! secret in `<data-dir>/registry/token-key`. `GetAuthorizationToken` hands
//! out `base64("AWS:" + token)`, as ECR does; `docker login` sends the
//! token as the password of user `AWS`. Pure: `now` is always passed in.
//!
//! A signature alone is not enough: whoever holds the key file could mint
//! a token for any key id and any expiry. So a token lives at most
//! [`TOKEN_LIFETIME_MS`], however it was minted: one whose expiry lies
//! further than that after its issue time or after `now` is refused, and
//! the caller checks that the access key it names still exists
//! ([`crate::AccessKeys`]). Tokens minted before `i` existed carry no issue
//! time; the bound from `now` still caps them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// ECR's token lifetime: 12 hours.
pub const TOKEN_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    /// The token claims a lifetime longer than ECR's 12 hours.
    #[error("token lifetime exceeds 12 hours")]
    TooLong,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Payload {
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<i64>,
    x: i64,
}

/// The claims of a verified token.
#[derive(Debug, PartialEq, Eq)]
pub struct Claims {
    pub access_key_id: String,
    pub expires_at_ms: i64,
}

fn sign(key: &[u8], data: &[u8]) -> Result<Vec<u8>, TokenError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| TokenError::Malformed)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// A token minted for `access_key_id` at `issued_at_ms`, with its expiry
/// (ECR's 12 hours later).
#[derive(Debug, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    pub expires_at_ms: i64,
}

/// Mints a token for `access_key_id`, issued at `issued_at_ms` and valid
/// for [`TOKEN_LIFETIME_MS`].
pub fn mint(key: &[u8], access_key_id: &str, issued_at_ms: i64) -> Result<Minted, TokenError> {
    let expires_at_ms = issued_at_ms.saturating_add(TOKEN_LIFETIME_MS);
    let token = encode(
        key,
        &Payload {
            k: access_key_id.to_string(),
            i: Some(issued_at_ms),
            x: expires_at_ms,
        },
    )?;
    Ok(Minted {
        token,
        expires_at_ms,
    })
}

fn encode(key: &[u8], payload: &Payload) -> Result<String, TokenError> {
    let payload = serde_json::to_vec(payload).map_err(|_| TokenError::Malformed)?;
    let body = URL_SAFE_NO_PAD.encode(payload);
    let sig = URL_SAFE_NO_PAD.encode(sign(key, body.as_bytes())?);
    Ok(format!("{body}.{sig}"))
}

/// Verifies `token` at `now_ms`.
pub fn verify(key: &[u8], token: &str, now_ms: i64) -> Result<Claims, TokenError> {
    let (body, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig.as_bytes())
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| TokenError::Malformed)?;
    mac.update(body.as_bytes());
    mac.verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(body.as_bytes())
        .map_err(|_| TokenError::Malformed)?;
    let p: Payload = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if now_ms >= p.x {
        return Err(TokenError::Expired);
    }
    // Whoever minted it, no token outlives ECR's lifetime: not from its
    // issue time, and not from now (which also bounds a token without one).
    let too_long = |from: i64| p.x.saturating_sub(from) > TOKEN_LIFETIME_MS;
    if too_long(now_ms) || p.i.is_some_and(|i| i > p.x || too_long(i)) {
        return Err(TokenError::TooLong);
    }
    Ok(Claims {
        access_key_id: p.k,
        expires_at_ms: p.x,
    })
}

/// Extracts the token from an `Authorization` header value: Basic with
/// user `AWS`, or Bearer.
pub fn from_authorization(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.as_bytes())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        if user == "AWS" {
            return Some(password.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    const NOW: i64 = 1_700_000_000_000;

    /// A token as someone holding the key could sign it.
    fn forge(k: &str, i: Option<i64>, x: i64) -> String {
        encode(
            KEY,
            &Payload {
                k: k.to_string(),
                i,
                x,
            },
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_expiry_with_injected_clock() {
        let now = NOW;
        let m = mint(KEY, "AKID", now).unwrap();
        assert_eq!(m.expires_at_ms, now + TOKEN_LIFETIME_MS);
        let t = m.token;
        let c = verify(KEY, &t, now).unwrap();
        assert_eq!(c.access_key_id, "AKID");
        assert!(verify(KEY, &t, now + TOKEN_LIFETIME_MS - 1).is_ok());
        assert_eq!(
            verify(KEY, &t, now + TOKEN_LIFETIME_MS),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_correctly_signed_token_may_not_live_longer_than_twelve_hours() {
        const H: i64 = 60 * 60 * 1000;
        // Expiry far in the future, with or without an issue time.
        assert_eq!(
            verify(KEY, &forge("AKID", None, NOW + 10 * 365 * 24 * H), NOW),
            Err(TokenError::TooLong)
        );
        assert_eq!(
            verify(KEY, &forge("AKID", Some(NOW), i64::MAX), NOW),
            Err(TokenError::TooLong)
        );
        // 12 hours and a millisecond from now.
        assert_eq!(
            verify(KEY, &forge("AKID", Some(NOW), NOW + 12 * H + 1), NOW),
            Err(TokenError::TooLong)
        );
        // Issued 24 hours before its expiry: refused even once it is
        // within 12 hours of expiring.
        let long = forge("AKID", Some(NOW - 20 * H), NOW + 4 * H);
        assert_eq!(verify(KEY, &long, NOW), Err(TokenError::TooLong));
        // Issued after it expires.
        assert_eq!(
            verify(KEY, &forge("AKID", Some(NOW + 2 * H), NOW + H), NOW),
            Err(TokenError::TooLong)
        );
        // Exactly 12 hours is ECR's lifetime and fine; so is an old
        // token without an issue time that expires within 12 hours.
        assert!(verify(KEY, &forge("AKID", Some(NOW), NOW + 12 * H), NOW).is_ok());
        assert!(verify(KEY, &forge("AKID", None, NOW + H), NOW).is_ok());
    }

    #[test]
    fn tampering_and_wrong_key_refused() {
        let t = forge("AKID", None, i64::MAX);
        assert_eq!(verify(b"other-key", &t, 0), Err(TokenError::BadSignature));
        let (body, sig) = t.split_once('.').unwrap();
        let forged_body = URL_SAFE_NO_PAD.encode(br#"{"k":"AKID","x":99999999999999}"#);
        assert_eq!(
            verify(KEY, &format!("{forged_body}.{sig}"), 0),
            Err(TokenError::BadSignature)
        );
        assert!(verify(KEY, body, 0).is_err());
        assert!(verify(KEY, "garbage", 0).is_err());
    }

    #[test]
    fn authorization_headers() {
        let basic = base64::engine::general_purpose::STANDARD.encode("AWS:tok.en");
        assert_eq!(
            from_authorization(&format!("Basic {basic}")).as_deref(),
            Some("tok.en")
        );
        assert_eq!(from_authorization("Bearer abc").as_deref(), Some("abc"));
        let other = base64::engine::general_purpose::STANDARD.encode("bob:tok");
        assert_eq!(from_authorization(&format!("Basic {other}")), None);
        assert_eq!(from_authorization("Digest x"), None);
    }
}

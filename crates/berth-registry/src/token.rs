//! Registry passwords: self-verifying tokens, so no session state is kept.
//!
//! A token is `base64url(payload) "." base64url(hmac_sha256(key, base64url(payload)))`
//! where the payload is the JSON `{"k": access key id, "x": expiry in epoch
//! milliseconds}`. The key is the server secret in
//! `<data-dir>/registry/token-key`. `GetAuthorizationToken` hands out
//! `base64("AWS:" + token)`, as ECR does; `docker login` sends the token as
//! the password of user `AWS`. Pure: `now` is always passed in.

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
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Payload {
    k: String,
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

/// Mints a token for `access_key_id` that expires at `expires_at_ms`.
pub fn mint(key: &[u8], access_key_id: &str, expires_at_ms: i64) -> Result<String, TokenError> {
    let payload = serde_json::to_vec(&Payload {
        k: access_key_id.to_string(),
        x: expires_at_ms,
    })
    .map_err(|_| TokenError::Malformed)?;
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

    #[test]
    fn round_trip_and_expiry_with_injected_clock() {
        let now = 1_700_000_000_000;
        let t = mint(KEY, "AKID", now + TOKEN_LIFETIME_MS).unwrap();
        let c = verify(KEY, &t, now).unwrap();
        assert_eq!(c.access_key_id, "AKID");
        assert!(verify(KEY, &t, now + TOKEN_LIFETIME_MS - 1).is_ok());
        assert_eq!(
            verify(KEY, &t, now + TOKEN_LIFETIME_MS),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampering_and_wrong_key_refused() {
        let t = mint(KEY, "AKID", i64::MAX).unwrap();
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

//! `maxResults` / `nextToken` pagination. A token is the opaque, base64
//! form of the last key returned; a token that does not decode to a key
//! under the listing's prefix is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_model::ApiError;

/// Checks `maxResults` against the operation's bounds and returns the page
/// size to use.
pub(crate) fn page_size(
    max_results: Option<i64>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match max_results {
        None => Ok(default),
        Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
        Some(_) => Err(ApiError::invalid_parameter(format!(
            "maxResults must be between 1 and {max}."
        ))),
    }
}

pub(crate) fn encode_token(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key.as_bytes())
}

/// The key a token resumes after; it must lie under `prefix`.
pub(crate) fn decode_token(token: Option<&str>, prefix: &str) -> Result<Option<String>, ApiError> {
    let Some(token) = token else { return Ok(None) };
    let invalid = || ApiError::invalid_parameter("Invalid nextToken provided.");
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| invalid())?;
    let key = String::from_utf8(bytes).map_err(|_| invalid())?;
    if key.starts_with(prefix) {
        Ok(Some(key))
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_scope() {
        let t = encode_token("ecs/cluster/a");
        assert_eq!(
            decode_token(Some(&t), "ecs/cluster/").ok(),
            Some(Some("ecs/cluster/a".into()))
        );
        assert!(decode_token(Some(&t), "ecs/family/").is_err());
        assert!(decode_token(Some("!!"), "ecs/").is_err());
        assert_eq!(decode_token(None, "ecs/").ok(), Some(None));
    }

    #[test]
    fn page_size_bounds() {
        assert_eq!(page_size(None, 100, 100).ok(), Some(100));
        assert_eq!(page_size(Some(5), 100, 100).ok(), Some(5));
        assert!(page_size(Some(0), 100, 100).is_err());
        assert!(page_size(Some(101), 100, 100).is_err());
    }
}

//! Content digests (`sha256:<64 hex>`), the only algorithm the registry
//! stores blobs under. Other registered algorithms are refused as
//! unsupported rather than mis-stored.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:` digest with a lowercase hex part.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form algorithm:hex")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported")]
    Unsupported(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }
    /// The digest a finished hasher computed.
    pub fn from_hasher(h: Sha256) -> Self {
        Self {
            hex: hex::encode(h.finalize()),
        }
    }
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        let algo_ok = !algo.is_empty()
            && algo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        if !algo_ok || hex.is_empty() {
            return Err(DigestError::Malformed(s.to_string()));
        }
        if algo != "sha256" {
            return Err(DigestError::Unsupported(algo.to_string()));
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Self {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::Unsupported(_))
        ));
        assert!("sha256:ABCD".parse::<Digest>().is_err());
        assert!("sha256:../../etc".parse::<Digest>().is_err());
        assert!("nocolon".parse::<Digest>().is_err());
    }
}

//! Splitting an image reference into repository and tag or digest, as a
//! pull needs: Docker pulls every tag of a repository when none is given,
//! so the default `latest` must be explicit.

/// `registry:5000/team/app:1.2` → repository `registry:5000/team/app`,
/// tag `1.2`; `app@sha256:...` → digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(reference: &str) -> Self {
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (reference, None),
        };
        // A colon after the last slash separates the tag; one before it
        // belongs to a registry host's port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (rest[..at].to_string(), Some(rest[at + 1..].to_string()))
            }
            None => (rest.to_string(), None),
        };
        Self {
            repository,
            tag,
            digest,
        }
    }

    /// What to pass as the pull's `tag` parameter: the digest, else the tag,
    /// else `latest`.
    pub fn pull_tag(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The registry host, when the first path component names one (it has a
    /// dot or a colon, or is `localhost`), as Docker decides.
    pub fn registry(&self) -> Option<&str> {
        let (first, _) = self.repository.split_once('/')?;
        (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageRef::parse("busybox");
        assert_eq!(r.repository, "busybox");
        assert_eq!(r.pull_tag(), "latest");
        assert_eq!(r.registry(), None);

        let r = ImageRef::parse("127.0.0.1:9480/team/app:1.2");
        assert_eq!(r.repository, "127.0.0.1:9480/team/app");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        assert_eq!(r.registry(), Some("127.0.0.1:9480"));

        let r = ImageRef::parse("localhost:5000/app");
        assert_eq!(r.repository, "localhost:5000/app");
        assert_eq!(r.pull_tag(), "latest");

        let r = ImageRef::parse("app:1@sha256:abc");
        assert_eq!(r.repository, "app");
        assert_eq!(r.pull_tag(), "sha256:abc");
    }
}

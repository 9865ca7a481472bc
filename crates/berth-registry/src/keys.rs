//! The key layout of registry state in the Berth store. Every key the
//! registry reads or writes is built here.
//!
//! ```text
//! ecr/repo/<name>                          Repository record (JSON)
//! ecr/repo-epoch/<repo>                    rewritten by every image push, so a
//!                                          non-forced DeleteRepository and garbage
//!                                          collection can check, in their own
//!                                          transactions, that nothing was pushed
//!                                          after they looked
//! ecr/image/<repo>/<digest>                ImageRecord (JSON; the manifest bytes
//!                                          are kept inline, they are small)
//! ecr/tag/<repo>/<tag>                     TagRecord (JSON): the digest it names
//! ecr/layer/<repo>/<digest>                LayerRecord (JSON): a blob linked into
//!                                          the repository (uploaded or mounted)
//! ```
//!
//! `<name>` is the repository name as is (names sort as the catalog lists
//! them); `<repo>` is the name with `/` written `%2F`, so that the prefix
//! of repository `a` never covers the keys of repository `a/b`. `%` cannot
//! occur in a repository name.
//!
//! Blob bytes live on disk, not in the store: see [`crate::blobs`].

/// The prefix of every registry key: one range over it reads the whole
/// registry state at one store revision (garbage collection does).
pub const ROOT: &str = "ecr/";

pub const REPOS: &str = "ecr/repo/";

const REPO_EPOCHS: &str = "ecr/repo-epoch/";
const IMAGES: &str = "ecr/image/";
const LAYERS: &str = "ecr/layer/";

fn enc(name: &str) -> String {
    name.replace('/', "%2F")
}

fn dec(name: &str) -> String {
    name.replace("%2F", "/")
}

/// A registry key, parsed back into what it names (the keys garbage
/// collection reads).
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    RepoEpoch {
        repo: String,
    },
    Image {
        repo: String,
        digest: &'a str,
    },
    Layer {
        repo: String,
        digest: &'a str,
    },
    /// Repository records, tags, or anything else.
    Other,
}

/// `<repo>/<rest>` with both parts non-empty.
fn split_repo(rest: &str) -> Option<(String, &str)> {
    let (repo, tail) = rest.split_once('/')?;
    (!repo.is_empty() && !tail.is_empty()).then(|| (dec(repo), tail))
}

/// Parses a key built by this module.
pub fn parse(key: &str) -> Parsed<'_> {
    let split = split_repo;
    if let Some(rest) = key.strip_prefix(REPO_EPOCHS) {
        return Parsed::RepoEpoch { repo: dec(rest) };
    }
    if let Some((repo, digest)) = key.strip_prefix(IMAGES).and_then(split) {
        return Parsed::Image { repo, digest };
    }
    if let Some((repo, digest)) = key.strip_prefix(LAYERS).and_then(split) {
        return Parsed::Layer { repo, digest };
    }
    Parsed::Other
}

pub fn repo(name: &str) -> String {
    format!("{REPOS}{name}")
}

pub fn repo_epoch(name: &str) -> String {
    format!("{REPO_EPOCHS}{}", enc(name))
}

pub fn images(name: &str) -> String {
    format!("{IMAGES}{}/", enc(name))
}

pub fn image(name: &str, digest: &str) -> String {
    format!("{IMAGES}{}/{digest}", enc(name))
}

pub fn tags(name: &str) -> String {
    format!("ecr/tag/{}/", enc(name))
}

pub fn tag(name: &str, tag: &str) -> String {
    format!("ecr/tag/{}/{tag}", enc(name))
}

pub fn layers(name: &str) -> String {
    format!("{LAYERS}{}/", enc(name))
}

pub fn layer(name: &str, digest: &str) -> String {
    format!("{LAYERS}{}/{digest}", enc(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_names_do_not_share_prefixes() {
        assert!(!image("a/b", "sha256:x").starts_with(&images("a")));
        assert!(image("a/b", "sha256:x").starts_with(&images("a/b")));
        assert_eq!(repo("team/app"), "ecr/repo/team/app");
    }

    #[test]
    fn parse_inverts_the_builders() {
        assert_eq!(
            parse(&image("team/app", "sha256:ab")),
            Parsed::Image {
                repo: "team/app".into(),
                digest: "sha256:ab"
            }
        );
        assert_eq!(
            parse(&layer("a/b/c", "sha256:cd")),
            Parsed::Layer {
                repo: "a/b/c".into(),
                digest: "sha256:cd"
            }
        );
        assert_eq!(
            parse(&repo_epoch("x/y")),
            Parsed::RepoEpoch { repo: "x/y".into() }
        );
        assert_eq!(parse(&repo("x/y")), Parsed::Other);
        assert_eq!(parse(&tag("x", "latest")), Parsed::Other);
        assert_eq!(parse("ecr/image/x/"), Parsed::Other);
        for k in [
            repo("z"),
            repo_epoch("z"),
            image("z", "d"),
            tag("z", "t"),
            layer("z", "d"),
        ] {
            assert!(k.starts_with(ROOT));
        }
    }
}

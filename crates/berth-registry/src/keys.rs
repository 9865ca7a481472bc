//! The key layout of registry state in the Berth store. Every key the
//! registry reads or writes is built here.
//!
//! ```text
//! ecr/repo/<name>                          Repository record (JSON)
//! ecr/repo-epoch/<repo>                    rewritten by every image push, so a
//!                                          non-forced DeleteRepository can check,
//!                                          in its own transaction, that nothing
//!                                          was pushed after it looked
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

pub const REPOS: &str = "ecr/repo/";

fn enc(name: &str) -> String {
    name.replace('/', "%2F")
}

pub fn repo(name: &str) -> String {
    format!("{REPOS}{name}")
}

pub fn repo_epoch(name: &str) -> String {
    format!("ecr/repo-epoch/{}", enc(name))
}

pub fn images(name: &str) -> String {
    format!("ecr/image/{}/", enc(name))
}

pub fn image(name: &str, digest: &str) -> String {
    format!("ecr/image/{}/{digest}", enc(name))
}

pub fn tags(name: &str) -> String {
    format!("ecr/tag/{}/", enc(name))
}

pub fn tag(name: &str, tag: &str) -> String {
    format!("ecr/tag/{}/{tag}", enc(name))
}

pub fn layers(name: &str) -> String {
    format!("ecr/layer/{}/", enc(name))
}

pub fn layer(name: &str, digest: &str) -> String {
    format!("ecr/layer/{}/{digest}", enc(name))
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
}

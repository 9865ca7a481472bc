//! Repository, image, tag and layer metadata in the store: the registry's
//! core, shared by the Distribution API and the ECR JSON API. Blocking
//! (the store is synchronous); async callers use `spawn_blocking`.

use berth_store::{Compare, Op};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::RegistryError;
use crate::gc::BlobHold;
use crate::keys;
use crate::manifest::{self, Kind, Parsed};
use crate::state::{self, read, transact, Step};
use crate::Registry;

/// Pull times are recorded at most this often per image, so that pulls
/// do not each cost a durable write (ECR, too, records them lazily).
const PULL_TIME_GRANULARITY_SECS: f64 = 60.0;

/// A resource tag, as ECR spells it (`Key`/`Value`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ResourceTag {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExclusionFilter {
    pub filter_type: String,
    pub filter: String,
}

/// A repository (`ecr/repo/<name>`).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RepoRecord {
    pub name: String,
    pub created_at: f64,
    pub image_tag_mutability: String,
    #[serde(default)]
    pub mutability_exclusions: Vec<ExclusionFilter>,
    pub scan_on_push: bool,
    pub encryption_type: String,
    pub kms_key: Option<String>,
    #[serde(default)]
    pub tags: Vec<ResourceTag>,
    pub policy: Option<String>,
    pub lifecycle_policy: Option<String>,
    pub lifecycle_evaluated_at: Option<f64>,
    /// The last lifecycle policy preview (computed at once when started).
    #[serde(default)]
    pub lifecycle_preview: Option<LifecyclePreview>,
}

/// A stored lifecycle policy preview.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePreview {
    pub policy_text: String,
    pub results: Vec<PreviewResult>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PreviewResult {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: f64,
    pub rule_priority: i64,
}

impl RepoRecord {
    /// Whether pushing `tag` may not move it, under the repository's
    /// mutability setting and its wildcard exclusions.
    pub fn tag_is_immutable(&self, tag: &str) -> bool {
        let excluded = self
            .mutability_exclusions
            .iter()
            .any(|f| wildcard_match(&f.filter, tag));
        match self.image_tag_mutability.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !excluded,
            "MUTABLE_WITH_EXCLUSION" => excluded,
            _ => false,
        }
    }
}

/// An image: one manifest in one repository (`ecr/image/<repo>/<digest>`).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// The manifest bytes exactly as pushed (manifests are JSON, so UTF-8).
    pub manifest: String,
    pub size: i64,
    pub pushed_at: f64,
    pub last_pull: Option<f64>,
    pub subject: Option<String>,
    #[serde(default)]
    pub children: Vec<String>,
}

/// A tag (`ecr/tag/<repo>/<tag>`).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TagRecord {
    pub digest: String,
    pub updated_at: f64,
}

/// A blob linked into a repository (`ecr/layer/<repo>/<digest>`).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct LayerRecord {
    pub size: i64,
    pub pushed_at: f64,
}

/// What a manifest push did.
#[derive(Debug)]
pub struct Pushed {
    pub digest: Digest,
    pub parsed: Parsed,
    /// True when the image (and the tag, if any) were already there.
    pub unchanged: bool,
}

/// `*` matches any run of characters; everything else matches itself.
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let p = pattern.as_bytes();
    let s = s.as_bytes();
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

impl Registry {
    pub(crate) fn now_epoch(&self) -> f64 {
        self.clock.now_millis() as f64 / 1000.0
    }

    pub fn repository(&self, name: &str) -> Result<RepoRecord, RegistryError> {
        read::<RepoRecord>(self.store.as_ref(), &keys::repo(name))?
            .value
            .ok_or_else(|| RegistryError::RepositoryNotFound(name.to_string()))
    }

    pub fn layer(&self, repo: &str, digest: &Digest) -> Result<Option<LayerRecord>, RegistryError> {
        Ok(
            read::<LayerRecord>(self.store.as_ref(), &keys::layer(repo, &digest.to_string()))?
                .value,
        )
    }

    /// Records that `digest` (already on disk) belongs to `repo`. Only
    /// under a hold on the digest, which garbage collection relies on
    /// (see [`crate::gc`]).
    pub(crate) fn link_layer(
        &self,
        repo: &str,
        digest: &Digest,
        size: i64,
        hold: &BlobHold<'_>,
    ) -> Result<(), RegistryError> {
        if hold.digest() != digest {
            return Err(RegistryError::Internal(format!(
                "linking {digest} under a hold on {}",
                hold.digest()
            )));
        }
        let record = LayerRecord {
            size,
            pushed_at: self.now_epoch(),
        };
        let key = keys::layer(repo, &digest.to_string());
        let repo_key = keys::repo(repo);
        let store = self.store.as_ref();
        transact(store, || {
            let r = read::<RepoRecord>(store, &repo_key)?;
            if r.value.is_none() {
                return Err(RegistryError::RepositoryNotFound(repo.to_string()));
            }
            Ok(Step::Commit(
                vec![r.guard(&repo_key)],
                vec![state::put_op(key.clone(), &record)?],
                (),
            ))
        })
    }

    /// Unlinks a blob from a repository; false when it was not linked.
    pub fn unlink_layer(&self, repo: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let key = keys::layer(repo, &digest.to_string());
        transact(self.store.as_ref(), || {
            let cur = read::<LayerRecord>(self.store.as_ref(), &key)?;
            if cur.value.is_none() {
                return Ok(Step::Done(false));
            }
            Ok(Step::Commit(
                vec![cur.guard(&key)],
                vec![Op::Delete { key: key.clone() }],
                true,
            ))
        })
    }

    /// Stores a manifest in `repo`, optionally under `tag`. Every blob an
    /// image manifest names must be linked into the repository with the
    /// size its descriptor gives (a client that trusts the manifest would
    /// otherwise read a blob of another length), every manifest an index
    /// names must be an image of the repository, again of the size given,
    /// and
    /// an immutable tag may not move; all checked and written in one
    /// transaction.
    pub fn put_manifest(
        &self,
        repo: &str,
        bytes: &[u8],
        declared: Option<&str>,
        tag: Option<&str>,
        expected: Option<&Digest>,
    ) -> Result<Pushed, RegistryError> {
        let parsed = manifest::parse(bytes, declared)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| RegistryError::ManifestInvalid("manifest is not utf-8".into()))?;
        let digest = Digest::of(bytes);
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(RegistryError::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let digest_s = digest.to_string();
        let store = self.store.as_ref();
        let repo_key = keys::repo(repo);
        let image_key = keys::image(repo, &digest_s);
        let tag_key = tag.map(|t| keys::tag(repo, t));
        let now = self.now_epoch();
        let unchanged = transact(store, || {
            let r = read::<RepoRecord>(store, &repo_key)?;
            let Some(repo_rec) = r.value.as_ref() else {
                return Err(RegistryError::RepositoryNotFound(repo.to_string()));
            };
            let mut guards = vec![r.guard(&repo_key)];
            match parsed.kind {
                Kind::Image => {
                    let mut missing = Vec::new();
                    let mut wrong_size = None;
                    for d in parsed.required_blobs() {
                        let k = keys::layer(repo, &d.to_string());
                        match read::<LayerRecord>(store, &k)?.value {
                            None => missing.push(d),
                            Some(layer) => {
                                // The link records the blob's real size.
                                let declared = parsed
                                    .required_descriptors()
                                    .filter(|desc| desc.digest == d)
                                    .find(|desc| desc.size != layer.size);
                                if let (None, Some(desc)) = (&wrong_size, declared) {
                                    wrong_size = Some(RegistryError::BlobSizeMismatch {
                                        digest: d.clone(),
                                        declared: desc.size,
                                        actual: layer.size,
                                    });
                                }
                                guards.push(Compare::Exists { key: k });
                            }
                        }
                    }
                    if !missing.is_empty() {
                        return Err(RegistryError::BlobsUnknown(missing));
                    }
                    if let Some(err) = wrong_size {
                        return Err(err);
                    }
                }
                Kind::Index => {
                    let mut missing = Vec::new();
                    let mut wrong_size = None;
                    for m in &parsed.manifests {
                        let k = keys::image(repo, &m.digest.to_string());
                        match read::<ImageRecord>(store, &k)?.value {
                            None => missing.push(m.digest.clone()),
                            Some(child) => {
                                let actual =
                                    i64::try_from(child.manifest.len()).unwrap_or(i64::MAX);
                                if wrong_size.is_none() && m.size != actual {
                                    wrong_size = Some(RegistryError::BlobSizeMismatch {
                                        digest: m.digest.clone(),
                                        declared: m.size,
                                        actual,
                                    });
                                }
                                guards.push(Compare::Exists { key: k });
                            }
                        }
                    }
                    if !missing.is_empty() {
                        return Err(RegistryError::ManifestsUnknown(missing));
                    }
                    if let Some(err) = wrong_size {
                        return Err(err);
                    }
                }
            }
            let existing = read::<ImageRecord>(store, &image_key)?;
            let current_tag = match &tag_key {
                Some(k) => Some(read::<TagRecord>(store, k)?),
                None => None,
            };
            let tag_same = current_tag
                .as_ref()
                .map(|t| t.value.as_ref().is_some_and(|v| v.digest == digest_s))
                .unwrap_or(true);
            if existing.value.is_some() && tag_same {
                return Ok(Step::Done(true));
            }
            if let (Some(t), Some(cur)) = (tag, current_tag.as_ref()) {
                if cur.value.is_some() && !tag_same && repo_rec.tag_is_immutable(t) {
                    return Err(RegistryError::TagImmutable {
                        tag: t.to_string(),
                        repository: repo.to_string(),
                    });
                }
            }
            let record = match existing.value.clone() {
                Some(rec) => rec,
                None => ImageRecord {
                    digest: digest_s.clone(),
                    media_type: parsed.media_type.clone(),
                    artifact_type: parsed.artifact_type.clone(),
                    manifest: text.to_string(),
                    size: parsed.size(),
                    pushed_at: now,
                    last_pull: None,
                    subject: parsed.subject.as_ref().map(|s| s.digest.to_string()),
                    children: parsed
                        .manifests
                        .iter()
                        .map(|m| m.digest.to_string())
                        .collect(),
                },
            };
            guards.push(existing.guard(&image_key));
            let mut ops = vec![
                state::put_op(image_key.clone(), &record)?,
                state::put_op(keys::repo_epoch(repo), &now)?,
            ];
            if let (Some(k), Some(cur)) = (&tag_key, current_tag.as_ref()) {
                guards.push(cur.guard(k));
                ops.push(state::put_op(
                    k.clone(),
                    &TagRecord {
                        digest: digest_s.clone(),
                        updated_at: now,
                    },
                )?);
            }
            Ok(Step::Commit(guards, ops, false))
        })?;
        tracing::info!(repository = %repo, digest = %digest_s, tag = ?tag, unchanged, "manifest pushed");
        Ok(Pushed {
            digest,
            parsed,
            unchanged,
        })
    }

    /// The image a tag or digest names.
    pub fn resolve(&self, repo: &str, reference: &str) -> Result<ImageRecord, RegistryError> {
        let store = self.store.as_ref();
        let digest = if reference.contains(':') {
            reference.to_string()
        } else {
            match read::<TagRecord>(store, &keys::tag(repo, reference))?.value {
                Some(t) => t.digest,
                None => return Err(RegistryError::ImageNotFound),
            }
        };
        read::<ImageRecord>(store, &keys::image(repo, &digest))?
            .value
            .ok_or(RegistryError::ImageNotFound)
    }

    /// Every tag of `repo`, in order.
    pub fn tags(&self, repo: &str) -> Result<Vec<(String, TagRecord)>, RegistryError> {
        let prefix = keys::tags(repo);
        state::scan(self.store.as_ref(), &prefix)?
            .iter()
            .map(|kv| {
                let name = kv.key.get(prefix.len()..).unwrap_or_default().to_string();
                Ok((name, state::decode::<TagRecord>(kv)?))
            })
            .collect()
    }

    /// Every image of `repo`, in digest order.
    pub fn images(&self, repo: &str) -> Result<Vec<ImageRecord>, RegistryError> {
        state::scan(self.store.as_ref(), &keys::images(repo))?
            .iter()
            .map(state::decode::<ImageRecord>)
            .collect()
    }

    /// Deletes an image and every tag naming it; returns the tags removed.
    pub fn delete_image(&self, repo: &str, digest: &str) -> Result<Vec<String>, RegistryError> {
        let store = self.store.as_ref();
        let image_key = keys::image(repo, digest);
        transact(store, || {
            let img = read::<ImageRecord>(store, &image_key)?;
            if img.value.is_none() {
                return Err(RegistryError::ImageNotFound);
            }
            let mut guards = vec![img.guard(&image_key)];
            let mut ops = vec![Op::Delete {
                key: image_key.clone(),
            }];
            let mut removed = Vec::new();
            let prefix = keys::tags(repo);
            for kv in state::scan(store, &prefix)? {
                let t: TagRecord = state::decode(&kv)?;
                if t.digest == digest {
                    removed.push(kv.key.get(prefix.len()..).unwrap_or_default().to_string());
                    guards.push(Compare::ModRevision {
                        key: kv.key.clone(),
                        revision: kv.mod_revision,
                    });
                    ops.push(Op::Delete { key: kv.key });
                }
            }
            Ok(Step::Commit(guards, ops, removed))
        })
    }

    /// Removes a tag; returns the digest it named.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<String, RegistryError> {
        let store = self.store.as_ref();
        let key = keys::tag(repo, tag);
        transact(store, || {
            let t = read::<TagRecord>(store, &key)?;
            let Some(rec) = t.value.as_ref() else {
                return Err(RegistryError::ImageNotFound);
            };
            Ok(Step::Commit(
                vec![t.guard(&key)],
                vec![Op::Delete { key: key.clone() }],
                rec.digest.clone(),
            ))
        })
    }

    /// Records a pull of an image (at most once a minute per image).
    pub fn record_pull(&self, repo: &str, digest: &str) -> Result<(), RegistryError> {
        let store = self.store.as_ref();
        let key = keys::image(repo, digest);
        let now = self.now_epoch();
        transact(store, || {
            let img = read::<ImageRecord>(store, &key)?;
            let Some(mut rec) = img.value.clone() else {
                return Ok(Step::Done(()));
            };
            if rec
                .last_pull
                .is_some_and(|t| now - t < PULL_TIME_GRANULARITY_SECS)
            {
                return Ok(Step::Done(()));
            }
            rec.last_pull = Some(now);
            Ok(Step::Commit(
                vec![img.guard(&key)],
                vec![state::put_op(key.clone(), &rec)?],
                (),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("prod*", "prod-1"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*-rc*", "v1-rc2"));
        assert!(!wildcard_match("prod*", "dev-prod"));
        assert!(wildcard_match("a*b*c", "aXbYc"));
        assert!(!wildcard_match("a*b*c", "aXbY"));
    }
}

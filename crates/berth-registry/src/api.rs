//! The ECR JSON API: each operation a function from the request document
//! and the SigV4 caller to a response document or an [`EcrError`] in ECR's
//! words. Synchronous (the store is); the edge runs it on a blocking
//! thread.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use berth_control::Caller;
use berth_store::{Compare, Op};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{EcrError, RegistryError};
use crate::lifecycle;
use crate::manifest;
use crate::meta::{
    ExclusionFilter, ImageRecord, LifecyclePreview, PreviewResult, RepoRecord, ResourceTag,
};
use crate::state::{self, read, transact, Step};
use crate::{keys, token, Registry};

/// Largest `layerPartBlob` (the model's max).
pub const MAX_LAYER_PART: usize = 20 * 1024 * 1024;
const MAX_TAGS: usize = 50;

type Out = Result<Value, EcrError>;

/// The `mediaType` ECR gives every available layer in
/// BatchCheckLayerAvailability: a blob is stored without the media type
/// the manifests that name it give it, so ECR answers this one value.
const LAYER_MEDIA_TYPE: &str = "application/vnd.docker.container.image.rootfs.diff+json";

/// The implemented operations whose input has a `registryId` member in
/// ECR's model (checked by [`Registry::foreign_registry`]).
const REGISTRY_ID_OPERATIONS: &[&str] = &[
    "BatchCheckLayerAvailability",
    "BatchDeleteImage",
    "BatchGetImage",
    "CompleteLayerUpload",
    "CreateRepository",
    "DeleteLifecyclePolicy",
    "DeleteRepository",
    "DeleteRepositoryPolicy",
    "DescribeImages",
    "DescribeRepositories",
    "GetDownloadUrlForLayer",
    "GetLifecyclePolicy",
    "GetLifecyclePolicyPreview",
    "GetRepositoryPolicy",
    "InitiateLayerUpload",
    "ListImages",
    "PutImage",
    "PutImageScanningConfiguration",
    "PutImageTagMutability",
    "PutLifecyclePolicy",
    "SetRepositoryPolicy",
    "StartLifecyclePolicyPreview",
    "UploadLayerPart",
];

fn parse<T: DeserializeOwned>(input: Value) -> Result<T, EcrError> {
    serde_json::from_value(input).map_err(|e| {
        EcrError::new(
            "SerializationException",
            format!("Unable to parse the request: {e}"),
        )
    })
}

fn not_found(repo: &str, registry: &str) -> EcrError {
    EcrError::new(
        "RepositoryNotFoundException",
        format!(
            "The repository with name '{repo}' does not exist in the registry with id '{registry}'"
        ),
    )
}

fn image_not_found(id: &ImageId, repo: &str, registry: &str) -> EcrError {
    EcrError::new(
        "ImageNotFoundException",
        format!(
            "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{repo}' in the registry with id '{registry}'",
            id.image_digest.as_deref().unwrap_or("null"),
            id.image_tag.as_deref().unwrap_or("null"),
        ),
    )
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct ImageId {
    image_digest: Option<String>,
    image_tag: Option<String>,
}

impl ImageId {
    fn to_json(&self) -> Value {
        let mut v = json!({});
        if let Some(d) = &self.image_digest {
            v["imageDigest"] = json!(d);
        }
        if let Some(t) = &self.image_tag {
            v["imageTag"] = json!(t);
        }
        v
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoReq {
    repository_name: Option<String>,
}

fn page_size(max: Option<i64>, default: usize, limit: usize) -> Result<usize, EcrError> {
    match max {
        None => Ok(default),
        Some(n) if n >= 1 && (n as u64) <= limit as u64 => Ok(n as usize),
        Some(_) => Err(EcrError::invalid(format!(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'must be between 1 and {limit}'"
        ))),
    }
}

fn decode_token(token: Option<&str>) -> Result<Option<String>, EcrError> {
    let Some(t) = token else { return Ok(None) };
    let invalid = || {
        EcrError::invalid(
            "Invalid parameter at 'nextToken' failed to satisfy constraint: 'invalid token'",
        )
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(t.as_bytes())
        .map_err(|_| invalid())?;
    String::from_utf8(bytes).map(Some).map_err(|_| invalid())
}

fn encode_token(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(last.as_bytes())
}

/// Takes one page from `items` (sorted by key) after the token's key.
fn page<T>(
    items: Vec<(String, T)>,
    token: Option<String>,
    size: usize,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<(String, T)> = match token {
        Some(t) => items.into_iter().filter(|(k, _)| *k > t).collect(),
        None => items,
    };
    let next = if rest.len() > size {
        rest.truncate(size);
        rest.last().map(|(k, _)| encode_token(k))
    } else {
        None
    };
    (rest.into_iter().map(|(_, v)| v).collect(), next)
}

fn validate_tags(tags: &[ResourceTag]) -> Result<(), EcrError> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(EcrError::new(
                "InvalidTagParameterException",
                "The tag key or value is invalid: keys must be 1 to 128 characters, values at most 256.",
            ));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(EcrError::new(
                "InvalidTagParameterException",
                "The 'aws:' prefix is reserved and cannot be used in a tag key.",
            ));
        }
    }
    Ok(())
}

fn merge_tags(existing: &mut Vec<ResourceTag>, new: &[ResourceTag]) -> Result<(), EcrError> {
    for t in new {
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = t.value.clone(),
            None => existing.push(t.clone()),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(EcrError::new(
            "TooManyTagsException",
            format!("A repository can have at most {MAX_TAGS} tags."),
        ));
    }
    Ok(())
}

const MUTABILITIES: &[&str] = &[
    "MUTABLE",
    "IMMUTABLE",
    "IMMUTABLE_WITH_EXCLUSION",
    "MUTABLE_WITH_EXCLUSION",
];

fn validate_mutability(m: &str, filters: &[ExclusionFilter]) -> Result<(), EcrError> {
    if !MUTABILITIES.contains(&m) {
        return Err(EcrError::invalid(format!(
            "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [{}]'",
            MUTABILITIES.join(", ")
        )));
    }
    let wants_filters = m.ends_with("_WITH_EXCLUSION");
    if wants_filters && filters.is_empty() {
        return Err(EcrError::invalid(
            "imageTagMutabilityExclusionFilters must be specified with an _WITH_EXCLUSION tag mutability.",
        ));
    }
    if !wants_filters && !filters.is_empty() {
        return Err(EcrError::invalid(
            "imageTagMutabilityExclusionFilters can only be specified with an _WITH_EXCLUSION tag mutability.",
        ));
    }
    if filters.len() > 5 {
        return Err(EcrError::invalid(
            "At most 5 imageTagMutabilityExclusionFilters are allowed.",
        ));
    }
    for f in filters {
        let ok = f.filter_type == "WILDCARD"
            && !f.filter.is_empty()
            && f.filter.len() <= 128
            && f.filter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b));
        if !ok {
            return Err(EcrError::invalid(format!(
                "Invalid imageTagMutabilityExclusionFilter '{}'",
                f.filter
            )));
        }
    }
    Ok(())
}

/// Checks a repository policy the way ECR does: a JSON policy document
/// whose statements each have an Effect, a principal and actions.
fn validate_policy(text: &str) -> Result<(), EcrError> {
    let invalid = || {
        EcrError::invalid(
            "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'",
        )
    };
    let doc: Value = serde_json::from_str(text).map_err(|_| invalid())?;
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => return Err(invalid()),
    };
    for s in &statements {
        let effect_ok = matches!(
            s.get("Effect").and_then(Value::as_str),
            Some("Allow" | "Deny")
        );
        let principal = s.get("Principal").is_some() || s.get("NotPrincipal").is_some();
        let action = s.get("Action").is_some() || s.get("NotAction").is_some();
        if !(effect_ok && principal && action) {
            return Err(invalid());
        }
    }
    Ok(())
}

/// `lastEvaluatedAt` of Get/DeleteLifecyclePolicy. ECR always returns the
/// member; before the policy's first evaluation its value is the epoch
/// (0), so a client reading it (the CLI prints it) never finds it missing.
fn last_evaluated(at: Option<f64>) -> f64 {
    at.unwrap_or(0.0)
}

fn epoch(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Registry {
    /// Serves one ECR operation.
    pub fn ecr(&self, operation: &str, body: &[u8], caller: &Caller) -> Result<Vec<u8>, EcrError> {
        let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|_| {
                EcrError::new(
                    "SerializationException",
                    "Start of structure or map found where not expected.",
                )
            })?
        };
        if !input.is_object() {
            return Err(EcrError::new(
                "SerializationException",
                "Request body must be a JSON object.",
            ));
        }
        if let Some(answer) = self.foreign_registry(operation, &input)? {
            return serde_json::to_vec(&answer)
                .map_err(|_| EcrError::server("internal error encoding the response"));
        }
        let out = match operation {
            "GetAuthorizationToken" => self.get_authorization_token(caller),
            "CreateRepository" => self.create_repository(input),
            "DescribeRepositories" => self.describe_repositories(input),
            "DeleteRepository" => self.delete_repository(input),
            "ListImages" => self.list_images(input),
            "DescribeImages" => self.describe_images(input),
            "BatchGetImage" => self.batch_get_image(input),
            "BatchDeleteImage" => self.batch_delete_image(input),
            "PutImage" => self.put_image(input),
            "BatchCheckLayerAvailability" => self.batch_check_layer_availability(input),
            "InitiateLayerUpload" => self.initiate_layer_upload(input),
            "UploadLayerPart" => self.upload_layer_part(input),
            "CompleteLayerUpload" => self.complete_layer_upload(input),
            "GetDownloadUrlForLayer" => self.get_download_url_for_layer(input, caller),
            "PutImageTagMutability" => self.put_image_tag_mutability(input),
            "PutImageScanningConfiguration" => self.put_image_scanning_configuration(input),
            "SetRepositoryPolicy" => self.set_repository_policy(input),
            "GetRepositoryPolicy" => self.get_repository_policy(input),
            "DeleteRepositoryPolicy" => self.delete_repository_policy(input),
            "TagResource" => self.tag_resource(input),
            "UntagResource" => self.untag_resource(input),
            "ListTagsForResource" => self.list_tags_for_resource(input),
            "DescribeRegistry" => Ok(json!({
                "registryId": self.registry_id(),
                "replicationConfiguration": { "rules": [] },
            })),
            "PutLifecyclePolicy" => self.put_lifecycle_policy(input),
            "GetLifecyclePolicy" => self.get_lifecycle_policy(input),
            "DeleteLifecyclePolicy" => self.delete_lifecycle_policy(input),
            "StartLifecyclePolicyPreview" => self.start_lifecycle_policy_preview(input),
            "GetLifecyclePolicyPreview" => self.get_lifecycle_policy_preview(input),
            other => Err(EcrError::new(
                "UnknownOperationException",
                format!("Unknown operation {other}"),
            )),
        }?;
        serde_json::to_vec(&out)
            .map_err(|_| EcrError::server("internal error encoding the response"))
    }

    /// Checks the request's `registryId` once for every operation whose
    /// input has that member: a malformed id is refused, this registry's id
    /// (or none) goes on to the operation, and another account's id is
    /// answered here so no operation ever returns this registry's data for
    /// it. Berth serves one account, so another account's registry holds no
    /// repository visible to the caller, and ECR's answer for a repository
    /// it cannot see is RepositoryNotFoundException naming the registry
    /// asked for; DescribeRepositories without names lists what is visible,
    /// which is nothing. Creating a repository is only possible in the
    /// caller's own registry, so CreateRepository refuses the parameter.
    fn foreign_registry(&self, operation: &str, input: &Value) -> Result<Option<Value>, EcrError> {
        if !REGISTRY_ID_OPERATIONS.contains(&operation) {
            return Ok(None);
        }
        let id = match input.get("registryId") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(id)) => id.as_str(),
            Some(_) => {
                return Err(EcrError::new(
                    "SerializationException",
                    "Unable to parse the request: registryId must be a string",
                ))
            }
        };
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'registryId' failed to satisfy constraint: 'must satisfy regular expression '[0-9]{{12}}'' (got '{id}')"
            )));
        }
        if id == self.registry_id() {
            return Ok(None);
        }
        match operation {
            "CreateRepository" => Err(EcrError::invalid(format!(
                "Invalid parameter at 'registryId' failed to satisfy constraint: 'a repository can only be created in the registry of the caller's account {}' (got '{id}')",
                self.registry_id()
            ))),
            "DescribeRepositories" => match input.get("repositoryNames") {
                Some(Value::Array(names)) if !names.is_empty() => {
                    let first = names.first().and_then(Value::as_str).unwrap_or_default();
                    Err(not_found(first, id))
                }
                _ => Ok(Some(json!({ "repositories": [] }))),
            },
            _ => {
                let name = input
                    .get("repositoryName")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let name = self.repo_name(name)?;
                Err(not_found(&name, id))
            }
        }
    }

    /// Maps a core failure to ECR's error for repository `repo`.
    fn ecr_err(&self, repo: &str, err: RegistryError) -> EcrError {
        let reg = self.registry_id();
        match err {
            RegistryError::RepositoryNotFound(name) => not_found(&name, reg),
            RegistryError::Ecr(e) => e,
            RegistryError::ImageNotFound => image_not_found(&ImageId::default(), repo, reg),
            RegistryError::ManifestInvalid(m) => EcrError::invalid(format!(
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: '{m}'"
            )),
            RegistryError::BlobsUnknown(d) => EcrError::new(
                "LayersNotFoundException",
                format!(
                    "Layers with digests '[{}]' required for pushing image into repository with name '{repo}' in the registry with id '{reg}' do not exist",
                    d.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            ),
            RegistryError::ManifestsUnknown(d) => EcrError::new(
                "ReferencedImagesNotFoundException",
                format!(
                    "Manifests with digests '[{}]' referenced by the manifest list do not exist in the repository with name '{repo}' in the registry with id '{reg}'",
                    d.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            ),
            RegistryError::DigestMismatch { expected, actual } => EcrError::new(
                "ImageDigestDoesNotMatchException",
                format!("The digest '{expected}' does not match the digest '{actual}' of the image manifest."),
            ),
            RegistryError::TagImmutable { tag, repository } => EcrError::new(
                "ImageTagAlreadyExistsException",
                format!("The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable."),
            ),
            RegistryError::UploadNotFound(id) => EcrError::new(
                "UploadNotFoundException",
                format!("Upload with id '{id}' does not exist for repository with name '{repo}' in registry with id '{reg}'"),
            ),
            RegistryError::UploadOffset { expected, got } => EcrError::new(
                "InvalidLayerPartException",
                format!("The part's first byte {got} does not follow the last byte received; expected {expected}."),
            ),
            RegistryError::DigestInvalid(m) => EcrError::invalid(m),
            RegistryError::BlobSizeMismatch {
                digest,
                declared,
                actual,
            } => EcrError::invalid(format!(
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'the size {declared} given for {digest} does not match the size {actual} of the content it names'"
            )),
            RegistryError::StorageFull(err) => {
                tracing::error!(error = %err, repository = %repo, "registry storage is full");
                EcrError::server(crate::error::STORAGE_FULL_MESSAGE)
            }
            other => {
                tracing::error!(error = %other, repository = %repo, "registry failure");
                EcrError::server("An internal error occurred.")
            }
        }
    }

    fn repo_name(&self, name: Option<String>) -> Result<String, EcrError> {
        let name = name.ok_or_else(|| {
            EcrError::invalid("Invalid parameter at 'repositoryName' failed to satisfy constraint: 'Member must not be null'")
        })?;
        if !manifest::valid_repository_name(&name) {
            return Err(EcrError::invalid(format!(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*'' (got '{name}')"
            )));
        }
        Ok(name)
    }

    fn existing_repo(&self, name: Option<String>) -> Result<(String, RepoRecord), EcrError> {
        let name = self.repo_name(name)?;
        let rec = self.repository(&name).map_err(|e| self.ecr_err(&name, e))?;
        Ok((name, rec))
    }

    fn repo_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:ecr:{}:{}:repository/{name}",
            self.config.region, self.config.account_id
        )
    }

    fn repo_json(&self, r: &RepoRecord) -> Value {
        let mut enc = json!({ "encryptionType": r.encryption_type });
        if let Some(k) = &r.kms_key {
            enc["kmsKey"] = json!(k);
        }
        let mut v = json!({
            "repositoryArn": self.repo_arn(&r.name),
            "registryId": self.registry_id(),
            "repositoryName": r.name,
            "repositoryUri": format!("{}/{}", self.config.endpoint, r.name),
            "createdAt": r.created_at,
            "imageTagMutability": r.image_tag_mutability,
            "imageScanningConfiguration": { "scanOnPush": r.scan_on_push },
            "encryptionConfiguration": enc,
        });
        if !r.mutability_exclusions.is_empty() {
            v["imageTagMutabilityExclusionFilters"] = json!(r.mutability_exclusions);
        }
        v
    }

    /// Read-modify-write of a repository record.
    fn update_repo<T, F>(&self, name: &str, mut change: F) -> Result<T, EcrError>
    where
        F: FnMut(&mut RepoRecord) -> Result<T, EcrError>,
    {
        let key = keys::repo(name);
        let store = self.store.as_ref();
        transact(store, || {
            let cur = read::<RepoRecord>(store, &key)?;
            let Some(mut rec) = cur.value.clone() else {
                return Err(RegistryError::RepositoryNotFound(name.to_string()));
            };
            let out = change(&mut rec).map_err(RegistryError::Ecr)?;
            Ok(Step::Commit(
                vec![cur.guard(&key)],
                vec![state::put_op(key.clone(), &rec)?],
                out,
            ))
        })
        .map_err(|e| self.ecr_err(name, e))
    }

    fn get_authorization_token(&self, caller: &Caller) -> Out {
        let minted = token::mint(
            self.token_key(),
            &caller.access_key_id,
            self.clock.now_millis(),
        )
        .map_err(|_| EcrError::server("could not mint a token"))?;
        Ok(json!({
            "authorizationData": [{
                "authorizationToken": STANDARD.encode(format!("AWS:{}", minted.token)),
                "expiresAt": epoch(minted.expires_at_ms),
                "proxyEndpoint": format!("http://{}", self.config.endpoint),
            }]
        }))
    }

    fn create_repository(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            #[serde(default)]
            tags: Vec<ResourceTag>,
            image_tag_mutability: Option<String>,
            #[serde(default)]
            image_tag_mutability_exclusion_filters: Vec<ExclusionFilter>,
            image_scanning_configuration: Option<Scanning>,
            encryption_configuration: Option<Encryption>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Scanning {
            scan_on_push: Option<bool>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Encryption {
            encryption_type: Option<String>,
            kms_key: Option<String>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_name(req.repository_name)?;
        let mutability = req.image_tag_mutability.unwrap_or_else(|| "MUTABLE".into());
        validate_mutability(&mutability, &req.image_tag_mutability_exclusion_filters)?;
        validate_tags(&req.tags)?;
        let mut tags = Vec::new();
        merge_tags(&mut tags, &req.tags)?;
        let (encryption_type, kms_key) = match req.encryption_configuration {
            None => ("AES256".to_string(), None),
            Some(e) => {
                let t = e.encryption_type.ok_or_else(|| {
                    EcrError::invalid("Invalid parameter at 'encryptionType' failed to satisfy constraint: 'Member must not be null'")
                })?;
                match (t.as_str(), e.kms_key) {
                    ("AES256", Some(_)) => {
                        return Err(EcrError::invalid(
                            "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: 'KMS key should not be specified for AES256 encryption type'",
                        ))
                    }
                    ("AES256", None) => (t, None),
                    ("KMS" | "KMS_DSSE", key) => {
                        let key = key.unwrap_or_else(|| {
                            format!(
                                "arn:aws:kms:{}:{}:alias/aws/ecr",
                                self.config.region, self.config.account_id
                            )
                        });
                        (t, Some(key))
                    }
                    _ => {
                        return Err(EcrError::invalid(
                            "Invalid parameter at 'encryptionType' failed to satisfy constraint: 'Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]'",
                        ))
                    }
                }
            }
        };
        let rec = RepoRecord {
            name: name.clone(),
            created_at: self.now_epoch(),
            image_tag_mutability: mutability,
            mutability_exclusions: req.image_tag_mutability_exclusion_filters,
            scan_on_push: req
                .image_scanning_configuration
                .and_then(|s| s.scan_on_push)
                .unwrap_or(false),
            encryption_type,
            kms_key,
            tags,
            policy: None,
            lifecycle_policy: None,
            lifecycle_evaluated_at: None,
            lifecycle_preview: None,
        };
        let key = keys::repo(&name);
        let store = self.store.as_ref();
        let created = transact(store, || {
            if store.get(&key)?.is_some() {
                return Ok(Step::Done(false));
            }
            Ok(Step::Commit(
                vec![Compare::Missing { key: key.clone() }],
                vec![state::put_op(key.clone(), &rec)?],
                true,
            ))
        })
        .map_err(|e| self.ecr_err(&name, e))?;
        if !created {
            return Err(EcrError::new(
                "RepositoryAlreadyExistsException",
                format!(
                    "The repository with name '{name}' already exists in the registry with id '{}'",
                    self.registry_id()
                ),
            ));
        }
        tracing::info!(repository = %name, "repository created");
        Ok(json!({ "repository": self.repo_json(&rec) }))
    }

    fn describe_repositories(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_names: Option<Vec<String>>,
            next_token: Option<String>,
            max_results: Option<i64>,
        }
        let req: Req = parse(input)?;
        if let Some(names) = req.repository_names {
            if req.next_token.is_some() || req.max_results.is_some() {
                return Err(EcrError::invalid(
                    "Invalid parameter: repositoryNames cannot be combined with maxResults or nextToken",
                ));
            }
            if names.is_empty() || names.len() > 100 {
                return Err(EcrError::invalid(
                    "Invalid parameter at 'repositoryNames' failed to satisfy constraint: 'Member must have length between 1 and 100'",
                ));
            }
            let mut out = Vec::new();
            for n in names {
                let (_, rec) = self.existing_repo(Some(n))?;
                out.push(self.repo_json(&rec));
            }
            return Ok(json!({ "repositories": out }));
        }
        let size = page_size(req.max_results, 100, 1000)?;
        let start = decode_token(req.next_token.as_deref())?;
        if start.as_ref().is_some_and(|s| !s.starts_with(keys::REPOS)) {
            return Err(EcrError::invalid(
                "Invalid parameter at 'nextToken' failed to satisfy constraint: 'invalid token'",
            ));
        }
        let kvs = state::scan_after(self.store.as_ref(), keys::REPOS, start, size + 1)
            .map_err(|e| self.ecr_err("", e))?;
        let more = kvs.len() > size;
        let mut repos = Vec::new();
        let mut last = None;
        for kv in kvs.iter().take(size) {
            let rec: RepoRecord = state::decode(kv).map_err(|e| self.ecr_err("", e))?;
            repos.push(self.repo_json(&rec));
            last = Some(kv.key.clone());
        }
        let mut out = json!({ "repositories": repos });
        if let (true, Some(l)) = (more, last) {
            out["nextToken"] = json!(encode_token(&l));
        }
        Ok(out)
    }

    fn delete_repository(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            force: Option<bool>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_name(req.repository_name)?;
        let force = req.force.unwrap_or(false);
        let store = self.store.as_ref();
        let key = keys::repo(&name);
        let epoch_key = keys::repo_epoch(&name);
        let rec = transact(store, || {
            let cur = read::<RepoRecord>(store, &key)?;
            let Some(rec) = cur.value.clone() else {
                return Err(RegistryError::RepositoryNotFound(name.clone()));
            };
            let epoch = read::<f64>(store, &epoch_key)?;
            if !force && !state::scan_after(store, &keys::images(&name), None, 1)?.is_empty() {
                return Err(RegistryError::Ecr(EcrError::new(
                    "RepositoryNotEmptyException",
                    format!(
                        "The repository with name '{name}' in registry with id '{}' cannot be deleted because it still contains images",
                        self.registry_id()
                    ),
                )));
            }
            let ops = vec![
                Op::Delete { key: key.clone() },
                Op::Delete { key: epoch_key.clone() },
                Op::DeletePrefix { prefix: keys::images(&name) },
                Op::DeletePrefix { prefix: keys::tags(&name) },
                Op::DeletePrefix { prefix: keys::layers(&name) },
            ];
            Ok(Step::Commit(
                vec![cur.guard(&key), epoch.guard(&epoch_key)],
                ops,
                rec,
            ))
        })
        .map_err(|e| self.ecr_err(&name, e))?;
        tracing::info!(repository = %name, force, "repository deleted");
        Ok(json!({ "repository": self.repo_json(&rec) }))
    }

    fn tag_status(filter: Option<Value>) -> Result<String, EcrError> {
        let status = filter
            .as_ref()
            .and_then(|f| f.get("tagStatus"))
            .and_then(Value::as_str)
            .unwrap_or("ANY")
            .to_string();
        if !["TAGGED", "UNTAGGED", "ANY"].contains(&status.as_str()) {
            return Err(EcrError::invalid(
                "Invalid parameter at 'filter.tagStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]'",
            ));
        }
        Ok(status)
    }

    /// Images of a repository with their tags, in digest order.
    fn images_with_tags(&self, repo: &str) -> Result<Vec<(ImageRecord, Vec<String>)>, EcrError> {
        let images = self.images(repo).map_err(|e| self.ecr_err(repo, e))?;
        let tags = self.tags(repo).map_err(|e| self.ecr_err(repo, e))?;
        Ok(images
            .into_iter()
            .map(|img| {
                let t: Vec<String> = tags
                    .iter()
                    .filter(|(_, r)| r.digest == img.digest)
                    .map(|(n, _)| n.clone())
                    .collect();
                (img, t)
            })
            .collect())
    }

    fn list_images(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            next_token: Option<String>,
            max_results: Option<i64>,
            filter: Option<Value>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let status = Self::tag_status(req.filter)?;
        let size = page_size(req.max_results, 100, 1000)?;
        let token = decode_token(req.next_token.as_deref())?;
        let mut entries = Vec::new();
        for (img, tags) in self.images_with_tags(&name)? {
            if tags.is_empty() {
                if status != "TAGGED" {
                    entries.push((
                        format!("{}\t", img.digest),
                        json!({ "imageDigest": img.digest }),
                    ));
                }
            } else if status != "UNTAGGED" {
                for t in tags {
                    entries.push((
                        format!("{}\t{t}", img.digest),
                        json!({ "imageDigest": img.digest, "imageTag": t }),
                    ));
                }
            }
        }
        let (ids, next) = page(entries, token, size);
        let mut out = json!({ "imageIds": ids });
        if let Some(n) = next {
            out["nextToken"] = json!(n);
        }
        Ok(out)
    }

    fn image_detail(&self, repo: &str, img: &ImageRecord, tags: &[String]) -> Value {
        let mut v = json!({
            "registryId": self.registry_id(),
            "repositoryName": repo,
            "imageDigest": img.digest,
            "imageSizeInBytes": img.size,
            "imagePushedAt": img.pushed_at,
            "imageManifestMediaType": img.media_type,
            "imageStatus": "ACTIVE",
        });
        if !tags.is_empty() {
            v["imageTags"] = json!(tags);
        }
        if let Some(a) = &img.artifact_type {
            v["artifactMediaType"] = json!(a);
        }
        if let Some(p) = img.last_pull {
            v["lastRecordedPullTime"] = json!(p);
        }
        if let Some(s) = &img.subject {
            v["subjectManifestDigest"] = json!(s);
        }
        v
    }

    /// Resolves an image id to its record, checking that a tag and a
    /// digest given together agree.
    fn resolve_id(&self, repo: &str, id: &ImageId) -> Result<Option<ImageRecord>, &'static str> {
        match (&id.image_digest, &id.image_tag) {
            (None, None) => Err("MissingDigestAndTag"),
            (Some(d), tag) => {
                if d.parse::<Digest>().is_err() {
                    return Err("InvalidImageDigest");
                }
                let img = self.resolve(repo, d).ok();
                if let (Some(t), Some(i)) = (tag, &img) {
                    match self.resolve(repo, t) {
                        Ok(by_tag) if by_tag.digest == i.digest => {}
                        Ok(_) => return Err("ImageTagDoesNotMatchDigest"),
                        Err(_) => return Ok(None),
                    }
                }
                Ok(img)
            }
            (None, Some(t)) => {
                if !manifest::valid_tag(t) {
                    return Err("InvalidImageTag");
                }
                Ok(self.resolve(repo, t).ok())
            }
        }
    }

    fn describe_images(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            image_ids: Option<Vec<ImageId>>,
            next_token: Option<String>,
            max_results: Option<i64>,
            filter: Option<Value>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let status = Self::tag_status(req.filter)?;
        let all = self.images_with_tags(&name)?;
        if let Some(ids) = req.image_ids {
            if req.next_token.is_some() || req.max_results.is_some() {
                return Err(EcrError::invalid(
                    "Invalid parameter: imageIds cannot be combined with maxResults or nextToken",
                ));
            }
            let mut out = Vec::new();
            for id in &ids {
                let img = match self.resolve_id(&name, id) {
                    Ok(Some(img)) => img,
                    Ok(None) => return Err(image_not_found(id, &name, self.registry_id())),
                    Err(code) => {
                        return Err(EcrError::invalid(format!(
                            "Invalid parameter at 'imageIds': {code}"
                        )))
                    }
                };
                if out
                    .iter()
                    .any(|v: &Value| v["imageDigest"] == json!(img.digest))
                {
                    continue;
                }
                let tags = all
                    .iter()
                    .find(|(i, _)| i.digest == img.digest)
                    .map(|(_, t)| t.clone())
                    .unwrap_or_default();
                out.push(self.image_detail(&name, &img, &tags));
            }
            return Ok(json!({ "imageDetails": out }));
        }
        let size = page_size(req.max_results, 100, 1000)?;
        let token = decode_token(req.next_token.as_deref())?;
        let entries: Vec<(String, Value)> = all
            .iter()
            .filter(|(_, tags)| match status.as_str() {
                "TAGGED" => !tags.is_empty(),
                "UNTAGGED" => tags.is_empty(),
                _ => true,
            })
            .map(|(img, tags)| (img.digest.clone(), self.image_detail(&name, img, tags)))
            .collect();
        let (details, next) = page(entries, token, size);
        let mut out = json!({ "imageDetails": details });
        if let Some(n) = next {
            out["nextToken"] = json!(n);
        }
        Ok(out)
    }

    fn batch_get_image(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            image_ids: Option<Vec<ImageId>>,
            accepted_media_types: Option<Vec<String>>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let ids = req.image_ids.unwrap_or_default();
        if ids.is_empty() || ids.len() > 100 {
            return Err(EcrError::invalid(
                "Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length between 1 and 100'",
            ));
        }
        let mut images = Vec::new();
        let mut failures = Vec::new();
        for id in &ids {
            match self.resolve_id(&name, id) {
                Ok(Some(img)) => {
                    if let Some(accepted) = &req.accepted_media_types {
                        if !accepted.contains(&img.media_type) {
                            failures.push(json!({
                                "imageId": id.to_json(),
                                "failureCode": "UnsupportedImageType",
                                "failureReason": "Image's manifest media type is not in the accepted media types",
                            }));
                            continue;
                        }
                    }
                    if let Err(e) = self.record_pull(&name, &img.digest) {
                        tracing::warn!(error = %e, "could not record a pull");
                    }
                    let mut image_id = json!({ "imageDigest": img.digest });
                    if let Some(t) = &id.image_tag {
                        image_id["imageTag"] = json!(t);
                    }
                    images.push(json!({
                        "registryId": self.registry_id(),
                        "repositoryName": name,
                        "imageId": image_id,
                        "imageManifest": img.manifest,
                        "imageManifestMediaType": img.media_type,
                    }));
                }
                Ok(None) => failures.push(json!({
                    "imageId": id.to_json(),
                    "failureCode": "ImageNotFound",
                    "failureReason": "Requested image not found",
                })),
                Err(code) => failures.push(json!({
                    "imageId": id.to_json(),
                    "failureCode": code,
                    "failureReason": code,
                })),
            }
        }
        Ok(json!({ "images": images, "failures": failures }))
    }

    fn batch_delete_image(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            image_ids: Option<Vec<ImageId>>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let ids = req.image_ids.unwrap_or_default();
        if ids.is_empty() || ids.len() > 100 {
            return Err(EcrError::invalid(
                "Invalid parameter at 'imageIds' failed to satisfy constraint: 'Member must have length between 1 and 100'",
            ));
        }
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        for id in &ids {
            let not_found = |failures: &mut Vec<Value>| {
                failures.push(json!({
                    "imageId": id.to_json(),
                    "failureCode": "ImageNotFound",
                    "failureReason": "Requested image not found",
                }))
            };
            match self.resolve_id(&name, id) {
                Ok(Some(img)) => {
                    let result = match (&id.image_digest, &id.image_tag) {
                        (None, Some(tag)) => self.delete_tag(&name, tag).and_then(|digest| {
                            // The last tag going takes the image with it.
                            let still_tagged =
                                self.tags(&name)?.iter().any(|(_, t)| t.digest == digest);
                            if !still_tagged {
                                match self.delete_image(&name, &digest) {
                                    Ok(_) | Err(RegistryError::ImageNotFound) => {}
                                    Err(e) => return Err(e),
                                }
                            }
                            Ok(vec![json!({ "imageDigest": digest, "imageTag": tag })])
                        }),
                        _ => self.delete_image(&name, &img.digest).map(|tags| {
                            if tags.is_empty() {
                                vec![json!({ "imageDigest": img.digest })]
                            } else {
                                tags.iter()
                                    .map(|t| json!({ "imageDigest": img.digest, "imageTag": t }))
                                    .collect()
                            }
                        }),
                    };
                    match result {
                        Ok(ids) => deleted.extend(ids),
                        Err(RegistryError::ImageNotFound) => not_found(&mut failures),
                        Err(e) => return Err(self.ecr_err(&name, e)),
                    }
                }
                Ok(None) => not_found(&mut failures),
                Err(code) => failures.push(json!({
                    "imageId": id.to_json(),
                    "failureCode": code,
                    "failureReason": code,
                })),
            }
        }
        Ok(json!({ "imageIds": deleted, "failures": failures }))
    }

    fn put_image(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            image_manifest: Option<String>,
            image_manifest_media_type: Option<String>,
            image_tag: Option<String>,
            image_digest: Option<String>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let manifest_text = req.image_manifest.filter(|m| !m.is_empty()).ok_or_else(|| {
            EcrError::invalid("Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Member must not be null'")
        })?;
        if let Some(t) = &req.image_tag {
            if !manifest::valid_tag(t) {
                return Err(EcrError::invalid(format!(
                    "Invalid parameter at 'imageTag' failed to satisfy constraint: 'Invalid image tag {t}'"
                )));
            }
        }
        let expected = match &req.image_digest {
            Some(d) => Some(d.parse::<Digest>().map_err(|_| {
                EcrError::invalid(format!("Invalid parameter at 'imageDigest' failed to satisfy constraint: 'Invalid digest {d}'"))
            })?),
            None => None,
        };
        let pushed = self
            .put_manifest(
                &name,
                manifest_text.as_bytes(),
                req.image_manifest_media_type.as_deref(),
                req.image_tag.as_deref(),
                expected.as_ref(),
            )
            .map_err(|e| self.ecr_err(&name, e))?;
        if pushed.unchanged {
            return Err(EcrError::new(
                "ImageAlreadyExistsException",
                format!(
                    "Image with digest '{}' and tag '{}' already exists in the repository with name '{name}' in registry with id '{}'",
                    pushed.digest,
                    req.image_tag.as_deref().unwrap_or("null"),
                    self.registry_id()
                ),
            ));
        }
        let mut image_id = json!({ "imageDigest": pushed.digest.to_string() });
        if let Some(t) = &req.image_tag {
            image_id["imageTag"] = json!(t);
        }
        Ok(json!({
            "image": {
                "registryId": self.registry_id(),
                "repositoryName": name,
                "imageId": image_id,
                "imageManifest": manifest_text,
                "imageManifestMediaType": pushed.parsed.media_type,
            }
        }))
    }

    fn batch_check_layer_availability(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            layer_digests: Option<Vec<String>>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let digests = req.layer_digests.unwrap_or_default();
        if digests.is_empty() || digests.len() > 100 {
            return Err(EcrError::invalid(
                "Invalid parameter at 'layerDigests' failed to satisfy constraint: 'Member must have length between 1 and 100'",
            ));
        }
        let mut layers = Vec::new();
        let mut failures = Vec::new();
        for d in digests {
            let Ok(digest) = d.parse::<Digest>() else {
                failures.push(json!({
                    "layerDigest": d,
                    "failureCode": "InvalidLayerDigest",
                    "failureReason": "Invalid layer digest",
                }));
                continue;
            };
            match self
                .blob_available(&name, &digest)
                .map_err(|e| self.ecr_err(&name, e))?
            {
                Some(size) => layers.push(json!({
                    "layerDigest": d,
                    "layerAvailability": "AVAILABLE",
                    "layerSize": size,
                    "mediaType": LAYER_MEDIA_TYPE,
                })),
                _ => failures.push(json!({
                    "layerDigest": d,
                    "failureCode": "MissingLayerDigest",
                    "failureReason": "Could not find layer",
                })),
            }
        }
        Ok(json!({ "layers": layers, "failures": failures }))
    }

    fn initiate_layer_upload(&self, input: Value) -> Out {
        let req: RepoReq = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let id = self
            .uploads
            .start(&self.blobs, &name, self.clock.now_millis())
            .map_err(|e| self.ecr_err(&name, e))?;
        Ok(json!({ "uploadId": id, "partSize": MAX_LAYER_PART }))
    }

    fn upload_layer_part(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            upload_id: Option<String>,
            part_first_byte: Option<u64>,
            part_last_byte: Option<u64>,
            layer_part_blob: Option<String>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let id = req.upload_id.unwrap_or_default();
        let blob = STANDARD
            .decode(req.layer_part_blob.unwrap_or_default().as_bytes())
            .map_err(|_| {
                EcrError::new(
                    "SerializationException",
                    "layerPartBlob is not valid base64",
                )
            })?;
        if blob.len() > MAX_LAYER_PART {
            return Err(EcrError::invalid(
                "Invalid parameter at 'layerPartBlob' failed to satisfy constraint: 'Member must have length less than or equal to 20971520'",
            ));
        }
        let (first, last) = match (req.part_first_byte, req.part_last_byte) {
            (Some(f), Some(l)) => (f, l),
            _ => {
                return Err(EcrError::invalid(
                    "partFirstByte and partLastByte are required",
                ))
            }
        };
        let handle = self
            .uploads
            .get(&id, &name)
            .map_err(|e| self.ecr_err(&name, e))?;
        let mut upload = handle.blocking_lock();
        if first != upload.offset || blob.is_empty() || last != first + blob.len() as u64 - 1 {
            return Err(EcrError::new(
                "InvalidLayerPartException",
                format!(
                    "The layer part's byte range {first}-{last} does not continue the upload at byte {} with {} bytes",
                    upload.offset,
                    blob.len()
                ),
            ));
        }
        let offset = upload
            .append_bytes(&blob, self.clock.now_millis())
            .map_err(|e| self.ecr_err(&name, e))?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": name,
            "uploadId": id,
            "lastByteReceived": offset.saturating_sub(1),
        }))
    }

    fn complete_layer_upload(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            upload_id: Option<String>,
            layer_digests: Option<Vec<String>>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let id = req.upload_id.unwrap_or_default();
        let digests = req.layer_digests.unwrap_or_default();
        let [digest_s] = digests.as_slice() else {
            return Err(EcrError::invalid("Exactly one layer digest must be given."));
        };
        let digest: Digest = digest_s.parse().map_err(|_| {
            EcrError::new(
                "InvalidLayerException",
                format!("Invalid layer digest '{digest_s}'"),
            )
        })?;
        let handle = self
            .uploads
            .get(&id, &name)
            .map_err(|e| self.ecr_err(&name, e))?;
        let upload = handle.blocking_lock();
        if upload.offset == 0 {
            drop(upload);
            self.uploads.cancel(&id);
            return Err(EcrError::new(
                "EmptyUploadException",
                format!("The upload with id '{id}' does not contain any layer parts."),
            ));
        }
        if self
            .layer(&name, &digest)
            .map_err(|e| self.ecr_err(&name, e))?
            .is_some()
            && self.blobs.size(&digest).is_some()
        {
            drop(upload);
            self.uploads.cancel(&id);
            return Err(EcrError::new(
                "LayerAlreadyExistsException",
                format!(
                    "The layer with digest '{digest}' already exists in the repository with name '{name}' in registry with id '{}'",
                    self.registry_id()
                ),
            ));
        }
        let finished = self.commit_blob(
            &name,
            upload.path(),
            &upload.digest(),
            &digest,
            upload.offset,
        );
        drop(upload);
        self.uploads.cancel(&id);
        match finished {
            Ok(()) => {}
            Err(RegistryError::DigestMismatch { actual, .. }) => {
                return Err(EcrError::new(
                    "InvalidLayerException",
                    format!("The calculated digest '{actual}' of the uploaded layer does not match the digest '{digest}' given."),
                ))
            }
            Err(e) => return Err(self.ecr_err(&name, e)),
        }
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": name,
            "uploadId": id,
            "layerDigest": digest.to_string(),
        }))
    }

    fn get_download_url_for_layer(&self, input: Value, caller: &Caller) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            layer_digest: Option<String>,
        }
        let req: Req = parse(input)?;
        let (name, _) = self.existing_repo(req.repository_name)?;
        let d = req.layer_digest.unwrap_or_default();
        let missing = || {
            EcrError::new(
                "LayersNotFoundException",
                format!(
                    "The specified layer '{d}' does not exist in the repository with name '{name}' in the registry with id '{}'",
                    self.registry_id()
                ),
            )
        };
        let digest: Digest = d.parse().map_err(|_| {
            EcrError::invalid(format!("Invalid parameter at 'layerDigest' failed to satisfy constraint: 'Invalid digest {d}'"))
        })?;
        if self
            .layer(&name, &digest)
            .map_err(|e| self.ecr_err(&name, e))?
            .is_none()
        {
            return Err(missing());
        }
        let tok = token::mint(
            self.token_key(),
            &caller.access_key_id,
            self.clock.now_millis(),
        )
        .map_err(|_| EcrError::server("could not mint a token"))?
        .token;
        Ok(json!({
            "downloadUrl": format!(
                "http://{}/v2/{name}/blobs/{digest}?{}={tok}",
                self.config.endpoint,
                crate::oci::DOWNLOAD_TOKEN_PARAM
            ),
            "layerDigest": digest.to_string(),
        }))
    }

    fn put_image_tag_mutability(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            image_tag_mutability: Option<String>,
            #[serde(default)]
            image_tag_mutability_exclusion_filters: Vec<ExclusionFilter>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_name(req.repository_name)?;
        let m = req.image_tag_mutability.unwrap_or_default();
        validate_mutability(&m, &req.image_tag_mutability_exclusion_filters)?;
        let filters = req.image_tag_mutability_exclusion_filters;
        let rec = self.update_repo(&name, |r| {
            r.image_tag_mutability = m.clone();
            r.mutability_exclusions = filters.clone();
            Ok(r.clone())
        })?;
        let mut out = json!({
            "registryId": self.registry_id(),
            "repositoryName": name,
            "imageTagMutability": rec.image_tag_mutability,
        });
        if !rec.mutability_exclusions.is_empty() {
            out["imageTagMutabilityExclusionFilters"] = json!(rec.mutability_exclusions);
        }
        Ok(out)
    }

    fn put_image_scanning_configuration(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            image_scanning_configuration: Option<Value>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_name(req.repository_name)?;
        let scan = req
            .image_scanning_configuration
            .as_ref()
            .and_then(|c| c.get("scanOnPush"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.update_repo(&name, |r| {
            r.scan_on_push = scan;
            Ok(())
        })?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": name,
            "imageScanningConfiguration": { "scanOnPush": scan },
        }))
    }

    fn set_repository_policy(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            policy_text: Option<String>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_name(req.repository_name)?;
        let text = req.policy_text.unwrap_or_default();
        if text.len() > 10240 {
            return Err(EcrError::invalid(
                "Invalid parameter at 'policyText' failed to satisfy constraint: 'Member must have length less than or equal to 10240'",
            ));
        }
        validate_policy(&text)?;
        self.update_repo(&name, |r| {
            r.policy = Some(text.clone());
            Ok(())
        })?;
        Ok(json!({ "registryId": self.registry_id(), "repositoryName": name, "policyText": text }))
    }

    fn policy_missing(&self, name: &str) -> EcrError {
        EcrError::new(
            "RepositoryPolicyNotFoundException",
            format!(
                "Repository policy does not exist for the repository with name '{name}' in the registry with id '{}'",
                self.registry_id()
            ),
        )
    }

    fn get_repository_policy(&self, input: Value) -> Out {
        let req: RepoReq = parse(input)?;
        let (name, rec) = self.existing_repo(req.repository_name)?;
        let text = rec.policy.ok_or_else(|| self.policy_missing(&name))?;
        Ok(json!({ "registryId": self.registry_id(), "repositoryName": name, "policyText": text }))
    }

    fn delete_repository_policy(&self, input: Value) -> Out {
        let req: RepoReq = parse(input)?;
        let name = self.repo_name(req.repository_name)?;
        let text = self.update_repo(&name, |r| {
            r.policy.take().ok_or_else(|| self.policy_missing(&r.name))
        })?;
        Ok(json!({ "registryId": self.registry_id(), "repositoryName": name, "policyText": text }))
    }

    /// The repository an ECR ARN names.
    fn repo_from_arn(&self, arn: Option<String>) -> Result<String, EcrError> {
        let arn = arn.unwrap_or_default();
        let prefix = format!(
            "arn:aws:ecr:{}:{}:repository/",
            self.config.region, self.config.account_id
        );
        match arn.strip_prefix(&prefix) {
            Some(name) if manifest::valid_repository_name(name) => Ok(name.to_string()),
            _ => Err(EcrError::invalid(format!(
                "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN {arn}'"
            ))),
        }
    }

    fn tag_resource(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            resource_arn: Option<String>,
            tags: Option<Vec<ResourceTag>>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_from_arn(req.resource_arn)?;
        let tags = req.tags.unwrap_or_default();
        validate_tags(&tags)?;
        self.update_repo(&name, |r| merge_tags(&mut r.tags, &tags))?;
        Ok(json!({}))
    }

    fn untag_resource(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            resource_arn: Option<String>,
            tag_keys: Option<Vec<String>>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_from_arn(req.resource_arn)?;
        let keys = req.tag_keys.unwrap_or_default();
        self.update_repo(&name, |r| {
            r.tags.retain(|t| !keys.contains(&t.key));
            Ok(())
        })?;
        Ok(json!({}))
    }

    fn list_tags_for_resource(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            resource_arn: Option<String>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_from_arn(req.resource_arn)?;
        let rec = self.repository(&name).map_err(|e| self.ecr_err(&name, e))?;
        Ok(json!({ "tags": rec.tags }))
    }

    fn lifecycle_missing(&self, name: &str) -> EcrError {
        EcrError::new(
            "LifecyclePolicyNotFoundException",
            format!(
                "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{}'",
                self.registry_id()
            ),
        )
    }

    fn put_lifecycle_policy(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            lifecycle_policy_text: Option<String>,
        }
        let req: Req = parse(input)?;
        let name = self.repo_name(req.repository_name)?;
        let text = req.lifecycle_policy_text.unwrap_or_default();
        lifecycle::parse_policy(&text).map_err(|e| {
            EcrError::invalid(format!(
                "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {e}'"
            ))
        })?;
        self.update_repo(&name, |r| {
            r.lifecycle_policy = Some(text.clone());
            Ok(())
        })?;
        Ok(
            json!({ "registryId": self.registry_id(), "repositoryName": name, "lifecyclePolicyText": text }),
        )
    }

    fn get_lifecycle_policy(&self, input: Value) -> Out {
        let req: RepoReq = parse(input)?;
        let (name, rec) = self.existing_repo(req.repository_name)?;
        let text = rec
            .lifecycle_policy
            .ok_or_else(|| self.lifecycle_missing(&name))?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": name,
            "lifecyclePolicyText": text,
            "lastEvaluatedAt": last_evaluated(rec.lifecycle_evaluated_at),
        }))
    }

    fn delete_lifecycle_policy(&self, input: Value) -> Out {
        let req: RepoReq = parse(input)?;
        let name = self.repo_name(req.repository_name)?;
        let (text, evaluated) = self.update_repo(&name, |r| {
            let t = r
                .lifecycle_policy
                .take()
                .ok_or_else(|| self.lifecycle_missing(&r.name))?;
            Ok((t, r.lifecycle_evaluated_at))
        })?;
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": name,
            "lifecyclePolicyText": text,
            "lastEvaluatedAt": last_evaluated(evaluated),
        }))
    }

    /// What `policy_text` would expire in `repo` now.
    fn lifecycle_results(
        &self,
        repo: &str,
        policy_text: &str,
    ) -> Result<Vec<PreviewResult>, EcrError> {
        let policy = lifecycle::parse_policy(policy_text).map_err(|e| {
            EcrError::invalid(format!(
                "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {e}'"
            ))
        })?;
        let images = self.images_with_tags(repo)?;
        let candidates = lifecycle_candidates(&images);
        let expired = lifecycle::evaluate(&policy, &candidates, self.now_epoch());
        Ok(expired
            .into_iter()
            .filter_map(|e| {
                let c = candidates.iter().find(|c| c.digest == e.digest)?;
                Some(PreviewResult {
                    digest: e.digest,
                    tags: c.tags.clone(),
                    pushed_at: c.pushed_at,
                    rule_priority: e.rule_priority,
                })
            })
            .collect())
    }

    fn start_lifecycle_policy_preview(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            lifecycle_policy_text: Option<String>,
        }
        let req: Req = parse(input)?;
        let (name, rec) = self.existing_repo(req.repository_name)?;
        let text = req
            .lifecycle_policy_text
            .or(rec.lifecycle_policy)
            .ok_or_else(|| self.lifecycle_missing(&name))?;
        let results = self.lifecycle_results(&name, &text)?;
        let preview = LifecyclePreview {
            policy_text: text.clone(),
            results,
        };
        self.update_repo(&name, |r| {
            r.lifecycle_preview = Some(preview.clone());
            Ok(())
        })?;
        // ECR answers IN_PROGRESS and completes later; Berth computes the
        // preview at once, so the next GetLifecyclePolicyPreview is COMPLETE.
        Ok(json!({
            "registryId": self.registry_id(),
            "repositoryName": name,
            "lifecyclePolicyText": text,
            "status": "IN_PROGRESS",
        }))
    }

    fn get_lifecycle_policy_preview(&self, input: Value) -> Out {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Req {
            repository_name: Option<String>,
            image_ids: Option<Vec<ImageId>>,
            next_token: Option<String>,
            max_results: Option<i64>,
            filter: Option<Value>,
        }
        let req: Req = parse(input)?;
        let (name, rec) = self.existing_repo(req.repository_name)?;
        let preview = rec.lifecycle_preview.ok_or_else(|| {
            EcrError::new(
                "LifecyclePolicyPreviewNotFoundException",
                format!(
                    "There is no dry run for the repository with name '{name}' in the registry with id '{}'",
                    self.registry_id()
                ),
            )
        })?;
        let status = Self::tag_status(req.filter)?;
        let size = page_size(req.max_results, 100, 100)?;
        let token = decode_token(req.next_token.as_deref())?;
        let total = preview.results.len();
        let entries: Vec<(String, Value)> = preview
            .results
            .iter()
            .filter(|r| match status.as_str() {
                "TAGGED" => !r.tags.is_empty(),
                "UNTAGGED" => r.tags.is_empty(),
                _ => true,
            })
            .filter(|r| {
                req.image_ids.as_ref().is_none_or(|ids| {
                    ids.iter().any(|id| {
                        id.image_digest.as_deref() == Some(r.digest.as_str())
                            || id.image_tag.as_ref().is_some_and(|t| r.tags.contains(t))
                    })
                })
            })
            .map(|r| {
                let mut v = json!({
                    "imageDigest": r.digest,
                    "imagePushedAt": r.pushed_at,
                    "action": { "type": "EXPIRE" },
                    "appliedRulePriority": r.rule_priority,
                    "storageClass": "STANDARD",
                });
                if !r.tags.is_empty() {
                    v["imageTags"] = json!(r.tags);
                }
                (format!("{:010}\t{}", r.rule_priority, r.digest), v)
            })
            .collect();
        let mut entries = entries;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let (results, next) = page(entries, token, size);
        let mut out = json!({
            "registryId": self.registry_id(),
            "repositoryName": name,
            "lifecyclePolicyText": preview.policy_text,
            "status": "COMPLETE",
            "previewResults": results,
            "summary": { "expiringImageTotalCount": total },
        });
        if let Some(n) = next {
            out["nextToken"] = json!(n);
        }
        Ok(out)
    }

    /// Applies every repository's lifecycle policy now: expires what it
    /// selects and records the evaluation time. Returns how many images
    /// went. Images an index of the repository names are kept, so an
    /// index never loses a child.
    pub fn enforce_lifecycle(&self) -> Result<usize, RegistryError> {
        let mut expired_total = 0;
        for kv in state::scan(self.store.as_ref(), keys::REPOS)? {
            let rec: RepoRecord = state::decode(&kv)?;
            let Some(text) = rec.lifecycle_policy.clone() else {
                continue;
            };
            let Ok(policy) = lifecycle::parse_policy(&text) else {
                tracing::warn!(repository = %rec.name, "stored lifecycle policy no longer parses");
                continue;
            };
            let images = self
                .images_with_tags(&rec.name)
                .map_err(RegistryError::Ecr)?;
            let referenced: Vec<&str> = images
                .iter()
                .flat_map(|(i, _)| i.children.iter().map(String::as_str))
                .collect();
            let candidates = lifecycle_candidates(&images);
            for e in lifecycle::evaluate(&policy, &candidates, self.now_epoch()) {
                if referenced.contains(&e.digest.as_str()) {
                    continue;
                }
                match self.delete_image(&rec.name, &e.digest) {
                    Ok(_) => {
                        expired_total += 1;
                        tracing::info!(repository = %rec.name, digest = %e.digest, rule = e.rule_priority, "image expired by lifecycle policy");
                    }
                    Err(RegistryError::ImageNotFound) => {}
                    Err(err) => return Err(err),
                }
            }
            let now = self.now_epoch();
            match self.update_repo(&rec.name, |r| {
                r.lifecycle_evaluated_at = Some(now);
                Ok(())
            }) {
                Ok(()) => {}
                Err(e) if e.code == "RepositoryNotFoundException" => {}
                Err(e) => return Err(RegistryError::Ecr(e)),
            }
        }
        Ok(expired_total)
    }
}

fn lifecycle_candidates(images: &[(ImageRecord, Vec<String>)]) -> Vec<lifecycle::Candidate> {
    images
        .iter()
        .map(|(img, tags)| lifecycle::Candidate {
            digest: img.digest.clone(),
            tags: tags.clone(),
            pushed_at: img.pushed_at,
        })
        .collect()
}

/// Runs lifecycle enforcement every `every`, on its own, until the
/// runtime stops.
pub fn spawn_lifecycle_enforcement(
    registry: std::sync::Arc<Registry>,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let reg = registry.clone();
            match tokio::task::spawn_blocking(move || reg.enforce_lifecycle()).await {
                Ok(Ok(n)) => tracing::debug!(expired = n, "lifecycle policies enforced"),
                Ok(Err(err)) => tracing::warn!(error = %err, "lifecycle enforcement failed"),
                Err(err) => tracing::error!(error = %err, "lifecycle enforcement task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert!(validate_policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"}]}"#).is_ok());
        assert!(validate_policy("{}").is_err());
        assert!(validate_policy("not json").is_err());
        assert!(validate_policy(
            r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"x"}]}"#
        )
        .is_err());
    }

    #[test]
    fn paging() {
        let items: Vec<(String, i32)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
        let (p, next) = page(items.clone(), None, 2);
        assert_eq!(p, vec![0, 1]);
        let t = decode_token(next.as_deref()).ok().flatten();
        let (p, next) = page(items.clone(), t, 2);
        assert_eq!(p, vec![2, 3]);
        let t = decode_token(next.as_deref()).ok().flatten();
        let (p, next) = page(items, t, 2);
        assert_eq!(p, vec![4]);
        assert!(next.is_none());
    }
}

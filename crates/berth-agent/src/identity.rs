//! The agent's own credentials.
//!
//! An agent starts with a bootstrap key (an account key from its
//! environment). Registering with it makes the control plane issue the
//! instance a key of its own (the `berthAgentCredentials` member of the
//! response); the agent keeps it in `<data-dir>/agent-credentials.json`,
//! mode 0600, and signs everything with it from then on, so its calls are
//! limited to its own instance and tasks. On a restart it re-registers with
//! the saved key; if that key was revoked (the instance deregistered, or
//! registered again by someone else) it falls back to the bootstrap key and
//! gets a new one.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use berth_client::{CallError, EcsClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The response member that carries a newly issued key.
const ISSUED_MEMBER: &str = "berthAgentCredentials";

/// An access key pair.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .finish()
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent-credentials.json")
}

/// The saved key, if there is one that parses.
pub fn load(data_dir: &Path) -> Option<AgentKey> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Saves `key` durably, readable by the agent's user only: written to a
/// temporary file created with mode 0600, synced, renamed into place.
pub fn save(data_dir: &Path, key: &AgentKey) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)?;
    let target = path(data_dir);
    let tmp = data_dir.join("agent-credentials.json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let text = serde_json::to_vec(key).map_err(std::io::Error::other)?;
    file.write_all(&text)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The key a registration response issued, if any.
pub fn issued(response: &Value) -> Option<AgentKey> {
    serde_json::from_value(response.get(ISSUED_MEMBER)?.clone()).ok()
}

/// Whether a refusal means "this key is not (or no longer) good here".
fn key_refused(err: &CallError) -> bool {
    matches!(
        err.code(),
        Some("UnrecognizedClientException" | "AccessDeniedException" | "InvalidSignatureException")
    )
}

/// Registers the instance (`body` is the RegisterContainerInstance request)
/// and returns the response and the client to use from then on: one signing
/// with the instance's own key.
///
/// With a saved key and a known ARN it re-registers with that key; if the
/// key is refused, with `bootstrap`; if the earlier registration is gone,
/// anew without the ARN.
pub async fn register(
    bootstrap: &EcsClient,
    data_dir: &Path,
    mut body: Value,
) -> Result<(EcsClient, Value), RegisterError> {
    const OP: &str = "RegisterContainerInstance";
    let has_arn = body.get("containerInstanceArn").is_some();
    if let (Some(saved), true) = (load(data_dir), has_arn) {
        let own = bootstrap.with_credentials(&saved.access_key_id, &saved.secret_access_key);
        match own.call(OP, &body).await {
            Ok(resp) => return Ok((own, resp)),
            Err(err) if key_refused(&err) => {
                tracing::info!(access_key_id = %saved.access_key_id, error = %err, "saved agent key refused; registering with the bootstrap key");
            }
            Err(CallError::Api { ref code, .. }) if code == "InvalidParameterException" => {
                // The earlier registration is gone; the bootstrap key
                // registers anew below.
            }
            Err(err) => return Err(RegisterError::Call(err)),
        }
    }
    let resp = match bootstrap.call(OP, &body).await {
        Ok(r) => r,
        Err(CallError::Api { ref code, .. }) if code == "InvalidParameterException" && has_arn => {
            // The earlier registration is gone: register anew.
            if let Some(obj) = body.as_object_mut() {
                obj.remove("containerInstanceArn");
            }
            bootstrap
                .call(OP, &body)
                .await
                .map_err(RegisterError::Call)?
        }
        Err(err) => return Err(RegisterError::Call(err)),
    };
    match issued(&resp) {
        Some(key) => {
            save(data_dir, &key).map_err(|e| RegisterError::Save(e.to_string()))?;
            let own = bootstrap.with_credentials(&key.access_key_id, &key.secret_access_key);
            tracing::info!(access_key_id = %key.access_key_id, "agent key issued and saved");
            Ok((own, resp))
        }
        // A control plane that issues no keys: keep the bootstrap key.
        None => Ok((bootstrap.clone(), resp)),
    }
}

/// Why [`register`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{0}")]
    Call(CallError),
    #[error("saving the agent key: {0}")]
    Save(String),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn saved_key_round_trips_with_mode_0600_in_a_0700_dir() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("berth-identity-{}-{nanos}", std::process::id()));
        let data = dir.join("agent");
        let key = AgentKey {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
        };
        save(&data, &key).unwrap();
        assert_eq!(load(&data), Some(key));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path(&data)), 0o600);
        assert_eq!(mode(&data), 0o700);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn issued_key_is_read_from_the_response() {
        let resp = serde_json::json!({"containerInstance": {}, "berthAgentCredentials": {"accessKeyId": "AKIAX", "secretAccessKey": "s"}});
        assert_eq!(issued(&resp).map(|k| k.access_key_id), Some("AKIAX".into()));
        assert_eq!(issued(&serde_json::json!({"containerInstance": {}})), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = AgentKey {
            access_key_id: "AKIAX".into(),
            secret_access_key: "topsecret".into(),
        };
        assert!(!format!("{key:?}").contains("topsecret"));
    }
}

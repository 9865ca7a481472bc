//! Access keys the edge accepts. The root pair comes from
//! `BERTH_ROOT_ACCESS_KEY_ID` / `BERTH_ROOT_SECRET_ACCESS_KEY` when both are
//! set; otherwise it is read from, or generated once into,
//! `<data-dir>/credentials` (mode 0600, AWS shared credentials format,
//! profile `berth`).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use berth_control::{ControlPlane, InstanceScope};
use rand::distributions::{Alphanumeric, DistString as _};
use rand::Rng as _;

pub const ENV_ACCESS_KEY: &str = "BERTH_ROOT_ACCESS_KEY_ID";
pub const ENV_SECRET_KEY: &str = "BERTH_ROOT_SECRET_ACCESS_KEY";
pub const PROFILE: &str = "berth";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Where the root credentials came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

impl RootCredentials {
    /// A fresh random pair in AWS's shapes (20-character key id starting
    /// `AKIA`, 40-character secret).
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let upper: String = (0..16)
            .map(|_| {
                let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
                chars[rng.gen_range(0..chars.len())] as char
            })
            .collect();
        Self {
            access_key_id: format!("AKIA{upper}"),
            secret_access_key: Alphanumeric.sample_string(&mut rng, 40),
        }
    }

    /// Environment first, then the credentials file, else a new pair
    /// written to the file.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(Self, Source)> {
        let env_key = std::env::var(ENV_ACCESS_KEY).ok().filter(|v| !v.is_empty());
        let env_secret = std::env::var(ENV_SECRET_KEY).ok().filter(|v| !v.is_empty());
        match (env_key, env_secret) {
            (Some(access_key_id), Some(secret_access_key)) => {
                return Ok((
                    Self {
                        access_key_id,
                        secret_access_key,
                    },
                    Source::Environment,
                ))
            }
            (None, None) => {}
            _ => bail!("set both {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, or neither"),
        }
        let path = data_dir.join("credentials");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let creds = parse_profile(&text, PROFILE).with_context(|| {
                format!(
                    "no [{PROFILE}] profile with both keys in {}",
                    path.display()
                )
            })?;
            return Ok((creds, Source::File(path)));
        }
        let creds = Self::generate();
        creds.write_file(&path)?;
        Ok((creds, Source::Generated(path)))
    }

    /// Writes the pair as profile `berth`, mode 0600, atomically.
    pub fn write_file(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path
            .parent()
            .context("credentials path has no parent directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        write!(
            file,
            "[{PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key_id, self.secret_access_key
        )?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// Reads one profile from AWS shared-credentials text.
pub fn parse_profile(text: &str, profile: &str) -> Option<RootCredentials> {
    let mut in_profile = false;
    let mut key = None;
    let mut secret = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            in_profile = line[1..line.len() - 1].trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => key = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    Some(RootCredentials {
        access_key_id: key?,
        secret_access_key: secret?,
    })
}

/// One accepted key: its secret and the principal it authenticates as.
#[derive(Clone)]
pub struct KeyEntry {
    pub secret_access_key: String,
    pub principal_arn: String,
    /// For a container instance's agent key: the one instance it acts for.
    pub instance: Option<InstanceScope>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("secret_access_key", &"** redacted **")
            .field("principal_arn", &self.principal_arn)
            .field("instance", &self.instance)
            .finish()
    }
}

/// Every access key the edge accepts: the root keys, and the agent keys
/// the control plane issued to container instances (looked up in the
/// store on each request, so a revoked key stops working at once and every
/// server sees the same keys).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    keys: HashMap<String, KeyEntry>,
    agents: Option<ControlPlane>,
}

impl Credentials {
    /// Only the root pair, as the account's root principal.
    pub fn with_root(root: &RootCredentials, account_id: &str) -> Self {
        let mut keys = HashMap::new();
        keys.insert(
            root.access_key_id.clone(),
            KeyEntry {
                secret_access_key: root.secret_access_key.clone(),
                principal_arn: format!("arn:aws:iam::{account_id}:root"),
                instance: None,
            },
        );
        Self { keys, agents: None }
    }

    /// Also accepts the agent keys `control` issued.
    pub fn with_agent_keys(mut self, control: ControlPlane) -> Self {
        self.agents = Some(control);
        self
    }

    /// The instance an agent key acts for; `None` for account keys (found
    /// without a copy) and unknown ones.
    pub fn instance_scope(&self, access_key_id: &str) -> Option<InstanceScope> {
        if self.keys.contains_key(access_key_id) {
            return None;
        }
        Some(self.agents.as_ref()?.agent_key(access_key_id)?.scope)
    }

    pub fn get(&self, access_key_id: &str) -> Option<KeyEntry> {
        if let Some(k) = self.keys.get(access_key_id) {
            return Some(k.clone());
        }
        let key = self.agents.as_ref()?.agent_key(access_key_id)?;
        Some(KeyEntry {
            secret_access_key: key.secret_access_key,
            principal_arn: key.scope.instance_arn.clone(),
            instance: Some(key.scope),
        })
    }
}

/// Registry tokens are honoured while the key that got them is accepted;
/// an agent key's tokens only pull.
impl berth_registry::AccessKeys for Credentials {
    fn is_active(&self, access_key_id: &str) -> bool {
        self.get(access_key_id).is_some()
    }

    fn may_push(&self, access_key_id: &str) -> bool {
        self.get(access_key_id)
            .is_some_and(|k| k.instance.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_file_round_trips_with_mode_0600() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("credentials");
        let creds = RootCredentials::generate();
        assert!(creds.access_key_id.starts_with("AKIA") && creds.access_key_id.len() == 20);
        assert_eq!(creds.secret_access_key.len(), 40);
        creds.write_file(&path)?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(parse_profile(&text, PROFILE), Some(creds));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        Ok(())
    }

    #[test]
    fn parses_only_the_named_profile() {
        let text = "[default]\naws_access_key_id=A\naws_secret_access_key=B\n[berth]\naws_access_key_id = C\naws_secret_access_key = D\n";
        let c = parse_profile(text, "berth");
        assert_eq!(c.map(|c| c.access_key_id), Some("C".to_string()));
        assert!(parse_profile("[berth]\naws_access_key_id=x\n", "berth").is_none());
    }
}

//! Container instances' own credentials, and what they may do.
//!
//! Registering a container instance with an account key (a human's, or the
//! bootstrap key an agent starts with) issues the instance an access key
//! of its own, returned once in the response under
//! [`AGENT_CREDENTIALS_MEMBER`] and stored under `ecs/agent-key/<id>` in the
//! same transaction as the instance. Registering again with an account key
//! replaces it (the old key stops working at once); deregistering deletes
//! it. The agent stores the pair and signs everything with it from then on.
//!
//! A request signed with an agent key acts only as that instance's agent:
//! [`authorize`] lets through the calls an agent makes (re-registration,
//! task and container state changes, the task listing and descriptions of
//! its own tasks, the task definitions they run, the poll endpoint and the
//! channel), each only for its own instance and its own tasks, and refuses
//! everything else with `AccessDeniedException`. A forged state change for
//! another host's task is therefore refused before it is applied.

use berth_model::{ApiError, ErrorCode};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clusters::resolve_name;
use crate::state::{self, scan};
use crate::tasks::StoredTask;
use crate::{keys, Caller, ControlPlane, Cx, InstanceScope};

/// The response member of RegisterContainerInstance that carries a newly
/// issued agent key (not in the ECS model; AWS clients ignore it).
pub const AGENT_CREDENTIALS_MEMBER: &str = "berthAgentCredentials";

/// An agent key as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredAgentKey {
    pub secret_access_key: String,
    pub cluster: String,
    pub instance_id: String,
    pub instance_arn: String,
    pub created_at: f64,
}

/// A newly issued key pair, as the registration response carries it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IssuedKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .finish()
    }
}

/// What the edge needs to verify a request signed with an agent key.
#[derive(Clone)]
pub struct AgentKey {
    pub secret_access_key: String,
    pub scope: InstanceScope,
}

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentKey")
            .field("secret_access_key", &"** redacted **")
            .field("scope", &self.scope)
            .finish()
    }
}

/// A fresh pair in AWS's shapes: a 20-character id starting `AKIA` and a
/// 40-character secret, from the operating system's generator (a secret
/// must not be replayable from a seed).
pub(crate) fn generate() -> IssuedKey {
    let mut rng = rand::rngs::OsRng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id: String = (0..16)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    IssuedKey {
        access_key_id: format!("AKIA{id}"),
        secret_access_key: Alphanumeric.sample_string(&mut rng, 40),
    }
}

impl ControlPlane {
    /// The agent key `access_key_id`, if it exists (a store error counts
    /// as unknown: the request is refused, never let through).
    pub fn agent_key(&self, access_key_id: &str) -> Option<AgentKey> {
        match state::get::<StoredAgentKey>(
            self.inner.store.as_ref(),
            &keys::agent_key(access_key_id),
        ) {
            Ok(Some(k)) => Some(AgentKey {
                secret_access_key: k.value.secret_access_key,
                scope: InstanceScope {
                    cluster: k.value.cluster,
                    instance_id: k.value.instance_id,
                    instance_arn: k.value.instance_arn,
                },
            }),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err.message, "agent key lookup failed");
                None
            }
        }
    }

    /// Whether `caller` may open the agent channel of `instance_arn` in
    /// `cluster`: account keys may, an agent key only for its own instance.
    pub fn authorize_channel(
        &self,
        caller: &Caller,
        cluster: &str,
        instance_arn: &str,
    ) -> Result<(), ApiError> {
        let Some(scope) = &caller.instance else {
            return Ok(());
        };
        let cx = self.cx(caller);
        if same_cluster(&cx, scope, Some(cluster)) && same_instance(scope, instance_arn) {
            Ok(())
        } else {
            Err(denied(caller, "ecs:Poll", instance_arn))
        }
    }

    /// [`authorize`] for calls the edge answers itself (DiscoverPollEndpoint).
    pub fn authorize_agent_call(
        &self,
        operation: &str,
        body: &[u8],
        caller: &Caller,
    ) -> Result<(), ApiError> {
        match &caller.instance {
            Some(scope) => authorize(&self.cx(caller), scope, operation, body),
            None => Ok(()),
        }
    }
}

fn denied(caller: &Caller, action: &str, resource: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AccessDeniedException,
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} because \
             a container instance's agent key may act only for its own instance and tasks",
            caller.principal_arn
        ),
    )
}

fn same_cluster(cx: &Cx<'_>, scope: &InstanceScope, reference: Option<&str>) -> bool {
    resolve_name(cx, reference).is_ok_and(|name| name == scope.cluster)
}

/// Whether `reference` (an instance ARN or id) names the scope's instance.
fn same_instance(scope: &InstanceScope, reference: &str) -> bool {
    reference == scope.instance_arn || reference.rsplit('/').next() == Some(&scope.instance_id)
}

/// Whether the task `reference` (ARN or id) in the scope's cluster runs
/// elsewhere. A task that does not exist is not elsewhere: the operation
/// itself reports it missing, which tells nothing about other hosts.
fn task_elsewhere(cx: &Cx<'_>, scope: &InstanceScope, reference: &str) -> Result<bool, ApiError> {
    let id = reference.rsplit('/').next().unwrap_or(reference);
    Ok(
        match state::get::<StoredTask>(cx.store(), &keys::task(&scope.cluster, id))? {
            Some(t) => t.value.instance_id != scope.instance_id,
            None => false,
        },
    )
}

/// Whether a task on the scope's instance runs `task_definition_arn`.
fn runs_task_definition(
    cx: &Cx<'_>,
    scope: &InstanceScope,
    task_definition_arn: &str,
) -> Result<bool, ApiError> {
    let runs = |t: &StoredTask| {
        t.instance_id == scope.instance_id
            && t.task.task_definition_arn.as_deref() == Some(task_definition_arn)
    };
    if let Some(tasks) = cx.task_index().cluster(&scope.cluster) {
        return Ok(tasks.iter().any(|t| runs(t)));
    }
    for kv in scan(cx.store(), &keys::tasks(&scope.cluster))? {
        let t: StoredTask = state::decode(&kv)?;
        if runs(&t) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks a call signed with the agent key of `scope` (see the module
/// documentation). Runs before the operation parses its request, so it
/// reads the members it needs from the raw document; a document that does
/// not parse is left to the operation to refuse.
pub(crate) fn authorize(
    cx: &Cx<'_>,
    scope: &InstanceScope,
    operation: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |name: &str| doc.get(name).and_then(Value::as_str);
    let action = format!("ecs:{operation}");
    let deny = |resource: &str| Err(denied(cx.caller(), &action, resource));
    let cluster_ok = same_cluster(cx, scope, text("cluster"));
    match operation {
        "RegisterContainerInstance" => match text("containerInstanceArn") {
            Some(arn) if cluster_ok && same_instance(scope, arn) => Ok(()),
            Some(arn) => deny(arn),
            // A new registration is an account's act, not an agent's.
            None => deny(&scope.instance_arn),
        },
        "DiscoverPollEndpoint" => match text("containerInstance") {
            Some(i) if !same_instance(scope, i) => deny(i),
            _ if text("cluster").is_some() && !cluster_ok => deny(text("cluster").unwrap_or("")),
            _ => Ok(()),
        },
        "ListTasks" => match text("containerInstance") {
            Some(i) if cluster_ok && same_instance(scope, i) => Ok(()),
            other => deny(other.unwrap_or(&scope.instance_arn)),
        },
        "DescribeTasks" => {
            if !cluster_ok {
                return deny(text("cluster").unwrap_or("default"));
            }
            let refs = doc.get("tasks").and_then(Value::as_array);
            for r in refs.into_iter().flatten().filter_map(Value::as_str) {
                if task_elsewhere(cx, scope, r)? {
                    return deny(r);
                }
            }
            Ok(())
        }
        "SubmitTaskStateChange" | "SubmitContainerStateChange" => {
            if !cluster_ok {
                return deny(text("cluster").unwrap_or("default"));
            }
            match text("task") {
                Some(t) if task_elsewhere(cx, scope, t)? => deny(t),
                _ => Ok(()),
            }
        }
        "SubmitAttachmentStateChanges" if cluster_ok => Ok(()),
        "DescribeTaskDefinition" => match text("taskDefinition") {
            Some(td) if runs_task_definition(cx, scope, td)? => Ok(()),
            other => deny(other.unwrap_or("")),
        },
        _ => deny(&scope.instance_arn),
    }
}

//! The agent channel: the frames exchanged over the persistent websocket
//! between `berth agent` and the control plane.
//!
//! Every frame is `{"type": "...", "message": {...}}`, the framing of the
//! ECS agent's channels. Tasks flow down as whole task documents stamped
//! with the store revision that wrote them (`Task::version`), so the agent
//! can keep the newest copy of each and a repeated or reordered payload is
//! harmless. State changes flow up as the request documents of
//! SubmitTaskStateChange and SubmitContainerStateChange, each with a
//! message id that the control plane acknowledges once the change is
//! durable; applying one twice changes nothing, since reported states only
//! move forward.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::task::Task;

/// The path of the channel on the edge listener, as ECS's `/ws`.
pub const PATH: &str = "/ws";

/// One websocket text message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "message")]
pub enum Frame {
    /// Down: tasks placed on the instance. With `full`, the whole set of
    /// the instance's unfinished tasks, replacing what the agent held.
    PayloadMessage(Payload),
    /// Down: the control plane is alive; the agent answers `HeartbeatAck`.
    HeartbeatMessage(MessageRef),
    /// Down: a state change with this id is durable.
    StateChangeAck(MessageRef),
    /// Down: a state change with this id was refused.
    ErrorMessage(ErrorBody),
    /// Up: a payload with this id was received.
    AckRequest(MessageRef),
    /// Up: answer to a heartbeat.
    HeartbeatAck(MessageRef),
    /// Up: a SubmitTaskStateChange request document.
    TaskStateChange(StateChange),
    /// Up: a SubmitContainerStateChange request document.
    ContainerStateChange(StateChange),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub message_id: String,
    pub cluster_arn: String,
    pub container_instance_arn: String,
    #[serde(default)]
    pub full: bool,
    pub tasks: Vec<Task>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    pub message_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub message_id: String,
    pub error_type: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange {
    pub message_id: String,
    pub body: Value,
}

impl Frame {
    pub fn to_text(&self) -> String {
        // Serializing these plain data types to a string cannot fail: every
        // map key is a string and no custom serializer can error.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_text(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_use_the_type_and_message_envelope() {
        let f = Frame::HeartbeatMessage(MessageRef {
            message_id: "m1".into(),
        });
        let v: Option<Value> = serde_json::from_str(&f.to_text()).ok();
        assert_eq!(
            v,
            Some(json!({"type": "HeartbeatMessage", "message": {"messageId": "m1"}}))
        );
        assert_eq!(Frame::from_text(&f.to_text()).ok(), Some(f));
    }

    #[test]
    fn payloads_round_trip_with_task_versions() {
        let task = Task {
            task_arn: Some("arn:aws:ecs:us-east-1:000000000000:task/c/abc".into()),
            version: Some(42),
            ..Task::default()
        };
        let f = Frame::PayloadMessage(Payload {
            message_id: "p".into(),
            cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/c".into(),
            container_instance_arn: "arn:aws:ecs:us-east-1:000000000000:container-instance/c/i"
                .into(),
            full: true,
            tasks: vec![task],
        });
        assert_eq!(Frame::from_text(&f.to_text()).ok(), Some(f));
    }

    #[test]
    fn unknown_frames_are_errors_not_panics() {
        assert!(Frame::from_text(r#"{"type":"Nope","message":{}}"#).is_err());
        assert!(Frame::from_text("not json").is_err());
    }
}

//! The agent channel on the edge: a SigV4-authenticated websocket at `/ws`
//! (`?clusterArn=...&containerInstanceArn=...`), as the ECS agent's
//! channel. Frames are those of [`berth_model::channel`].
//!
//! A session sends the instance's unfinished tasks first, then every new
//! version of them as the store records it; it sends a heartbeat every
//! [`ChannelSettings::heartbeat`] and applies the agent's state changes
//! through the same control-plane operations as the API, acknowledging
//! each once it is durable. Any frame from the agent counts as being heard
//! from. A payload left unacknowledged for three heartbeats closes the
//! connection: the agent reconnects and gets a full snapshot again, so a
//! lost payload costs a reconnect, never a forgotten task.
//!
//! An instance has one channel: opening another ends the older one (the
//! control plane ends its session, and this loop closes the socket with
//! the reason). Every queue of a channel is bounded: the session's updates
//! (ended when the channel falls that far behind), the worker's state
//! changes and replies (`WORK_QUEUE`; past it the socket is not read
//! until the worker catches up) and the payloads awaiting acknowledgement
//! (`MAX_UNACKED`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use berth_control::{AgentSession, Caller};
use berth_model::channel::{ErrorBody, Frame, MessageRef, Payload, StateChange};
use berth_model::task::Task;
use berth_model::ApiError;
use tokio::sync::mpsc;

use crate::{auth, wire, Edge};

/// State changes a channel queues for its worker (and replies the worker
/// queues for the agent) before it stops reading the socket.
const WORK_QUEUE: usize = 64;

/// Payloads a channel keeps waiting for acknowledgement before it gives
/// up on the agent (it reconnects for a full snapshot).
const MAX_UNACKED: usize = 1024;

/// Timing of agent channels.
#[derive(Clone, Copy, Debug)]
pub struct ChannelSettings {
    /// How often the control plane sends a heartbeat down each channel.
    pub heartbeat: Duration,
    /// How long an agent may stay silent (no frame at all, not even a
    /// heartbeat acknowledgement) before its channel is closed, so that a
    /// partitioned agent whose TCP connection lingers is found lost like
    /// one whose connection dropped. The liveness timeout.
    pub silence: Duration,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            silence: Duration::from_secs(30),
        }
    }
}

pub(crate) async fn handle(
    State(edge): State<Arc<Edge>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let caller = match edge.auth.authenticate(
        "GET",
        &uri,
        &headers,
        b"",
        Some("ecs"),
        auth::Protocol::Json,
    ) {
        Ok(c) => c,
        Err(err) => return wire::json_error(&err, &request_id),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            let err = ApiError::invalid_parameter(format!(
                "the agent channel needs a websocket upgrade: {rejection}"
            ));
            return wire::json_error(&err, &request_id);
        }
    };
    let mut cluster = None;
    let mut instance = None;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "clusterArn" => cluster = Some(v.into_owned()),
            "containerInstanceArn" => instance = Some(v.into_owned()),
            _ => {}
        }
    }
    let (Some(cluster), Some(instance)) = (cluster, instance) else {
        let err = ApiError::invalid_parameter(
            "the agent channel needs clusterArn and containerInstanceArn query parameters",
        );
        return wire::json_error(&err, &request_id);
    };
    let control = edge.control.clone();
    let opener = caller.clone();
    let opened = tokio::task::spawn_blocking(move || {
        control.open_agent_session(&opener, &cluster, &instance)
    })
    .await
    .unwrap_or_else(|err| {
        tracing::error!(error = %err, "channel open task failed");
        Err(ApiError::server("internal error"))
    });
    let session = match opened {
        Ok(s) => s,
        Err(err) => return wire::json_error(&err, &request_id),
    };
    // Small buffers: frames are a few KiB, thousands of agents hold a
    // channel each, and tungstenite zeroes the whole read buffer on every
    // read (128 KiB by default).
    upgrade
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(socket, edge, caller, session))
        .into_response()
}

struct Conn {
    socket: WebSocket,
    prefix: String,
    seq: u64,
    edge: Arc<Edge>,
}

/// Counts the channel out of the open gauge however the session ends.
struct OpenGauge(Arc<Edge>);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.metrics.channels_open.dec();
    }
}

fn frame_type(frame: &Frame) -> &'static str {
    match frame {
        Frame::PayloadMessage(_) => "PayloadMessage",
        Frame::HeartbeatMessage(_) => "HeartbeatMessage",
        Frame::StateChangeAck(_) => "StateChangeAck",
        Frame::ErrorMessage(_) => "ErrorMessage",
        Frame::AckRequest(_) => "AckRequest",
        Frame::HeartbeatAck(_) => "HeartbeatAck",
        Frame::TaskStateChange(_) => "TaskStateChange",
        Frame::ContainerStateChange(_) => "ContainerStateChange",
    }
}

impl Conn {
    fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}", self.prefix, self.seq)
    }

    async fn send(&mut self, frame: &Frame) -> bool {
        self.edge.metrics.frame("down", frame_type(frame));
        self.socket
            .send(Message::Text(frame.to_text().into()))
            .await
            .is_ok()
    }
}

async fn run(socket: WebSocket, edge: Arc<Edge>, caller: Caller, mut session: AgentSession) {
    let settings = edge.channel;
    let instance = session.container_instance_arn.clone();
    let mut conn = Conn {
        socket,
        prefix: uuid::Uuid::new_v4().simple().to_string(),
        seq: 0,
        edge: edge.clone(),
    };
    edge.metrics.channels_open.inc();
    let _open = OpenGauge(edge.clone());
    let mut unacked: HashMap<String, Instant> = HashMap::new();
    let snapshot = std::mem::take(&mut session.snapshot);
    // What the agent was last told of each task: a new version is sent
    // only when it changes what the agent must do (its desired status, or
    // that the task is finished). The agent's own state changes coming back
    // as new versions are not echoed to it.
    let mut told: HashMap<String, Told> = snapshot.iter().filter_map(what_told).collect();
    let id = conn.next_id();
    let full = payload(&session, id.clone(), true, snapshot);
    if !conn.send(&full).await {
        return;
    }
    unacked.insert(id, Instant::now());
    // State changes are applied in arrival order by one worker per
    // channel, so this loop keeps reading acks and heartbeats while the
    // store is busy; their replies come back through `replies`. Both
    // queues are bounded: when the worker is `WORK_QUEUE` changes behind,
    // this loop stops reading the socket until it catches up, so a
    // flooding agent is slowed by TCP, not buffered.
    let (work_tx, mut work_rx) = mpsc::channel::<(&'static str, StateChange)>(WORK_QUEUE);
    let (reply_tx, mut replies) = mpsc::channel::<Frame>(WORK_QUEUE);
    let worker = {
        let edge = edge.clone();
        let caller = caller.clone();
        tokio::spawn(async move {
            while let Some((operation, change)) = work_rx.recv().await {
                let reply = submit(&edge, &caller, operation, change).await;
                if reply_tx.send(reply).await.is_err() {
                    break;
                }
            }
        })
    };
    let _worker = AbortOnDrop(worker);
    let mut last_heard = Instant::now();
    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let reason = loop {
        tokio::select! {
            update = session.updates.recv() => {
                let Some(task) = update else { break session.ended() };
                let mut tasks = vec![task];
                while let Ok(t) = session.updates.try_recv() {
                    tasks.push(t);
                }
                tasks.retain(|t| t.version.unwrap_or(i64::MAX) > session.snapshot_revision);
                tasks.retain(|t| match what_told(t) {
                    Some((arn, now)) => {
                        let news = told.get(&arn) != Some(&now);
                        if now.1 {
                            told.remove(&arn);
                        } else {
                            told.insert(arn, now);
                        }
                        news
                    }
                    None => true,
                });
                if tasks.is_empty() {
                    continue;
                }
                let id = conn.next_id();
                let frame = payload(&session, id.clone(), false, tasks);
                if !conn.send(&frame).await {
                    break "send failed";
                }
                unacked.insert(id, Instant::now());
                if unacked.len() > MAX_UNACKED {
                    break "too many payloads went unacknowledged";
                }
            }
            incoming = conn.socket.recv(), if work_tx.capacity() > 0 => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => break "the agent closed the channel",
                    Some(Err(_)) => break "receive failed",
                    Some(Ok(_)) => {
                        edge.control.agent_heard(&instance);
                        last_heard = Instant::now();
                        continue;
                    }
                };
                edge.control.agent_heard(&instance);
                last_heard = Instant::now();
                let frame = Frame::from_text(text.as_str());
                if let Ok(f) = &frame {
                    edge.metrics.frame("up", frame_type(f));
                }
                match frame {
                    Ok(Frame::AckRequest(m)) => {
                        unacked.remove(&m.message_id);
                    }
                    Ok(Frame::HeartbeatAck(_)) => {}
                    // There is room: this branch runs only then, and
                    // only this loop sends.
                    Ok(Frame::TaskStateChange(change)) => {
                        let _ = work_tx.try_send(("SubmitTaskStateChange", change));
                    }
                    Ok(Frame::ContainerStateChange(change)) => {
                        let _ = work_tx.try_send(("SubmitContainerStateChange", change));
                    }
                    Ok(other) => {
                        tracing::debug!(container_instance = %instance, frame = ?other, "unexpected frame from an agent");
                    }
                    Err(err) => {
                        tracing::debug!(container_instance = %instance, error = %err, "undecodable frame from an agent");
                    }
                }
            }
            Some(reply) = replies.recv() => {
                if !conn.send(&reply).await {
                    break "send failed";
                }
            }
            _ = heartbeat.tick() => {
                // A payload unacknowledged for three heartbeats, from an
                // agent silent as long, means the connection is dead or
                // stuck: close it, and the agent reconnects for a full
                // snapshot. An agent still talking is only slow (both ends
                // busy): it gets ten times as long before its channel is
                // reset.
                let limit = settings.heartbeat * 3;
                let overdue = |limit| unacked.values().any(|sent: &Instant| sent.elapsed() > limit);
                if (overdue(limit) && last_heard.elapsed() > limit) || overdue(limit * 10) {
                    break "a payload went unacknowledged";
                }
                if last_heard.elapsed() > settings.silence {
                    break "the agent went silent";
                }
                let frame = Frame::HeartbeatMessage(MessageRef { message_id: conn.next_id() });
                if !conn.send(&frame).await {
                    break "send failed";
                }
            }
        }
    };
    tracing::info!(container_instance = %instance, reason, "agent channel closed");
    let _ = conn.socket.send(Message::Close(None)).await;
}

/// What an agent was told of a task: its desired status, and whether it is
/// finished (STOPPED).
type Told = (Option<String>, bool);

fn what_told(task: &Task) -> Option<(String, Told)> {
    let arn = task.task_arn.clone()?;
    let finished = task.last_status.as_deref() == Some("STOPPED");
    Some((arn, (task.desired_status.clone(), finished)))
}

/// Aborts a spawned task when dropped, so a channel's worker ends with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn payload(session: &AgentSession, message_id: String, full: bool, tasks: Vec<Task>) -> Frame {
    Frame::PayloadMessage(Payload {
        message_id,
        cluster_arn: session.cluster_arn.clone(),
        container_instance_arn: session.container_instance_arn.clone(),
        full,
        tasks,
    })
}

/// Applies one state change as the API operation `operation` would, and
/// says how it went.
async fn submit(
    edge: &Arc<Edge>,
    caller: &Caller,
    operation: &'static str,
    change: StateChange,
) -> Frame {
    let control = edge.control.clone();
    let caller = caller.clone();
    let message_id = change.message_id;
    let body = change.body.to_string();
    let result =
        tokio::task::spawn_blocking(move || control.ecs(operation, body.as_bytes(), &caller))
            .await
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "state change task failed");
                Err(ApiError::server("internal error"))
            });
    match result {
        Ok(_) => Frame::StateChangeAck(MessageRef { message_id }),
        Err(err) => Frame::ErrorMessage(ErrorBody {
            message_id,
            error_type: err.code.as_str().to_string(),
            message: err.message.clone(),
        }),
    }
}

//! The agent's end of the channel to the control plane: a websocket found
//! with DiscoverPollEndpoint and opened with a SigV4-signed upgrade.
//!
//! The connection task keeps the newest copy of every task placed here
//! (by `Task::version`, the store revision that wrote it), wakes the
//! reconciler when a payload arrives, answers heartbeats, and carries state
//! changes up, each completed when the control plane acknowledges it. When
//! the connection is down, or the control plane has been silent for the
//! idle timeout, it reconnects with exponential backoff and jitter; until
//! the first full payload of the new connection the agent falls back to
//! the API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_client::{CallError, EcsClient};
use berth_model::channel::{Frame, MessageRef, StateChange, PATH};
use berth_model::task::Task;
use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

/// Reconnect backoff: from 250 ms up to 2 minutes, growing 1.5x, with 20%
/// jitter, as the ECS agent does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(120),
            factor: 1.5,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based), given a uniform draw
    /// `unit` in [0, 1): the base delay, capped, then moved by up to
    /// `jitter` of itself either way.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.initial.as_secs_f64() * self.factor.powi(attempt.min(64) as i32);
        let base = base.min(self.max.as_secs_f64());
        let spread = base * self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base + spread).max(0.0))
    }
}

/// Timing of the channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelSettings {
    /// Reconnect when nothing has come down for this long (plus jitter).
    pub idle_timeout: Duration,
    /// Up to this much is added to `idle_timeout`, drawn per connection.
    pub idle_jitter: Duration,
    /// How long a state change waits for its acknowledgement.
    pub ack_timeout: Duration,
    pub backoff: Backoff,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(35),
            idle_jitter: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
}

/// The websocket read buffer, bytes.
const WS_BUFFER: usize = 8 * 1024;

/// What the channel has learned of the tasks placed here.
#[derive(Debug, Default)]
struct Known {
    /// A full payload arrived on the current connection.
    synced: bool,
    tasks: HashMap<String, Task>,
    /// When tasks were seen STOPPED, to forget them after a while.
    stopped: HashMap<String, Instant>,
}

/// How long a STOPPED task is remembered, so a stale copy still in flight
/// cannot bring it back.
const FORGET_STOPPED: Duration = Duration::from_secs(600);

impl Known {
    fn apply(&mut self, full: bool, tasks: Vec<Task>, now: Instant) {
        if full {
            self.tasks.clear();
            self.stopped.clear();
            self.synced = true;
        }
        for task in tasks {
            let Some(arn) = task.task_arn.clone() else {
                continue;
            };
            let newer = self
                .tasks
                .get(&arn)
                .is_none_or(|old| task.version.unwrap_or(0) >= old.version.unwrap_or(0));
            if newer {
                if task.last_status.as_deref() == Some("STOPPED") {
                    self.stopped.entry(arn.clone()).or_insert(now);
                }
                self.tasks.insert(arn, task);
            }
        }
        self.stopped.retain(|arn, at| {
            let keep = now.duration_since(*at) < FORGET_STOPPED;
            if !keep {
                self.tasks.remove(arn);
            }
            keep
        });
    }
}

impl Known {
    /// Records in the known copy of a task what a state change the control
    /// plane acknowledged said, as the control plane now holds it. The
    /// control plane does not echo an agent's own changes back down the
    /// channel, and the agent decides what is still to report from this
    /// copy.
    fn note_reported(&mut self, body: &Value) {
        let Some(arn) = body.get("task").and_then(Value::as_str) else {
            return;
        };
        let Some(task) = self.tasks.get_mut(arn) else {
            return;
        };
        let status = body.get("status").and_then(Value::as_str);
        match body.get("containerName").and_then(Value::as_str) {
            Some(name) => {
                if let Some(c) = task
                    .containers
                    .iter_mut()
                    .flatten()
                    .find(|c| c.name.as_deref() == Some(name))
                {
                    if let Some(status) = status {
                        advance(&mut c.last_status, status);
                    }
                }
            }
            None => {
                if let Some(status) = status {
                    advance(&mut task.last_status, status);
                    if task.last_status.as_deref() == Some("STOPPED") {
                        self.stopped
                            .entry(arn.to_string())
                            .or_insert_with(Instant::now);
                    }
                }
            }
        }
        if let Some(h) = body.get("healthStatus").and_then(Value::as_str) {
            task.health_status = Some(h.to_string());
        }
        for c in body
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = c.get("containerName").and_then(Value::as_str) else {
                continue;
            };
            let Some(tc) = task
                .containers
                .iter_mut()
                .flatten()
                .find(|tc| tc.name.as_deref() == Some(name))
            else {
                continue;
            };
            if let Some(health) = c.get("healthStatus").and_then(Value::as_str) {
                tc.health_status = Some(health.to_string());
            }
            if let Some(status) = c.get("status").and_then(Value::as_str) {
                advance(&mut tc.last_status, status);
            }
        }
    }
}

enum Outbound {
    Submit {
        operation: &'static str,
        body: Value,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
}

/// The agent's handle on its channel.
#[derive(Clone, Debug)]
pub struct Channel {
    known: Arc<Mutex<Known>>,
    wake: Arc<Notify>,
    outbound: mpsc::Sender<Outbound>,
    settings: ChannelSettings,
}

/// State changes queued for the connection task; past this, a submit
/// goes to the API instead.
const OUTBOUND_QUEUE: usize = 256;

/// State changes sent up and not yet acknowledged, at most this many.
const MAX_PENDING: usize = 256;

type Reply = oneshot::Sender<Result<(), CallError>>;

/// The state changes sent up whose callers wait for their acknowledgement.
/// A caller that stopped waiting (its ack timeout passed: it used the API
/// instead) is forgotten at the next insert, so a control plane that never
/// acknowledges cannot make the map grow; and at most [`MAX_PENDING`] wait
/// at once.
#[derive(Debug, Default)]
struct Pending(HashMap<String, Reply>);

impl Pending {
    /// Records that `message_id` waits for its acknowledgement; false (and
    /// `reply` dropped, so its caller uses the API) when full.
    fn insert(&mut self, message_id: String, reply: Reply) -> bool {
        self.0.retain(|_, r| !r.is_closed());
        if self.0.len() >= MAX_PENDING {
            return false;
        }
        self.0.insert(message_id, reply);
        true
    }

    /// Hands `result` to whoever waits for `message_id`.
    fn complete(&mut self, message_id: &str, result: Result<(), CallError>) {
        if let Some(reply) = self.0.remove(message_id) {
            let _ = reply.send(result);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outbound::Submit { operation, .. } => write!(f, "Submit({operation})"),
        }
    }
}

impl Channel {
    /// Starts the connection task for the agent of `instance_arn`.
    pub fn start(
        client: EcsClient,
        cluster: String,
        instance_arn: String,
        settings: ChannelSettings,
    ) -> Self {
        let known = Arc::new(Mutex::new(Known::default()));
        let wake = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let channel = Self {
            known: known.clone(),
            wake: wake.clone(),
            outbound: tx,
            settings,
        };
        tokio::spawn(connection_loop(
            client,
            cluster,
            instance_arn,
            settings,
            known,
            wake,
            rx,
        ));
        channel
    }

    /// Resolves when a payload has changed what the agent should run.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// The unfinished tasks placed here, when the current connection has
    /// delivered its full snapshot; `None` when the agent must ask the API.
    pub async fn tasks(&self) -> Option<Vec<Task>> {
        let known = self.known.lock().await;
        known.synced.then(|| {
            known
                .tasks
                .values()
                .filter(|t| t.last_status.as_deref() != Some("STOPPED"))
                .cloned()
                .collect()
        })
    }

    /// Sends a state change up and waits for its acknowledgement. `None`
    /// when the channel could not carry it (down, or no answer in time):
    /// the caller then uses the API, which is safe because applying a state
    /// change twice changes nothing.
    pub async fn submit(
        &self,
        operation: &'static str,
        body: Value,
    ) -> Option<Result<(), CallError>> {
        if !self.known.lock().await.synced {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        // A full queue means the channel is far behind: use the API.
        self.outbound
            .try_send(Outbound::Submit {
                operation,
                body: body.clone(),
                reply,
            })
            .ok()?;
        match tokio::time::timeout(self.settings.ack_timeout, answer).await {
            Ok(Ok(result)) => {
                if result.is_ok() {
                    self.known.lock().await.note_reported(&body);
                }
                Some(result)
            }
            _ => None,
        }
    }
}

/// The order of task and container statuses; a status never goes back.
fn status_rank(status: Option<&str>) -> u8 {
    match status.unwrap_or("PROVISIONING") {
        "PENDING" => 1,
        "ACTIVATING" => 2,
        "RUNNING" => 3,
        "DEACTIVATING" => 4,
        "STOPPING" => 5,
        "DEPROVISIONING" => 6,
        "STOPPED" => 7,
        _ => 0,
    }
}

/// Moves `field` forward to `status`, never back.
fn advance(field: &mut Option<String>, status: &str) {
    if status_rank(Some(status)) > status_rank(field.as_deref()) {
        *field = Some(status.to_string());
    }
}

async fn connection_loop(
    client: EcsClient,
    cluster: String,
    instance_arn: String,
    settings: ChannelSettings,
    known: Arc<Mutex<Known>>,
    wake: Arc<Notify>,
    mut outbound: mpsc::Receiver<Outbound>,
) {
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        match session(
            &client,
            &cluster,
            &instance_arn,
            &settings,
            &known,
            &wake,
            &mut outbound,
        )
        .await
        {
            Ok(reason) => tracing::info!(reason, "channel closed; reconnecting"),
            Err(err) => tracing::warn!(error = %err, attempt, "channel failed; reconnecting"),
        }
        known.lock().await.synced = false;
        // Whatever waits on a submit gets its answer from the API instead.
        while let Ok(Outbound::Submit { reply, .. }) = outbound.try_recv() {
            drop(reply);
        }
        if started.elapsed() > Duration::from_secs(30) {
            attempt = 0;
        }
        let unit: f64 = rand::thread_rng().gen();
        let delay = settings.backoff.delay(attempt, unit);
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(delay).await;
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("discover poll endpoint: {0}")]
    Discover(CallError),
    #[error("websocket: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("{0}")]
    Other(String),
}

fn channel_url(endpoint: &str, cluster: &str, instance_arn: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("clusterArn", cluster)
        .append_pair("containerInstanceArn", instance_arn)
        .finish();
    format!("{}{}?{}", endpoint.trim_end_matches('/'), PATH, query)
}

async fn session(
    client: &EcsClient,
    cluster: &str,
    instance_arn: &str,
    settings: &ChannelSettings,
    known: &Mutex<Known>,
    wake: &Notify,
    outbound: &mut mpsc::Receiver<Outbound>,
) -> Result<&'static str, SessionError> {
    let discovered = client
        .call(
            "DiscoverPollEndpoint",
            &json!({"cluster": cluster, "containerInstance": instance_arn}),
        )
        .await
        .map_err(SessionError::Discover)?;
    let endpoint = discovered["endpoint"]
        .as_str()
        .ok_or_else(|| SessionError::Other("no endpoint in DiscoverPollEndpoint".into()))?;
    let http_url = channel_url(endpoint, cluster, instance_arn);
    let ws_url = http_url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let mut request = ws_url.as_str().into_client_request()?;
    for (name, value) in client
        .sign_get(&http_url)
        .map_err(|e| SessionError::Other(e.to_string()))?
    {
        request.headers_mut().insert(name, value);
    }
    // Small buffers: a frame is a few KiB, and tungstenite zeroes its whole
    // read buffer on every read (128 KiB by default), which costs CPU and
    // memory when one process holds thousands of simulated instances.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
    tracing::info!(endpoint, "channel connected");
    let jitter = settings
        .idle_jitter
        .mul_f64(rand::thread_rng().gen::<f64>());
    let idle = settings.idle_timeout + jitter;
    let mut last_heard = Instant::now();
    let mut pending = Pending::default();
    let mut seq: u64 = 0;
    loop {
        let deadline = tokio::time::Instant::from_std(last_heard + idle);
        tokio::select! {
            incoming = ws.next() => {
                let text = match incoming {
                    None => return Ok("the control plane closed the channel"),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) => return Ok("the control plane closed the channel"),
                    Some(Ok(_)) => { last_heard = Instant::now(); continue; }
                };
                last_heard = Instant::now();
                match Frame::from_text(text.as_str()) {
                    Ok(Frame::PayloadMessage(p)) => {
                        let count = p.tasks.len();
                        known.lock().await.apply(p.full, p.tasks, Instant::now());
                        wake.notify_one();
                        tracing::debug!(tasks = count, full = p.full, "payload");
                        let ack = Frame::AckRequest(MessageRef { message_id: p.message_id });
                        ws.send(Message::Text(ack.to_text().into())).await?;
                    }
                    Ok(Frame::HeartbeatMessage(m)) => {
                        let ack = Frame::HeartbeatAck(m);
                        ws.send(Message::Text(ack.to_text().into())).await?;
                    }
                    Ok(Frame::StateChangeAck(m)) => pending.complete(&m.message_id, Ok(())),
                    Ok(Frame::ErrorMessage(e)) => {
                        let err = CallError::Api { code: e.error_type, message: e.message, status: 400 };
                        pending.complete(&e.message_id, Err(err));
                    }
                    Ok(other) => tracing::debug!(frame = ?other, "unexpected frame from the control plane"),
                    Err(err) => tracing::debug!(error = %err, "undecodable frame from the control plane"),
                }
            }
            out = outbound.recv() => {
                let Some(Outbound::Submit { operation, body, reply }) = out else {
                    return Ok("the agent is stopping");
                };
                seq += 1;
                let message_id = format!("sc-{seq}");
                if !pending.insert(message_id.clone(), reply) {
                    tracing::debug!(pending = pending.len(), "too many state changes unacknowledged; this one goes to the API");
                    continue;
                }
                let change = StateChange { message_id, body };
                let frame = match operation {
                    "SubmitContainerStateChange" => Frame::ContainerStateChange(change),
                    _ => Frame::TaskStateChange(change),
                };
                ws.send(Message::Text(frame.to_text().into())).await?;
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Ok("the control plane went silent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(arn: &str, version: i64, status: &str) -> Task {
        Task {
            task_arn: Some(arn.into()),
            version: Some(version),
            last_status: Some(status.into()),
            ..Task::default()
        }
    }

    #[test]
    fn pending_forgets_callers_that_stopped_waiting_and_is_bounded() {
        let mut pending = Pending::default();
        // Callers that timed out (their receivers dropped) never pile up.
        for i in 0..10 * MAX_PENDING {
            let (reply, answer) = oneshot::channel();
            drop(answer);
            assert!(pending.insert(format!("gone-{i}"), reply));
        }
        assert_eq!(pending.len(), 1);
        // Callers still waiting are kept, up to the bound.
        let mut waiting = Vec::new();
        let mut refused = 0;
        for i in 0..MAX_PENDING + 10 {
            let (reply, answer) = oneshot::channel();
            if pending.insert(format!("w-{i}"), reply) {
                waiting.push(answer);
            } else {
                refused += 1;
            }
        }
        assert_eq!(pending.len(), MAX_PENDING);
        assert_eq!(refused, 10);
        pending.complete("w-0", Ok(()));
        assert!(matches!(waiting[0].try_recv(), Ok(Ok(()))));
    }

    #[test]
    fn backoff_grows_by_the_factor_and_stops_at_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(250));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(375));
        assert_eq!(b.delay(40, 0.5), Duration::from_secs(120));
        let low = b.delay(3, 0.0).as_secs_f64();
        let high = b.delay(3, 0.999_999).as_secs_f64();
        let base = 0.25 * 1.5f64.powi(3);
        assert!((low - base * 0.8).abs() < 1e-9 && (high - base * 1.2).abs() < 1e-6);
    }

    #[test]
    fn an_older_copy_never_replaces_a_newer_one() {
        let mut k = Known::default();
        let now = Instant::now();
        k.apply(true, vec![task("a", 5, "RUNNING")], now);
        k.apply(false, vec![task("a", 3, "PENDING")], now);
        assert_eq!(k.tasks["a"].version, Some(5));
        k.apply(false, vec![task("a", 5, "RUNNING")], now);
        k.apply(false, vec![task("a", 7, "STOPPED")], now);
        assert_eq!(k.tasks["a"].last_status.as_deref(), Some("STOPPED"));
        // A stale copy in flight cannot resurrect a stopped task.
        k.apply(false, vec![task("a", 6, "RUNNING")], now);
        assert_eq!(k.tasks["a"].last_status.as_deref(), Some("STOPPED"));
    }

    #[test]
    fn a_full_payload_replaces_everything_and_marks_synced() {
        let mut k = Known::default();
        let now = Instant::now();
        k.apply(false, vec![task("a", 1, "RUNNING")], now);
        assert!(!k.synced);
        k.apply(true, vec![task("b", 2, "PENDING")], now);
        assert!(k.synced);
        assert!(!k.tasks.contains_key("a"));
        assert!(k.tasks.contains_key("b"));
    }

    #[test]
    fn stopped_tasks_are_forgotten_after_a_while() {
        let mut k = Known::default();
        let t0 = Instant::now();
        k.apply(true, vec![task("a", 1, "STOPPED")], t0);
        k.apply(false, vec![], t0 + FORGET_STOPPED + Duration::from_secs(1));
        assert!(k.tasks.is_empty());
    }

    #[test]
    fn the_channel_url_encodes_its_query() {
        let u = channel_url(
            "http://127.0.0.1:9480/",
            "default",
            "arn:aws:ecs:us-east-1:000000000000:container-instance/default/abc",
        );
        assert_eq!(u, "http://127.0.0.1:9480/ws?clusterArn=default&containerInstanceArn=arn%3Aaws%3Aecs%3Aus-east-1%3A000000000000%3Acontainer-instance%2Fdefault%2Fabc");
    }

    #[test]
    fn acknowledged_reports_move_the_known_copy_forward_never_back() {
        let mut k = Known::default();
        let mut t = task("a", 1, "PENDING");
        t.containers = Some(vec![berth_model::task::Container {
            name: Some("app".into()),
            last_status: Some("PENDING".into()),
            ..Default::default()
        }]);
        k.apply(true, vec![t], Instant::now());
        k.note_reported(
            &serde_json::json!({"task": "a", "containerName": "app", "status": "RUNNING"}),
        );
        k.note_reported(&serde_json::json!({"task": "a", "status": "RUNNING"}));
        k.note_reported(&serde_json::json!({"task": "a", "status": "PENDING"}));
        k.note_reported(&serde_json::json!({"task": "a", "healthStatus": "HEALTHY",
            "containers": [{"containerName": "app", "healthStatus": "HEALTHY"}]}));
        k.note_reported(&serde_json::json!({"task": "unknown", "status": "RUNNING"}));
        let held = &k.tasks["a"];
        assert_eq!(held.last_status.as_deref(), Some("RUNNING"));
        assert_eq!(held.health_status.as_deref(), Some("HEALTHY"));
        let c = held.containers.iter().flatten().next();
        assert_eq!(c.and_then(|c| c.last_status.as_deref()), Some("RUNNING"));
        assert_eq!(c.and_then(|c| c.health_status.as_deref()), Some("HEALTHY"));
        k.note_reported(&serde_json::json!({"task": "a", "status": "STOPPED"}));
        assert!(
            k.stopped.contains_key("a"),
            "a stopped task is forgotten later"
        );
    }
}

//! Integration tests of `DockerRuntime` against the local Docker Engine.
//!
//! The engine cannot pull from the internet here, so the tests build their
//! own image: a static busybox (Debian's `busybox-static`) imported with
//! `docker import` as `berth-test/busybox:latest`. With `CI=true` an
//! unreachable engine fails the tests; otherwise they are skipped with a note.
//! Every container and volume is named with a per-run prefix and removed at
//! the end of its test, even when the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_runtime::labels::{self, LabelFilter};
use berth_runtime::{
    ContainerId, ContainerRuntime, ContainerSpec, ContainerState, ContainerStatus, DockerRuntime,
    HealthCheck, HealthStatus, Mount, MountSource, NetworkMode, PortMapping, RuntimeError,
    RuntimeEventKind, VolumeSpec,
};
use futures_util::StreamExt;

const IMAGE: &str = "berth-test/busybox:latest";
const TEST_RUN_LABEL: &str = "com.berth.test-run";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Generous: these machines are shared and slow at times.
const WAIT: Duration = Duration::from_secs(90);

/// Connects to the engine and makes sure the test image exists; `None`
/// (after a note) when the engine is unreachable outside CI.
async fn docker() -> Option<DockerRuntime> {
    match DockerRuntime::connect().await {
        Ok(rt) => {
            ensure_test_image();
            Some(rt)
        }
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and the docker engine is unreachable: {e}");
            }
            eprintln!("note: skipping docker test, engine unreachable: {e}");
            None
        }
    }
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn ensure_test_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    BUILT.get_or_init(|| {
        if run(Command::new("docker").args(["image", "inspect", IMAGE])) {
            return;
        }
        let busybox = std::path::Path::new("/bin/busybox");
        if !busybox.exists() {
            // The test image needs a static busybox; Debian packages one.
            run(Command::new("apt-get").args(["install", "-y", "busybox-static"]));
        }
        assert!(
            busybox.exists(),
            "/bin/busybox is missing: install Debian's busybox-static"
        );
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in ["bin", "www", "tmp", "etc", "data"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::copy(busybox, r.join("bin/busybox")).unwrap();
        let applets = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", r.join("bin").join(applet)).unwrap();
            }
        }
        std::fs::write(r.join("www/index.html"), "hello from berth\n").unwrap();
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )
        .unwrap();
        let tarball = r.with_extension("tar");
        assert!(
            run(Command::new("tar")
                .arg("-C")
                .arg(r)
                .arg("-cf")
                .arg(&tarball)
                .arg(".")),
            "tar of the test image root failed"
        );
        let status = Command::new("docker")
            .args([
                "import",
                "--change",
                "ENV PATH=/bin",
                "--change",
                "CMD [\"/bin/sh\"]",
            ])
            .arg(&tarball)
            .arg(IMAGE)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        let _ = std::fs::remove_file(&tarball);
        assert!(status.success(), "docker import of the test image failed");
    });
}

/// Names, labels and cleans up what one test creates.
struct Scope {
    run_id: String,
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

impl Scope {
    fn new() -> Self {
        Self {
            run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            containers: Mutex::new(Vec::new()),
            volumes: Mutex::new(Vec::new()),
        }
    }

    fn name(&self, what: &str) -> String {
        format!("berth-rt-test-{}-{what}", self.run_id)
    }

    fn filter(&self) -> LabelFilter {
        LabelFilter::any().with(TEST_RUN_LABEL, self.run_id.clone())
    }

    fn spec(&self, what: &str, command: &[&str]) -> ContainerSpec {
        let mut labels = BTreeMap::new();
        labels.insert(TEST_RUN_LABEL.to_string(), self.run_id.clone());
        labels.insert(labels::CONTAINER_NAME.to_string(), what.to_string());
        ContainerSpec {
            name: self.name(what),
            image: IMAGE.to_string(),
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            labels,
            ..Default::default()
        }
    }

    fn volume(&self, what: &str) -> String {
        let name = self.name(what);
        self.volumes.lock().unwrap().push(name.clone());
        name
    }

    async fn create(&self, rt: &DockerRuntime, spec: &ContainerSpec) -> ContainerId {
        // Registered by name first, so even a half-created one is cleaned up.
        self.containers.lock().unwrap().push(spec.name.clone());
        rt.create(spec).await.unwrap()
    }

    async fn run(&self, rt: &DockerRuntime, spec: &ContainerSpec) -> ContainerId {
        let id = self.create(rt, spec).await;
        rt.start(&id).await.unwrap();
        id
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut *self.containers.lock().unwrap());
        if !containers.is_empty() {
            run(Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&containers));
        }
        let volumes = std::mem::take(&mut *self.volumes.lock().unwrap());
        if !volumes.is_empty() {
            run(Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes));
        }
    }
}

async fn wait_until(
    rt: &DockerRuntime,
    id: &ContainerId,
    what: &str,
    done: impl Fn(&ContainerState) -> bool,
) -> ContainerState {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = rt.inspect(id).await.unwrap();
        if done(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_exited(rt: &DockerRuntime, id: &ContainerId) -> ContainerState {
    wait_until(rt, id, "exit", |s| s.status == ContainerStatus::Exited).await
}

fn free_port() -> u16 {
    TcpListener::bind((LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / on 127.0.0.1:port, retrying while the server comes up.
async fn fetch(port: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect((LOCALHOST, port))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut body = String::new();
            stream.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if body.contains("200") => return body,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no page on 127.0.0.1:{port}: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test]
async fn httpd_serves_on_chosen_and_engine_assigned_host_ports() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let chosen = free_port();
    let mut spec = scope.spec("web", &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    spec.ports = vec![
        PortMapping::tcp(8080, Some(chosen)).on(LOCALHOST),
        PortMapping::tcp(8080, None).on(LOCALHOST),
    ];
    let id = scope.run(&rt, &spec).await;

    let state = rt.inspect(&id).await.unwrap();
    assert_eq!(state.status, ContainerStatus::Running);
    assert_eq!(state.name, spec.name);
    assert_eq!(state.network_mode, "bridge");
    assert!(
        state.ip_address.is_some(),
        "bridge container has an address"
    );
    assert!(state.started_millis.is_some());
    assert_eq!(state.labels.get(TEST_RUN_LABEL), Some(&scope.run_id));
    assert_eq!(state.ports.len(), 2, "{:?}", state.ports);
    assert!(state
        .ports
        .iter()
        .all(|p| p.container_port == 8080 && p.host_ip == "127.0.0.1"));
    assert!(state.ports.iter().any(|p| p.host_port == chosen));
    let assigned = state
        .ports
        .iter()
        .map(|p| p.host_port)
        .find(|p| *p != chosen)
        .expect("an engine-assigned port");

    for port in [chosen, assigned] {
        let page = fetch(port).await;
        assert!(page.contains("hello from berth"), "{page}");
    }

    rt.stop(&id, Duration::from_secs(5)).await.unwrap();
    let state = rt.inspect(&id).await.unwrap();
    assert_eq!(state.status, ContainerStatus::Exited);
    // Stopping again is not an error.
    rt.stop(&id, Duration::from_secs(1)).await.unwrap();
    rt.remove(&id).await.unwrap();
    assert!(matches!(
        rt.inspect(&id).await,
        Err(RuntimeError::NotFound(_))
    ));
    // Removing again is not an error.
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn exiting_container_reports_its_exit_code() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let id = scope
        .run(&rt, &scope.spec("exit", &["sh", "-c", "exit 3"]))
        .await;
    let state = wait_exited(&rt, &id).await;
    assert_eq!(state.exit_code, Some(3));
    assert!(!state.oom_killed);
    let (started, finished) = (
        state.started_millis.unwrap(),
        state.finished_millis.unwrap(),
    );
    assert!(finished >= started);
}

#[tokio::test]
async fn health_checks_turn_healthy_or_unhealthy() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let check = |cmd: &str| HealthCheck {
        command: vec!["CMD-SHELL".to_string(), cmd.to_string()],
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        retries: 1,
        start_period: Duration::ZERO,
    };
    let mut events = rt.events(&scope.filter());
    let mut bad = scope.spec("bad", &["sleep", "300"]);
    bad.health_check = Some(check("echo failing; exit 1"));
    let mut good = scope.spec("good", &["sleep", "300"]);
    good.health_check = Some(check("true"));
    let bad = scope.run(&rt, &bad).await;
    let good = scope.run(&rt, &good).await;

    let state = wait_until(&rt, &bad, "unhealthy", |s| {
        s.health == HealthStatus::Unhealthy
    })
    .await;
    assert_eq!(state.health.as_ecs_str(), "UNHEALTHY");
    assert_eq!(state.health_output.as_deref(), Some("failing"));
    let changed = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            if event.id == bad
                && event.kind == RuntimeEventKind::HealthChanged(HealthStatus::Unhealthy)
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        changed,
        Ok(true),
        "the events stream reports the health change"
    );
    let state = wait_until(&rt, &good, "healthy", |s| s.health == HealthStatus::Healthy).await;
    assert_eq!(state.status, ContainerStatus::Running);
}

#[tokio::test]
async fn stop_waits_out_the_timeout_then_kills() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    // The script says when its trap is in place: a signal that arrives while
    // the engine is still exec'ing the process would kill it early.
    let host = tempfile::tempdir().unwrap();
    let mut spec = scope.spec(
        "stubborn",
        &[
            "sh",
            "-c",
            "trap '' TERM; touch /host/ready; while true; do sleep 1; done",
        ],
    );
    spec.mounts = vec![Mount {
        source: MountSource::Bind {
            host_path: host.path().to_str().unwrap().to_string(),
        },
        target: "/host".to_string(),
        read_only: false,
    }];
    let id = scope.run(&rt, &spec).await;
    let deadline = Instant::now() + WAIT;
    while !host.path().join("ready").exists() {
        assert!(Instant::now() < deadline, "the script never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let timeout = Duration::from_secs(2);
    let began = Instant::now();
    rt.stop(&id, timeout).await.unwrap();
    // A lower bound only: SIGTERM was ignored, so the engine waited it out.
    let elapsed = began.elapsed();
    let state = rt.inspect(&id).await.unwrap();
    assert!(elapsed >= timeout, "stopped after {elapsed:?}: {state:?}");
    assert_eq!(state.status, ContainerStatus::Exited);
    assert_eq!(state.exit_code, Some(137));
}

#[tokio::test]
async fn kill_sends_the_signal() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let id = scope
        .run(&rt, &scope.spec("victim", &["sleep", "300"]))
        .await;
    rt.kill(&id, "SIGKILL").await.unwrap();
    let state = wait_exited(&rt, &id).await;
    assert_eq!(state.exit_code, Some(137));
    // Killing a stopped container is a conflict, as in Docker.
    assert!(matches!(
        rt.kill(&id, "SIGKILL").await,
        Err(RuntimeError::Conflict(_))
    ));
}

#[tokio::test]
async fn labels_let_list_rediscover_containers() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let task_labels = labels::TaskLabels {
        cluster: "default",
        task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/0123",
        container_name: "a",
        family: "web",
        revision: 1,
    }
    .to_map();
    let mut a = scope.spec("a", &["sleep", "300"]);
    a.labels.extend(task_labels);
    let b = scope.spec("b", &["sh", "-c", "exit 0"]);
    let a = scope.run(&rt, &a).await;
    let b = scope.run(&rt, &b).await;
    wait_exited(&rt, &b).await;

    let mut found: Vec<ContainerId> = rt
        .list(&scope.filter())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    found.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(found, want, "running and exited containers are both listed");

    let only_a = rt
        .list(&scope.filter().with(
            labels::TASK_ARN,
            "arn:aws:ecs:us-east-1:000000000000:task/default/0123",
        ))
        .await
        .unwrap();
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0].id, a);
    assert_eq!(only_a[0].status, ContainerStatus::Running);
    assert_eq!(only_a[0].name, scope.name("a"));
    assert_eq!(
        only_a[0]
            .labels
            .get(labels::ECS_CLUSTER)
            .map(String::as_str),
        Some("default")
    );
}

#[tokio::test]
async fn events_stream_sees_start_and_die() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let mut events = rt.events(&scope.filter());
    // An unrelated container (not matching the filter) must not show up.
    let mut other = scope.spec("other", &["sh", "-c", "exit 0"]);
    other
        .labels
        .insert(TEST_RUN_LABEL.to_string(), "someone-else".to_string());
    let other = scope.run(&rt, &other).await;
    let id = scope
        .run(&rt, &scope.spec("dies", &["sh", "-c", "sleep 1; exit 7"]))
        .await;

    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            assert_ne!(event.id, other, "filtered out by label");
            seen.push(event.kind.clone());
            if event.id == id && matches!(event.kind, RuntimeEventKind::Died { .. }) {
                return Some(event);
            }
        }
        None
    })
    .await;
    let died = outcome
        .expect("timed out waiting for die")
        .expect("stream ended");
    assert_eq!(died.kind, RuntimeEventKind::Died { exit_code: Some(7) });
    assert_eq!(died.name.as_deref(), Some(scope.name("dies").as_str()));
    assert_eq!(died.labels.get(TEST_RUN_LABEL), Some(&scope.run_id));
    assert!(seen.contains(&RuntimeEventKind::Started), "{seen:?}");
}

#[tokio::test]
async fn bind_mounts_and_named_volumes() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host\n").unwrap();
    let host_path = host.path().to_str().unwrap().to_string();
    let volume_name = scope.volume("vol");
    let mut volume_labels = BTreeMap::new();
    volume_labels.insert(TEST_RUN_LABEL.to_string(), scope.run_id.clone());
    let volume = VolumeSpec {
        name: volume_name.clone(),
        driver: None,
        driver_opts: BTreeMap::new(),
        labels: volume_labels,
    };
    let mounts = |host_read_only: bool| {
        vec![
            Mount {
                source: MountSource::Bind {
                    host_path: host_path.clone(),
                },
                target: "/host".to_string(),
                read_only: host_read_only,
            },
            Mount {
                source: MountSource::Volume(volume.clone()),
                target: "/vol".to_string(),
                read_only: false,
            },
        ]
    };

    let mut writer = scope.spec(
        "writer",
        &[
            "sh",
            "-c",
            "echo in-volume > /vol/f && cat /host/in > /host/out",
        ],
    );
    writer.mounts = mounts(false);
    let writer = scope.run(&rt, &writer).await;
    assert_eq!(wait_exited(&rt, &writer).await.exit_code, Some(0));
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "from host\n"
    );

    // The volume was created with its labels and outlives the container.
    let inspected = rt.client().inspect_volume(&volume_name).await.unwrap();
    assert_eq!(inspected.labels.get(TEST_RUN_LABEL), Some(&scope.run_id));

    let mut reader = scope.spec("reader", &["sh", "-c", "cat /vol/f > /host/from-volume"]);
    reader.mounts = mounts(false);
    let reader = scope.run(&rt, &reader).await;
    assert_eq!(wait_exited(&rt, &reader).await.exit_code, Some(0));
    assert_eq!(
        std::fs::read_to_string(host.path().join("from-volume")).unwrap(),
        "in-volume\n"
    );

    let mut read_only = scope.spec("ro", &["sh", "-c", "echo x > /host/nope"]);
    read_only.mounts = mounts(true);
    let read_only = scope.run(&rt, &read_only).await;
    assert_ne!(wait_exited(&rt, &read_only).await.exit_code, Some(0));
    assert!(!host.path().join("nope").exists());

    // A volume in use cannot go; once its containers are gone it can.
    assert!(matches!(
        rt.remove_volume(&volume_name).await,
        Err(RuntimeError::Conflict(_))
    ));
    for id in [&writer, &reader, &read_only] {
        rt.remove(id).await.unwrap();
    }
    rt.remove_volume(&volume_name).await.unwrap();
    assert!(rt.client().inspect_volume(&volume_name).await.is_err());
    rt.remove_volume(&volume_name).await.unwrap();
}

#[tokio::test]
async fn resources_and_options_are_applied() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let mut spec = scope.spec(
        "limits",
        &["sh", "-c", "test \"$(id -u)\" = 65534 && test \"$(pwd)\" = /tmp && test \"$GREETING\" = hi && ! touch /x && grep -q berth-peer /etc/hosts && test \"$(ulimit -n)\" = 1000 && test \"$(hostname)\" = berth-host"],
    );
    spec.memory_limit_mib = Some(64);
    spec.memory_reservation_mib = Some(32);
    spec.cpu_shares = Some(256);
    spec.user = Some("nobody".to_string());
    spec.working_dir = Some("/tmp".to_string());
    spec.env = vec![("GREETING".to_string(), "hi".to_string())];
    spec.readonly_rootfs = true;
    spec.extra_hosts = vec![berth_runtime::ExtraHost {
        hostname: "berth-peer".to_string(),
        ip_address: "10.0.0.1".to_string(),
    }];
    spec.ulimits = vec![berth_runtime::Ulimit {
        name: "nofile".to_string(),
        soft: 1000,
        hard: 1000,
    }];
    spec.hostname = Some("berth-host".to_string());
    spec.init = true;
    spec.stop_timeout = Some(Duration::from_secs(7));
    let id = scope.run(&rt, &spec).await;
    let state = wait_exited(&rt, &id).await;
    assert_eq!(state.exit_code, Some(0), "the options were seen inside");
    assert_eq!(state.memory_limit_bytes, Some(64 * 1024 * 1024));
    assert_eq!(state.memory_reservation_bytes, Some(32 * 1024 * 1024));
    assert_eq!(state.cpu_shares, Some(256));
}

#[tokio::test]
async fn network_modes_none_and_host() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let mut none = scope.spec(
        "none",
        &[
            "sh",
            "-c",
            "test -e /sys/class/net/lo && test ! -e /sys/class/net/eth0",
        ],
    );
    none.network_mode = NetworkMode::None;
    let none = scope.run(&rt, &none).await;
    let state = wait_exited(&rt, &none).await;
    assert_eq!(
        state.exit_code,
        Some(0),
        "only loopback in network mode none"
    );
    assert_eq!(state.network_mode, "none");
    assert_eq!(state.ip_address, None);

    let port = free_port();
    let port_arg = port.to_string();
    let mut host = scope.spec("host", &["httpd", "-f", "-p", &port_arg, "-h", "/www"]);
    host.network_mode = NetworkMode::Host;
    let host = scope.run(&rt, &host).await;
    let page = fetch(port).await;
    assert!(page.contains("hello from berth"));
    let state = rt.inspect(&host).await.unwrap();
    assert_eq!(state.network_mode, "host");
    assert_eq!(state.ip_address, None);
}

#[tokio::test]
async fn conflicts_and_missing_things_map_to_error_kinds() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();

    let spec = scope.spec("dup", &["sleep", "300"]);
    scope.create(&rt, &spec).await;
    assert!(matches!(
        rt.create(&spec).await,
        Err(RuntimeError::Conflict(_))
    ));

    let port = free_port();
    let mut first = scope.spec("port-a", &["sleep", "300"]);
    first.ports = vec![PortMapping::tcp(80, Some(port)).on(LOCALHOST)];
    let mut second = scope.spec("port-b", &["sleep", "300"]);
    second.ports = first.ports.clone();
    scope.run(&rt, &first).await;
    let second = scope.create(&rt, &second).await;
    match rt.start(&second).await {
        Err(RuntimeError::PortInUse(message)) => assert!(message.contains(&port.to_string())),
        other => panic!("expected PortInUse, got {other:?}"),
    }

    let missing = ContainerId::from("berth-rt-test-no-such-container");
    assert!(matches!(
        rt.inspect(&missing).await,
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        rt.start(&missing).await,
        Err(RuntimeError::NotFound(_))
    ));
    rt.remove(&missing).await.unwrap();

    let missing_binary = scope
        .create(&rt, &scope.spec("no-binary", &["/no/such/program"]))
        .await;
    match rt.start(&missing_binary).await {
        Err(RuntimeError::StartFailed(message)) => assert!(!message.is_empty()),
        other => panic!("expected StartFailed, got {other:?}"),
    }
    let state = rt.inspect(&missing_binary).await.unwrap();
    assert!(state.error.is_some(), "{state:?}");
    assert!(state.exit_code.is_some_and(|c| c != 0), "{state:?}");

    let mut no_image = scope.spec("no-image", &["true"]);
    no_image.image = "berth-test/no-such-image:latest".to_string();
    assert!(matches!(
        rt.create(&no_image).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn ensure_image_uses_local_images_and_reports_pull_failures() {
    let Some(rt) = docker().await else { return };
    let local = rt.ensure_image(IMAGE, None).await.unwrap();
    assert!(!local.pulled);
    assert!(local.id.as_deref().unwrap_or("").starts_with("sha256:"));
    assert_eq!(local.pull_started_millis, None);

    // Nothing can be pulled here (no registry is reachable), and a missing
    // image must fail either way, with the engine's message.
    let auth = berth_runtime::RegistryAuth {
        username: "AWS".to_string(),
        password: "secret".to_string(),
        server_address: Some("127.0.0.1:1".to_string()),
    };
    for (image, credentials) in [
        ("berth-test/no-such-image:latest", None),
        ("127.0.0.1:1/no-such-image:1", Some(&auth)),
    ] {
        match rt.ensure_image(image, credentials).await {
            Err(RuntimeError::ImagePull { image: i, message })
            | Err(RuntimeError::ImageNotFound { image: i, message }) => {
                assert_eq!(i, image);
                assert!(!message.is_empty());
            }
            other => panic!("expected a pull failure for {image}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn stats_and_info() {
    let Some(rt) = docker().await else { return };
    let scope = Scope::new();
    let id = scope
        .run(&rt, &scope.spec("stats", &["sleep", "300"]))
        .await;
    wait_until(&rt, &id, "running", |s| {
        s.status == ContainerStatus::Running
    })
    .await;
    let stats = rt.stats(&id).await.unwrap();
    assert!(stats.memory_usage_bytes > 0, "{stats:?}");
    assert!(stats.cpu_total_ns > 0, "{stats:?}");
    assert!(stats.networks.contains_key("eth0"), "{stats:?}");
    let raw = stats.raw.expect("docker's own document");
    assert!(raw.get("memory_stats").is_some(), "{raw}");

    let info = rt.info().await.unwrap();
    assert_eq!(rt.name(), "docker");
    assert_eq!(info.runtime, "docker");
    assert!(!info.simulated);
    assert!(info.cpus > 0);
    assert_eq!(info.cpu_units(), u64::from(info.cpus) * 1024);
    assert!(info.memory_bytes > 0);
    assert!(!info.server_version.is_empty());
    assert_eq!(info.os_type, "linux");
}

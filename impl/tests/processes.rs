//! The binaries as an operator uses them: separate `replica` processes, the `smr` client,
//! bad configurations, and `kill -9`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPLICA: &str = env!("CARGO_BIN_EXE_replica");
const SMR: &str = env!("CARGO_BIN_EXE_smr");

fn free_ports(n: usize) -> Vec<u16> {
    let probes: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    probes
        .iter()
        .map(|p| p.local_addr().unwrap().port())
        .collect()
}

fn write_config(dir: &Path, ports: &[u16]) -> PathBuf {
    let mut text = format!("cluster = \"processes-{}\"\n", ports[0]);
    text.push_str("[timing]\nelection_timeout_ms = [150, 300]\nheartbeat_interval_ms = 30\n");
    for (id, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[replica]]\nid = {id}\naddress = \"127.0.0.1:{port}\"\n"
        ));
    }
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_replica(config: &Path, id: usize, data: &Path) -> Child {
    Command::new(REPLICA)
        .arg("--config")
        .arg(config)
        .arg("--id")
        .arg(id.to_string())
        .arg("--data-dir")
        .arg(data.join(id.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the replica binary starts")
}

fn smr(config: &Path, timeout_ms: u64, args: &[&str]) -> Output {
    Command::new(SMR)
        .arg("--config")
        .arg(config)
        .arg("--timeout-ms")
        .arg(timeout_ms.to_string())
        .args(args)
        .output()
        .expect("the smr binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// Kills every child with SIGKILL (what `kill -9` sends) when dropped, so a failing test
/// leaves no processes behind.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn bad_configurations_are_refused_with_a_message_that_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &Path, id: &str| {
        Command::new(REPLICA)
            .arg("--config")
            .arg(config)
            .args(["--id", id, "--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap()
    };
    let missing = run(&dir.path().join("missing.toml"), "0");
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("cannot read"),
        "{}",
        stderr(&missing)
    );

    let cases = [
        ("cluster = [", "not a valid configuration"),
        (
            "cluster = \"x\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:2\"\n",
            "appears twice",
        ),
        (
            "cluster = \"x\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n[[replica]]\nid = 1\naddress = \"127.0.0.1:1\"\n",
            "same address",
        ),
        (
            "cluster = \"x\"\n[[replica]]\nid = 1\naddress = \"127.0.0.1:1\"\n",
            "replica id 0 is not in the configuration",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let output = run(&path, "0");
        assert_eq!(output.status.code(), Some(2), "{text}");
        assert!(
            stderr(&output).contains(expected),
            "{text}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("bad.toml"),
            "names the file: {}",
            stderr(&output)
        );
    }

    // No replica running: the client gives up at its deadline with a clear error.
    let ports = free_ports(3);
    let config = write_config(dir.path(), &ports);
    let started = Instant::now();
    let output = Command::new(SMR)
        .arg("--config")
        .arg(&config)
        .args(["--timeout-ms", "300", "get", "k"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no answer before the deadline"),
        "{}",
        stderr(&output)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn acknowledged_writes_survive_kill_dash_nine_of_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ports = free_ports(3);
    let config = write_config(dir.path(), &ports);
    let mut replicas = Processes((0..3).map(|id| spawn_replica(&config, id, &data)).collect());

    // A writer puts unique keys one after the other, remembering which were acknowledged,
    // while the replicas are killed with SIGKILL in the middle of it.
    let writer_config = config.clone();
    let count = Arc::new(AtomicUsize::new(0));
    let writer_count = count.clone();
    let killed = Arc::new(AtomicBool::new(false));
    let writer_killed = killed.clone();
    let writer = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut after_kill = 0;
        for n in 0..60 {
            // A few attempts after the kill are enough to show they are not acknowledged.
            if writer_killed.load(Ordering::SeqCst) {
                after_kill += 1;
                if after_kill > 3 {
                    break;
                }
            }
            let key = format!("key{n}");
            let output = smr(&writer_config, 500, &["put", &key, &n.to_string()]);
            if output.status.success() && stdout(&output) == "ok" {
                acknowledged.push((key, n.to_string()));
                writer_count.fetch_add(1, Ordering::SeqCst);
            }
        }
        acknowledged
    });
    // Kill once a few writes are in, while the writer goes on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for child in &mut replicas.0 {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    killed.store(true, Ordering::SeqCst);
    let acknowledged = writer.join().unwrap();
    assert!(
        !acknowledged.is_empty(),
        "some writes were acknowledged before the kill"
    );

    // Restart every replica from its data directory: every acknowledged write is there.
    replicas.0 = (0..3).map(|id| spawn_replica(&config, id, &data)).collect();
    for (key, value) in &acknowledged {
        let output = smr(&config, 5000, &["get", key]);
        assert!(output.status.success(), "get {key}: {}", stderr(&output));
        assert_eq!(
            &stdout(&output),
            value,
            "acknowledged write of {key} survived"
        );
    }
    let status = smr(&config, 3000, &["status"]);
    assert!(status.status.success());
    assert!(
        stdout(&status).contains("incarnation 1"),
        "{}",
        stdout(&status)
    );
}

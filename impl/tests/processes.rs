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

/// The configuration of a cluster on `ports`, with keys made by `smr new-key` in `dir/keys`
/// and named relative to the file, as an operator does.
fn write_config(dir: &Path, ports: &[u16]) -> PathBuf {
    let keys = dir.join("keys");
    if !keys.exists() {
        std::fs::create_dir(&keys).unwrap();
        let made = Command::new(SMR)
            .arg("new-key")
            .args(["cluster.key", "client.key", "admin.key"].map(|k| keys.join(k)))
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", stderr(&made));
    }
    let mut text = format!("cluster = \"processes-{}\"\n", ports[0]);
    text.push_str("[timing]\nelection_timeout_ms = [150, 300]\nheartbeat_interval_ms = 30\n");
    for (id, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[replica]]\nid = {id}\naddress = \"127.0.0.1:{port}\"\n"
        ));
    }
    text.push_str(&smr::deploy::config::security_section(Path::new("keys")));
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `replica --config CONFIG --id ID --data-dir DATA/ID` with `flags` (`--new-cluster` for the
/// first start, `--recover` after a lost disk, none for a restart).
fn replica_command(config: &Path, id: usize, data: &Path, flags: &[&str]) -> Command {
    let mut command = Command::new(REPLICA);
    command
        .arg("--config")
        .arg(config)
        .arg("--id")
        .arg(id.to_string())
        .arg("--data-dir")
        .arg(data.join(id.to_string()))
        .args(flags);
    command
}

fn spawn_replica(config: &Path, id: usize, data: &Path, flags: &[&str]) -> Child {
    replica_command(config, id, data, flags)
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
            "cluster = \"x\"\n[[replica]]\nid = 1\naddress = \"127.0.0.1:1\"\n[security]\ninsecure = true\n",
            "replica id 0 is not in the configuration",
        ),
        (
            "cluster = \"x\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n",
            "no [security] section",
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

    // A key file that is missing, or that others can read: the replica does not start, and
    // says which file and what to do.
    let ports = free_ports(3);
    let config = write_config(dir.path(), &ports);
    let cluster_key = dir.path().join("keys").join("cluster.key");
    std::fs::rename(&cluster_key, dir.path().join("aside.key")).unwrap();
    let output = run(&config, "0");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cluster.key") && stderr(&output).contains("smr new-key"),
        "{}",
        stderr(&output)
    );
    std::fs::rename(dir.path().join("aside.key"), &cluster_key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let open = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&cluster_key, open).unwrap();
        let output = run(&config, "0");
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr(&output).contains("chmod 600"), "{}", stderr(&output));
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&cluster_key, private).unwrap();
    }

    // No replica running: the client gives up at its deadline with a clear error.
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
    let mut replicas = Processes(
        (0..3)
            .map(|id| spawn_replica(&config, id, &data, &["--new-cluster"]))
            .collect(),
    );

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
    replicas.0 = (0..3)
        .map(|id| spawn_replica(&config, id, &data, &[]))
        .collect();
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

/// The replica that `smr status` shows as leader.
fn leader(config: &Path) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = stdout(&smr(config, 2000, &["status"]));
        let found = status.lines().find_map(|line| {
            let rest = line.strip_prefix("replica ")?;
            let (id, rest) = rest.split_once(' ')?;
            rest.contains(": leader in ballot")
                .then(|| id.parse().ok())?
        });
        if let Some(id) = found {
            return id;
        }
        assert!(Instant::now() < deadline, "no leader: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_leader_whose_disk_was_wiped_refuses_to_start_and_recovers_every_acknowledged_write() {
    // Goal: issue 12 as a new user met it, with the binaries: five `smr put`s acknowledged,
    // `kill -9` of the leader, `rm -rf` of its data directory, a restart before the others'
    // election timeout. Without --recover the replica refuses, saying why and what to do;
    // with it, every acknowledged write reads back and the replicas' digests agree.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ports = free_ports(3);
    let config = write_config(dir.path(), &ports);
    let mut replicas = Processes(
        (0..3)
            .map(|id| spawn_replica(&config, id, &data, &["--new-cluster"]))
            .collect(),
    );
    for n in 0..5 {
        let output = smr(&config, 5000, &["put", &format!("k{n}"), &format!("v{n}")]);
        assert_eq!(stdout(&output), "ok", "{}", stderr(&output));
    }
    let id = leader(&config);
    replicas.0[id].kill().unwrap();
    replicas.0[id].wait().unwrap();
    let wiped = data.join(id.to_string());
    std::fs::remove_dir_all(&wiped).unwrap();

    let refused = replica_command(&config, id, &data, &[]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(message.contains(&wiped.display().to_string()), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        message.contains("--recover") && message.contains("--new-cluster"),
        "{message}"
    );

    replicas.0[id] = spawn_replica(&config, id, &data, &["--recover"]);
    for n in 0..5 {
        let output = smr(&config, 5000, &["get", &format!("k{n}")]);
        assert_eq!(
            stdout(&output),
            format!("v{n}"),
            "k{n}: {}",
            stderr(&output)
        );
    }
    let output = smr(&config, 5000, &["put", "after", "rebuild"]);
    assert_eq!(stdout(&output), "ok", "{}", stderr(&output));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = stdout(&smr(&config, 2000, &["status"]));
        let digests: Vec<&str> = status
            .lines()
            .filter_map(|line| line.split("state digest ").nth(1))
            .collect();
        let executed: Vec<&str> = status
            .lines()
            .filter_map(|line| line.split(" executed ").nth(1))
            .filter_map(|rest| rest.split(';').next())
            .collect();
        let agree = digests.len() == 3
            && digests.windows(2).all(|pair| pair[0] == pair[1])
            && executed.windows(2).all(|pair| pair[0] == pair[1])
            && !status.contains("rebuilding");
        if agree {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the digests never agreed:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

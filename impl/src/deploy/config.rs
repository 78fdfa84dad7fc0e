//! The cluster configuration file.
//!
//! ```toml
//! cluster = "demo"             # a name; its digest is the cluster id on the wire
//!
//! [[replica]]
//! id = 0                       # logical ids: 0, 1, 2, ... (replica 0 leads a new cluster)
//! address = "127.0.0.1:7000"   # where the others send to it
//!
//! [[replica]]                  # a spare: not in the first configuration, it takes part
//! id = 3                       # once an administrator's JOIN (`smr join 3`) is decided
//! address = "127.0.0.1:7003"
//! spare = true
//!
//! [timing]                     # optional
//! election_timeout_ms = [300, 600]
//! heartbeat_interval_ms = 50
//!
//! [limits]                     # optional; the protocol's defaults otherwise,
//! window = 1                   # but a window of DEPLOYED_WINDOW
//! max_batch_requests = 512
//! checkpoint_interval = 128    # slots between checkpoints; DEPLOYED_CHECKPOINT_INTERVAL
//! max_sessions = 16384         # client sessions kept; the least recently used is retired
//! transfer_window = 4          # snapshot chunks (32 KiB each) a state transfer keeps in flight
//!
//! [security]                   # required (docs/DEPLOY.md, "Securing a cluster")
//! cluster_keys = ["keys/cluster.key"]  # replicas only; the first signs, all are accepted
//!
//! [[security.credential]]      # who may use the cluster: clients' ids carry its number
//! id = 1
//! role = "admin"               # "admin" (also join, quit, status) or "client"
//! keys = ["keys/admin.key"]    # replicas accept each; a client signs with the first
//! ```
//!
//! Key files are named relative to the configuration file. `[security] insecure = true`
//! instead turns authentication off, for local experiments only.

use crate::replica::{Limits, ReplicaConfig};
use crate::runtime::auth::{keys, Credential, Key, Keyring, Role};
use serde::Deserialize;
use stateright::actor::Id;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The leader's Phase 2 window for deployed clusters, unless `[limits] window` says otherwise.
///
/// Each slot costs a round of accepts and an fsync at every replica, and the replica's per-step
/// work grows with the number of slots it holds until checkpoints truncate the log. With one
/// slot in flight, requests that arrive meanwhile queue at the leader and go out together as
/// the next batch, so slots are few and full. Measured with `bench` on a 2-core machine,
/// 3 replicas and 64 clients: window 1 about 9,500 ops/s, window 2 about 8,200, window 8 about
/// 3,400, with the same single-client latency.
pub const DEPLOYED_WINDOW: usize = 1;

/// Slots between checkpoints for deployed clusters, unless `[limits] checkpoint_interval` says
/// otherwise.
///
/// The replica's per-step work grows with the slots it holds (it digests its log and accepted
/// values after every step, and the runtime diffs the accepted values at every commit), and a
/// stable checkpoint is what truncates them. Checkpointing more often keeps the log short at
/// the price of writing the service state more often. Measured with `bench` on a 2-core
/// machine shared with other work, 3 replicas and 64 clients, 5 s each: interval 1024 about
/// 16,400 ops/s, 256 about 20,800, 128 about 21,700 to 24,900, 64 about 20,600.
pub const DEPLOYED_CHECKPOINT_INTERVAL: u64 = 128;

/// A configuration that cannot be used, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    cluster: String,
    #[serde(default)]
    replica: Vec<Member>,
    #[serde(default)]
    timing: Timing,
    #[serde(default)]
    limits: LimitsFile,
    security: Option<SecurityFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityFile {
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    cluster_keys: Vec<PathBuf>,
    #[serde(default)]
    credential: Vec<CredentialFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    id: u16,
    role: String,
    keys: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    id: u64,
    address: String,
    #[serde(default)]
    spare: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Timing {
    election_timeout_ms: Option<[u64; 2]>,
    heartbeat_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    window: Option<usize>,
    max_batch_requests: Option<usize>,
    max_batch_bytes: Option<usize>,
    max_queue: Option<usize>,
    max_payload_bytes: Option<usize>,
    checkpoint_interval: Option<u64>,
    max_sessions: Option<usize>,
    transfer_window: Option<usize>,
}

/// A checked cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's name.
    pub name: String,
    /// The id on the wire: the stable digest of the name.
    pub id: u64,
    /// Every replica's id and address: the first configuration's members and the spares.
    pub members: BTreeMap<Id, SocketAddr>,
    /// The spares: replicas that take part only once a JOIN has added them.
    pub spares: Vec<Id>,
    /// The protocol configuration every replica of the cluster uses.
    pub replica: ReplicaConfig,
    /// Who may speak for the cluster: the key files, not the keys (each process reads only
    /// those it needs).
    pub security: Security,
}

/// The `[security]` section, with key files resolved against the configuration's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Security {
    /// No authentication: anyone who can reach a replica can do anything. For local
    /// experiments only.
    Insecure,
    Keys {
        /// The first signs; all are accepted.
        cluster_keys: Vec<PathBuf>,
        /// By number: the role and the key files (the first signs; all are accepted).
        credentials: BTreeMap<u16, (Role, Vec<PathBuf>)>,
    },
}

/// Which credential a client process uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// This one.
    Credential(u16),
    /// The first whose key this process can read: a client's before an administrator's.
    AnyClient,
    /// The first administrator's whose key this process can read.
    AnyAdmin,
}

impl Cluster {
    /// Reads and checks a configuration file; key files are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse_in(&text, base)
            .map_err(|ConfigError(what)| ConfigError(format!("{}: {what}", path.display())))
    }

    /// Parses and checks the text of a configuration file; key files are relative to the
    /// current directory.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_in(text, Path::new(""))
    }

    /// Parses and checks the text of a configuration file whose key files are relative to
    /// `base`.
    pub fn parse_in(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text)
            .map_err(|e| ConfigError(format!("not a valid configuration: {e}")))?;
        if file.cluster.trim().is_empty() {
            return Err(ConfigError("`cluster` must name the cluster".into()));
        }
        if file.replica.is_empty() {
            return Err(ConfigError(
                "no replicas: add [[replica]] entries with `id` and `address`".into(),
            ));
        }
        let mut members = BTreeMap::new();
        let mut spares = Vec::new();
        let mut seen_addresses = BTreeMap::new();
        for member in &file.replica {
            let address: SocketAddr = member.address.parse().map_err(|e| {
                ConfigError(format!(
                    "replica {}: address {:?} is not IP:PORT ({e})",
                    member.id, member.address
                ))
            })?;
            if address.ip().is_unspecified() || address.port() == 0 {
                return Err(ConfigError(format!(
                    "replica {}: address {address} cannot be sent to; give the IP and port the others reach it at",
                    member.id
                )));
            }
            if let Some(other) = seen_addresses.insert(address, member.id) {
                return Err(ConfigError(format!(
                    "replicas {other} and {} have the same address {address}",
                    member.id
                )));
            }
            let id = usize::try_from(member.id)
                .map(Id::from)
                .map_err(|_| ConfigError(format!("replica id {} is too large", member.id)))?;
            if members.insert(id, address).is_some() {
                return Err(ConfigError(format!(
                    "replica id {} appears twice",
                    member.id
                )));
            }
            if member.spare {
                spares.push(id);
            }
        }
        let every: Vec<Id> = members.keys().copied().collect();
        ReplicaConfig::check_members(&every).map_err(ConfigError)?;
        let first: Vec<Id> = every
            .iter()
            .copied()
            .filter(|id| !spares.contains(id))
            .collect();
        if first.is_empty() {
            return Err(ConfigError(
                "every replica is a spare: the first configuration needs members".into(),
            ));
        }
        let mut replica = ReplicaConfig::new(first);
        replica.replicas = every;
        replica.limits.window = DEPLOYED_WINDOW;
        replica.checkpoint_interval = Some(DEPLOYED_CHECKPOINT_INTERVAL);
        apply_timing(&file.timing, &mut replica)?;
        apply_limits(&file.limits, &mut replica.limits)?;
        if let Some(interval) = file.limits.checkpoint_interval {
            replica.checkpoint_interval = Some(interval);
        }
        let security = parse_security(file.security, base)?;
        Ok(Cluster {
            id: spec::digest_of(file.cluster.as_str()),
            name: file.cluster,
            members,
            spares,
            replica,
            security,
        })
    }

    /// Every key a replica holds: the cluster keys and every credential's. A missing,
    /// unreadable or world-readable key file is an error that names it.
    pub fn replica_keyring(&self) -> Result<Keyring, ConfigError> {
        let Security::Keys {
            cluster_keys,
            credentials,
        } = &self.security
        else {
            return Ok(Keyring::Insecure);
        };
        let cluster = keys::load_all(cluster_keys).map_err(|e| ConfigError(e.0))?;
        let mut loaded = BTreeMap::new();
        for (id, (role, files)) in credentials {
            let keys =
                keys::load_all(files).map_err(|e| ConfigError(format!("credential {id}: {e}")))?;
            loaded.insert(
                *id,
                Credential {
                    id: *id,
                    role: *role,
                    keys,
                },
            );
        }
        Ok(Keyring::Replica {
            cluster,
            credentials: loaded,
        })
    }

    /// The credential a client process signs with, as `want` says: its first key file must be
    /// readable by this process (and by no one else).
    pub fn client_keyring(&self, want: Want) -> Result<Keyring, ConfigError> {
        let Security::Keys { credentials, .. } = &self.security else {
            return Ok(Keyring::Insecure);
        };
        let candidates: Vec<u16> = match want {
            Want::Credential(id) => {
                if !credentials.contains_key(&id) {
                    let known: Vec<String> = credentials.keys().map(u16::to_string).collect();
                    return Err(ConfigError(format!(
                        "credential {id} is not in the configuration (its credentials are {})",
                        known.join(", ")
                    )));
                }
                vec![id]
            }
            Want::AnyClient => {
                let by_role = |wanted: Role| {
                    credentials
                        .iter()
                        .filter(move |(_, (role, _))| *role == wanted)
                        .map(|(id, _)| *id)
                };
                by_role(Role::Client).chain(by_role(Role::Admin)).collect()
            }
            Want::AnyAdmin => credentials
                .iter()
                .filter(|(_, (role, _))| *role == Role::Admin)
                .map(|(id, _)| *id)
                .collect(),
        };
        let mut failures = Vec::new();
        for id in candidates {
            let (role, files) = &credentials[&id];
            match files.first().map(|file| Key::load(file)) {
                Some(Ok(key)) => {
                    return Ok(Keyring::Client(Credential {
                        id,
                        role: *role,
                        keys: vec![key],
                    }))
                }
                // A file this user cannot read may be meant for another; one it can read
                // but that is unsafe or no key is a mistake, reported rather than skipped.
                Some(Err(error)) if error.1 == keys::KeyProblem::Unsafe => {
                    return Err(ConfigError(format!("credential {id}: {error}")));
                }
                Some(Err(error)) => failures.push(format!("credential {id}: {error}")),
                None => failures.push(format!("credential {id} has no key file")),
            }
        }
        let what = match want {
            Want::AnyAdmin => "an administrator's credential (role = \"admin\")",
            _ => "a credential",
        };
        Err(ConfigError(if failures.is_empty() {
            format!("this command needs {what}, and the configuration has none")
        } else {
            format!(
                "this command needs {what} whose key file this user can read: {}",
                failures.join("; ")
            )
        }))
    }

    /// Checks that `id` is a member and returns it as an [`Id`].
    pub fn member(&self, id: u64) -> Result<Id, ConfigError> {
        let found = usize::try_from(id)
            .ok()
            .map(Id::from)
            .filter(|id| self.members.contains_key(id));
        found.ok_or_else(|| {
            let known: Vec<String> = self
                .members
                .keys()
                .map(|id| usize::from(*id).to_string())
                .collect();
            ConfigError(format!(
                "replica id {id} is not in the configuration (its replicas are {})",
                known.join(", ")
            ))
        })
    }
}

fn parse_security(file: Option<SecurityFile>, base: &Path) -> Result<Security, ConfigError> {
    let Some(file) = file else {
        return Err(ConfigError(
            "no [security] section: every datagram of a cluster is authenticated. Create keys with `smr new-key FILE` and name them in [security] (docs/DEPLOY.md, \"Securing a cluster\"); or, for local experiments only, write `[security]` and `insecure = true`".into(),
        ));
    };
    if file.insecure {
        if !file.cluster_keys.is_empty() || !file.credential.is_empty() {
            return Err(ConfigError(
                "[security] insecure = true turns authentication off, but keys are named too: remove one or the other".into(),
            ));
        }
        return Ok(Security::Insecure);
    }
    if file.cluster_keys.is_empty() {
        return Err(ConfigError(
            "[security] cluster_keys names no key file: replicas sign with the first (make one with `smr new-key FILE`), or write `insecure = true` for local experiments only".into(),
        ));
    }
    if file.credential.is_empty() {
        return Err(ConfigError(
            "[security] has no [[security.credential]]: no client could use the cluster".into(),
        ));
    }
    let resolve = |path: &PathBuf| base.join(path);
    let mut credentials = BTreeMap::new();
    for credential in &file.credential {
        let role = match credential.role.as_str() {
            "client" => Role::Client,
            "admin" => Role::Admin,
            other => {
                return Err(ConfigError(format!(
                    "credential {}: role {other:?} is neither \"client\" nor \"admin\"",
                    credential.id
                )))
            }
        };
        if credential.keys.is_empty() {
            return Err(ConfigError(format!(
                "credential {} names no key file",
                credential.id
            )));
        }
        let keys = credential.keys.iter().map(resolve).collect();
        if credentials.insert(credential.id, (role, keys)).is_some() {
            return Err(ConfigError(format!(
                "credential {} appears twice",
                credential.id
            )));
        }
    }
    Ok(Security::Keys {
        cluster_keys: file.cluster_keys.iter().map(resolve).collect(),
        credentials,
    })
}

fn apply_timing(timing: &Timing, config: &mut ReplicaConfig) -> Result<(), ConfigError> {
    if let Some([low, high]) = timing.election_timeout_ms {
        if low == 0 || low > high {
            return Err(ConfigError(format!(
                "timing.election_timeout_ms = [{low}, {high}] must be a range [low, high] with 0 < low <= high"
            )));
        }
        config.election_timeout = Duration::from_millis(low)..Duration::from_millis(high);
    }
    if let Some(interval) = timing.heartbeat_interval_ms {
        if interval == 0 {
            return Err(ConfigError(
                "timing.heartbeat_interval_ms must be positive".into(),
            ));
        }
        let interval = Duration::from_millis(interval);
        config.heartbeat_interval = Some(interval..interval);
    }
    if let Some(heartbeat) = &config.heartbeat_interval {
        if heartbeat.end >= config.election_timeout.start {
            return Err(ConfigError(format!(
                "the heartbeat interval ({:?}) must be shorter than the election timeout ({:?}), or followers depose a live leader",
                heartbeat.end, config.election_timeout.start
            )));
        }
    }
    Ok(())
}

fn apply_limits(file: &LimitsFile, limits: &mut Limits) -> Result<(), ConfigError> {
    let positive = |name: &str, value: Option<usize>, target: &mut usize| match value {
        Some(0) => Err(ConfigError(format!("limits.{name} must be positive"))),
        Some(value) => {
            *target = value;
            Ok(())
        }
        None => Ok(()),
    };
    positive("window", file.window, &mut limits.window)?;
    if let Some(interval) = file.checkpoint_interval {
        if interval < 2 {
            return Err(ConfigError(
                "limits.checkpoint_interval must be at least 2 slots".into(),
            ));
        }
    }
    positive(
        "max_batch_requests",
        file.max_batch_requests,
        &mut limits.max_batch_requests,
    )?;
    positive(
        "max_batch_bytes",
        file.max_batch_bytes,
        &mut limits.max_batch_bytes,
    )?;
    positive("max_queue", file.max_queue, &mut limits.max_queue)?;
    positive(
        "transfer_window",
        file.transfer_window,
        &mut limits.transfer_window,
    )?;
    // Replicated state, like the window: every replica must have the same value when the
    // cluster is created (a replica recovering from a checkpoint keeps the checkpoint's).
    positive("max_sessions", file.max_sessions, &mut limits.max_sessions)?;
    positive(
        "max_payload_bytes",
        file.max_payload_bytes,
        &mut limits.max_payload_bytes,
    )?;
    // A batch of openings must not retire the sessions it opens.
    if limits.max_sessions < limits.max_batch_requests {
        return Err(ConfigError(format!(
            "limits.max_sessions ({}) must be at least limits.max_batch_requests ({}): otherwise one batch of new clients could retire a session in the slot that opened it",
            limits.max_sessions, limits.max_batch_requests
        )));
    }
    // Whatever the limits, a message must fit one datagram, with room for the frame header
    // and the message's own fields around the batch or payload.
    let budget = crate::codec::MAX_DATAGRAM_BYTES - 4096;
    if limits.max_batch_bytes > budget || limits.max_payload_bytes > budget {
        return Err(ConfigError(format!(
            "limits.max_batch_bytes and limits.max_payload_bytes must stay below {budget} so that every message fits one datagram"
        )));
    }
    Ok(())
}

/// The `[security]` section of a cluster whose keys `create_keys` made in `dir`.
pub fn security_section(dir: &Path) -> String {
    let quoted = |name: &str| format!("{:?}", dir.join(name).display().to_string());
    format!(
        "[security]\ncluster_keys = [{}]\n\n[[security.credential]]\nid = 0\nrole = \"client\"\nkeys = [{}]\n\n[[security.credential]]\nid = 1\nrole = \"admin\"\nkeys = [{}]\n",
        quoted("cluster.key"),
        quoted("client.key"),
        quoted("admin.key")
    )
}

/// Creates a cluster key, a client credential's key (credential 0) and an administrator's
/// (credential 1) in `dir`, as [`security_section`] names them: for harnesses that run a
/// whole cluster (the benchmarks, the tests).
pub fn create_keys(dir: &Path) -> Result<(), ConfigError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ConfigError(format!("cannot create {}: {e}", dir.display())))?;
    for name in ["cluster.key", "client.key", "admin.key"] {
        Key::create_file(&dir.join(name)).map_err(|e| ConfigError(e.0))?;
    }
    Ok(())
}

/// Writes a configuration file for `n` replicas on consecutive loopback ports from `port`,
/// without authentication (insecure mode: for tests of other things).
pub fn loopback_config(name: &str, n: usize, port: u16) -> String {
    let mut text = format!("cluster = {name:?}\n[security]\ninsecure = true\n");
    for id in 0..n {
        text.push_str(&format!(
            "\n[[replica]]\nid = {id}\naddress = \"127.0.0.1:{}\"\n",
            port as usize + id
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Cluster::parse(text).unwrap_err().0
    }

    #[test]
    fn a_good_file_parses_and_bad_ones_say_what_is_wrong() {
        let good = loopback_config("demo", 3, 7000);
        let cluster = Cluster::parse(&good).unwrap();
        assert_eq!(cluster.members.len(), 3);
        assert_eq!(cluster.replica.initial_leader, Some(Id::from(0)));
        assert!(cluster.member(2).is_ok());
        assert!(cluster
            .member(3)
            .unwrap_err()
            .0
            .contains("not in the configuration"));

        assert!(error("cluster = ").contains("not a valid configuration"));
        assert!(error("cluster = \"x\"").contains("no replicas"));
        let twice = "cluster = \"x\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:2\"\n";
        assert!(error(twice).contains("appears twice"));
        let same = "cluster = \"x\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n[[replica]]\nid = 1\naddress = \"127.0.0.1:1\"\n";
        assert!(error(same).contains("same address"));
        let bad_address = "cluster = \"x\"\n[[replica]]\nid = 0\naddress = \"localhost\"\n";
        assert!(error(bad_address).contains("not IP:PORT"));
        let big = "cluster = \"x\"\n[[replica]]\nid = 99\naddress = \"127.0.0.1:1\"\n";
        assert!(error(big).contains("too large"));
        let unknown = format!("{good}\n[timing]\nelection_ms = 3\n");
        assert!(error(&unknown).contains("unknown field"));
        let slow_heartbeat = format!("{good}\n[timing]\nheartbeat_interval_ms = 900\n");
        assert!(error(&slow_heartbeat).contains("shorter than the election timeout"));
        let spare =
            format!("{good}[[replica]]\nid = 3\naddress = \"127.0.0.1:9999\"\nspare = true\n");
        let with_spare = Cluster::parse(&spare).unwrap();
        assert_eq!(with_spare.members.len(), 4);
        assert_eq!(with_spare.spares, vec![Id::from(3)]);
        assert_eq!(with_spare.replica.members.len(), 3);
        assert_eq!(with_spare.replica.replicas.len(), 4);
        let all_spares =
            "cluster = \"x\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\nspare = true\n";
        assert!(error(all_spares).contains("every replica is a spare"));
        let small_table = format!("{good}[limits]\nmax_sessions = 8\n");
        assert!(error(&small_table).contains("at least limits.max_batch_requests (512)"));
        let sessions = format!("{good}[limits]\nmax_sessions = 8\nmax_batch_requests = 8\n");
        assert_eq!(
            Cluster::parse(&sessions)
                .unwrap()
                .replica
                .limits
                .max_sessions,
            8
        );
    }

    #[test]
    fn security_is_required_and_keyrings_say_which_file_is_wrong() {
        let replicas = "cluster = \"x\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n";
        assert!(error(replicas).contains("no [security] section"));
        let both = format!("{replicas}[security]\ninsecure = true\ncluster_keys = [\"k\"]\n");
        assert!(error(&both).contains("remove one or the other"));
        let insecure = Cluster::parse(&format!("{replicas}[security]\ninsecure = true\n")).unwrap();
        assert_eq!(insecure.replica_keyring().unwrap(), Keyring::Insecure);

        let dir = tempfile::tempdir().unwrap();
        create_keys(dir.path()).unwrap();
        let cluster =
            Cluster::parse(&format!("{replicas}{}", security_section(dir.path()))).unwrap();
        let Keyring::Replica {
            cluster: keys,
            credentials,
        } = cluster.replica_keyring().unwrap()
        else {
            panic!("a replica's keyring");
        };
        assert_eq!((keys.len(), credentials.len()), (1, 2));
        // A client's credential before an administrator's; an administrator's when asked.
        assert_eq!(
            cluster
                .client_keyring(Want::AnyClient)
                .unwrap()
                .own_credential(),
            0
        );
        assert_eq!(
            cluster
                .client_keyring(Want::AnyAdmin)
                .unwrap()
                .own_credential(),
            1
        );
        assert!(cluster
            .client_keyring(Want::Credential(7))
            .unwrap_err()
            .0
            .contains("credential 7 is not in the configuration"));
        // The client's key missing (held by another user): the administrator's is used.
        std::fs::rename(dir.path().join("client.key"), dir.path().join("elsewhere")).unwrap();
        assert_eq!(
            cluster
                .client_keyring(Want::AnyClient)
                .unwrap()
                .own_credential(),
            1
        );
        assert!(cluster
            .replica_keyring()
            .unwrap_err()
            .0
            .contains("client.key"));
        // ... but readable by others: an error, not a silent fallback.
        std::fs::rename(dir.path().join("elsewhere"), dir.path().join("client.key")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let open = std::fs::Permissions::from_mode(0o644);
            std::fs::set_permissions(dir.path().join("client.key"), open).unwrap();
            let why = cluster.client_keyring(Want::AnyClient).unwrap_err().0;
            assert!(why.contains("chmod 600"), "{why}");
        }
        std::fs::remove_file(dir.path().join("admin.key")).unwrap();
        let why = cluster.client_keyring(Want::AnyAdmin).unwrap_err().0;
        assert!(
            why.contains("administrator") && why.contains("admin.key"),
            "{why}"
        );
    }
}

//! The bounds of a model check, and the named presets.

use smr::{Limits, SeededBug};
use spec::{Change, KvOp, Operation};
use stateright::actor::Id;
use std::fmt;

/// The network semantics the model explores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkKind {
    /// Messages are delivered in any order, at most once; a message that is never delivered
    /// is a lost one. Covers UDP's reordering and loss.
    Unordered,
    /// As `Unordered`, and any message can be delivered any number of times: UDP duplication.
    Duplicating,
    /// Per-pair FIFO channels (not UDP's semantics; for comparison only).
    Ordered,
}

impl NetworkKind {
    pub const NAMES: &'static [&'static str] = &["unordered", "duplicating", "ordered"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "unordered" => Some(NetworkKind::Unordered),
            "duplicating" => Some(NetworkKind::Duplicating),
            "ordered" => Some(NetworkKind::Ordered),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NetworkKind::Unordered => "unordered",
            NetworkKind::Duplicating => "duplicating",
            NetworkKind::Ordered => "ordered",
        }
    }
}

/// Everything that bounds the explored state space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// Replicas (ids `0..replicas`).
    pub replicas: usize,
    /// Clients (ids after the replicas).
    pub clients: usize,
    /// Operations each client submits, one after the other.
    pub operations: usize,
    /// Crashes (each followed by a recovery from durable storage) over the whole run.
    pub crashes: u32,
    /// Crashes in which the replica's storage is lost, besides `crashes`: it restarts from
    /// nothing and rebuilds it from the other replicas before it votes (proofs/RECOVERY.md).
    pub storage_losses: u32,
    /// Elections (distinct ballots prepared). Replica 0 leads the first ballot without one
    /// (the bootstrap); any replica may start an election at any time, so 1 covers a leader
    /// change at every point of the run.
    pub elections: u32,
    /// Sends of one client request: the first plus retries and redirects.
    pub max_attempts: u32,
    /// The leader's pipeline window.
    pub window: usize,
    /// Network semantics.
    pub network: NetworkKind,
    /// Whether leaders send heartbeats (and followers catch up on what they show missing).
    pub heartbeats: bool,
    /// Whether replicas campaign only after a pre-vote, as deployed ones do
    /// (`impl/src/replica/pre_vote.rs`). Off in most presets: it multiplies their state
    /// spaces (each replica's suspicion of the leader comes and goes with its timer), and
    /// safety does not rest on it; the presets `pre-vote` and `pre-vote-quit` and the
    /// simulation check it.
    pub pre_vote: bool,
    /// Whether each client invokes its first operation only after the previous client's first
    /// operation was answered (real-time order across clients, which linearizability needs to
    /// see a stale read); otherwise all clients start at once.
    pub staggered: bool,
    /// Whether at most one copy of a message may be in flight on a network that does not
    /// duplicate (a bound for exhaustive checks: a second copy adds nothing that reordering and
    /// loss of the first do not cover). Random walks drop it, or a stale copy that is never
    /// delivered would block every later send of the same message.
    pub one_copy_in_flight: bool,
    /// Slots between checkpoints (`None`: no checkpoints).
    pub checkpoint_interval: Option<u64>,
    /// Elections only once some replica has truncated its log: a bound that focuses a check
    /// on leader changes above a truncated log. (The truncation point is durable and only
    /// moves forward, crashes included, so once allowed, elections stay allowed.)
    pub elections_after_truncation: bool,
    /// Spare replicas (ids after the members), inactive until a JOIN adds them.
    pub spares: usize,
    /// Membership changes an administrator client submits, one after the other (the
    /// administrator is the last client). Empty: no administrator.
    pub changes: Vec<Change>,
    /// The replicas' queue, batch and message limits (the window aside, which is `window`):
    /// the deployed ones, or [`scaled_limits`] so that the checks reach them.
    pub limits: Limits,
    /// Whether clients open their session before their first operation, as deployed clients
    /// do (`spec::session`); otherwise their first request opens it implicitly.
    pub open_sessions: bool,
    /// A seeded protocol bug to switch on (needs the `seeded-bugs` feature).
    pub bug: Option<SeededBug>,
    /// Check with symmetry reduction over the interchangeable replicas (`crate::symmetry`). A
    /// way of checking, not a bound: the model is the same with or without it.
    pub symmetry: bool,
}

/// The deployed limits scaled down to the model's few small requests and states, so that the
/// same limit code is exercised where it binds: a batch of one request (a second one waits
/// for the next slot), a queue of two, a promise or catch-up page of one entry (every larger
/// promise comes in pages), a snapshot chunk of 16 bytes (a snapshot of one key and one
/// session takes at least 3 chunks), checkpoint votes kept for one slot, a session table of 3
/// entries (the simulation has 4 clients).
pub fn scaled_limits() -> Limits {
    Limits {
        window: Limits::default().window,
        max_batch_requests: 1,
        max_batch_bytes: Limits::default().max_batch_bytes,
        max_queue: 2,
        max_payload_bytes: 1,
        max_chunk_bytes: 16,
        transfer_window: 2,
        max_snapshot_bytes: Limits::default().max_snapshot_bytes,
        max_lent_log_slots: Limits::default().max_lent_log_slots,
        max_pending_checkpoints: 1,
        max_sessions: 3,
    }
}

impl Default for ModelConfig {
    /// The default check: the bounds that issue 2 asks for, explored exhaustively.
    fn default() -> Self {
        Self {
            replicas: 3,
            clients: 2,
            operations: 1,
            crashes: 1,
            storage_losses: 0,
            elections: 1,
            max_attempts: 1,
            window: 1,
            network: NetworkKind::Unordered,
            heartbeats: false,
            pre_vote: false,
            staggered: true,
            one_copy_in_flight: true,
            checkpoint_interval: None,
            elections_after_truncation: false,
            spares: 0,
            changes: Vec::new(),
            limits: Limits::default(),
            open_sessions: false,
            bug: None,
            symmetry: false,
        }
    }
}

/// A named configuration.
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub config: fn() -> ModelConfig,
}

/// The named presets, the default first.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "default",
        about: "3 replicas, 2 clients (a put, then a get once the put is answered), 1 crash and recovery, 1 election at any time, reordering and loss",
        config: ModelConfig::default,
    },
    Preset {
        name: "retries",
        about: "clients retry once (same request number), with an election at any time: exactly-once under retries",
        config: || ModelConfig {
            crashes: 0,
            max_attempts: 2,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "duplicating",
        about: "a network that also duplicates messages (every message may be delivered again at any later time), with an election at any time; 1 client (a put); symmetry reduction over the two followers",
        config: || ModelConfig {
            crashes: 0,
            clients: 1,
            symmetry: true,
            network: NetworkKind::Duplicating,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "pipeline",
        about: "a window of 2 slots in flight, with an election at any time; the two clients start at once",
        config: || ModelConfig {
            crashes: 0,
            window: 2,
            staggered: false,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "heartbeats",
        about: "leaders send heartbeats and followers catch up on missed decisions: 2 replicas, 1 client (a put, then a get), 1 crash and recovery, 1 election",
        config: || ModelConfig {
            replicas: 2,
            clients: 1,
            operations: 2,
            crashes: 1,
            heartbeats: true,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "checkpoint",
        about: "checkpoints every 2 slots (1 write, then a read): truncation, a restarted replica catching up by state transfer; 1 crash",
        config: || ModelConfig {
            clients: 1,
            operations: 2,
            elections: 0,
            checkpoint_interval: Some(2),
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "transfer",
        about: "the `checkpoint` preset with snapshot chunks of 16 bytes and a window of 2 chunks in flight: a restarted replica catches up by a transfer of at least 3 chunks, which arrive in any order",
        config: || ModelConfig {
            limits: smr::Limits {
                max_chunk_bytes: 16,
                transfer_window: 2,
                ..smr::Limits::default()
            },
            ..ModelConfig::preset("checkpoint").expect("preset checkpoint")
        },
    },
    Preset {
        name: "checkpoint-election",
        about: "checkpoints every 2 slots (1 write, then a read) and a leader change at any time after the first truncation: the new leader decides above it",
        config: || ModelConfig {
            clients: 1,
            operations: 2,
            crashes: 0,
            checkpoint_interval: Some(2),
            elections_after_truncation: true,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "join",
        about: "the spare replica 3 joins during client traffic (a put), gets the state by transfer and votes; 1 crash",
        config: || ModelConfig {
            clients: 1,
            operations: 1,
            elections: 0,
            spares: 1,
            changes: vec![Change::Join(Id::from(3))],
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "join-election",
        about: "2 replicas; the spare replica 2 joins with a leader change at any time (Raft's 2015 single-server change bug needs one); the joiner votes on the next checkpoint (every 2 slots); no crash (3 replicas and a spare: not exhaustive in 10 minutes)",
        config: || ModelConfig {
            crashes: 0,
            clients: 0,
            operations: 0,
            replicas: 2,
            spares: 1,
            checkpoint_interval: Some(2),
            changes: vec![Change::Join(Id::from(2))],
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "join-crash",
        about: "checkpoints, a JOIN, a crash and an election together: 2 replicas, the spare replica 2 joins, a leader change and a crash and recovery each at any time, checkpoints every 2 slots",
        config: || ModelConfig {
            crashes: 1,
            ..ModelConfig::preset("join-election").expect("preset join-election")
        },
    },
    Preset {
        name: "quit-leader",
        about: "the leader (replica 0) quits; a member of the new configuration is elected and decides the next checkpoint (every 2 slots); 1 crash, 1 election",
        config: || ModelConfig {
            clients: 0,
            operations: 0,
            checkpoint_interval: Some(2),
            changes: vec![Change::Quit(Id::from(0))],
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "quit-join",
        about: "replica 2 quits, then the spare replica 3 joins, during client traffic (a put); 1 crash",
        config: || ModelConfig {
            clients: 1,
            operations: 1,
            elections: 0,
            spares: 1,
            changes: vec![Change::Quit(Id::from(2)), Change::Join(Id::from(3))],
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "pre-vote",
        about: "the `default` clients with pre-vote, as deployed replicas campaign: an election is a pre-vote granted by a quorum, then Phase 1; no crash",
        config: || ModelConfig {
            crashes: 0,
            pre_vote: true,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "pre-vote-quit",
        about: "`quit-leader` with pre-vote: the leader quits, and a replica that has executed the QUIT refuses the quitter's pre-vote; 1 crash, 1 election",
        config: || ModelConfig {
            pre_vote: true,
            ..ModelConfig::preset("quit-leader").expect("preset quit-leader")
        },
    },
    Preset {
        name: "disk-loss",
        about: "a replica crashes and loses its storage (wiped or damaged disk) at any point, and rebuilds it from the others before it votes; an election at any time; 2 clients (a put, a get)",
        config: || ModelConfig {
            crashes: 0,
            storage_losses: 1,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "disk-loss-crash",
        about: "a storage loss and an ordinary crash, each at any point, and an election at any time; 1 client (a put)",
        config: || ModelConfig {
            clients: 1,
            crashes: 1,
            storage_losses: 1,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "sessions",
        about: "a session table of one entry: 2 clients open their sessions (the second retires the first's) and submit a put and a get, retrying once; a retry of an applied request is answered \"expired\", never applied again; 2 replicas, no crash or election (the table's rules read only the decided log; 3 replicas: over 26 million states)",
        config: || ModelConfig {
            replicas: 2,
            crashes: 0,
            elections: 0,
            max_attempts: 2,
            open_sessions: true,
            limits: Limits {
                max_sessions: 1,
                ..Limits::default()
            },
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "five",
        about: "5 replicas, 1 client (a put), 1 crash and recovery, 1 election at any time; checked with symmetry reduction over the four followers",
        config: || ModelConfig {
            replicas: 5,
            clients: 1,
            symmetry: true,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "simulation",
        about: "for `simulate` (random walks, not exhaustive): 5 replicas and a spare, 3 clients with 8 operations each that retry until answered, 4 crashes and 2 storage losses, 40 elections, window 2, heartbeats, checkpoints every 3 slots, scaled-down limits (a session table of 3 for the 4 clients, which open their sessions); the leader quits, then the spare joins",
        config: || ModelConfig {
            replicas: 5,
            clients: 3,
            operations: 8,
            crashes: 4,
            storage_losses: 2,
            elections: 40,
            max_attempts: 100,
            one_copy_in_flight: false,
            window: 2,
            heartbeats: true,
            pre_vote: true,
            checkpoint_interval: Some(3),
            spares: 1,
            changes: vec![Change::Quit(Id::from(0)), Change::Join(Id::from(5))],
            limits: scaled_limits(),
            open_sessions: true,
            ..ModelConfig::default()
        },
    },
    Preset {
        name: "small",
        about: "no crash and no election: a quick check for tests",
        config: || ModelConfig {
            crashes: 0,
            elections: 0,
            ..ModelConfig::default()
        },
    },
];

impl ModelConfig {
    /// The preset called `name`.
    pub fn preset(name: &str) -> Option<ModelConfig> {
        PRESETS
            .iter()
            .find(|p| p.name == name)
            .map(|p| (p.config)())
    }

    /// The operations of client number `index` (0-based): clients alternate between writing
    /// their own value to the shared key and reading it, so that between them there is at least
    /// one write and one read, and concurrent writes conflict. With `open_sessions`, the
    /// opening of the session comes first.
    pub fn client_ops(&self, index: usize) -> Vec<Operation> {
        let open = self.open_sessions.then_some(Operation::OpenSession);
        let ops = (0..self.operations).map(|k| {
            let key = "k".into();
            let op = if (index + k) % 2 == 0 {
                KvOp::Put {
                    key,
                    value: format!("v{index}").into(),
                }
            } else {
                KvOp::Get { key }
            };
            Operation::Kv(op)
        });
        open.into_iter().chain(ops).collect()
    }

    /// Replica actors: the members, then the spares.
    pub fn replica_actors(&self) -> usize {
        self.replicas + self.spares
    }

    /// Client actors: the key-value clients, then the administrator if there are changes.
    pub fn client_actors(&self) -> usize {
        self.clients + usize::from(!self.changes.is_empty())
    }

    /// The operations of the administrator client (with `open_sessions`, the opening of its
    /// session first).
    pub fn admin_ops(&self) -> Vec<Operation> {
        let open = self.open_sessions.then_some(Operation::OpenSession);
        let changes = self.changes.iter().copied().map(Operation::Reconfigure);
        open.into_iter().chain(changes).collect()
    }

    /// Checks that the bounds make sense, saying what is wrong if not.
    pub fn validate(&self) -> Result<(), String> {
        if self.replicas == 0 || self.replicas > 7 {
            return Err(format!("--replicas must be 1 to 7, not {}", self.replicas));
        }
        if self.clients > 4 {
            return Err(format!("--clients must be 0 to 4, not {}", self.clients));
        }
        if self.operations > 16 {
            return Err(format!(
                "--operations must be 0 to 16, not {}",
                self.operations
            ));
        }
        if self.max_attempts == 0 {
            return Err("--max-attempts must be at least 1".into());
        }
        if self.window == 0 {
            return Err("--window must be at least 1".into());
        }
        if self.spares > 2 {
            return Err(format!("--spares must be 0 to 2, not {}", self.spares));
        }
        // A JOIN names a spare and a QUIT a member: a change that names no actor, or the wrong
        // kind, would leave the administrator waiting for ever and its Sometimes unreachable.
        for change in &self.changes {
            let (id, spare) = match change {
                Change::Join(id) => (usize::from(*id), true),
                Change::Quit(id) => (usize::from(*id), false),
            };
            let (low, high, what) = if spare {
                (self.replicas, self.replicas + self.spares, "a spare")
            } else {
                (0, self.replicas, "a member")
            };
            if !(low..high).contains(&id) {
                return Err(format!(
                    "{change:?} must name {what} (ids {low} to {}), not replica {id}",
                    high as i64 - 1
                ));
            }
        }
        // A checkpoint command takes a slot of its own, so with one slot between checkpoints
        // the leader would propose checkpoints forever (deployed configs refuse it too).
        if let Some(interval) = self.checkpoint_interval {
            if interval < 2 {
                return Err(format!(
                    "--checkpoint-interval must be at least 2 slots (a checkpoint takes a slot itself), not {interval}"
                ));
            }
        }
        let f = (self.replicas as u32).saturating_sub(1) / 2;
        if self.storage_losses > f {
            return Err(format!(
                "--storage-losses must be at most f = {f} for {} replicas (a replica rebuilds from f + 1 others whose storage is intact), not {}",
                self.replicas, self.storage_losses
            ));
        }
        if self.bug.is_some() && !cfg!(feature = "seeded-bugs") {
            return Err("--bug needs the model built with `--features seeded-bugs`".into());
        }
        Ok(())
    }
}

impl ModelConfig {
    /// The `model check` options that rebuild exactly this configuration: a preset and the
    /// overrides of it, the shortest such line; `None` if no command line builds it. Every
    /// counterexample prints it, so that the explorer can be opened on the same model.
    pub fn command_line(&self) -> Option<String> {
        PRESETS
            .iter()
            .filter_map(|preset| self.overrides_of(preset))
            .min_by_key(String::len)
    }

    /// `--preset NAME` and the options that turn that preset into this configuration.
    fn overrides_of(&self, preset: &Preset) -> Option<String> {
        let base = (preset.config)();
        let mut args = format!("--preset {}", preset.name);
        let mut rebuilt = base.clone();
        let mut option = |name: &str, differs: bool, value: String| {
            if differs {
                args.push(' ');
                args.push_str(&format!("--{name}"));
                if !value.is_empty() {
                    args.push_str(&format!(" {value}"));
                }
            }
        };
        macro_rules! number {
            ($name:literal, $field:ident) => {
                option($name, self.$field != base.$field, self.$field.to_string());
                rebuilt.$field = self.$field;
            };
        }
        number!("replicas", replicas);
        number!("clients", clients);
        number!("operations", operations);
        number!("crashes", crashes);
        number!("storage-losses", storage_losses);
        number!("elections", elections);
        number!("max-attempts", max_attempts);
        number!("window", window);
        option(
            "network",
            self.network != base.network,
            self.network.name().into(),
        );
        rebuilt.network = self.network;
        if let Some(interval) = self.checkpoint_interval {
            option(
                "checkpoint-interval",
                self.checkpoint_interval != base.checkpoint_interval,
                interval.to_string(),
            );
            rebuilt.checkpoint_interval = self.checkpoint_interval;
        }
        if self.heartbeats && !base.heartbeats {
            option("heartbeats", true, String::new());
            rebuilt.heartbeats = true;
        }
        if self.pre_vote && !base.pre_vote {
            option("pre-vote", true, String::new());
            rebuilt.pre_vote = true;
        }
        if !self.staggered && base.staggered {
            option("concurrent-clients", true, String::new());
            rebuilt.staggered = false;
        }
        if self.limits == scaled_limits() && base.limits != scaled_limits() {
            option("scaled-limits", true, String::new());
            rebuilt.limits = scaled_limits();
        }
        if self.open_sessions && self.limits.max_sessions != base.limits.max_sessions {
            let max = self.limits.max_sessions;
            option("max-sessions", true, max.to_string());
            rebuilt.limits.max_sessions = max;
            rebuilt.open_sessions = true;
        }
        if let Some(bug) = self.bug {
            option("bug", true, bug.name().into());
            rebuilt.bug = Some(bug);
        }
        // The same model, whether checked with symmetry reduction or not.
        rebuilt.symmetry = self.symmetry;
        // Every other field (membership changes, spares, ...) must be the preset's own, since
        // no option sets it.
        (rebuilt == *self).then_some(args)
    }
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replicas={} clients={} operations/client={} crashes={} elections={} max-attempts={} window={} network={} heartbeats={}",
            self.replicas,
            self.clients,
            self.operations,
            self.crashes,
            self.elections,
            self.max_attempts,
            self.window,
            self.network.name(),
            self.heartbeats
        )?;
        if self.storage_losses > 0 {
            write!(f, " storage-losses={}", self.storage_losses)?;
        }
        if self.pre_vote {
            write!(f, " pre-vote")?;
        }
        if !self.staggered && self.clients > 1 {
            write!(f, " concurrent-clients")?;
        }
        if !self.one_copy_in_flight {
            write!(f, " copies-in-flight")?;
        }
        if let Some(interval) = self.checkpoint_interval {
            write!(f, " checkpoint-interval={interval}")?;
        }
        if self.elections_after_truncation {
            write!(f, " elections-after-truncation")?;
        }
        if self.spares > 0 {
            write!(f, " spares={}", self.spares)?;
        }
        for change in &self.changes {
            match change {
                Change::Join(id) => write!(f, " join={}", usize::from(*id))?,
                Change::Quit(id) => write!(f, " quit={}", usize::from(*id))?,
            }
        }
        if self.limits == scaled_limits() {
            write!(f, " scaled-limits")?;
        } else if self.limits != Limits::default() {
            write!(f, " limits={:?}", self.limits)?;
        }
        if let Some(bug) = self.bug {
            write!(f, " bug={}", bug.name())?;
        }
        if self.symmetry {
            write!(f, " (symmetry reduction)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for preset in PRESETS {
            let cfg = (preset.config)();
            assert_eq!(cfg.validate(), Ok(()), "{}", preset.name);
        }
    }

    #[test]
    fn bounds_that_cannot_run_are_refused_with_the_reason() {
        let join = ModelConfig::preset("join").unwrap();
        let refused = |cfg: ModelConfig, words: &str| {
            let error = cfg.validate().expect_err(words);
            assert!(error.contains(words), "{error}");
        };
        refused(
            ModelConfig {
                replicas: 2,
                ..join.clone()
            },
            "must name a spare",
        );
        refused(
            ModelConfig {
                changes: vec![Change::Quit(Id::from(3))],
                ..join.clone()
            },
            "must name a member",
        );
        refused(
            ModelConfig {
                checkpoint_interval: Some(1),
                ..join
            },
            "--checkpoint-interval must be at least 2",
        );
    }
}

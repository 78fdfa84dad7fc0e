//! A data directory's identity: which cluster and replica it belongs to, how it came to be,
//! and whether the replica ever saved state in it.
//!
//! The identity is what tells a brand-new directory from one that lost its state. A replica
//! may start from nothing (promise the bootstrap ballot, lead the first slots) only in a
//! directory that was created for a brand-new cluster (`--new-cluster`) and has never held
//! state; a directory that is missing, empty, marked as started but without its state files,
//! or another replica's, has lost what its replica promised and accepted, and the replica must
//! rebuild it from the others first (`--recover`, proofs/RECOVERY.md).
//!
//! ```text
//! smr-data-dir 2
//! cluster 0x00000000000000ab     the cluster id (the digest of its name)
//! replica 1                      the replica id
//! created 1764658000 new-cluster when (Unix seconds) and how: new-cluster or recovered
//! members 0 1 2                  the cluster's first configuration, its window (α) and the
//! window 1                       size of its session table: replicated state, which must
//! max_sessions 16384             never change
//! state started                  new (never saved state) or started
//! ```

use std::fmt::Write;

/// The first line of an identity file of this format.
const FORMAT: &str = "smr-data-dir 2";
/// The first line of the previous format (cluster and replica only), still read.
const FORMAT_1: &str = "smr-data-dir 1";

/// Which cluster and replica a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster: u64,
    pub replica: u64,
    /// The cluster's first configuration and window, where the actor has them: a replica
    /// refuses a configuration file that disagrees with the cluster it was created for.
    pub genesis: Option<Genesis>,
}

impl Identity {
    /// An identity without a first configuration (for actors that have none).
    pub const fn plain(cluster: u64, replica: u64) -> Self {
        Identity {
            cluster,
            replica,
            genesis: None,
        }
    }
}

/// A cluster's first configuration, window (α) and session-table size, which every replica
/// must agree on forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Genesis {
    pub members: Vec<u64>,
    pub window: u64,
    /// `None` where an identity file has no such line (written before the table was bounded;
    /// this build cannot read such a directory's records anyway): not checked then.
    pub max_sessions: Option<u64>,
}

/// How a data directory was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creation {
    /// For a member of a brand-new cluster, or a spare that was never a member.
    NewCluster,
    /// To rebuild a replica whose storage was lost or damaged.
    Recovered,
}

/// The content of an identity file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    pub identity: Identity,
    /// Unix seconds.
    pub created_at: u64,
    pub creation: Creation,
    /// Whether the replica has saved state in the directory.
    pub started: bool,
}

impl IdentityRecord {
    /// The record of a directory created now.
    pub fn new(identity: Identity, creation: Creation) -> Self {
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        IdentityRecord {
            identity,
            created_at,
            creation,
            started: false,
        }
    }

    pub fn format(&self) -> String {
        let mut text = format!(
            "{FORMAT}\ncluster {:#018x}\nreplica {}\ncreated {} {}\n",
            self.identity.cluster,
            self.identity.replica,
            self.created_at,
            match self.creation {
                Creation::NewCluster => "new-cluster",
                Creation::Recovered => "recovered",
            }
        );
        if let Some(genesis) = &self.identity.genesis {
            let members: Vec<String> = genesis.members.iter().map(u64::to_string).collect();
            let _ = writeln!(text, "members {}", members.join(" "));
            let _ = writeln!(text, "window {}", genesis.window);
            if let Some(max) = genesis.max_sessions {
                let _ = writeln!(text, "max_sessions {max}");
            }
        }
        let _ = writeln!(
            text,
            "state {}",
            if self.started { "started" } else { "new" }
        );
        text
    }

    /// Parses an identity file; `has_state` says whether the directory holds state files (a
    /// file of the previous format does not say whether the replica started).
    pub fn parse(text: &str, has_state: bool) -> Result<Self, String> {
        let mut lines = text.lines();
        let format = lines.next().unwrap_or_default();
        let mut record = IdentityRecord {
            identity: Identity::plain(0, 0),
            created_at: 0,
            creation: Creation::NewCluster,
            started: has_state,
        };
        let (mut cluster, mut replica, mut state) = (None, None, None);
        let (mut members, mut window, mut max_sessions) = (None, None, None);
        match format {
            FORMAT | FORMAT_1 => {}
            other => return Err(format!("not an identity file (first line {other:?})")),
        }
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let number = |value: &str| {
                let parsed = match value.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => value.parse(),
                };
                parsed.map_err(|_| format!("{key}: {value:?} is not a number"))
            };
            match key {
                "cluster" => cluster = Some(number(value)?),
                "replica" => replica = Some(number(value)?),
                "created" => {
                    let (at, how) = value.split_once(' ').unwrap_or((value, ""));
                    record.created_at = number(at)?;
                    record.creation = match how {
                        "new-cluster" => Creation::NewCluster,
                        "recovered" => Creation::Recovered,
                        other => return Err(format!("created: unknown way {other:?}")),
                    };
                }
                "members" => {
                    members = Some(
                        value
                            .split_whitespace()
                            .map(number)
                            .collect::<Result<Vec<_>, _>>()?,
                    )
                }
                "window" => window = Some(number(value)?),
                "max_sessions" => max_sessions = Some(number(value)?),
                "state" => {
                    state = Some(match value {
                        "new" => false,
                        "started" => true,
                        other => return Err(format!("state: unknown state {other:?}")),
                    })
                }
                "" => {}
                other => return Err(format!("unknown line {other:?}")),
            }
        }
        let (Some(cluster), Some(replica)) = (cluster, replica) else {
            return Err("the cluster or the replica id is missing".into());
        };
        record.identity = Identity {
            cluster,
            replica,
            genesis: match (members, window) {
                (Some(members), Some(window)) => Some(Genesis {
                    members,
                    window,
                    max_sessions,
                }),
                _ => None,
            },
        };
        if format == FORMAT {
            record.started = state.ok_or("the state line is missing")?;
        }
        Ok(record)
    }

    /// What is wrong with using this directory for `expected`, if anything: another cluster,
    /// another replica, or a cluster created with another first configuration or window.
    pub fn mismatch(&self, expected: &Identity) -> Option<Mismatch> {
        let found = &self.identity;
        if found.cluster != expected.cluster || found.replica != expected.replica {
            return Some(Mismatch::Owner(format!(
                "this data directory belongs to another replica or cluster: it is replica {} of cluster {:#018x}, this replica is {} of {:#018x}",
                found.replica, found.cluster, expected.replica, expected.cluster
            )));
        }
        match (&found.genesis, &expected.genesis) {
            (Some(found), Some(expected))
                if found.max_sessions.is_some()
                    && expected.max_sessions.is_some()
                    && found.max_sessions != expected.max_sessions =>
            {
                Some(Mismatch::Genesis(format!(
                    "the configuration file gives [limits] max_sessions = {}, but this cluster was created with {}: the session table is replicated state and its size cannot change (restore max_sessions = {})",
                    expected.max_sessions.unwrap_or_default(),
                    found.max_sessions.unwrap_or_default(),
                    found.max_sessions.unwrap_or_default()
                )))
            }
            (Some(found), Some(expected))
                if (&found.members, found.window) != (&expected.members, expected.window) =>
            {
                Some(Mismatch::Genesis(format!(
                    "the configuration file gives the cluster's first configuration as members {:?} with window {}, but this cluster was created with members {:?} and window {}: both are replicated state and cannot change (change membership with `smr join` and `smr quit`; restore the original [[replica]] entries and [limits] window)",
                    expected.members, expected.window, found.members, found.window
                )))
            }
            _ => None,
        }
    }
}

/// Why a directory's identity does not fit the replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// Another cluster's or replica's directory: its state is not this replica's.
    Owner(String),
    /// This replica's directory, but the configuration file disagrees with the cluster.
    Genesis(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let identity = Identity {
            cluster: 0xab,
            replica: 2,
            genesis: Some(Genesis {
                members: vec![0, 1, 2],
                window: 1,
                max_sessions: Some(16_384),
            }),
        };
        for creation in [Creation::NewCluster, Creation::Recovered] {
            for started in [false, true] {
                let record = IdentityRecord {
                    started,
                    ..IdentityRecord::new(identity.clone(), creation)
                };
                assert_eq!(IdentityRecord::parse(&record.format(), false), Ok(record));
            }
        }
    }

    #[test]
    fn the_previous_format_is_read_and_mismatches_are_named() {
        let old = "smr-data-dir 1\ncluster 0x00000000000000ab\nreplica 2\n";
        let record = IdentityRecord::parse(old, true).unwrap();
        assert!(record.started);
        assert_eq!(record.identity, Identity::plain(0xab, 2));
        assert!(record.mismatch(&Identity::plain(0xab, 2)).is_none());
        assert!(matches!(
            record.mismatch(&Identity::plain(0xab, 1)),
            Some(Mismatch::Owner(_))
        ));
        let created = IdentityRecord::new(
            Identity {
                genesis: Some(Genesis {
                    members: vec![0, 1, 2],
                    window: 1,
                    max_sessions: Some(4),
                }),
                ..Identity::plain(0xab, 2)
            },
            Creation::NewCluster,
        );
        let other_window = Identity {
            genesis: Some(Genesis {
                members: vec![0, 1, 2],
                window: 8,
                max_sessions: Some(4),
            }),
            ..Identity::plain(0xab, 2)
        };
        let Some(Mismatch::Genesis(why)) = created.mismatch(&other_window) else {
            panic!("a changed window is refused");
        };
        assert!(
            why.contains("window 8") && why.contains("window 1"),
            "{why}"
        );
        let other_table = Identity {
            genesis: Some(Genesis {
                members: vec![0, 1, 2],
                window: 1,
                max_sessions: Some(8),
            }),
            ..Identity::plain(0xab, 2)
        };
        let Some(Mismatch::Genesis(why)) = created.mismatch(&other_table) else {
            panic!("a changed session table size is refused");
        };
        assert!(
            why.contains("max_sessions = 8") && why.contains("with 4"),
            "{why}"
        );
        // A directory made before the table was bounded records no size: not checked.
        let mut older = created.clone();
        if let Some(genesis) = older.identity.genesis.as_mut() {
            genesis.max_sessions = None;
        }
        assert!(older.mismatch(&other_table).is_none());
        assert!(IdentityRecord::parse("garbage", false).is_err());
    }
}

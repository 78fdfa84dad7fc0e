//! Secret keys: 32 random bytes kept in a file of 64 hexadecimal digits that only its owner
//! may read, named on the wire by a fingerprint that reveals nothing of the key.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Bytes in a key.
pub const KEY_BYTES: usize = 32;

/// A secret key. Its `Debug` shows the fingerprint only, so a key never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; KEY_BYTES],
    fingerprint: u32,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:08x})", self.fingerprint)
    }
}

/// Why a key file cannot be used; the text names the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError(pub String, pub KeyProblem);

/// What is wrong with a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// Missing, or this user may not read it: perhaps it is meant for another user or host.
    Unreadable,
    /// Readable, but others may read it too, or it holds no key: a mistake to fix.
    Unsafe,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl Key {
    /// The key of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        // A derived key, not a prefix of the key: the fingerprint tells which key signed a
        // datagram and nothing about the key itself. Never 0, which marks an unsigned datagram.
        let derived = blake3::derive_key("smr 2026-12 key fingerprint", &bytes);
        let fingerprint = u32::from_le_bytes([derived[0], derived[1], derived[2], derived[3]]);
        Key {
            bytes,
            fingerprint: fingerprint.max(1),
        }
    }

    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_BYTES];
        let random = Path::new("/dev/urandom");
        std::fs::File::open(random)
            .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut bytes))
            .map_err(|e| {
                let what = format!("cannot read {}: {e}", random.display());
                KeyError(what, KeyProblem::Unreadable)
            })?;
        Ok(Self::from_bytes(bytes))
    }

    /// What names the key on the wire.
    pub fn fingerprint(&self) -> u32 {
        self.fingerprint
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.bytes
    }

    /// Reads a key file, refusing one that others can read or that is not a key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let unreadable = |e: std::io::Error| {
            let what = format!(
                "cannot read the key file {}: {e} (make one with `smr new-key {}`)",
                path.display(),
                path.display()
            );
            KeyError(what, KeyProblem::Unreadable)
        };
        let metadata = std::fs::metadata(path).map_err(unreadable)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                let what = format!(
                    "the key file {} can be read by others (mode {mode:03o}): anyone who reads it can speak for the cluster; `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
                return Err(KeyError(what, KeyProblem::Unsafe));
            }
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        Self::parse(text.trim()).map_err(|why| {
            KeyError(
                format!(
                    "{} is not a key: {why} (make one with `smr new-key FILE`)",
                    path.display()
                ),
                KeyProblem::Unsafe,
            )
        })
    }

    /// Parses 64 hexadecimal digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() != 2 * KEY_BYTES || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "expected {} hexadecimal digits, found {} characters",
                2 * KEY_BYTES,
                text.len()
            ));
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Self::from_bytes(bytes))
    }

    /// Writes a new key to `path`, readable by its owner only; never overwrites a file.
    pub fn create_file(path: &Path) -> Result<Self, KeyError> {
        let key = Self::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let fail = |e: std::io::Error| {
            let what = format!("cannot create {}: {e}", path.display());
            KeyError(what, KeyProblem::Unreadable)
        };
        let mut file = options.open(path).map_err(fail)?;
        let hex: String = key.bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(file, "{hex}").map_err(fail)?;
        file.sync_all().map_err(fail)?;
        Ok(key)
    }
}

/// Loads every file of `paths` (in order), naming the first that fails.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Key>, KeyError> {
    paths.iter().map(|path| Key::load(path)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_reads_back_and_bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let key = Key::create_file(&path).unwrap();
        assert_eq!(Key::load(&path).unwrap(), key);
        assert!(Key::create_file(&path)
            .unwrap_err()
            .0
            .contains("cannot create"));
        assert_ne!(Key::generate().unwrap(), key, "keys are random");
        assert!(!format!("{key:?}").contains(&format!("{:02x}", key.bytes[0]).repeat(2)));

        let missing = Key::load(&dir.path().join("none")).unwrap_err();
        assert_eq!(missing.1, KeyProblem::Unreadable);
        assert!(missing.0.contains("smr new-key"), "{missing}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let open = Key::load(&path).unwrap_err();
            assert_eq!(open.1, KeyProblem::Unsafe);
            assert!(
                open.0.contains("mode 644") && open.0.contains("chmod 600"),
                "{open}"
            );
        }
        let short = dir.path().join("short.key");
        Key::create_file(&short).unwrap();
        std::fs::write(&short, "abcd\n").unwrap();
        let not_a_key = Key::load(&short).unwrap_err().0;
        assert!(not_a_key.contains("not a key"), "{not_a_key}");
        assert!(Key::parse(&"g".repeat(64)).is_err());
    }
}

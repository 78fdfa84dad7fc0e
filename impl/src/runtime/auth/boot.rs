//! A sender's boot: the number that tells its datagrams from those of its earlier lives, so
//! that a receiver refuses the earlier ones once it has heard from the new one
//! ([`super::replay`]). It must grow across restarts: a replica keeps the last one in its data
//! directory and takes the larger of one more than that and the clock, so that neither a clock
//! set back nor a lost directory makes it repeat an earlier boot (unless both happen at once).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The file in a replica's data directory that holds its last boot.
pub const BOOT_FILE: &str = "boot";

/// Microseconds since the Unix epoch: the boot of a process that keeps no file.
pub fn clock_boot() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The boot of a replica starting now with data directory `dir`, recorded there durably
/// before it is used. A missing or unreadable file counts as no earlier boot.
pub fn next_boot(dir: &Path) -> Result<u64, String> {
    let path = dir.join(BOOT_FILE);
    let previous = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let boot = clock_boot().max(previous.map_or(0, |p| p.saturating_add(1)));
    let temporary = dir.join(format!("{BOOT_FILE}.tmp"));
    let fail = |e: std::io::Error| format!("cannot record the boot in {}: {e}", path.display());
    std::fs::write(&temporary, format!("{boot}\n")).map_err(fail)?;
    std::fs::File::open(&temporary)
        .and_then(|file| file.sync_all())
        .map_err(fail)?;
    std::fs::rename(&temporary, &path).map_err(fail)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)?;
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots_grow_even_when_the_clock_is_behind() {
        let dir = tempfile::tempdir().unwrap();
        let first = next_boot(dir.path()).unwrap();
        assert!(next_boot(dir.path()).unwrap() > first);
        // A boot recorded in the future (a clock set back since): still one more.
        let future = clock_boot() + 3_600_000_000;
        std::fs::write(dir.path().join(BOOT_FILE), format!("{future}\n")).unwrap();
        assert_eq!(next_boot(dir.path()).unwrap(), future + 1);
    }
}

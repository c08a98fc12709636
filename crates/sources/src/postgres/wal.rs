//! Names of the files PostgreSQL archives, and write-ahead log positions (LSNs).

use std::fmt;

/// Whether `name` is a file `archive_command` may be given: a segment
/// (`000000010000000A000000FF`), a partial segment (`...partial`), a timeline history file
/// (`00000002.history`) or a backup history file (`...00000028.backup`). Anything else is
/// refused, so a name never leaves the archive's own namespace.
pub fn is_archive_file_name(name: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(name, 24) {
        return true;
    }
    if let Some(stem) = name.strip_suffix(".partial") {
        return hex(stem, 24);
    }
    if let Some(stem) = name.strip_suffix(".history") {
        return hex(stem, 8);
    }
    if let Some(stem) = name.strip_suffix(".backup") {
        return stem.len() == 33
            && hex(&stem[..24], 24)
            && &stem[24..25] == "."
            && hex(&stem[25..], 8);
    }
    false
}

/// A WAL segment's timeline and position in the log (the last 16 hex digits as a number),
/// or None for any other file.
pub fn segment_position(name: &str) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let timeline = u32::from_str_radix(&name[..8], 16).ok()?;
    let position = u64::from_str_radix(&name[8..], 16).ok()?;
    Some((timeline, position))
}

/// A segment's timeline and its number counted from the start of the log, for segments of
/// `segment_size` (the name splits that number into a log file and a segment within it).
pub fn segment_number(name: &str, segment_size: u64) -> Option<(u32, u64)> {
    let (timeline, position) = segment_position(name)?;
    let per_log = 0x1_0000_0000 / segment_size;
    Some((
        timeline,
        (position >> 32) * per_log + (position & 0xffff_ffff),
    ))
}

/// The name of segment number `segno` on `timeline`: the inverse of [`segment_number`].
pub fn segment_name(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per_log = 0x1_0000_0000 / segment_size;
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segno / per_log,
        segno % per_log
    )
}

/// How many segments of `segment_size` lie from `from` to `to` on the log (negative if `to`
/// comes first); None unless both are segment names.
pub fn segments_between(from: &str, to: &str, segment_size: u64) -> Option<i64> {
    let (_, to) = segment_number(to, segment_size)?;
    let (_, from) = segment_number(from, segment_size)?;
    Some(to as i64 - from as i64)
}

/// A position in the write-ahead log, written `X/Y` in hex as PostgreSQL does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl std::str::FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a WAL position (like 0/16B3748)");
        let (high, low) = s.trim().split_once('/').ok_or_else(bad)?;
        let high = u32::from_str_radix(high, 16).map_err(|_| bad())?;
        let low = u32::from_str_radix(low, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_file_names() {
        for good in [
            "000000010000000000000003",
            "00000002000000AB000000FF",
            "000000010000000000000003.partial",
            "00000002.history",
            "000000010000000000000002.00000028.backup",
        ] {
            assert!(is_archive_file_name(good), "{good}");
        }
        for bad in [
            "",
            "../00000001000000000000000",
            "00000001000000000000000G",
            "0000000100000000000000031",
            "00000002.History",
            "x.history",
            "000000010000000000000002.0000002.backup",
            "000000010000000000000002/00000028.backup",
            "RECOVERYXLOG",
        ] {
            assert!(!is_archive_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn segments_order_by_position_within_a_timeline() {
        let a = segment_position("0000000100000000000000FF").expect("segment");
        let b = segment_position("000000010000000100000000").expect("segment");
        assert_eq!(a, (1, 0xff));
        assert!(a < b);
        assert_eq!(segment_position("00000002.history"), None);
    }

    #[test]
    fn segment_numbers_and_names_are_inverses() {
        let size = 16 << 20;
        assert_eq!(
            segment_number("0000000200000001000000FF", size),
            Some((2, 0x1FF))
        );
        assert_eq!(segment_name(2, 0x1FF, size), "0000000200000001000000FF");
        assert_eq!(segment_name(1, 4, 1 << 30), "000000010000000100000000");
        assert_eq!(
            segment_number("000000010000000100000000", 1 << 30),
            Some((1, 4))
        );
    }

    #[test]
    fn counts_segments_across_log_files() {
        let size = 16 << 20;
        assert_eq!(
            segments_between("0000000100000000000000FE", "000000010000000100000001", size),
            Some(3)
        );
        assert_eq!(
            segments_between("000000010000000000000005", "000000010000000000000005", size),
            Some(0)
        );
        assert_eq!(
            segments_between("00000002.history", "000000010000000000000005", size),
            None
        );
    }

    #[test]
    fn lsn_reads_and_writes_postgres_notation() {
        let lsn: Lsn = "1/16B3748".parse().expect("lsn");
        assert_eq!(lsn.0, 0x1_016B_3748);
        assert_eq!(lsn.to_string(), "1/16B3748");
        assert!("16B3748".parse::<Lsn>().is_err());
        assert!("0/xyz".parse::<Lsn>().is_err());
        assert!("0/2000028".parse::<Lsn>().expect("lsn") < "0/2000100".parse().expect("lsn"));
    }
}

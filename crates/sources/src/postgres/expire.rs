//! Which archived WAL no base backup needs any more: what `pg expire` forgets.

use super::wal::segment_position;

/// The position of the WAL file `name` refers to: a segment's own, or that of the segment a
/// `.partial` or `.backup` file belongs to. None for timeline history files, which every
/// later recovery may read, so they are kept for good.
fn position(name: &str) -> Option<u64> {
    let segment = name.get(..24)?;
    if name.ends_with(".history") {
        return None;
    }
    segment_position(segment).map(|(_, p)| p)
}

/// The batches (each a list of archived file names) whose every file lies before
/// `oldest_start` (the first segment of the oldest base backup kept): no recovery from a
/// kept base backup reads them.
pub fn unneeded_batches<'a, T>(batches: &'a [(T, Vec<String>)], oldest_start: &str) -> Vec<&'a T> {
    let Some((_, start)) = segment_position(oldest_start) else {
        return Vec::new();
    };
    batches
        .iter()
        .filter(|(_, files)| {
            !files.is_empty() && files.iter().all(|f| position(f).is_some_and(|p| p < start))
        })
        .map(|(batch, _)| batch)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_batches_wholly_before_the_oldest_base_backup_go() {
        let batch = |files: &[&str]| files.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let batches = vec![
            (
                "old",
                batch(&["000000010000000000000001", "000000010000000000000002"]),
            ),
            (
                "straddles",
                batch(&["000000010000000000000004", "000000010000000000000005"]),
            ),
            (
                "history",
                batch(&["000000010000000000000001", "00000002.history"]),
            ),
            (
                "old-backup-file",
                batch(&[
                    "000000010000000000000003.00000028.backup",
                    "000000010000000000000003.partial",
                ]),
            ),
            ("new", batch(&["000000020000000000000007"])),
        ];
        let gone = unneeded_batches(&batches, "000000020000000000000005");
        assert_eq!(gone, [&"old", &"old-backup-file"]);
        assert!(unneeded_batches(&batches, "not a segment").is_empty());
    }
}

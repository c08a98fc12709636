//! Snapshot objects: sealed under a fixed test key, and their plaintext JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_core::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let opened = match mode % 3 {
        // The input is the stored object.
        0 => fuzzing::open_snapshot(rest),
        // The input is the plaintext, sealed under the test key first.
        1 => fuzzing::open_snapshot(&fuzzing::seal_snapshot(rest)),
        _ => fuzzing::decode_snapshot(rest),
    };
    if let Ok(snapshot) = opened {
        // What listings print of every snapshot.
        let _ = snapshot.time.to_rfc3339();
        let _ = snapshot.time.with_timezone(&chrono::Utc);
        let _ = lifeboat_core::snapshot::is_archive_source(&snapshot.source);
    }
});

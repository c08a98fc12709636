//! Lock objects: sealed under a fixed test key, their plaintext JSON, and what every lock
//! holder does with the others' records (stale or not, describe, holder id).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_core::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let opened = match mode % 3 {
        0 => fuzzing::open_lock(rest),
        1 => fuzzing::open_lock(&fuzzing::seal_lock(rest)),
        _ => fuzzing::decode_lock(rest),
    };
    if let Ok(record) = opened {
        let _ = record.is_stale();
        let _ = record.describe();
        let _ = record.holder_id();
        let _ = record.kind();
    }
});

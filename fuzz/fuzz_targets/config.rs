//! The repository's plaintext `config` object (JSON), with the chunker it sets up, and the
//! TOML configuration file of named sources.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_core::chunker::Chunker;
use lifeboat_core::fuzzing::KEY;
use lifeboat_core::repository::Config;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(config) = Config::parse(rest) {
            // What opening a repository does with an accepted config.
            let _ = Chunker::new(&KEY, config.chunker);
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        let _ = lifeboat_sources::config::Config::parse(text);
    }
});

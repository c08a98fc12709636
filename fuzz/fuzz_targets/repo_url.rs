//! Repository locations as `--repo` takes them: local paths and object-store and REST URLs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_backends::RepositoryLocation;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(location) = RepositoryLocation::parse(spec) else {
        return;
    };
    // A remote location's canonical text (what messages and `copy` print) names the same place.
    if !location.is_local() {
        let text = location.to_string();
        let again = RepositoryLocation::parse(&text)
            .unwrap_or_else(|e| panic!("{spec:?} printed as {text:?}, which fails: {e}"));
        assert_eq!(again, location, "{spec:?} printed as {text:?}");
    }
});

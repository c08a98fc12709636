//! The Azure backend against Azurite, Microsoft's emulator of Azure Storage (not Azure
//! itself): the commands of a repository's life round trip through it.

mod common;

use common::azurite::Azurite;
use common::{manifest, random_bytes, restored, Env};

#[test]
fn azurite_emulator_round_trip_forget_prune_check() {
    let azurite = Azurite::start();
    let mut env = Env::empty();
    env.repo = format!("azure:{}/host-a", azurite.container).into();
    env.vars = azurite.vars();
    env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..25 {
        std::fs::write(
            src.join(format!("sub/{i}.txt")),
            format!("{i}\n").repeat(100),
        )
        .unwrap();
    }
    std::fs::write(src.join("blob.bin"), random_bytes(3_000_000, 9)).unwrap();
    env.backup(&src, &[]);
    std::fs::write(src.join("sub/0.txt"), "changed\n").unwrap();
    env.backup(&src, &[]);

    let target = env.path("t");
    env.restore("latest", &target, &[]).ok();
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    env.lb(&["forget", "--keep-last", "1", "--prune"]).ok();
    env.lb(&["check", "--read-data"]).ok();
    let dumped = env
        .lb(&["dump", "latest", src.join("sub/0.txt").to_str().unwrap()])
        .ok();
    assert_eq!(dumped.stdout, "changed\n");
}

//! The Azure backend against Azurite, Microsoft's emulator of Azure Storage (not Azure
//! itself): the commands of a repository's life round trip through it.

mod common;

use common::azurite::Azurite;
use common::moto::Moto;
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

/// Every object under `prefix`: key -> [lock mode, retain-until date, version id].
const HEAD_ALL: &str = r#"
out = {}
for o in s3.list_objects_v2(Bucket=sys.argv[2], Prefix=sys.argv[3]).get("Contents", []):
    h = s3.head_object(Bucket=sys.argv[2], Key=o["Key"])
    until = h.get("ObjectLockRetainUntilDate")
    out[o["Key"]] = [h.get("ObjectLockMode"), until.isoformat() if until else None, h.get("VersionId")]
print(json.dumps(out))
"#;

/// Deletes sys.argv[3] (with version sys.argv[4] if given): the error code, or the version id
/// of what the delete made (a delete marker).
const DELETE: &str = r#"
args = {"Bucket": sys.argv[2], "Key": sys.argv[3]}
if len(sys.argv) > 4:
    args["VersionId"] = sys.argv[4]
try:
    r = s3.delete_object(**args)
    print(json.dumps({"version": r.get("VersionId"), "marker": r.get("DeleteMarker", False)}))
except Exception as e:
    print(json.dumps({"error": e.response["Error"]["Code"]}))
"#;

#[test]
fn moto_emulator_object_lock_keeps_what_a_delete_removes() {
    let moto = Moto::start();
    moto.bucket("locked", true);
    let mut env = Env::empty();
    env.repo = format!("s3:{}/locked/host-a", moto.endpoint).into();
    env.vars = moto.vars();
    env.vars
        .push(("LIFEBOAT_RETENTION_DAYS".into(), "30".into()));
    env.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .ok();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), random_bytes(2_000_000, 3)).unwrap();
    let first = env.backup(&src, &[]);
    std::fs::write(src.join("b.txt"), "second").unwrap();
    let second = env.backup(&src, &[]);

    // Everything but locks carries a governance retention of 30 days.
    let objects = moto.python(HEAD_ALL, &["locked", "host-a/"]);
    let objects = objects.as_object().expect("objects");
    let now = chrono::Utc::now();
    for kind in ["config", "keys/", "data/", "index/", "snapshots/"] {
        let matching: Vec<_> = objects
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("host-a/{kind}")))
            .collect();
        assert!(!matching.is_empty(), "no {kind} object: {objects:?}");
        for (key, head) in matching {
            assert_eq!(head[0], "GOVERNANCE", "{key}: {head}");
            let until = chrono::DateTime::parse_from_rfc3339(head[1].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{key}: {head}: {e}"));
            let days = (until.with_timezone(&chrono::Utc) - now).num_hours() as f64 / 24.0;
            assert!((29.9..=30.1).contains(&days), "{key}: {days} days");
        }
    }

    // Someone with the bucket's keys removes the first snapshot's version: refused. A
    // plain delete only hides it behind a delete marker, which check notices ...
    let key = format!("host-a/snapshots/{first}");
    let version = objects[&key][2].as_str().expect("version id").to_string();
    let refused = moto.python(DELETE, &["locked", &key, &version]);
    assert_eq!(refused["error"], "AccessDenied", "{refused}");
    let hidden = moto.python(DELETE, &["locked", &key]);
    assert_eq!(hidden["marker"], true, "{hidden}");
    let run = env.lb(&["check"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains(&first) && run.stdout.contains(&second),
        "{}",
        run.stdout
    );
    // ... and removing the marker brings the snapshot back.
    let marker = hidden["version"]
        .as_str()
        .expect("marker version")
        .to_string();
    moto.python(DELETE, &["locked", &key, &marker]);
    env.lb(&["check", "--read-data"]).ok();
    let target = env.path("t");
    env.restore(&first, &target, &[]).ok();
    let back = restored(&target, &src);
    assert_eq!(
        std::fs::read(back.join("a.bin")).unwrap(),
        random_bytes(2_000_000, 3)
    );
    assert!(
        !back.join("b.txt").exists(),
        "the first snapshot, not the second"
    );

    // Without Object Lock on the bucket, a write with a retention fails and says why.
    moto.bucket("plain", false);
    let mut plain = Env::empty();
    plain.repo = format!("s3:{}/plain/r", moto.endpoint).into();
    plain.vars = env.vars.clone();
    let run = plain.lb(&["init", "--kdf-memory-kib", "64", "--kdf-iterations", "1"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("ObjectLockConfiguration"),
        "{}",
        run.stderr
    );
}

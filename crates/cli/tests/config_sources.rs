//! Sources named in the configuration file: `backup --source NAME` runs each as the command
//! with the same settings would, and mistakes in the file are clear errors.

mod common;

use common::Env;

fn write_config(env: &Env, text: &str) -> String {
    let path = env.path("lifeboat.toml");
    std::fs::write(&path, text).expect("config");
    path.display().to_string()
}

#[test]
fn named_sources_run_as_their_commands_would() {
    let env = Env::new();
    let app = env.path("app");
    std::fs::create_dir_all(app.join("logs")).expect("mkdir");
    std::fs::write(app.join("config.toml"), "port = 80\n").expect("write");
    std::fs::write(app.join("logs/today.log"), "noise\n").expect("write");
    let config = write_config(
        &env,
        &format!(
            r#"
[sources.app]
kind = "files"
paths = ["{}"]
exclude = ["*.log"]
tags = ["app"]

[sources.greeting]
kind = "command"
name = "greeting.txt"
command = ["sh", "-c", "echo hello from $GREETER"]
env = {{ GREETER = "the config" }}
host = "db1"
"#,
            app.display()
        ),
    );
    env.lb(&[
        "--config", &config, "backup", "--source", "app", "--source", "greeting",
    ])
    .ok();

    let listed = env.lb(&["snapshots", "--json"]).ok().json();
    let snapshots = listed.as_array().expect("array");
    assert_eq!(snapshots.len(), 2, "{listed}");
    let files = snapshots
        .iter()
        .find(|s| s["source"] == "files")
        .expect("files snapshot");
    assert_eq!(files["tags"][0], "app");
    let command = snapshots
        .iter()
        .find(|s| s["source"] == "command")
        .expect("command snapshot");
    assert_eq!(command["host"], "db1");

    let tree = env
        .lb(&["ls", "--json", "latest", "--host", "db1"])
        .ok()
        .stdout;
    assert!(tree.contains("greeting.txt"), "{tree}");
    let greeting = env
        .lb(&["dump", "latest", "/greeting.txt", "--host", "db1"])
        .ok()
        .stdout;
    assert_eq!(greeting, "hello from the config\n");
    let app_id = files["id"].as_str().expect("id");
    let listing = env.lb(&["ls", app_id]).ok().stdout;
    assert!(listing.contains("config.toml"), "{listing}");
    assert!(!listing.contains("today.log"), "excluded: {listing}");
}

#[test]
fn one_failing_source_fails_the_run_and_the_others_still_back_up() {
    let env = Env::new();
    let config = write_config(
        &env,
        r#"
[sources.broken]
kind = "command"
name = "dump.sql"
command = ["sh", "-c", "echo partial; echo 'connection refused' >&2; exit 2"]

[sources.fine]
kind = "command"
name = "ok.txt"
command = ["echo", "ok"]
"#,
    );
    let run = env.lb(&[
        "--config", &config, "backup", "--source", "broken", "--source", "fine",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("source broken"), "{}", run.stderr);
    assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
    assert!(
        run.stderr.contains("1 source(s) failed: broken"),
        "{}",
        run.stderr
    );
    assert_eq!(env.snapshot_count(), 1, "only the source that worked");
}

#[test]
fn mistakes_in_the_file_or_the_name_are_clear_and_run_nothing() {
    let env = Env::new();
    let config = write_config(
        &env,
        "[sources.app]\nkind = \"files\"\npaths = [\"/srv\"]\nexlcude = [\"*.log\"]\n",
    );
    let typo = env.lb(&["--config", &config, "backup", "--source", "app"]);
    assert_eq!(typo.code, 1);
    assert!(typo.stderr.contains("lifeboat.toml"), "{}", typo.stderr);
    assert!(typo.stderr.contains("sources.app"), "{}", typo.stderr);
    assert!(typo.stderr.contains("exlcude"), "{}", typo.stderr);

    let config = write_config(
        &env,
        "[sources.app]\nkind = \"command\"\nname = \"x\"\ncommand = [\"true\"]\n",
    );
    let unknown = env.lb(&[
        "--config", &config, "backup", "--source", "app", "--source", "nope",
    ]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no source \"nope\" (it has: app)"),
        "{}",
        unknown.stderr
    );
    assert_eq!(env.snapshot_count(), 0, "nothing ran");

    let missing = env.lb(&[
        "--config",
        "/nonexistent/lifeboat.toml",
        "backup",
        "--source",
        "app",
    ]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("cannot read the configuration file /nonexistent/lifeboat.toml"),
        "{}",
        missing.stderr
    );
    let mixed = env.lb(&["--config", &config, "backup", "--source", "app", "/srv"]);
    assert_eq!(mixed.code, 1);
    assert!(
        mixed.stderr.contains("--source takes no paths"),
        "{}",
        mixed.stderr
    );
}

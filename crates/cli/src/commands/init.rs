use anyhow::Result;
use lifeboat_core::InitOptions;

use crate::args::{Cli, InitArgs};

pub fn run(cli: &Cli, args: &InitArgs) -> Result<u8> {
    let shared_chunking = match (&args.from_repo, args.copy_chunker_params) {
        (Some(path), true) => {
            let from = crate::open::open_other(
                cli,
                &crate::open::OtherRepository {
                    path,
                    password_file: args.from_password_file.as_deref(),
                    key_file: args.from_key_file.as_deref(),
                    env: "LIFEBOAT_FROM_PASSWORD",
                    flag: "--from",
                },
            )?;
            Some(from.shared_chunking())
        }
        _ => None,
    };
    let options = InitOptions {
        version: args.format_version,
        kdf: crate::open::kdf_params(&args.kdf),
        compression: args.compression.parse().map_err(anyhow::Error::msg)?,
        shared_chunking,
        ..InitOptions::default()
    };
    let repo = crate::open::init(cli, options)?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "initialized",
                "id": repo.config().id,
                "repository": repo.storage().location(),
                "version": repo.config().version,
            })
        );
    } else if !cli.quiet {
        println!(
            "created lifeboat repository {} at {}",
            &repo.config().id[..10],
            repo.storage().location()
        );
    }
    Ok(crate::exit::OK)
}

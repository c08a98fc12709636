use anyhow::Result;
use lifeboat_core::InitOptions;

use crate::args::{Cli, InitArgs};

pub fn run(cli: &Cli, args: &InitArgs) -> Result<u8> {
    let options = InitOptions {
        version: args.format_version,
        kdf: crate::open::kdf_params(&args.kdf),
        compression: args.compression.parse().map_err(anyhow::Error::msg)?,
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

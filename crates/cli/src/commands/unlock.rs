use anyhow::Result;
use lifeboat_core::lock::remove_locks;
use serde_json::json;

use crate::args::{Cli, UnlockArgs};

pub fn run(cli: &Cli, args: &UnlockArgs) -> Result<u8> {
    let repo = crate::open::open(cli)?;
    let removed = remove_locks(repo.storage().as_ref(), &repo.keys().seal, args.remove_all)?;
    let describe = |r: &Option<_>| match r {
        Some(record) => lifeboat_core::lock::LockRecord::describe(record),
        None => "a damaged lock".to_string(),
    };
    if cli.json {
        let list: Vec<String> = removed.iter().map(describe).collect();
        println!("{}", json!({ "removed": list }));
    } else if !cli.quiet {
        for record in &removed {
            println!("removed {}", describe(record));
        }
        println!("{} lock(s) removed", removed.len());
    }
    Ok(crate::exit::OK)
}

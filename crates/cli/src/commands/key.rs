use anyhow::Result;
use serde_json::json;

use crate::args::{Cli, KeyCommand};
use crate::open::{kdf_params, new_password};

pub fn run(cli: &Cli, command: &KeyCommand) -> Result<u8> {
    let mut repo = crate::open::open(cli)?;
    match command {
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            if cli.json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|(name, k)| {
                        json!({"id": name, "current": name == repo.key_name(), "username": k.username,
                               "hostname": k.hostname, "created": k.created.to_rfc3339(), "kdf": k.kdf})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                println!(" {:<10}  {:<12}  {:<16}  Created", "ID", "User", "Host");
                for (name, k) in &keys {
                    let mark = if name == repo.key_name() { '*' } else { ' ' };
                    println!(
                        "{mark}{:<10}  {:<12}  {:<16}  {}",
                        &name[..8],
                        k.username,
                        k.hostname,
                        k.created.format("%Y-%m-%d %H:%M:%S")
                    );
                }
            }
        }
        KeyCommand::Add(a) => {
            let pw = new_password(&a.new_password_file)?;
            let name = repo.add_key(&pw, kdf_params(&a.kdf))?;
            report(cli, "added", &name);
        }
        KeyCommand::Remove { id } => {
            let keys = repo.list_keys()?;
            let matching: Vec<_> = keys
                .iter()
                .filter(|(n, _)| n.starts_with(id.as_str()))
                .collect();
            let name = match matching.as_slice() {
                [(n, _)] => n.clone(),
                [] => anyhow::bail!("no key with id {id}"),
                _ => anyhow::bail!("key id prefix {id} is ambiguous"),
            };
            repo.remove_key(&name)?;
            report(cli, "removed", &name);
        }
        KeyCommand::Passwd(a) => {
            let pw = new_password(&a.new_password_file)?;
            let name = repo.change_password(&pw, kdf_params(&a.kdf))?;
            report(cli, "changed password; new key", &name);
        }
    }
    Ok(crate::exit::OK)
}

fn report(cli: &Cli, what: &str, name: &str) {
    if cli.json {
        println!(
            "{}",
            json!({"message_type": "key", "action": what, "id": name})
        );
    } else if !cli.quiet {
        println!("{what} {}", &name[..8]);
    }
}

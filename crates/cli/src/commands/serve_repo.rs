use anyhow::{bail, Result};
use lifeboat_repo_server::{add_user, serve, Role, ServeOptions};
use serde_json::json;

use crate::args::{Cli, ServeRepoArgs, ServeRepoCommand};

pub fn run(cli: &Cli, args: &ServeRepoArgs) -> Result<u8> {
    if let Some(ServeRepoCommand::AddUser(add)) = &args.command {
        let role: Role = add.role.parse().map_err(anyhow::Error::msg)?;
        let password = add_user(&add.users, &add.name, role)?;
        if cli.json {
            println!(
                "{}",
                json!({"user": add.name, "role": role.as_str(), "password": password})
            );
        } else {
            println!("added {} ({role}) to {}", add.name, add.users.display());
            println!("password (shown only now): {password}");
        }
        return Ok(crate::exit::OK);
    }
    let Some(dir) = &args.dir else {
        bail!("name the repository directory to serve: lifeboat serve-repo [OPTIONS] DIR");
    };
    let Some(users) = &args.users else {
        bail!(
            "give --users FILE: every client needs a user (add one with \
             `lifeboat serve-repo add-user NAME --users FILE`)"
        );
    };
    let options = ServeOptions {
        dir: dir.clone(),
        listen: args.listen,
        users: users.clone(),
        append_only: args.append_only,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
    };
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mode = if options.append_only {
        " (append-only: only admin users delete)"
    } else {
        ""
    };
    let quiet = cli.quiet;
    serve(options.clone(), |bound| {
        if !quiet {
            // Tests and scripts wait for this line: it comes once connections are accepted.
            eprintln!(
                "serving {} at rest:{scheme}://{bound}{mode}",
                options.dir.display()
            );
        }
    })?;
    Ok(crate::exit::OK)
}

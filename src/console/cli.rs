//! `companion-backend operator add <name> --role admin|moderator | reset <name> |
//! disable <name>`: operator accounts from the command line, against the configured
//! MongoDB. A one-time password is printed to the terminal once (never logged).
use secrecy::ExposeSecret;

use super::accounts::{self, AccountError};
use crate::configuration::Settings;
use crate::domain::{OperatorName, OperatorRole};
use crate::store::DynStore;

pub const USAGE: &str = "usage: companion-backend operator add <name> --role admin|moderator
       companion-backend operator reset <name>
       companion-backend operator disable <name>";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Add(OperatorName, OperatorRole),
    Reset(OperatorName),
    Disable(OperatorName),
}

/// Reads the words after `operator`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let name = |raw: &str| OperatorName::parse(raw).map_err(|e| e.0);
    match words.as_slice() {
        ["add", raw, "--role", role] | ["add", "--role", role, raw] => {
            Ok(Command::Add(name(raw)?, OperatorRole::parse(role).map_err(|e| e.0)?))
        }
        ["reset", raw] => Ok(Command::Reset(name(raw)?)),
        ["disable", raw] => Ok(Command::Disable(name(raw)?)),
        _ => Err(USAGE.to_string()),
    }
}

/// Runs a command; what to print on success.
pub async fn run(store: &DynStore, command: Command) -> Result<String, AccountError> {
    let once = |password: secrecy::SecretString| {
        format!("one-time password (shown once; it must be changed at first sign-in): {}", password.expose_secret())
    };
    match command {
        Command::Add(name, role) => {
            let password = accounts::add_operator(store, name.clone(), role).await?;
            Ok(format!("operator {name} added as {}\n{}", role.as_str(), once(password)))
        }
        Command::Reset(name) => {
            let password = accounts::reset_operator(store, name.clone()).await?;
            Ok(format!("operator {name} reset; their sessions ended\n{}", once(password)))
        }
        Command::Disable(name) => {
            accounts::disable_operator(store, name.clone()).await?;
            Ok(format!("operator {name} disabled; their sessions ended"))
        }
    }
}

/// The whole command: settings → MongoDB → the command. The in-process store lives inside
/// a running server, so operators need MongoDB.
pub async fn main(settings: &Settings, args: &[String]) -> Result<String, String> {
    let command = parse(args)?;
    let config = settings.config().map_err(|e| e.to_string())?;
    if config.store.uri.is_none() {
        return Err("operators are kept in MongoDB: set MONGODB_URI (the in-process store lives inside a running \
                    server; set CONSOLE_BOOTSTRAP_ADMIN_PASSWORD to create the first admin)"
            .into());
    }
    let store = crate::startup::build_store(&config.store).await.map_err(|e| format!("{e:#}"))?;
    run(&store, command).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn operator_commands_are_read_from_their_words() {
        let alice = OperatorName::parse("alice").unwrap();
        let cases = [
            ("add an admin", "add alice --role admin", Ok(Command::Add(alice.clone(), OperatorRole::Admin))),
            ("the role first", "add --role moderator alice", Ok(Command::Add(alice.clone(), OperatorRole::Moderator))),
            ("reset", "reset alice", Ok(Command::Reset(alice.clone()))),
            ("disable", "disable Alice", Ok(Command::Disable(alice.clone()))),
            ("no role", "add alice", Err(USAGE.to_string())),
            ("an unknown role", "add alice --role owner", Err("a role is admin or moderator".to_string())),
            ("a bad name", "reset a", Err(OperatorName::parse("a").unwrap_err().0)),
            ("nothing", "", Err(USAGE.to_string())),
        ];
        for (label, line, expected) in cases {
            assert_eq!(parse(&words(line)), expected, "{label}");
        }
    }
}

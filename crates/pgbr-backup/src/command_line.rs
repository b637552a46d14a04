//! Command lines that run pgbr again later, with the configuration of the running command: the
//! `restore_command` a restored cluster runs, and the background workers of asynchronous
//! archiving. The executable is the caller's: the `pgbr` binary passes itself
//! (`std::env::current_exe`), an embedder the program that runs its commands.

use std::path::Path;
use std::process::{Command as Process, Stdio};

use crate::config::Config;
use crate::error::Result;
use crate::options::{Command, OptionName};

/// The `restore_command` of a cluster restored under `config`: `exe` running `archive-get` on
/// the same stanza and repositories (the configuration file and the repository options that did
/// not come from it; never a secret, which `archive-get` reads where this command read it).
pub fn restore_command(config: &Config, exe: &Path) -> Result<String> {
    let mut parts = vec![shell_quote(&exe.display().to_string())];
    for f in config.archive_get_flags() {
        parts.push(shell_quote(&f));
    }
    parts.push(shell_quote(&format!("--stanza={}", config.stanza()?)));
    parts.push("archive-get %f \"%p\"".into());
    Ok(parts.join(" "))
}

/// `s` as one word of a shell command line.
fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_=./:,@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
                .replace('`', "\\`")
        )
    }
}

/// `exe` running `command` with `args` and every option of `config` that came from the command
/// line (a secret in the environment, as `PGBR_<OPTION>`: on a command line, `ps` would show
/// it), on `config`'s stanza, logging at `info`. Standard input and output go nowhere.
pub fn worker(config: &Config, exe: &Path, command: Command, args: &[String]) -> Result<Process> {
    let stanza = config.stanza()?;
    let mut cmd = Process::new(exe);
    for (name, value) in config.options.command_line_values() {
        let secret = OptionName::parse(&name).is_some_and(|n| n.def.secret);
        if secret {
            cmd.env(
                format!("PGBR_{}", name.to_ascii_uppercase().replace('-', "_")),
                value,
            );
        } else if name != "stanza" {
            cmd.arg(format!("--{name}={value}"));
        }
    }
    cmd.arg(format!("--stanza={stanza}"))
        .arg("--log-level-console=info")
        .arg(command.name())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn words_the_shell_would_split_or_expand_are_quoted() {
        assert_eq!(
            shell_quote("--repo1-path=/var/lib/pgbr"),
            "--repo1-path=/var/lib/pgbr"
        );
        assert_eq!(shell_quote("/a b"), "\"/a b\"");
        assert_eq!(shell_quote("$HOME`x`\"\\"), "\"\\$HOME\\`x\\`\\\"\\\\\"");
    }
}

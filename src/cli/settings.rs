//! Config files for scheduled sweeps: TOML whose keys are the long flags' names
//! (`api-url = "https://…"`, `one-file-system = true`, `exclude = ["*.iso"]`), at the top for
//! every subcommand that has that flag, or in a `[scan]`, `[lookup]`, … table for one. Read
//! from `--config PATH` (or `HASHSWEEP_CONFIG`), else from `/etc/hashsweep/config.toml` and
//! then the user's config directory (`~/.config/hashsweep/config.toml`; the later file wins
//! key by key). Flags and environment variables win over files.
//!
//! Nothing here lists the flags: the names come from the clap [`Command`] itself, and a
//! setting becomes the flag it names, added to the arguments only when
//! [`ArgMatches::value_source`] says the command line and the environment did not set it, so
//! clap parses and checks it like a typed flag.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// The system-wide config file.
pub const SYSTEM_CONFIG: &str = "/etc/hashsweep/config.toml";

/// Arguments that are not settings (the message flags are said per run, as they were when
/// they were global flags, which config files could not set).
const NOT_SETTINGS: &[&str] = &[
    "help",
    "version",
    "config",
    "quiet",
    "verbose",
    "no-progress",
];

/// Flags a config file may not set: consent given for one run, on its command line.
const COMMAND_LINE_ONLY: &[&str] = &["upload-accept-sharing"];

/// The refusal of a [`COMMAND_LINE_ONLY`] key in `file`.
fn command_line_only(file: &Path, key: &str) -> String {
    format!(
        "config file {}: {key} is accepted only on the command line: sending files to the \
         vendor is agreed to for a run, not by a settings file",
        file.display()
    )
}

/// Where one setting came from, for `hashsweep config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Environment(String),
    CommandLine,
    Default,
}

/// One setting for one subcommand, from a file.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The clap argument's id.
    pub id: String,
    /// The long flag.
    pub long: String,
    pub value: toml::Value,
    pub file: PathBuf,
}

/// The config files to read: `--config`'s alone when given, else those of the default
/// places that exist. A default file this user may not read (root's, mode 600) is a warning,
/// not a reason to refuse every command.
pub fn config_paths(given: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = given {
        return vec![p.to_path_buf()];
    }
    let user = directories::ProjectDirs::from("", "", "hashsweep")
        .map(|d| d.config_dir().join("config.toml"));
    std::iter::once(PathBuf::from(SYSTEM_CONFIG))
        .chain(user)
        .filter(|p| match std::fs::File::open(p) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                eprintln!(
                    "hashsweep: warning: not reading the config file {}: {e}",
                    p.display()
                );
                false
            }
        })
        .collect()
}

/// The subcommands of the `gateway` feature: their tables are skipped by a build without it.
const GATEWAY_ONLY: [&str; 2] = ["serve", "prevalence"];

/// Every long flag of every subcommand (what a top-level key may name).
fn all_longs(cmd: &Command) -> Vec<String> {
    cmd.get_subcommands()
        .flat_map(|s| s.get_arguments())
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_SETTINGS.contains(l))
        .map(str::to_string)
        .collect()
}

/// The settings `files` give subcommand `sub` (later files win, and a `[sub]` table over the
/// top level). Keys that name no flag are errors, with the file and the key.
pub fn load(cmd: &Command, sub: &str, files: &[PathBuf]) -> Result<Vec<Setting>, String> {
    let target = cmd
        .find_subcommand(sub)
        .ok_or_else(|| format!("no subcommand {sub}"))?;
    let longs = all_longs(cmd);
    let mut out: Vec<Setting> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the config file {}: {e}", file.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("config file {}: {e}", file.display()))?;
        let mut top = Vec::new();
        let mut own = Vec::new();
        for (key, value) in &table {
            if value.is_table()
                && cmd.find_subcommand(key).is_none()
                && GATEWAY_ONLY.contains(&key.as_str())
            {
                // A fleet's shared file may hold the gateway's table; an endpoint build has no
                // gateway, so it has nothing to take from it.
                continue;
            }
            if let (Some(s), toml::Value::Table(t)) = (cmd.find_subcommand(key), value) {
                for (k, v) in t {
                    if COMMAND_LINE_ONLY.contains(&k.as_str()) {
                        return Err(command_line_only(file, k));
                    }
                    if !s.get_arguments().any(|a| a.get_long() == Some(k.as_str()))
                        || NOT_SETTINGS.contains(&k.as_str())
                    {
                        return Err(format!(
                            "config file {}: [{key}] {k}: `hashsweep {key}` has no --{k}",
                            file.display()
                        ));
                    }
                    if key == sub {
                        own.push((k, v));
                    }
                }
            } else if COMMAND_LINE_ONLY.contains(&key.as_str()) {
                return Err(command_line_only(file, key));
            } else if longs.contains(key) {
                top.push((key, value));
            } else {
                return Err(format!(
                    "config file {}: unknown setting `{key}` (settings are named like the long flags, \
                     e.g. api-url, apikey-file, exclude; the API key itself belongs in apikey-file)",
                    file.display()
                ));
            }
        }
        for (key, value) in top.into_iter().chain(own) {
            let Some(arg) = target.get_arguments().find(|a| a.get_long() == Some(key)) else {
                continue;
            };
            out.retain(|s| s.long != *key);
            out.push(Setting {
                id: arg.get_id().to_string(),
                long: key.clone(),
                value: value.clone(),
                file: file.clone(),
            });
        }
    }
    Ok(out)
}

/// The flags a setting stands for.
fn as_flags(cmd: &Command, s: &Setting) -> Result<Vec<OsString>, String> {
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == s.id.as_str())
        .ok_or_else(|| format!("no argument {}", s.id))?;
    let bad = |want: &str| {
        format!(
            "config file {}: {} must be {want}",
            s.file.display(),
            s.long
        )
    };
    let scalar = |v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(t) => Ok(t.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            _ => Err(bad("a string, a number or true/false")),
        }
    };
    let flag = |v: String| OsString::from(format!("--{}={v}", s.long));
    match (arg.get_action(), &s.value) {
        (ArgAction::SetTrue, toml::Value::Boolean(true)) => {
            Ok(vec![OsString::from(format!("--{}", s.long))])
        }
        (ArgAction::SetTrue, toml::Value::Boolean(false)) => Ok(Vec::new()),
        (ArgAction::SetTrue, _) => Err(bad("true or false")),
        (ArgAction::Append, toml::Value::Array(items)) => items
            .iter()
            .map(|v| scalar(v).map(flag))
            .collect::<Result<_, _>>(),
        (_, toml::Value::Array(_)) => Err(bad("one value, not a list")),
        (_, v) => Ok(vec![flag(scalar(v)?)]),
    }
}

/// The subcommand `args` run and its matches, parsed leniently (a required flag may come
/// from a file); `None` when that parse fails (the real one then says why).
fn lenient(cmd: &Command, args: &[OsString]) -> Option<(ArgMatches, String, ArgMatches)> {
    let m = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()?;
    let (name, sub) = m.subcommand()?;
    let (name, sub) = (name.to_string(), sub.clone());
    Some((m, name, sub))
}

fn given_config(m: &ArgMatches) -> Option<PathBuf> {
    m.try_get_one::<PathBuf>("config").ok().flatten().cloned()
}

/// `args` with the flags the config files give the subcommand added, for those the command
/// line and the environment leave unset.
pub fn with_config_files(cmd: &Command, args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some((m, name, sub_m)) = lenient(cmd, &args) else {
        return Ok(args);
    };
    let given = given_config(&sub_m).or_else(|| given_config(&m));
    let files = config_paths(given.as_deref());
    if files.is_empty() {
        return Ok(args);
    }
    let target = cmd
        .find_subcommand(&name)
        .ok_or_else(|| format!("no subcommand {name}"))?;
    let mut extra = Vec::new();
    for s in load(cmd, &name, &files)? {
        if matches!(
            sub_m.value_source(&s.id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        extra.extend(as_flags(target, &s)?);
    }
    // Before a `--` (after it every word is a path), else at the end.
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let mut out = args;
    out.splice(at..at, extra);
    Ok(out)
}

/// One setting as it would be in force.
#[derive(Debug, Clone)]
pub struct Effective {
    pub long: String,
    pub values: Vec<String>,
    /// A flag that may be repeated: its values are a list.
    pub list: bool,
    pub source: Source,
}

/// Every setting of subcommand `sub` as it would be in force, with where it came from; those
/// set nowhere (no default) are left out. Also the files read.
pub fn effective(
    cmd: &Command,
    sub: &str,
    config: Option<&Path>,
) -> Result<(Vec<PathBuf>, Vec<Effective>), String> {
    let files = config_paths(config);
    let settings = load(cmd, sub, &files)?;
    let target = cmd
        .find_subcommand(sub)
        .ok_or_else(|| format!("no subcommand {sub}"))?;
    let mut args: Vec<OsString> = vec!["hashsweep".into(), sub.into()];
    for s in &settings {
        args.extend(as_flags(target, s)?);
    }
    let m = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .map_err(|e| e.to_string())?;
    let Some((_, sub_m)) = m.subcommand() else {
        return Err(format!("no subcommand {sub}"));
    };
    let mut out = Vec::new();
    for arg in target.get_arguments() {
        let Some(long) = arg.get_long().filter(|l| !NOT_SETTINGS.contains(l)) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let Some(values) = sub_m.get_raw(id) else {
            continue;
        };
        let values: Vec<String> = values.map(|v| v.to_string_lossy().into_owned()).collect();
        let source = match sub_m.value_source(id) {
            Some(ValueSource::CommandLine) => settings
                .iter()
                .find(|s| s.id == id)
                .map_or(Source::CommandLine, |s| Source::File(s.file.clone())),
            Some(ValueSource::EnvVariable) => Source::Environment(
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            _ => Source::Default,
        };
        out.push(Effective {
            long: long.to_string(),
            values,
            list: matches!(arg.get_action(), ArgAction::Append),
            source,
        });
    }
    Ok((files, out))
}

/// A value as it may be shown: a URL's password (a Redis store's) replaced.
pub fn shown(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn scan_of(args: Vec<OsString>) -> crate::cli::ScanArgs {
        use clap::FromArgMatches;
        let m = crate::cli::command()
            .try_get_matches_from(args)
            .expect("parses");
        let cli = crate::cli::Cli::from_arg_matches(&m).expect("parses");
        match cli.command {
            crate::cli::Command::Scan(a) => *a,
            _ => unreachable!(),
        }
    }

    /// One file for a fleet: the gateway's `[serve]` table sits beside the endpoints' settings,
    /// and a build without the gateway takes its own and skips that table.
    #[test]
    fn a_fleet_file_with_the_gateways_table_serves_an_endpoint_build() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "fleet.toml",
            "exclude = [\"/proc\"]\n[serve]\ntokens = \"/etc/hashsweep/tokens\"\n",
        );
        let got = load(&crate::cli::command(), "scan", &[f]).expect("loads");
        let longs: Vec<&str> = got.iter().map(|s| s.long.as_str()).collect();
        assert_eq!(longs, ["exclude"]);
    }

    /// Settings named like the long flags become those flags; flags win; a later file and a
    /// `[scan]` table win over what comes before; lists are repeated flags.
    #[test]
    fn files_give_flags_and_the_command_line_wins() {
        let d = tempfile::tempdir().unwrap();
        let system = write(
            d.path(),
            "system.toml",
            "api-url = \"https://gw.example.org:8737\"\nexclude = [\"*.iso\", \"backup/\"]\n\
             one-file-system = true\nbudget = 100\n[serve]\nlisten = \"127.0.0.1:9000\"\n",
        );
        let user = write(d.path(), "user.toml", "[scan]\nbudget = 50\nmd5 = true\n");
        let cmd = crate::cli::command();
        let got = load(&cmd, "scan", &[system.clone(), user.clone()]).unwrap();
        let b = got.iter().find(|s| s.long == "budget").unwrap();
        assert_eq!(b.value.as_integer(), Some(50), "the later file wins");
        assert_eq!(b.file, user);
        assert!(
            got.iter().all(|s| s.long != "listen"),
            "serve's table is serve's"
        );

        let file = write(
            d.path(),
            "c.toml",
            "api-url = \"https://gw.example.org:8737\"\nexclude = [\"*.iso\", \"backup/\"]\n\
             one-file-system = true\nbudget = 100\nmd5 = false\n",
        );
        let config = format!("--config={}", file.display());
        let a = scan_of(
            with_config_files(
                &cmd,
                args(&["hashsweep", &config, "scan", "--budget", "7", "/srv"]),
            )
            .unwrap(),
        );
        assert_eq!(a.api.conn.api_url, "https://gw.example.org:8737");
        assert_eq!(a.walk.exclude, vec!["*.iso".to_string(), "backup/".into()]);
        assert!(a.walk.one_file_system);
        assert!(!a.md5);
        assert_eq!(a.budget, Some(7), "the flag wins");
        assert_eq!(a.paths, vec![PathBuf::from("/srv")]);

        // A flag given replaces a list from the file, not adds to it.
        let a = scan_of(
            with_config_files(
                &cmd,
                args(&["hashsweep", "scan", &config, "--exclude", "x", "--", "/srv"]),
            )
            .unwrap(),
        );
        assert_eq!(a.walk.exclude, vec!["x".to_string()]);
        assert_eq!(a.paths, vec![PathBuf::from("/srv")]);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let cmd = crate::cli::command();
        for (text, says) in [
            ("apikey = \"secret\"\n", "unknown setting `apikey`"),
            (
                "[scan]\nlisten = \"x\"\n",
                "`hashsweep scan` has no --listen",
            ),
            (
                "one-file-system = \"yes\"\n",
                "one-file-system must be true or false",
            ),
            ("api-url = [\"a\", \"b\"]\n", "api-url must be one value"),
            ("api-url = \n", "config file"),
        ] {
            let f = write(d.path(), "bad.toml", text);
            let e = load(&cmd, "scan", std::slice::from_ref(&f))
                .and_then(|s| {
                    let t = cmd.find_subcommand("scan").unwrap();
                    s.iter().try_for_each(|s| as_flags(t, s).map(drop))
                })
                .unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.contains(&f.display().to_string()), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn passwords_in_urls_are_not_shown() {
        assert_eq!(
            shown("redis://:hunter2@10.0.0.5:6379/0"),
            "redis://:REDACTED@10.0.0.5:6379/0"
        );
        assert_eq!(shown("/etc/hashsweep/key"), "/etc/hashsweep/key");
    }
}

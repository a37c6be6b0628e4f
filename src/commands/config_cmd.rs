//! `hashsweep config`: the settings a subcommand would run with, as TOML a config file could
//! hold, each with where it comes from (a config file, the environment, the default). The API
//! key is never shown (it is no setting: only whether it is set), nor a password in a URL.

use std::path::Path;

use crate::cli::ConfigArgs;
use crate::cli::settings::{self, Source};

use super::*;

/// `hashsweep config`
pub fn run_config(a: ConfigArgs, config: Option<&Path>) -> Result<u8, Error> {
    let cmd = crate::cli::command();
    let (files, values) = settings::effective(&cmd, &a.command, config).map_err(Error::Usage)?;
    let mut out = io::stdout().lock();
    if files.is_empty() {
        writeln!(
            out,
            "# no config file (looked for {} and the user's config directory)",
            settings::SYSTEM_CONFIG
        )?;
    }
    for f in &files {
        writeln!(out, "# read {}", f.display())?;
    }
    writeln!(out, "[{}]", a.command)?;
    for e in values {
        let shown: Vec<String> = e
            .values
            .iter()
            .map(|v| toml_value(&settings::shown(v)))
            .collect();
        let value = match shown.len() {
            1 if !e.list => shown[0].clone(),
            _ => format!("[{}]", shown.join(", ")),
        };
        let from = match e.source {
            Source::File(p) => p.display().to_string(),
            Source::Environment(name) => format!("environment {name}"),
            Source::CommandLine => "command line".into(),
            Source::Default => "default".into(),
        };
        writeln!(out, "{} = {value}  # {from}", e.long)?;
    }
    let key = if std::env::var_os(APIKEY_ENV).is_some() {
        format!("{APIKEY_ENV} is set (not shown)")
    } else {
        format!("{APIKEY_ENV} is not set; use apikey-file or set it")
    };
    writeln!(out, "# API key: {key}")?;
    Ok(0)
}

/// A raw flag value as TOML: bare when it is true/false or a whole number, else a string.
fn toml_value(v: &str) -> String {
    if v == "true" || v == "false" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
        v.to_string()
    } else {
        toml::Value::String(v.to_string()).to_string()
    }
}

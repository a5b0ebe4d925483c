//! Command line, configuration and the state shared by the commands.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Parser;
use resetdesk::config::{Config, Mode};

use crate::desk::DeskState;

/// Environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "RESETDESK_CONFIG";

/// ResetDesk desk application (Tauri shell).
#[derive(Debug, Parser)]
#[command(name = "resetdesk-app", version, about)]
pub struct Args {
    /// Configuration file (resetdesk.toml). Defaults to $RESETDESK_CONFIG, else the
    /// built-in defaults (demo mode).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Args {
    pub fn parse_from_env() -> Result<Self, clap::Error> {
        Self::try_parse()
    }

    /// `--config` wins over `$RESETDESK_CONFIG`; an empty variable counts as unset.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
    }
}

/// What the shell knows after start-up. A configuration that does not load is kept as
/// a state the lock screen shows (an agent starting the app from a desktop icon never
/// sees stderr), not a crash.
pub struct AppState {
    pub config: Result<Config, String>,
    /// Where the configuration came from, for the status line ("built-in defaults" or the path).
    pub config_source: String,
    /// The agent session (see [`crate::desk`]).
    pub desk: Mutex<DeskState>,
    /// When the reader watcher last went round its loop (ms since the process started;
    /// 0: not yet). See [`crate::watcher::alive`].
    pub watcher_beat: std::sync::atomic::AtomicU64,
}

impl AppState {
    pub fn load(path: Option<PathBuf>) -> Self {
        match path {
            None => Self {
                config: Ok(Config::default()),
                config_source: "built-in defaults".into(),
                desk: Mutex::default(),
                watcher_beat: Default::default(),
            },
            Some(p) => Self {
                config: load_config(&p),
                config_source: p.display().to_string(),
                desk: Mutex::default(),
                watcher_beat: Default::default(),
            },
        }
    }

    pub fn mode(&self) -> Option<Mode> {
        self.config.as_ref().ok().map(|c| c.mode)
    }
}

fn load_config(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| {
        tracing::error!("configuration not loaded: {e}");
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_flag_names_the_file() {
        let args = Args::try_parse_from(["resetdesk-app", "--config", "/etc/resetdesk/desk.toml"]).unwrap();
        assert_eq!(args.config_path(), Some(PathBuf::from("/etc/resetdesk/desk.toml")));
        assert!(Args::try_parse_from(["resetdesk-app", "--bogus"]).is_err());
    }

    #[test]
    fn no_file_means_demo_defaults() {
        let state = AppState::load(None);
        assert_eq!(state.mode(), Some(Mode::Demo));
        assert_eq!(state.config_source, "built-in defaults");
    }

    #[test]
    fn a_bad_or_missing_file_is_a_state_with_the_reason_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resetdesk.toml");
        std::fs::write(&path, "organisation = \"Acme\"\nmode = \"sometimes\"\n").unwrap();
        let state = AppState::load(Some(path.clone()));
        let error = state.config.as_ref().unwrap_err();
        assert!(error.contains("resetdesk.toml") && error.contains("mode"), "{error}");
        assert_eq!(state.mode(), None);

        let missing = AppState::load(Some(dir.path().join("absent.toml")));
        assert!(missing.config.unwrap_err().contains("absent.toml"));
    }
}

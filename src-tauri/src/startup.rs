//! Command line, configuration and the state shared by the commands.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Parser;
use resetdesk::config::{Config, Mode};

use crate::desk::DeskState;

/// Environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "RESETDESK_CONFIG";

/// The machine-wide configuration an installed desk (the `.deb`) reads when neither
/// `--config` nor `$RESETDESK_CONFIG` names one: the desktop entry starts the app
/// without arguments.
pub const SYSTEM_CONFIG: &str = "/etc/resetdesk/resetdesk.toml";

/// ResetDesk desk application (Tauri shell).
#[derive(Debug, Parser)]
#[command(name = "resetdesk-app", version, about)]
pub struct Args {
    /// Configuration file (resetdesk.toml). Defaults to $RESETDESK_CONFIG, else
    /// /etc/resetdesk/resetdesk.toml when it exists, else the built-in defaults (demo mode).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Args {
    pub fn parse_from_env() -> Result<Self, clap::Error> {
        Self::try_parse()
    }

    /// `--config` wins over `$RESETDESK_CONFIG` (an empty variable counts as unset),
    /// which wins over [`SYSTEM_CONFIG`] when that file exists.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config_path_with(Path::new(SYSTEM_CONFIG))
    }

    fn config_path_with(&self, system: &Path) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
            .or_else(|| system.is_file().then(|| system.to_path_buf()))
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
    fn the_system_file_is_read_only_when_present_and_nothing_else_names_one() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("resetdesk.toml");
        let no_flag = Args::try_parse_from(["resetdesk-app"]).unwrap();
        if std::env::var_os(CONFIG_ENV).is_none_or(|v| v.is_empty()) {
            assert_eq!(no_flag.config_path_with(&system), None, "absent file: built-in defaults");
            std::fs::write(&system, "").unwrap();
            assert_eq!(no_flag.config_path_with(&system), Some(system.clone()));
        }
        let flag = Args::try_parse_from(["resetdesk-app", "--config", "/srv/desk.toml"]).unwrap();
        std::fs::write(&system, "").unwrap();
        assert_eq!(flag.config_path_with(&system), Some(PathBuf::from("/srv/desk.toml")), "the flag wins");
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

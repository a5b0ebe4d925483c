//! The log filter of every tracing subscriber the project sets up (CLI, bench, app).
//!
//! The `yubikey` crate logs every APDU it sends at trace level, PIN VERIFY and
//! management-key data included. An `EnvFilter` alone cannot keep those lines out:
//! `RUST_LOG=yubikey::apdu=trace` is more specific than any `yubikey=off` we add, and
//! a span directive (`RUST_LOG=[login]=trace`) enables every target inside the span.
//! So [`filter`] is the env filter **and** a fixed deny of the secret-bearing targets,
//! which no directive can lift.
//!
//! ```no_run
//! // In a shell's main (the app: `resetdesk::logging::init_stderr("info")`):
//! resetdesk::logging::init_stderr("warn");
//! ```

use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::combinator::And;
use tracing_subscriber::filter::{EnvFilter, FilterExt, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Targets that log secrets (APDUs carry PINs, PUKs and management keys): never logged.
pub const SECRET_BEARING_TARGETS: &[&str] = &["yubikey"];

/// The environment variables read for log directives, first set wins.
pub const ENV_VARS: [&str; 2] = ["RESETDESK_LOG", "RUST_LOG"];

/// The filter type [`filter`] returns: the env filter and the fixed deny.
pub type LogFilter<S> = And<EnvFilter, FilterFn<fn(&Metadata<'_>) -> bool>, S>;

/// True if `target` is a secret-bearing crate or one of its modules (`log` records
/// keep their module path as target).
pub fn secret_bearing(target: &str) -> bool {
    SECRET_BEARING_TARGETS.iter().any(|t| target == *t || target.strip_prefix(t).is_some_and(|r| r.starts_with("::")))
}

/// The fixed half of [`filter`]: everything but the secret-bearing targets.
fn allowed(metadata: &Metadata<'_>) -> bool {
    !secret_bearing(metadata.target())
}

/// The directives in effect: `RESETDESK_LOG`, else `RUST_LOG`, else `default`
/// (e.g. `"warn"`). Bad directives in a variable fall back to `default`.
fn env_filter(default: &str) -> EnvFilter {
    ENV_VARS
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(default))
}

/// The per-layer filter for a subscriber: the directives of [`ENV_VARS`] (or
/// `default`), with [`SECRET_BEARING_TARGETS`] off whatever they say. Use it as
/// `fmt::layer().with_filter(resetdesk::logging::filter("info"))`.
pub fn filter<S>(default: &str) -> LogFilter<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let deny: fn(&Metadata<'_>) -> bool = allowed;
    env_filter(default).and(FilterFn::new(deny))
}

/// Install the process's subscriber: formatted lines on stderr through [`filter`]
/// (and `log` records, converted). A second call is a no-op.
pub fn init_stderr(default: &str) {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter(default));
    // Err only if a subscriber is already installed: then that one stays.
    let _already_set = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yubikey_crate_and_its_modules_are_denied_and_nothing_else() {
        assert!(secret_bearing("yubikey"));
        assert!(secret_bearing("yubikey::apdu"));
        assert!(secret_bearing("yubikey::transaction"));
        assert!(!secret_bearing("yubikeyish"));
        assert!(!secret_bearing("resetdesk::login"));
    }
}

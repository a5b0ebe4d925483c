//! The ticketing webhook sink: posts a [`TicketSummary`] over HTTPS to the configured
//! URL (`[ticketing]`), rendered with its template ([`super::ticketing`]).
//!
//! `ureq`'s blocking client over rustls with ring. The server's certificate is checked
//! against the configured CA only (`ca_file`: a public CA cannot stand in for the
//! organisation's), else the system's roots. Plain `http://` only with
//! `allow_plain_http_for_tests`, which production refuses. No proxy from the
//! environment, no redirects (the auth header never follows one). The auth header is
//! read from its file once and kept as a [`Secret`]. A non-2xx answer or a transport
//! failure is an error: the outbox sender records it and retries with backoff.

use std::time::Duration;

use crate::config::{Mode, TicketTemplate, TicketingConfig, WebhookMethod};
use crate::secret::Secret;

use super::ticketing::{render_body, url_for, TemplateError, TicketSummary};

/// How long one post may take before the attempt counts as failed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a ticket update was not posted. None contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the ticketing settings are unusable ({0}); fix [ticketing] in resetdesk.toml")]
    Setup(String),
    #[error("{path}: cannot read ({source}); fix [ticketing] in resetdesk.toml")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the ticketing server answered HTTP {0}; the update stays queued and is retried")]
    Status(u16),
    #[error("the ticketing server could not be reached or refused the connection ({0}); the update stays queued and is retried")]
    Transport(String),
    #[error("the queued ticket update is unreadable ({0})")]
    BadRow(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// Posts ticket updates.
pub struct WebhookSink {
    agent: ureq::Agent,
    url: String,
    method: WebhookMethod,
    template: TicketTemplate,
    /// The custom template's text (empty for the built-in ones).
    custom: String,
    /// `(name, value)` of the auth header.
    auth: Option<(String, Secret)>,
}

impl WebhookSink {
    /// The sink of `config`; `None` when no URL is set.
    pub fn from_config(config: &TicketingConfig, mode: Mode) -> Result<Option<Self>, WebhookError> {
        if !config.enabled() {
            return Ok(None);
        }
        let plain = config.url.starts_with("http://");
        if plain && (!config.allow_plain_http_for_tests || mode == Mode::Production) {
            return Err(WebhookError::Setup("plain http:// is refused: use https://".into()));
        }
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| WebhookError::Read { path: path.display().to_string(), source })
        };
        let ca_pem = match &config.ca_file {
            Some(path) => Some((path, read(path)?)),
            None => None,
        };
        let agent =
            crate::https::agent(ca_pem.as_ref().map(|(_, pem)| pem.as_slice()), !plain, TIMEOUT).map_err(|e| {
                let file = ca_pem.as_ref().map(|(p, _)| p.display().to_string()).unwrap_or_default();
                WebhookError::Setup(format!("{file}: {e}"))
            })?;
        let custom = match (&config.template_file, config.template) {
            (Some(path), TicketTemplate::Custom) => String::from_utf8(read(path)?)
                .map_err(|_| WebhookError::Setup(format!("{}: not UTF-8 text", path.display())))?,
            (None, TicketTemplate::Custom) => {
                return Err(WebhookError::Setup("template = \"custom\" needs template_file".into()))
            }
            _ => String::new(),
        };
        let auth = match &config.auth_header_file {
            Some(path) => Some(read_auth_header(path)?),
            None => None,
        };
        Ok(Some(Self {
            agent,
            url: config.url.clone(),
            method: config.method,
            template: config.template,
            custom,
            auth,
        }))
    }

    /// Post the update queued as `summary_json` (an outbox row's body).
    pub fn post_row(&mut self, summary_json: &str) -> Result<(), WebhookError> {
        let summary: TicketSummary =
            serde_json::from_str(summary_json).map_err(|e| WebhookError::BadRow(e.to_string()))?;
        self.post(&summary)
    }

    /// Post `summary` to its ticket.
    pub fn post(&mut self, summary: &TicketSummary) -> Result<(), WebhookError> {
        let body = render_body(self.template, &self.custom, summary)?;
        let url = url_for(&self.url, &summary.ticket);
        let request = match self.method {
            WebhookMethod::Post => self.agent.post(&url),
            WebhookMethod::Patch => self.agent.patch(&url),
            WebhookMethod::Put => self.agent.put(&url),
        };
        let mut request = request.header("Content-Type", "application/json").header("Accept", "application/json");
        if let Some((name, value)) = &self.auth {
            request = request.header(name.as_str(), value.expose());
        }
        let response = request.send(body.as_bytes()).map_err(|e| WebhookError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(WebhookError::Status(status))
        }
    }
}

/// `Name: value` from the first line of `path`.
fn read_auth_header(path: &std::path::Path) -> Result<(String, Secret), WebhookError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|source| WebhookError::Read { path: path.display().to_string(), source })?,
    );
    let line = text.lines().next().unwrap_or("");
    let bad = || WebhookError::Setup(format!("{}: the first line must be `Name: value`", path.display()));
    let (name, value) = line.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || value.trim().is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), Secret::from(value.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_needs_the_test_flag_and_never_in_production() {
        let mut config = TicketingConfig { url: "http://127.0.0.1:9/x".into(), ..TicketingConfig::default() };
        assert!(matches!(WebhookSink::from_config(&config, Mode::Demo), Err(WebhookError::Setup(_))));
        config.allow_plain_http_for_tests = true;
        assert!(WebhookSink::from_config(&config, Mode::Demo).unwrap().is_some());
        assert!(matches!(WebhookSink::from_config(&config, Mode::Production), Err(WebhookError::Setup(_))));
        let off = TicketingConfig::default();
        assert!(WebhookSink::from_config(&off, Mode::Production).unwrap().is_none());
    }

    #[test]
    fn the_auth_header_file_holds_one_name_value_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        std::fs::write(&path, "Authorization: Bearer abc\n").unwrap();
        let (name, value) = read_auth_header(&path).unwrap();
        assert_eq!((name.as_str(), value.expose()), ("Authorization", "Bearer abc"));
        std::fs::write(&path, "Bearer abc\n").unwrap();
        assert!(matches!(read_auth_header(&path), Err(WebhookError::Setup(_))));
    }
}

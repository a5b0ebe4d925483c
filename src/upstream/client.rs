//! The HTTPS client of the collector's API, on the core's one client setup
//! ([`crate::https`]): the collector's certificate is checked against the CA the desk
//! pins (`[collector] ca_file`), else the system's roots; plain `http://` only where
//! the configuration allows it (demo mode), no proxy, no redirects.

use std::time::Duration;

use super::wire::{parse_proof, AddRecordsResponse, ConsistencyResponse, ErrorBody};
use crate::audit::Hash32;
use crate::secret::Secret;

/// Longest wait for one request, connection included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a batch's receipts: ~1 KiB each).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Why a request to the collector did not give an answer the desk can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("collector client: {0}")]
    Setup(String),
    #[error(
        "cannot reach the collector at {url}: {why}; check it runs and the network, and [collector] url and ca_file"
    )]
    Unreachable { url: String, why: String },
    #[error("the collector refused the request ({status} {}): {}{}", .body.error, .body.message,
        .body.seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
    Refused { status: u16, body: ErrorBody },
    #[error("the collector answered HTTP {status} to {url}")]
    Status { status: u16, url: String },
    #[error("the collector's answer to {url} is not what the API says: {why}")]
    BadAnswer { url: String, why: String },
}

/// A client of one collector.
pub struct CollectorClient {
    agent: ureq::Agent,
    base: String,
    /// This desk's key for the desk services (`[collector] desk_key_file`).
    desk_key: Option<Secret>,
}

impl CollectorClient {
    /// A client for `url` (`https://host:port`, no trailing path needed) pinning the CA
    /// certificates of `ca_pem` (PEM), or the system's roots when `None`.
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let agent = crate::https::agent(ca_pem, url.starts_with("https://"), TIMEOUT)
            .map_err(|e| ClientError::Setup(format!("the collector CA file: {e}")))?;
        Ok(Self { agent, base: url.trim_end_matches('/').to_owned(), desk_key: None })
    }

    /// Present `key` to the desk services.
    pub fn with_desk_key(mut self, key: Secret) -> Self {
        self.desk_key = Some(key);
        self
    }

    /// The client of `[collector]`: its URL and pinned CA file.
    pub fn from_config(config: &crate::config::CollectorConfig) -> Result<Self, ClientError> {
        let pem =
            match &config.ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    ClientError::Setup(format!("cannot read [collector] ca_file {}: {e}", path.display()))
                })?),
                None => None,
            };
        let client = Self::new(&config.url, pem.as_deref())?;
        match &config.desk_key_file {
            None => Ok(client),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ClientError::Setup(format!("cannot read [collector] desk_key_file {}: {e}", path.display()))
                })?;
                let key = Secret::new(text.trim().to_owned());
                drop(zeroize::Zeroizing::new(text));
                if key.expose().is_empty() {
                    return Err(ClientError::Setup(format!(
                        "[collector] desk_key_file {} is empty; write the key `resetdesk-collector desk-key add` made",
                        path.display()
                    )));
                }
                Ok(client.with_desk_key(key))
            }
        }
    }

    /// Whether the desk services can be asked (a desk key is configured).
    pub fn has_desk_key(&self) -> bool {
        self.desk_key.is_some()
    }

    /// A desk service: `GET <path>` (path and query, starting with `/`) with the desk
    /// key, its 2xx JSON answer decoded.
    pub fn service_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let sent = self.authorized(self.agent.get(&url))?.call();
        let text = self.answer(&url, sent)?;
        serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer { url, why: e.to_string() })
    }

    /// A desk service: `POST <path>` of `body` as JSON with the desk key, its 2xx JSON
    /// answer decoded.
    pub fn service_post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Setup(e.to_string()))?;
        let sent = self.authorized(self.agent.post(&url))?.header("Content-Type", "application/json").send(&json[..]);
        let text = self.answer(&url, sent)?;
        serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer { url, why: e.to_string() })
    }

    /// `GET /desk/whoami`: the desk name the collector knows this desk's key by.
    pub fn whoami(&self) -> Result<String, ClientError> {
        #[derive(serde::Deserialize)]
        struct WhoAmI {
            desk: String,
        }
        Ok(self.service_get::<WhoAmI>("/desk/whoami")?.desk)
    }

    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> Result<ureq::RequestBuilder<B>, ClientError> {
        let key = self.desk_key.as_ref().ok_or_else(|| {
            ClientError::Setup(
                "this needs the collector's desk services: set [collector] desk_key_file to the key `resetdesk-collector desk-key add` made".into(),
            )
        })?;
        Ok(request.header("Authorization", format!("Bearer {}", key.expose())))
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// `POST /add-records` with an encoded batch.
    pub fn add_records(&self, body: &[u8]) -> Result<AddRecordsResponse, ClientError> {
        let url = format!("{}/add-records", self.base);
        let sent = self.agent.post(&url).header("Content-Type", "application/json").send(body);
        let text = self.answer(&url, sent)?;
        serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer { url, why: e.to_string() })
    }

    /// `GET /checkpoint`: the latest signed checkpoint note.
    pub fn checkpoint(&self) -> Result<String, ClientError> {
        let url = format!("{}/checkpoint", self.base);
        let sent = self.agent.get(&url).call();
        self.answer(&url, sent)
    }

    /// `GET /proof/consistency?old=&new=`: the RFC 6962 proof that tree `old` is a
    /// prefix of tree `new`.
    pub fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash32>, ClientError> {
        let url = format!("{}/proof/consistency?old={old}&new={new}", self.base);
        let sent = self.agent.get(&url).call();
        let text = self.answer(&url, sent)?;
        let bad = |why: String| ClientError::BadAnswer { url: url.clone(), why };
        let body: ConsistencyResponse = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if body.old != old || body.new != new {
            return Err(bad(format!("asked for {old}..{new}, got {}..{}", body.old, body.new)));
        }
        parse_proof(&body.proof).ok_or_else(|| bad("a proof hash is not 32 bytes of base64".into()))
    }

    /// The body of a 2xx answer; a JSON error body becomes [`ClientError::Refused`].
    fn answer(
        &self,
        url: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ClientError> {
        let mut response = sent.map_err(|e| ClientError::Unreachable { url: url.to_owned(), why: e.to_string() })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| ClientError::Unreachable { url: url.to_owned(), why: e.to_string() })?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(ClientError::Refused { status, body }),
            Err(_) => Err(ClientError::Status { status, url: url.to_owned() }),
        }
    }
}

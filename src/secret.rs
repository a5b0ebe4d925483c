//! Secrets in memory: PINs, temporary passwords, security answers, one-time codes.
//!
//! A [`Secret`] zeroizes its bytes on drop, prints as `Secret(***)` in `Debug`, and
//! has no `Display` or `Serialize`: the only way out is [`Secret::expose`], so every
//! place a secret leaves memory is greppable.

use zeroize::{Zeroize, Zeroizing};

/// A UTF-8 secret that is wiped when dropped.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// Read a secret from a reader (stdin when it is not a terminal): the first line,
    /// without its line ending. The intermediate buffer is zeroized too.
    pub fn read_line_from(mut r: impl std::io::BufRead) -> std::io::Result<Self> {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let trimmed_len = line.trim_end_matches(['\r', '\n']).len();
        let s = Secret::new(line[..trimmed_len].to_owned());
        line.zeroize();
        Ok(s)
    }

    /// The secret itself. Call sites are the audit points for where secrets go.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{:?}", vec![s]).contains("hunter2"));
    }

    #[test]
    fn reads_first_line_without_newline() {
        let s = Secret::read_line_from(&b"123456\r\nrest"[..]).unwrap();
        assert_eq!(s.expose(), "123456");
    }
}

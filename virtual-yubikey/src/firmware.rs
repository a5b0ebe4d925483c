//! Which YubiKey 5 the virtual card acts as. The firmware decides the version GET VERSION
//! reports and the algorithm of the factory management key (3DES up to 5.6, AES-192 from
//! 5.7 on, same 24-byte value 0102…08 ×3). Both answer GET METADATA (Yubico, 5.3+) and
//! accept a new 3DES or AES-192 management key (AES since 5.4).

use crate::management::Algorithm;

/// The firmware a virtual card claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Firmware {
    /// 5.4.3: factory management key 3DES. The library default: the `yubikey` 0.8 crate
    /// (3DES only) can manage it, as it can a real 5.4.
    #[default]
    V5_4,
    /// 5.7.1: factory management key AES-192, the YubiKey 5 sold since 2024. Tools that
    /// only speak 3DES are refused (6A80), as on the real key.
    V5_7,
}

impl Firmware {
    /// GET VERSION's answer. (The `yubikey` crate reads the serial only for major 4 or 5.)
    pub fn version(self) -> [u8; 3] {
        match self {
            Firmware::V5_4 => [5, 4, 3],
            Firmware::V5_7 => [5, 7, 1],
        }
    }

    /// Algorithm of the factory management key (after insertion and after a PIV reset).
    pub(crate) fn default_management_algorithm(self) -> Algorithm {
        match self {
            Firmware::V5_4 => Algorithm::TripleDes,
            Firmware::V5_7 => Algorithm::Aes192,
        }
    }
}

impl std::fmt::Display for Firmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [major, minor, patch] = self.version();
        write!(f, "{major}.{minor}.{patch}")
    }
}

impl std::str::FromStr for Firmware {
    type Err = String;

    /// "5.4" or "5.7" (a full version such as "5.7.1" is accepted too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "5.4" | "5.4.3" => Ok(Firmware::V5_4),
            "5.7" | "5.7.1" => Ok(Firmware::V5_7),
            other => Err(format!("unknown firmware {other:?}: the virtual card acts as 5.4 (3DES) or 5.7 (AES-192)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_names_parse_and_print() {
        assert_eq!("5.7".parse(), Ok(Firmware::V5_7));
        assert_eq!("5.4.3".parse(), Ok(Firmware::V5_4));
        assert!("5.2".parse::<Firmware>().is_err());
        assert_eq!(Firmware::V5_7.to_string(), "5.7.1");
        assert_eq!(Firmware::default(), Firmware::V5_4);
    }
}

//! In-person inspection of a government photo ID, after the Proofing Agent role of
//! NIST SP 800-63A-4 (onsite attended proofing). The agent fills in a checklist;
//! only facts are kept — never an image, never the full document number.

use serde::{Deserialize, Serialize};
use time::Date;

use super::employee_record::parse_date;
use super::{check_text, FailReason, InputError, Verdict};

/// Kinds of photo ID the agent may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentType {
    Passport,
    NationalIdCard,
    DrivingLicence,
    ResidencePermit,
    /// A corporate or student ID: fair evidence only, too weak on its own.
    EmployeeBadge,
}

/// Evidence strength after NIST SP 800-63A-4 §2.4.1 / Appendix A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strength {
    Fair,
    Strong,
    /// Issuer-signed data checked to a trust anchor: the desk cannot check a chip
    /// signature, so no document inspected here is rated superior.
    Superior,
}

/// The strength a desk inspection can give a document of `kind` must reach for an
/// in-person check to pass (one document is inspected; a fair one is too weak).
pub const MIN_STRENGTH: Strength = Strength::Strong;

impl DocumentType {
    pub const ALL: [DocumentType; 5] =
        [Self::Passport, Self::NationalIdCard, Self::DrivingLicence, Self::ResidencePermit, Self::EmployeeBadge];

    /// The strength of this kind of document as inspected at the desk (sight and touch,
    /// no chip check): government photo IDs are strong, corporate IDs fair.
    pub fn strength(self) -> Strength {
        match self {
            Self::Passport | Self::NationalIdCard | Self::DrivingLicence | Self::ResidencePermit => Strength::Strong,
            Self::EmployeeBadge => Strength::Fair,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Passport => "Passport",
            Self::NationalIdCard => "National ID card",
            Self::DrivingLicence => "Driving licence",
            Self::ResidencePermit => "Residence permit",
            Self::EmployeeBadge => "Employee or student ID",
        }
    }
}

/// A document kind as the inspection screen offers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentChoice {
    pub document_type: DocumentType,
    pub label: &'static str,
    pub strength: Strength,
    /// Strong enough for an in-person check on its own.
    pub sufficient: bool,
}

/// Every document kind with its strength, for the screen.
pub fn document_choices() -> Vec<DocumentChoice> {
    DocumentType::ALL
        .into_iter()
        .map(|d| DocumentChoice {
            document_type: d,
            label: d.label(),
            strength: d.strength(),
            sufficient: d.strength() >= MIN_STRENGTH,
        })
        .collect()
}

/// The checklist as the agent filled it in. Once [`check`]ed, the normalised copy it
/// returns is what the audit record keeps: facts only, no image, no full number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdInspection {
    pub document_type: DocumentType,
    /// Country or authority that issued it ("Germany", "DVLA").
    pub issuing_authority: String,
    /// The last 4 characters of the document number: exactly 4 letters or digits.
    pub number_last4: String,
    /// Expiry date as `YYYY-MM-DD`.
    pub expiry: String,
    pub name_matches_record: bool,
    pub photo_matches_person: bool,
    /// Physical security features checked by sight and touch (raised print, holograms,
    /// microprint).
    pub security_features_checked: bool,
    /// The template and format are those of this kind of document from this issuer, complete.
    pub template_and_format_ok: bool,
    /// No sign of tampering (lamination damage, altered photo or text).
    pub no_tampering: bool,
}

const MAX_AUTHORITY_BYTES: usize = 128;

/// Check the checklist on `today` (the desk's date). Returns the verdict and the
/// normalised facts to record.
pub fn check(inspection: &IdInspection, today: Date) -> Result<(Verdict, IdInspection), InputError> {
    check_text("issuing authority", &inspection.issuing_authority)?;
    if inspection.issuing_authority.len() > MAX_AUTHORITY_BYTES {
        return Err(InputError::TooLong { field: "issuing authority", max: MAX_AUTHORITY_BYTES });
    }
    let last4 = inspection.number_last4.trim();
    if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(InputError::Format {
            field: "document number",
            expected: "only the last 4 letters or digits, never the full number",
        });
    }
    let expiry = parse_date("expiry date", &inspection.expiry)?;
    let facts = IdInspection {
        document_type: inspection.document_type,
        issuing_authority: inspection.issuing_authority.trim().to_owned(),
        number_last4: last4.to_ascii_uppercase(),
        expiry: expiry.to_string(),
        name_matches_record: inspection.name_matches_record,
        photo_matches_person: inspection.photo_matches_person,
        security_features_checked: inspection.security_features_checked,
        template_and_format_ok: inspection.template_and_format_ok,
        no_tampering: inspection.no_tampering,
    };
    let verdict = if inspection.document_type.strength() < MIN_STRENGTH {
        Verdict::Failed(FailReason::EvidenceTooWeak)
    } else if !inspection.no_tampering {
        Verdict::Failed(FailReason::SignsOfTampering)
    } else if expiry < today {
        Verdict::Failed(FailReason::DocumentExpired)
    } else if !inspection.security_features_checked || !inspection.template_and_format_ok {
        Verdict::Failed(FailReason::SecurityFeaturesNotChecked)
    } else if !inspection.photo_matches_person {
        Verdict::Failed(FailReason::PhotoMismatch)
    } else if !inspection.name_matches_record {
        Verdict::Failed(FailReason::NameMismatch)
    } else {
        Verdict::Passed
    };
    Ok((verdict, facts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 25);

    fn good() -> IdInspection {
        IdInspection {
            document_type: DocumentType::Passport,
            issuing_authority: "Germany".into(),
            number_last4: "x7k9".into(),
            expiry: "2030-01-31".into(),
            name_matches_record: true,
            photo_matches_person: true,
            security_features_checked: true,
            template_and_format_ok: true,
            no_tampering: true,
        }
    }

    #[test]
    fn a_fair_document_is_too_weak_and_tampering_stops_the_check() {
        let mut i = good();
        i.document_type = DocumentType::EmployeeBadge;
        assert_eq!(check(&i, TODAY).unwrap().0, Verdict::Failed(FailReason::EvidenceTooWeak));
        assert!(document_choices().iter().all(|c| c.sufficient == (c.document_type != DocumentType::EmployeeBadge)));
        let mut i = good();
        i.no_tampering = false;
        assert_eq!(check(&i, TODAY).unwrap().0, Verdict::Failed(FailReason::SignsOfTampering));
        assert!(FailReason::SignsOfTampering.counts_toward_lockout());
        assert!(!FailReason::EvidenceTooWeak.counts_toward_lockout(), "a weak document is no evidence against anyone");
        let mut i = good();
        i.template_and_format_ok = false;
        assert_eq!(check(&i, TODAY).unwrap().0, Verdict::Failed(FailReason::SecurityFeaturesNotChecked));
    }

    #[test]
    fn a_valid_document_passes_and_keeps_only_facts() {
        let (v, facts) = check(&good(), TODAY).unwrap();
        assert_eq!(v, Verdict::Passed);
        assert_eq!(facts.number_last4, "X7K9");
        assert_eq!(facts.expiry, "2030-01-31");
    }

    #[test]
    fn expired_or_unchecked_documents_fail() {
        let mut i = good();
        i.expiry = "2026-11-24".into();
        assert_eq!(check(&i, TODAY).unwrap().0, Verdict::Failed(FailReason::DocumentExpired));
        i.expiry = "2026-11-25".into(); // valid through its expiry day
        assert_eq!(check(&i, TODAY).unwrap().0, Verdict::Passed);
        for (f, reason) in
            [(0, FailReason::NameMismatch), (1, FailReason::PhotoMismatch), (2, FailReason::SecurityFeaturesNotChecked)]
        {
            let mut i = good();
            match f {
                0 => i.name_matches_record = false,
                1 => i.photo_matches_person = false,
                _ => i.security_features_checked = false,
            }
            assert_eq!(check(&i, TODAY).unwrap().0, Verdict::Failed(reason));
        }
    }

    #[test]
    fn the_full_number_is_refused() {
        let mut i = good();
        i.number_last4 = "C01X00T47".into();
        assert!(matches!(check(&i, TODAY), Err(InputError::Format { field: "document number", .. })));
        i.number_last4 = "12 4".into();
        assert!(check(&i, TODAY).is_err());
        i.number_last4 = "１２３４".into(); // fullwidth digits are not ASCII
        assert!(check(&i, TODAY).is_err());
    }

    #[test]
    fn bad_text_and_dates_are_typed_errors() {
        let mut i = good();
        i.issuing_authority = "".into();
        assert!(matches!(check(&i, TODAY), Err(InputError::Empty { .. })));
        i.issuing_authority = "A".repeat(129);
        assert!(matches!(check(&i, TODAY), Err(InputError::TooLong { .. })));
        i.issuing_authority = "Ger\u{202E}ynam".into(); // bidi override: shows reversed text
        assert!(matches!(check(&i, TODAY), Err(InputError::ControlChars { .. })));
        let mut i = good();
        i.expiry = "31.01.2030".into();
        assert!(matches!(check(&i, TODAY), Err(InputError::Format { .. })));
    }

    #[test]
    fn ui_json_with_an_image_or_wrong_types_is_rejected() {
        let base = r#""document_type":"passport","issuing_authority":"DE","number_last4":"1234","expiry":"2030-01-01","name_matches_record":true,"photo_matches_person":true,"security_features_checked":true,"template_and_format_ok":true,"no_tampering":true"#;
        assert!(serde_json::from_str::<IdInspection>(&format!("{{{base}}}")).is_ok());
        assert!(serde_json::from_str::<IdInspection>(&format!("{{{base},\"photo\":\"data:image/png;base64,AAAA\"}}"))
            .is_err());
        let wrong_type =
            format!("{{{}}}", base.replacen("\"name_matches_record\":true", "\"name_matches_record\":\"yes\"", 1));
        assert!(serde_json::from_str::<IdInspection>(&wrong_type).is_err());
        let wrong_kind = format!("{{{}}}", base.replacen("passport", "library-card", 1));
        assert!(serde_json::from_str::<IdInspection>(&wrong_kind).is_err());
    }
}

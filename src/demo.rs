//! The demo organisation: a believable small company for the demo and the tests.
//!
//! Deterministic (no randomness beyond argon2 salts), so the README can state how to
//! verify a demo user: every demo password is `demo-pass-<username>`, and the security
//! answers follow the table in [`DEMO_PEOPLE`]. Some contact details are changed a few
//! days before `now`, so the risk rules have something to find.

use time::{Date, Duration, Month, OffsetDateTime};

use crate::directory::embedded::{EmbeddedDirectory, NewAccount};
use crate::directory::{ContactPoint, DirectoryError};
use crate::secret::Secret;

/// The two security questions every demo account has.
pub const QUESTIONS: [&str; 2] = ["What was the name of your first pet?", "In which city were you born?"];

/// A demo person: (username, display name, department, location, manager, groups,
/// (first pet, birth city), hired (year, month), recently changed contact?).
pub struct DemoPerson {
    pub username: &'static str,
    pub display_name: &'static str,
    pub department: &'static str,
    pub location: &'static str,
    pub manager: Option<&'static str>,
    pub groups: &'static [&'static str],
    pub pet: &'static str,
    pub city: &'static str,
    pub hired: (i32, u8, u8),
    /// The mobile number was changed 2 days before `demo init`: risk escalation.
    pub phone_recently_changed: bool,
    /// Has an authenticator app (TOTP) enrolled.
    pub totp: bool,
}

// One row of the table below per person: positional on purpose, so the table reads
// like a spreadsheet.
#[allow(clippy::too_many_arguments)]
const fn p(
    username: &'static str,
    display_name: &'static str,
    department: &'static str,
    location: &'static str,
    manager: Option<&'static str>,
    groups: &'static [&'static str],
    pet: &'static str,
    city: &'static str,
    hired: (i32, u8, u8),
    phone_recently_changed: bool,
    totp: bool,
) -> DemoPerson {
    DemoPerson {
        username,
        display_name,
        department,
        location,
        manager,
        groups,
        pet,
        city,
        hired,
        phone_recently_changed,
        totp,
    }
}

/// The demo staff. Agents: alice, erin (junior); bob, frank (senior); carol, dave (admin).
pub const DEMO_PEOPLE: &[DemoPerson] = &[
    // Leadership and managers.
    p(
        "hmueller",
        "Hannah Müller",
        "Executive",
        "Berlin HQ",
        None,
        &["staff", "managers"],
        "Bello",
        "Hamburg",
        (2011, 3, 1),
        false,
        true,
    ),
    p(
        "rcosta",
        "Rui Costa",
        "Finance",
        "Lisbon",
        Some("hmueller"),
        &["staff", "managers", "finance-approvers"],
        "Tareco",
        "Porto",
        (2014, 9, 15),
        false,
        true,
    ),
    p(
        "anovak",
        "Ana Novak",
        "Engineering",
        "Berlin HQ",
        Some("hmueller"),
        &["staff", "managers"],
        "Miso",
        "Ljubljana",
        (2015, 1, 12),
        false,
        true,
    ),
    p(
        "jokafor",
        "James Okafor",
        "IT Operations",
        "Berlin HQ",
        Some("hmueller"),
        &["staff", "managers", "it-admins"],
        "Rex",
        "Lagos",
        (2013, 6, 3),
        false,
        true,
    ),
    p(
        "slindqvist",
        "Sofia Lindqvist",
        "Human Resources",
        "Berlin HQ",
        Some("hmueller"),
        &["staff", "managers", "hr-admins"],
        "Nala",
        "Uppsala",
        (2016, 4, 18),
        false,
        false,
    ),
    p(
        "mtanaka",
        "Mei Tanaka",
        "Security",
        "Toronto",
        Some("hmueller"),
        &["staff", "managers", "security-admins"],
        "Kuro",
        "Osaka",
        (2017, 2, 6),
        false,
        true,
    ),
    p(
        "dgarcia",
        "Diego García",
        "Sales",
        "Lisbon",
        Some("hmueller"),
        &["staff", "managers"],
        "Luna",
        "Sevilla",
        (2018, 10, 1),
        false,
        false,
    ),
    // Help desk (agents).
    p(
        "alice",
        "Alice Schmidt",
        "Service Desk",
        "Berlin HQ",
        Some("jokafor"),
        &["staff", "helpdesk-junior"],
        "Pünktchen",
        "Bremen",
        (2023, 8, 1),
        false,
        true,
    ),
    p(
        "erin",
        "Erin Walsh",
        "Service Desk",
        "Toronto",
        Some("jokafor"),
        &["staff", "helpdesk-junior"],
        "Biscuit",
        "Dublin",
        (2024, 2, 19),
        false,
        false,
    ),
    p(
        "bob",
        "Bob Nguyen",
        "Service Desk",
        "Berlin HQ",
        Some("jokafor"),
        &["staff", "helpdesk-senior"],
        "Pho",
        "Hanoi",
        (2019, 5, 20),
        false,
        true,
    ),
    p(
        "frank",
        "Frank Weber",
        "Service Desk",
        "Lisbon",
        Some("jokafor"),
        &["staff", "helpdesk-senior"],
        "Struppi",
        "Köln",
        (2020, 11, 2),
        false,
        false,
    ),
    p(
        "carol",
        "Carol Ito",
        "Service Desk",
        "Berlin HQ",
        Some("jokafor"),
        &["staff", "helpdesk-admin"],
        "Sora",
        "Kyoto",
        (2016, 7, 11),
        false,
        true,
    ),
    p(
        "dave",
        "Dave Kowalski",
        "Service Desk",
        "Toronto",
        Some("jokafor"),
        &["staff", "helpdesk-admin"],
        "Azor",
        "Kraków",
        (2015, 3, 30),
        false,
        true,
    ),
    // Highest-privilege accounts.
    p(
        "adm-okafor",
        "James Okafor (domain admin)",
        "IT Operations",
        "Berlin HQ",
        Some("jokafor"),
        &["domain-admins"],
        "Rex",
        "Lagos",
        (2013, 6, 3),
        false,
        true,
    ),
    p(
        "adm-tanaka",
        "Mei Tanaka (security admin)",
        "Security",
        "Toronto",
        Some("mtanaka"),
        &["security-admins"],
        "Kuro",
        "Osaka",
        (2017, 2, 6),
        false,
        true,
    ),
    p(
        "kpetrov",
        "Kiril Petrov",
        "IT Operations",
        "Berlin HQ",
        Some("jokafor"),
        &["staff", "domain-admins"],
        "Sharik",
        "Sofia",
        (2012, 1, 9),
        true,
        true,
    ),
    // Privileged accounts.
    p(
        "lwong",
        "Lena Wong",
        "IT Operations",
        "Toronto",
        Some("jokafor"),
        &["staff", "it-admins"],
        "Dumpling",
        "Vancouver",
        (2018, 3, 5),
        false,
        true,
    ),
    p(
        "pfischer",
        "Paul Fischer",
        "IT Operations",
        "Berlin HQ",
        Some("jokafor"),
        &["staff", "it-admins"],
        "Waldi",
        "Leipzig",
        (2021, 9, 13),
        true,
        false,
    ),
    p(
        "imartins",
        "Inês Martins",
        "Finance",
        "Lisbon",
        Some("rcosta"),
        &["staff", "finance-approvers"],
        "Pipoca",
        "Coimbra",
        (2019, 1, 7),
        false,
        true,
    ),
    p(
        "tbecker",
        "Tobias Becker",
        "Human Resources",
        "Berlin HQ",
        Some("slindqvist"),
        &["staff", "hr-admins"],
        "Felix",
        "Dresden",
        (2020, 6, 22),
        false,
        false,
    ),
    // Standard staff.
    p(
        "jsmith",
        "Jordan Smith",
        "Sales",
        "Toronto",
        Some("dgarcia"),
        &["staff"],
        "Buddy",
        "Ottawa",
        (2021, 4, 12),
        false,
        true,
    ),
    p(
        "mrossi",
        "Marco Rossi",
        "Sales",
        "Lisbon",
        Some("dgarcia"),
        &["staff"],
        "Briciola",
        "Milano",
        (2022, 1, 17),
        true,
        false,
    ),
    p(
        "ykim",
        "Yuna Kim",
        "Engineering",
        "Berlin HQ",
        Some("anovak"),
        &["staff", "engineering"],
        "Bori",
        "Busan",
        (2020, 2, 3),
        false,
        true,
    ),
    p(
        "obrien",
        "Orla O'Brien",
        "Engineering",
        "Toronto",
        Some("anovak"),
        &["staff", "engineering"],
        "Murphy",
        "Cork",
        (2019, 8, 26),
        false,
        true,
    ),
    p(
        "nhassan",
        "Nadia Hassan",
        "Engineering",
        "Berlin HQ",
        Some("anovak"),
        &["staff", "engineering"],
        "Simba",
        "Alexandria",
        (2023, 3, 6),
        false,
        false,
    ),
    p(
        "pdubois",
        "Pierre Dubois",
        "Finance",
        "Lisbon",
        Some("rcosta"),
        &["staff"],
        "Minou",
        "Lyon",
        (2017, 11, 20),
        false,
        true,
    ),
    p(
        "ewojcik",
        "Ewa Wójcik",
        "Finance",
        "Berlin HQ",
        Some("rcosta"),
        &["staff"],
        "Burek",
        "Gdańsk",
        (2022, 7, 4),
        false,
        false,
    ),
    p(
        "gadeyemi",
        "Grace Adeyemi",
        "Human Resources",
        "Toronto",
        Some("slindqvist"),
        &["staff"],
        "Coco",
        "Ibadan",
        (2021, 10, 11),
        false,
        true,
    ),
    p(
        "lschulz",
        "Lukas Schulz",
        "Facilities",
        "Berlin HQ",
        Some("hmueller"),
        &["staff"],
        "Bruno",
        "München",
        (2016, 5, 2),
        false,
        false,
    ),
    p(
        "asilva",
        "Ana Silva",
        "Sales",
        "Lisbon",
        Some("dgarcia"),
        &["staff"],
        "Bolinha",
        "Faro",
        (2024, 1, 8),
        true,
        false,
    ),
    p(
        "cchen",
        "Chloe Chen",
        "Engineering",
        "Toronto",
        Some("anovak"),
        &["staff", "engineering"],
        "Mochi",
        "Taipei",
        (2022, 9, 19),
        false,
        true,
    ),
    p(
        "hjansen",
        "Henrik Jansen",
        "Legal",
        "Berlin HQ",
        Some("hmueller"),
        &["staff"],
        "Bamse",
        "Aarhus",
        (2018, 12, 3),
        false,
        false,
    ),
    p(
        "rpatel",
        "Ravi Patel",
        "Engineering",
        "Berlin HQ",
        Some("anovak"),
        &["staff", "engineering"],
        "Tiger",
        "Pune",
        (2020, 7, 27),
        false,
        true,
    ),
    p(
        "svolkova",
        "Svetlana Volkova",
        "Legal",
        "Toronto",
        Some("hmueller"),
        &["staff"],
        "Barsik",
        "Riga",
        (2021, 3, 15),
        false,
        false,
    ),
];

/// Accounts flagged by the security team in the demo data (risk escalation).
pub const FLAGGED: &[&str] = &["mrossi"];

/// The demo password of a demo user (documented in the README).
pub fn demo_password(username: &str) -> Secret {
    Secret::new(format!("demo-pass-{username}"))
}

/// The demo TOTP key of a demo user (20 bytes, deterministic, demo only).
pub fn demo_totp_key(username: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(format!("resetdesk-demo-totp:{username}").as_bytes())[..20].to_vec()
}

pub(crate) fn employee_id(index: usize) -> String {
    format!("EC-{:05}", 10_000 + index * 37)
}

pub(crate) fn phone(index: usize, location: &str) -> String {
    let prefix = match location {
        "Lisbon" => "+351 21 555",
        "Toronto" => "+1 416 555",
        _ => "+49 30 5550",
    };
    format!("{prefix} {:04}", 1000 + index * 53)
}

/// Create the demo organisation in an empty directory. Returns the number of accounts
/// created (0 if the directory already holds accounts: `demo init` is idempotent).
pub fn init(dir: &mut EmbeddedDirectory, now: OffsetDateTime) -> Result<usize, DirectoryError> {
    if dir.account_count()? > 0 {
        return Ok(0);
    }
    let long_ago = now - Duration::days(400);
    for (i, person) in DEMO_PEOPLE.iter().enumerate() {
        let (y, m, d) = person.hired;
        let month = Month::try_from(m).map_err(|e| DirectoryError::Refused(format!("demo data month: {e}")))?;
        let date_of_hire = Date::from_calendar_date(y, month, d)
            .map_err(|e| DirectoryError::Refused(format!("demo data date: {e}")))?;
        let work_email = format!("{}@example.com", person.username);
        let mobile_changed = if person.phone_recently_changed { now - Duration::days(2) } else { long_ago };
        let account = NewAccount {
            username: person.username.into(),
            display_name: person.display_name.into(),
            employee_id: employee_id(i),
            department: person.department.into(),
            location: person.location.into(),
            manager: person.manager.map(str::to_owned),
            date_of_hire,
            emails: vec![ContactPoint { value: work_email, label: "work".into(), changed_at: Some(long_ago) }],
            phones: vec![
                ContactPoint { value: phone(i, person.location), label: "desk".into(), changed_at: Some(long_ago) },
                ContactPoint {
                    value: phone(i + 500, person.location),
                    label: "mobile".into(),
                    changed_at: Some(mobile_changed),
                },
            ],
            groups: person.groups.iter().map(|g| g.to_string()).collect(),
            password: Some(demo_password(person.username)),
            security_answers: vec![
                (QUESTIONS[0].into(), Secret::from(person.pet)),
                (QUESTIONS[1].into(), Secret::from(person.city)),
            ],
            totp_secret: person.totp.then(|| demo_totp_key(person.username)),
            flagged: FLAGGED.contains(&person.username),
        };
        dir.create_account(&account, now)?;
    }
    Ok(DEMO_PEOPLE.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::directory::Directory;
    use crate::tier::{AccountTier, AgentTier};
    use std::collections::HashSet;

    #[test]
    fn demo_data_is_consistent() {
        let names: HashSet<_> = DEMO_PEOPLE.iter().map(|p| p.username).collect();
        assert_eq!(names.len(), DEMO_PEOPLE.len(), "usernames are unique");
        assert!(DEMO_PEOPLE.len() >= 30);
        for p in DEMO_PEOPLE {
            if let Some(m) = p.manager {
                assert!(names.contains(m), "{} has unknown manager {m}", p.username);
            }
        }
    }

    #[test]
    fn demo_init_creates_all_tiers_and_agents_once() {
        let d = tempfile::tempdir().unwrap();
        let config = Config::default();
        let mut dir = EmbeddedDirectory::open(d.path(), &config).unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(init(&mut dir, now).unwrap(), DEMO_PEOPLE.len());
        assert_eq!(init(&mut dir, now).unwrap(), 0, "second run changes nothing");

        let rules = config.group_rules();
        let all = dir.search("", 1000, &rules).unwrap();
        let count = |t: AccountTier| all.iter().filter(|a| a.tier == t).count();
        assert!(count(AccountTier::Standard) >= 10);
        assert!(count(AccountTier::Privileged) >= 5);
        assert!(count(AccountTier::Highest) >= 3);
        let agents: Vec<_> = all.iter().filter_map(|a| a.agent_tier).collect();
        assert!(agents.len() >= 5);
        for t in AgentTier::ALL {
            assert!(agents.contains(&t), "an agent of tier {t}");
        }
        assert_eq!(dir.account("alice", &rules).unwrap().agent_tier, Some(AgentTier::Junior));
        assert_eq!(dir.account("carol", &rules).unwrap().agent_tier, Some(AgentTier::Admin));
        assert!(dir.entry("mrossi").unwrap().flagged);

        let recent = all.iter().filter(|a| a.phones.iter().any(|p| p.changed_within(now, Duration::days(7)))).count();
        assert!(recent >= 3, "some contact details changed recently");

        let check = dir.check_password("jsmith", &demo_password("jsmith")).unwrap();
        assert!(check.valid && !check.must_change);
    }
}

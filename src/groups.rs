//! Directory groups and the tiers they confer: the one place group names and DNs are
//! compared.
//!
//! A directory backend returns the groups an account is in as it knows them: names
//! (`helpdesk-senior`, `Domain Admins`) or LDAP distinguished names
//! (`CN=Domain Admins,CN=Users,DC=corp,DC=example`). It derives no tier. The core maps
//! them with [`GroupRules`], built from `[tiers]` and `[agents]` of the configuration
//! ([`crate::config::Config::group_rules`]; applied by [`crate::directory::Account::classify`]):
//!
//! - names compare case-insensitively, with surrounding white space trimmed and inner
//!   runs of white space taken as one space;
//! - a configured plain name matches a group of that name, or a DN whose first RDN is
//!   `CN=<name>` (wherever it sits in the tree);
//! - a configured DN matches only that DN (attribute types and values compared as
//!   above, spaces around `,` and `=` ignored, RFC 4514 escapes decoded). Configure
//!   agent groups of an LDAP directory by DN when others may create groups.
//!
//! Hyphens, underscores and spaces stay distinct (`domain-admins` is not
//! `domain admins`): merging them could give an agent tier to a group nobody
//! configured. Groups that look privileged (`admin`, `root`, `wheel`, `sudo`, ...) but
//! map to no tier are reported ([`GroupRules::unmapped_privileged`]), so a
//! misconfigured mapping is seen rather than silently treating an administrator as
//! standard staff.

use crate::tier::{AccountTier, AgentTier};

/// A group as compared: its normalised name (a plain name, or a DN's first `CN`
/// value) and, for a DN, the normalised DN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName {
    name: Option<String>,
    dn: Option<String>,
}

impl GroupName {
    /// Read a group name or DN as a backend or the configuration writes it. Text that
    /// is not a well-formed DN is taken as a plain name ([`check_group`] tells the
    /// configuration apart).
    pub fn new(text: &str) -> Self {
        match parse_dn(text) {
            Some(rdns) => {
                let name = rdns.first().filter(|(t, _)| t == "cn").map(|(_, v)| v.clone());
                let dn = rdns.iter().map(|(t, v)| format!("{t}={v}")).collect::<Vec<_>>().join(",");
                Self { name, dn: Some(dn) }
            }
            None => Self { name: Some(normalise(text)), dn: None },
        }
    }

    /// Whether a group an account is in (`member`) is this configured group.
    pub fn matches(&self, member: &GroupName) -> bool {
        match &self.dn {
            Some(dn) => member.dn.as_ref() == Some(dn),
            None => self.name.is_some() && member.name == self.name,
        }
    }

    /// Whether the group's name looks like it grants administrative rights.
    pub fn looks_privileged(&self) -> bool {
        let Some(name) = self.name.as_deref().or(self.dn.as_deref()) else { return false };
        name.split(|c: char| !c.is_alphanumeric()).any(|word| {
            word.contains("admin")
                || matches!(
                    word,
                    "root" | "wheel" | "sudo" | "sudoers" | "privileged" | "operators" | "superuser" | "superusers"
                )
        })
    }
}

/// Why a configured group cannot be used, for the configuration's file:line errors.
pub fn check_group(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("a group name must not be empty".into());
    }
    if looks_like_dn(text) && parse_dn(text).is_none() {
        return Err(format!(
            "{text:?} looks like a distinguished name but is not a well-formed one (RFC 4514: \
             `CN=Name,OU=Unit,DC=example`, with `,` `+` `\"` `\\` `<` `>` `;` in values escaped by `\\`)"
        ));
    }
    Ok(())
}

/// The configured agent groups (`[agents]`): which groups make an account a help-desk
/// agent, and of which tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentGroups {
    junior: GroupName,
    senior: GroupName,
    admin: GroupName,
}

impl AgentGroups {
    /// The junior, senior and admin agent groups (`[agents]`:
    /// [`crate::config::AgentConfig::groups`]).
    pub fn new(junior: &str, senior: &str, admin: &str) -> Self {
        Self { junior: GroupName::new(junior), senior: GroupName::new(senior), admin: GroupName::new(admin) }
    }

    /// The agent tier of an account in `groups` (the highest that applies), `None` if
    /// it is in no agent group.
    pub fn tier<S: AsRef<str>>(&self, groups: &[S]) -> Option<AgentTier> {
        let members = members(groups);
        let has = |c: &GroupName| members.iter().any(|m| c.matches(m));
        if has(&self.admin) {
            Some(AgentTier::Admin)
        } else if has(&self.senior) {
            Some(AgentTier::Senior)
        } else if has(&self.junior) {
            Some(AgentTier::Junior)
        } else {
            None
        }
    }

    fn all(&self) -> [&GroupName; 3] {
        [&self.junior, &self.senior, &self.admin]
    }
}

/// The configured mapping from groups to account tiers (`[tiers]`) and agent tiers
/// (`[agents]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRules {
    privileged: Vec<GroupName>,
    highest: Vec<GroupName>,
    agents: AgentGroups,
}

impl GroupRules {
    /// Groups that make an account privileged or highest (`[tiers]`), and the agent
    /// groups (`[agents]`): [`crate::config::Config::group_rules`].
    pub fn new<S: AsRef<str>>(privileged: &[S], highest: &[S], agents: AgentGroups) -> Self {
        let names = |list: &[S]| list.iter().map(|g| GroupName::new(g.as_ref())).collect();
        Self { privileged: names(privileged), highest: names(highest), agents }
    }

    /// The account tier of an account in `groups`: the highest that applies.
    pub fn account_tier<S: AsRef<str>>(&self, groups: &[S]) -> AccountTier {
        let members = members(groups);
        let has = |list: &[GroupName]| list.iter().any(|c| members.iter().any(|m| c.matches(m)));
        if has(&self.highest) {
            AccountTier::Highest
        } else if has(&self.privileged) {
            AccountTier::Privileged
        } else {
            AccountTier::Standard
        }
    }

    /// The agent tier of an account in `groups` ([`AgentGroups::tier`]).
    pub fn agent_tier<S: AsRef<str>>(&self, groups: &[S]) -> Option<AgentTier> {
        self.agents.tier(groups)
    }

    /// The groups in `groups` that look privileged but no rule maps to a tier.
    pub fn unmapped_privileged<'g, S: AsRef<str>>(&self, groups: &'g [S]) -> Vec<&'g str> {
        let configured = || self.privileged.iter().chain(&self.highest).chain(self.agents.all());
        groups
            .iter()
            .map(AsRef::as_ref)
            .filter(|g| {
                let member = GroupName::new(g);
                member.looks_privileged() && !configured().any(|c| c.matches(&member))
            })
            .collect()
    }

    /// Log each group of `username` that looks privileged but maps to no tier (once
    /// per group and process: every search would repeat it otherwise).
    pub fn warn_unmapped<S: AsRef<str>>(&self, groups: &[S], username: &str) {
        for group in self.unmapped_privileged(groups) {
            warn_unmapped_once(group, username);
        }
    }
}

fn members<S: AsRef<str>>(groups: &[S]) -> Vec<GroupName> {
    groups.iter().map(|g| GroupName::new(g.as_ref())).collect()
}

fn warn_unmapped_once(group: &str, username: &str) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let first = match WARNED.get_or_init(Default::default).lock() {
        Ok(mut seen) => seen.insert(group.to_owned()),
        // A panic while the set was held loses only the de-duplication: warn anyway.
        Err(_) => true,
    };
    if first {
        tracing::warn!(
            group,
            account = username,
            "directory group looks privileged but maps to no tier (treated as standard); \
             add it to [tiers] privileged_groups or highest_groups in resetdesk.toml"
        );
    }
}

/// Lower case, trimmed, inner white space runs as one space.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Whether `text` starts like `attributeType=`: a DN rather than a plain name.
fn looks_like_dn(text: &str) -> bool {
    text.split_once('=').is_some_and(|(t, _)| is_attribute_type(t.trim()))
}

fn is_attribute_type(t: &str) -> bool {
    let descr = t.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !t.is_empty() && t.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    descr || oid
}

/// A DN (RFC 4514) as (lower-case type, normalised value) pairs, outermost last;
/// `None` if `text` is not one. Multi-valued RDNs keep their `+` parts in one value.
fn parse_dn(text: &str) -> Option<Vec<(String, String)>> {
    if !looks_like_dn(text) {
        return None;
    }
    let mut rdns = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut attr = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            attr.push(c);
        }
        let attr = attr.trim().to_ascii_lowercase();
        if !is_attribute_type(&attr) {
            return None;
        }
        let mut value = String::new();
        let mut bytes = Vec::new();
        let mut ended = false;
        while let Some(c) = chars.next() {
            match c {
                ',' => {
                    ended = true;
                    break;
                }
                '\\' => {
                    let next = chars.next()?;
                    if next.is_ascii_hexdigit() {
                        let low = chars.next().filter(char::is_ascii_hexdigit)?;
                        let byte = u8::from_str_radix(&format!("{next}{low}"), 16).ok()?;
                        bytes.push(byte);
                        continue;
                    }
                    flush_utf8(&mut bytes, &mut value)?;
                    value.push(next);
                }
                _ => {
                    flush_utf8(&mut bytes, &mut value)?;
                    value.push(c);
                }
            }
        }
        flush_utf8(&mut bytes, &mut value)?;
        let value = normalise(&value);
        if value.is_empty() {
            return None;
        }
        rdns.push((attr, value));
        if !ended {
            return Some(rdns);
        }
    }
}

/// Append hex-escaped bytes (`\C3\A9`) collected so far as UTF-8.
fn flush_utf8(bytes: &mut Vec<u8>, value: &mut String) -> Option<()> {
    if !bytes.is_empty() {
        value.push_str(std::str::from_utf8(bytes).ok()?);
        bytes.clear();
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    fn rules(privileged: &[&str], highest: &[&str]) -> GroupRules {
        GroupRules::new(privileged, highest, AgentConfig::default().groups())
    }

    fn defaults() -> GroupRules {
        crate::config::Config::default().group_rules()
    }

    #[test]
    fn a_dn_and_a_name_of_the_same_group_both_map() {
        let r = rules(&[], &["domain admins"]);
        assert_eq!(r.account_tier(&["CN=Domain Admins,CN=Users,DC=corp,DC=example"]), AccountTier::Highest);
        assert_eq!(r.account_tier(&["domain admins"]), AccountTier::Highest);
        assert_eq!(r.account_tier(&["  Domain   ADMINS "]), AccountTier::Highest);
        assert_eq!(r.account_tier(&["domain-admins"]), AccountTier::Standard, "separators stay distinct");
        assert_eq!(r.account_tier(&["OU=Domain Admins,DC=corp,DC=example"]), AccountTier::Standard, "not a CN");
    }

    #[test]
    fn a_configured_dn_matches_only_that_dn() {
        let r = rules(&["cn=Server Admins, ou=Groups, dc=corp, dc=example"], &[]);
        assert_eq!(r.account_tier(&["CN=server admins,OU=groups,DC=Corp,DC=Example"]), AccountTier::Privileged);
        assert_eq!(r.account_tier(&["CN=Server Admins,OU=Sandbox,DC=corp,DC=example"]), AccountTier::Standard);
        assert_eq!(r.account_tier(&["Server Admins"]), AccountTier::Standard);
    }

    #[test]
    fn escapes_in_dns_are_decoded() {
        let r = rules(&["Finance, Approvers", "équipe admin"], &[]);
        assert_eq!(r.account_tier(&[r"CN=Finance\, Approvers,DC=x"]), AccountTier::Privileged);
        assert_eq!(r.account_tier(&[r"CN=\C3\89quipe Admin,DC=x"]), AccountTier::Privileged);
        assert_eq!(GroupName::new(r"CN=bad\C3,DC=x"), GroupName::new(r"CN=bad\C3,DC=x"), "kept as a plain name");
        assert!(check_group(r"CN=bad\C3,DC=x").is_err());
        assert!(check_group("CN=,DC=x").is_err());
        assert!(check_group(" ").is_err());
        assert!(check_group("CN=Domain Admins,CN=Users,DC=corp,DC=example").is_ok());
        assert!(check_group("helpdesk-senior").is_ok());
    }

    #[test]
    fn the_highest_tier_among_the_groups_wins() {
        let r = defaults();
        assert_eq!(r.account_tier(&["staff"]), AccountTier::Standard);
        assert_eq!(r.account_tier(&["staff", "IT-Admins"]), AccountTier::Privileged);
        assert_eq!(r.account_tier(&["it-admins", "domain-admins"]), AccountTier::Highest);
        assert_eq!(r.account_tier(&["CN=Enterprise Admins,CN=Users,DC=corp,DC=example"]), AccountTier::Highest);
    }

    #[test]
    fn agent_tiers_from_names_or_dns() {
        let r = defaults();
        assert_eq!(r.agent_tier(&["staff"]), None);
        assert_eq!(r.agent_tier(&["HelpDesk-Junior"]), Some(AgentTier::Junior));
        assert_eq!(r.agent_tier(&["cn=helpdesk-senior,ou=groups,dc=example"]), Some(AgentTier::Senior));
        assert_eq!(r.agent_tier(&["helpdesk-junior", "helpdesk-admin"]), Some(AgentTier::Admin));
    }

    #[test]
    fn privileged_looking_groups_without_a_tier_are_reported() {
        let r = defaults();
        let groups = [
            "staff",
            "CN=Backup Operators,CN=Builtin,DC=corp,DC=example",
            "wheel",
            "sudo",
            "db-root",
            "Web Administrators",
            "it-admins",
            "CN=Domain Admins,CN=Users,DC=corp,DC=example",
            "helpdesk-admin",
        ];
        assert_eq!(
            r.unmapped_privileged(&groups),
            ["CN=Backup Operators,CN=Builtin,DC=corp,DC=example", "wheel", "sudo", "db-root", "Web Administrators"]
        );
    }
}

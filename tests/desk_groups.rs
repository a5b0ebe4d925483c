//! Group-to-tier mapping through the real stack: the embedded directory stores and
//! returns group names and DNs, the desk's core maps them with `[tiers]` and
//! `[agents]` (case-insensitive, a DN by its CN), and the demo keeps its tiers.

mod desk_support;

use resetdesk::directory::embedded::FILE_NAME;
use resetdesk::tier::{AccountTier, AgentTier};
use resetdesk::token::registry::TokenRegistry;
use time::OffsetDateTime;

#[test]
fn the_desk_maps_directory_group_names_and_dns_to_tiers() {
    let mut site = desk_support::site();
    site.config.tiers.privileged_groups.push("CN=Server Operators,OU=Groups,DC=corp,DC=example".into());
    site.config.agents.senior_group = "cn=Service Desk Seniors,ou=groups,dc=corp,dc=example".into();
    // Demo staff, put into groups as an LDAP directory would name them.
    let db = rusqlite::Connection::open(site.dir.path().join(FILE_NAME)).unwrap();
    for (username, group) in [
        ("jsmith", "CN=Domain Admins,CN=Users,DC=corp,DC=example"),
        ("mrossi", "domain admins"),
        ("ykim", "cn=server operators, ou=groups, dc=corp, dc=example"),
        ("obrien", "CN=Server Operators,OU=Sandbox,DC=corp,DC=example"),
        ("nhassan", "wheel"),
        ("ewojcik", "CN=Service Desk Seniors,OU=Groups,DC=corp,DC=example"),
    ] {
        db.execute("INSERT INTO group_members (username, group_name) VALUES (?1, ?2)", [username, group]).unwrap();
    }
    drop(db);
    TokenRegistry::open(site.dir.path()).unwrap();
    let desk = site.desk();
    let now = OffsetDateTime::now_utc();
    let card = |username: &str| {
        let found = desk.search_accounts(username, now).unwrap();
        found.into_iter().find(|c| c.username == username).unwrap_or_else(|| panic!("{username} is found"))
    };
    assert_eq!(card("jsmith").tier, AccountTier::Highest, "a DN maps by its CN");
    assert_eq!(card("mrossi").tier, AccountTier::Highest, "a name maps case-insensitively");
    assert_eq!(card("ykim").tier, AccountTier::Privileged, "a configured DN maps that DN");
    assert_eq!(card("obrien").tier, AccountTier::Standard, "and no other DN of the same CN");
    assert_eq!(card("nhassan").tier, AccountTier::Standard, "unmapped: standard (and a warning)");
    assert_eq!(card("ewojcik").agent_tier, Some(AgentTier::Senior), "an agent group by DN");
    // The rest of the demo organisation keeps its tiers.
    assert_eq!(card("gadeyemi").tier, AccountTier::Standard);
    assert_eq!(card("adm-okafor").tier, AccountTier::Highest);
    assert_eq!(card("carol").agent_tier, Some(AgentTier::Admin));
}

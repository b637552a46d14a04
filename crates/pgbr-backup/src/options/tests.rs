use super::*;

#[test]
fn indexed_names_resolve() {
    let n = OptionName::parse("repo2-cipher-pass").expect("known");
    assert_eq!(n.def.name, "repo-cipher-pass");
    assert_eq!(n.index, 2);
    assert_eq!(n.full_name(), "repo2-cipher-pass");
    assert!(OptionName::parse("repo0-path").is_none());
    assert!(OptionName::parse("repo256-path").is_some());
    assert!(OptionName::parse("repo257-path").is_none());
    assert!(OptionName::parse("repo-path").is_none());
    assert!(OptionName::parse("pg1-path").is_some());
    assert!(OptionName::parse("compress-type").is_some());
    assert!(OptionName::parse("no-such-option").is_none());
}

#[test]
fn every_default_is_valid_for_its_kind() {
    for d in OPTIONS {
        if let Some(v) = d.default {
            crate::config::check_value(d, &full_name(d, 1), v).expect(d.name);
        }
    }
}

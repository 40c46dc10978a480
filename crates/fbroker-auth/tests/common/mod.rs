//! Helpers shared by the integration tests.

/// 1,000 rules of mixed shapes: per-device rules for one user, a few
/// hundred wildcard rules, patterns and denies.
pub fn thousand_rule_file() -> String {
    let mut text = String::from("topic read public/#\n");
    text.push_str("pattern readwrite clients/%c/#\npattern read users/%u/+/inbox\n");
    text.push_str("user fleet\n");
    for i in 0..600 {
        text.push_str(&format!("topic readwrite site/{}/device{i}/#\n", i % 20));
    }
    for i in 0..300 {
        text.push_str(&format!("topic read status/+/sensor{i}/+\n"));
    }
    for i in 0..90 {
        text.push_str(&format!("topic deny site/{}/device{}/firmware/#\n", i % 20, i * 5));
    }
    for i in 0..6 {
        text.push_str(&format!("pattern write telemetry/%c/channel{i}\n"));
    }
    text.push_str("user other\ntopic read other/#\n");
    text
}

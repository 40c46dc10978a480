//! ACL semantics, following Mosquitto's `acl_file`.

mod common;

use common::thousand_rule_file;
use fbroker_auth::{Acl, ClientAcl};

fn acl(text: &str) -> Acl {
    let (acl, warnings) = Acl::parse(text).expect("valid ACL file");
    assert!(warnings.is_empty(), "{warnings:?}");
    acl
}

fn client(text: &str, client_id: &str, username: Option<&str>) -> ClientAcl {
    acl(text).compile_for(client_id, username)
}

// --- sections -------------------------------------------------------------

const SECTIONS: &str = "\
# anonymous clients
topic read public/#
topic write public/inbox

user alice
topic readwrite alice/#
topic read shared/news

user bob
topic bob/#
";

#[test]
fn topic_lines_before_any_user_line_apply_to_anonymous_clients_only() {
    let anon = client(SECTIONS, "c1", None);
    assert!(anon.can_receive("public/x"));
    assert!(anon.can_subscribe("public/#"));
    assert!(anon.can_publish("public/inbox"));
    assert!(!anon.can_publish("public/x"));
    assert!(!anon.can_receive("alice/x"));

    let alice = client(SECTIONS, "c2", Some("alice"));
    assert!(!alice.can_receive("public/x"), "the anonymous section does not apply to users");
    assert!(!alice.can_publish("public/inbox"));
}

#[test]
fn user_section_applies_only_to_that_username() {
    let alice = client(SECTIONS, "c", Some("alice"));
    assert!(alice.can_publish("alice/a/b"));
    assert!(alice.can_receive("alice/a/b"));
    assert!(alice.can_receive("shared/news"));
    assert!(!alice.can_publish("shared/news"));
    assert!(!alice.can_receive("bob/x"));

    let bob = client(SECTIONS, "c", Some("bob"));
    assert!(bob.can_publish("bob/x") && bob.can_receive("bob/x"));
    assert!(!bob.can_receive("alice/x"));

    // Usernames are case-sensitive; a user without a section gets nothing.
    let other = client(SECTIONS, "c", Some("Alice"));
    assert!(!other.can_receive("alice/x") && !other.can_receive("public/x"));
    // The empty username is a username, not anonymous.
    let empty = client(SECTIONS, "c", Some(""));
    assert!(!empty.can_receive("public/x"));
}

#[test]
fn a_user_section_opened_twice_is_merged() {
    let c = client("user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic write z", "c", Some("a"));
    assert!(c.can_receive("x") && c.can_publish("z"));
    assert!(!c.can_receive("y"));
}

#[test]
fn usernames_may_contain_spaces() {
    let c = client("user dave smith\ntopic read d/#", "c", Some("dave smith"));
    assert!(c.can_receive("d/1"));
    assert!(!client("user dave smith\ntopic read d/#", "c", Some("dave")).can_receive("d/1"));
}

// --- access words ---------------------------------------------------------

#[test]
fn topic_without_access_word_is_readwrite() {
    let c = client("topic a/b", "c", None);
    assert!(c.can_publish("a/b") && c.can_receive("a/b") && c.can_subscribe("a/b"));
}

#[test]
fn read_grants_subscribe_and_receive_but_not_publish() {
    let c = client("topic read a/+", "c", None);
    assert!(c.can_subscribe("a/+") && c.can_subscribe("a/b") && c.can_receive("a/b"));
    assert!(!c.can_publish("a/b"));
}

#[test]
fn write_grants_publish_but_not_subscribe_or_receive() {
    let c = client("topic write a/+", "c", None);
    assert!(c.can_publish("a/b"));
    assert!(!c.can_subscribe("a/b") && !c.can_receive("a/b"));
}

#[test]
fn readwrite_grants_both() {
    let c = client("topic readwrite a/#", "c", None);
    assert!(c.can_publish("a/b/c") && c.can_receive("a/b/c") && c.can_subscribe("a/#"));
}

#[test]
fn deny_wins_over_grants_in_either_order() {
    for text in ["topic a/#\ntopic deny a/secret/#", "topic deny a/secret/#\ntopic a/#"] {
        let c = client(text, "c", None);
        assert!(c.can_publish("a/open") && c.can_receive("a/open"));
        assert!(!c.can_publish("a/secret"), "`a/secret/#` also covers its parent `a/secret`");
        assert!(!c.can_publish("a/secret/x") && !c.can_receive("a/secret/x"));
        assert!(!c.can_subscribe("a/secret/#") && !c.can_subscribe("a/secret/+"));
    }
}

#[test]
fn deny_pattern_overrides_a_users_grant() {
    let text = "pattern deny private/%c/#\nuser alice\ntopic private/#";
    let c = client(text, "dev1", Some("alice"));
    assert!(c.can_receive("private/dev2/x"));
    assert!(!c.can_receive("private/dev1/x") && !c.can_publish("private/dev1/x"));
}

#[test]
fn deny_alone_grants_nothing() {
    let c = client("topic deny a/#", "c", None);
    assert!(!c.can_receive("b") && !c.can_receive("a/b"));
}

// --- patterns -------------------------------------------------------------

#[test]
fn patterns_substitute_client_id_and_username() {
    let text = "pattern readwrite devices/%c/#\npattern read users/%u/inbox\npattern write up/%u/%c";
    let c = client(text, "sensor-7", Some("alice"));
    assert!(c.can_publish("devices/sensor-7/temp"));
    assert!(c.can_subscribe("devices/sensor-7/#"));
    assert!(!c.can_publish("devices/sensor-8/temp"));
    assert!(c.can_receive("users/alice/inbox") && !c.can_publish("users/alice/inbox"));
    assert!(!c.can_receive("users/bob/inbox"));
    assert!(c.can_publish("up/alice/sensor-7"));
    assert!(!c.can_publish("up/sensor-7/alice"));
    assert!(!c.can_subscribe("devices/+/temp"), "a pattern level is literal: it does not cover `+`");
    assert!(!c.can_subscribe("devices/#"));
}

#[test]
fn placeholders_inside_a_level_are_substituted() {
    let c = client("pattern read x/dev-%c.%u/y\npattern read pct/100%/%c%", "c1", Some("al"));
    assert!(c.can_receive("x/dev-c1.al/y"));
    assert!(!c.can_receive("x/dev-c1.al2/y") && !c.can_receive("x/dev-c1al/y"));
    assert!(c.can_receive("pct/100%/c1%"), "other `%` characters stay literal");
}

#[test]
fn patterns_apply_to_all_clients_wherever_they_appear() {
    let text = "user alice\ntopic read a/#\npattern read clients/%c/#\nuser bob\ntopic read b/#";
    for (id, user) in [("x", Some("alice")), ("y", Some("bob")), ("z", Some("carol")), ("w", None)] {
        let c = client(text, id, user);
        assert!(c.can_receive(&format!("clients/{id}/status")), "{user:?}");
        assert!(!c.can_receive("clients/other/status"));
    }
}

#[test]
fn username_pattern_never_matches_an_anonymous_client() {
    let text = "pattern read users/%u/#\npattern read both/%c/%u\npattern read ids/%c";
    let anon = client(text, "c1", None);
    assert!(!anon.can_receive("users//x"));
    assert!(!anon.can_receive("users/%u/x"));
    assert!(!anon.can_receive("both/c1/"));
    assert!(anon.can_receive("ids/c1"), "patterns without %u still apply");
}

#[test]
fn topic_lines_do_not_substitute_placeholders() {
    let (acl, warnings) = Acl::parse("topic read a/%c").unwrap();
    assert_eq!(warnings.len(), 1);
    let c = acl.compile_for("x", None);
    assert!(c.can_receive("a/%c") && !c.can_receive("a/x"));
}

#[test]
fn substituted_values_with_wildcards_or_slashes_grant_nothing() {
    let text = "pattern readwrite devices/%c/data\npattern read users/%u/#";
    for id in ["+", "#", "a/b", "dev+", "x#"] {
        let c = client(text, id, Some("ok"));
        assert!(!c.can_subscribe("devices/+/data"), "{id}");
        assert!(!c.can_receive("devices/a/b/data"), "{id}");
        assert!(!c.can_receive("devices/a/data"), "{id}");
        assert!(!c.can_publish(&format!("devices/{id}/data")), "{id}");
        assert!(c.can_receive("users/ok/x"), "the username is fine: {id}");
    }
    for user in ["+", "#", "a/b"] {
        let c = client(text, "dev", Some(user));
        assert!(!c.can_subscribe("users/+/#") && !c.can_subscribe("users/#"), "{user}");
        assert!(!c.can_receive("users/a/b/x"), "{user}");
        assert!(c.can_publish("devices/dev/data"), "the client id is fine: {user}");
    }
}

#[test]
fn substituted_values_with_wildcards_widen_deny_patterns() {
    let text = "topic readwrite private/#\npattern deny private/%c/#";
    let c = client(text, "a/b", None);
    // Literal substitution would only deny `private/a/b/#`; the whole
    // subtree below `private` is refused instead.
    assert!(!c.can_receive("private/a/b/x"));
    assert!(!c.can_receive("private/other"));
    assert!(!c.can_subscribe("private/#"));
    assert!(c.needs_delivery_check());
    let fine = client(text, "ab", None);
    assert!(fine.can_receive("private/other") && !fine.can_receive("private/ab/x"));
}

#[test]
fn client_id_starting_with_dollar_gets_no_dollar_topics_from_patterns() {
    let text = "pattern read %c/#\npattern read $%c/#";
    let c = client(text, "$SYS", None);
    assert!(!c.can_receive("$SYS/broker/uptime"));
    assert!(!c.can_subscribe("$SYS/#"));
    let plain = client(text, "SYS", None);
    assert!(plain.can_receive("SYS/x"));
    assert!(plain.can_receive("$SYS/x"), "a `$` written in the rule itself counts");
}

// --- subscribe coverage ---------------------------------------------------

#[test]
fn subscription_is_allowed_when_one_read_rule_covers_it() {
    let c = client("topic read a/#", "c", None);
    for f in ["a/#", "a/+/b", "a/+", "a", "a/b/c", "a/+/+/#"] {
        assert!(c.can_subscribe(f), "a/# covers {f}");
    }
    for f in ["#", "+/b", "+", "b/#", "+/#"] {
        assert!(!c.can_subscribe(f), "a/# does not cover {f}");
    }

    let c = client("topic read a/+", "c", None);
    for f in ["a/+", "a/b"] {
        assert!(c.can_subscribe(f), "a/+ covers {f}");
    }
    for f in ["a/#", "a", "a/b/c", "a/+/b", "#", "+/+"] {
        assert!(!c.can_subscribe(f), "a/+ does not cover {f}");
    }

    let c = client("topic read +/+/c", "c", None);
    assert!(c.can_subscribe("a/+/c") && c.can_subscribe("+/b/c") && c.can_subscribe("+/+/c"));
    assert!(!c.can_subscribe("+/+/#") && !c.can_subscribe("a/b"));
}

#[test]
fn subscription_must_be_covered_by_a_single_rule() {
    // `a` and `a/+/#` together match every topic `a/#` can match, but
    // rules are checked one by one, as Mosquitto does.
    let c = client("topic read a\ntopic read a/+/#", "c", None);
    assert!(!c.can_subscribe("a/#"));
    assert!(c.can_subscribe("a") && c.can_subscribe("a/+/#") && c.can_subscribe("a/+"));
}

#[test]
fn wildcard_subscription_can_be_refused_while_a_narrower_one_is_granted() {
    let c = client("user u\ntopic read sensors/#", "c", Some("u"));
    assert!(!c.can_subscribe("#"));
    assert!(c.can_subscribe("sensors/#"));
}

#[test]
fn partial_deny_keeps_the_subscription_and_filters_deliveries() {
    let c = client("topic read #\ntopic deny secret/#", "c", None);
    assert!(c.can_subscribe("#"), "the deny covers only part of `#`");
    assert!(c.can_subscribe("+/x"));
    assert!(!c.can_subscribe("secret/+"), "a deny covering the whole filter refuses it");
    assert!(c.needs_delivery_check());
    assert!(c.can_receive("public/x"));
    assert!(!c.can_receive("secret/x"), "deliveries are re-checked per topic");

    let no_deny = client("topic read #", "c", None);
    assert!(!no_deny.needs_delivery_check());
}

#[test]
fn shared_subscriptions_are_checked_on_their_filter() {
    let c = client("topic read jobs/#", "c", None);
    assert!(c.can_subscribe("$share/workers/jobs/#"));
    assert!(c.can_subscribe("$share/workers/jobs/+/new"));
    assert!(!c.can_subscribe("$share/workers/other/#"));
    assert!(!c.can_subscribe("$share/workers"));
    assert!(!c.can_subscribe("$share/+/jobs/#"));
}

// --- $SYS -----------------------------------------------------------------

#[test]
fn wildcard_rules_do_not_reach_dollar_topics() {
    let c = client("topic readwrite #\ntopic read +/broker/#", "c", None);
    assert!(c.can_receive("a/b"));
    assert!(!c.can_receive("$SYS/broker/uptime"));
    assert!(!c.can_subscribe("$SYS/#"));
    assert!(!c.can_subscribe("$SYS/broker/uptime"));
    assert!(!c.can_receive("$other/x"));
    assert!(c.can_subscribe("#"), "`#` itself never matches `$` topics, so it is fine");
    assert!(c.can_subscribe("+/broker/x"));
}

#[test]
fn dollar_sys_is_readable_where_a_rule_names_it() {
    let c = client("user mon\ntopic read $SYS/#\ntopic read $SYS/+/load", "c", Some("mon"));
    assert!(c.can_receive("$SYS/broker/uptime"));
    assert!(c.can_subscribe("$SYS/#"));
    assert!(c.can_subscribe("$SYS/broker/+"));

    let narrow = client("topic read $SYS/broker/+", "c", None);
    assert!(narrow.can_subscribe("$SYS/broker/uptime"));
    assert!(!narrow.can_subscribe("$SYS/#"));
}

#[test]
fn dollar_sys_is_never_writable() {
    let c = client("topic readwrite $SYS/#\ntopic readwrite $SYS\npattern write $SYS/%c", "c", None);
    assert!(c.can_receive("$SYS/x"));
    for t in ["$SYS", "$SYS/x", "$SYS/broker/uptime", "$SYS/c"] {
        assert!(!c.can_publish(t), "{t}");
    }
    let all = ClientAcl::allow_all();
    assert!(!all.can_publish("$SYS/x") && !all.can_publish("$SYS"));
    assert!(all.can_publish("$SYSTEM/x"), "only `$SYS` itself is protected");
}

// --- allow-all and empty --------------------------------------------------

#[test]
fn allow_all_permits_everything_but_sys_writes() {
    let acl = Acl::allow_all();
    assert!(acl.is_allow_all());
    assert_eq!(acl.rule_count(), 0);
    for c in [acl.compile_for("c", None), acl.compile_for("c", Some("u")), ClientAcl::allow_all()] {
        assert!(c.is_allow_all());
        assert!(c.can_publish("a/b") && c.can_receive("a/b") && c.can_subscribe("#"));
        assert!(c.can_subscribe("$SYS/#") && c.can_receive("$SYS/x"));
        assert!(!c.can_publish("$SYS/x"));
        assert!(!c.needs_delivery_check());
    }
}

#[test]
fn an_empty_acl_file_denies_everything() {
    let c = client("# nothing\n", "c", Some("u"));
    assert!(!c.is_allow_all());
    assert!(!c.can_publish("a") && !c.can_receive("a") && !c.can_subscribe("a"));
}

#[test]
fn malformed_topics_and_filters_are_refused() {
    for c in [client("topic #", "c", None), ClientAcl::allow_all()] {
        assert!(!c.can_publish("") && !c.can_receive(""));
        assert!(!c.can_publish("a/+") && !c.can_publish("a/#") && !c.can_receive("a/+"));
        assert!(!c.can_subscribe("") && !c.can_subscribe("a/#/b") && !c.can_subscribe("a+"));
        assert!(!c.can_subscribe("a/b#"));
    }
}

#[test]
fn empty_levels_are_levels() {
    let c = client("topic read /a\ntopic read b//c\ntopic read +/x", "c", None);
    assert!(c.can_receive("/a") && !c.can_receive("a"));
    assert!(c.can_receive("b//c") && !c.can_receive("b/c"));
    assert!(c.can_receive("/x"), "`+` matches an empty level");
}

#[test]
fn client_acl_keeps_the_rules_it_was_compiled_from() {
    let old = acl("topic read a");
    let c = old.compile_for("c", None);
    let new = acl("topic read b");
    assert!(c.can_receive("a") && !c.can_receive("b"));
    let c = new.compile_for("c", None);
    assert!(!c.can_receive("a") && c.can_receive("b"));
}

// --- scale ------------------------------------------------------------------

#[test]
fn thousand_rule_file_compiles_and_checks_correctly() {
    let acl = acl(&thousand_rule_file());
    assert_eq!(acl.rule_count(), 1 + 2 + 600 + 300 + 90 + 6 + 1);
    let c = acl.compile_for("truck-9", Some("fleet"));
    assert!(c.can_publish("site/7/device7/temp"));
    assert!(c.can_publish("site/7/device27/a/b/c"));
    assert!(!c.can_publish("site/8/device7/temp"), "device7 lives under site/7");
    assert!(!c.can_publish("site/0/device0/firmware/v2"), "denied");
    assert!(c.can_publish("site/1/device1/firmware/v2"), "device1 has no deny");
    assert!(c.can_subscribe("site/3/device3/#"));
    assert!(!c.can_subscribe("site/3/#"));
    assert!(c.can_receive("status/x/sensor299/y") && !c.can_publish("status/x/sensor299/y"));
    assert!(!c.can_receive("status/x/sensor300/y"));
    assert!(c.can_subscribe("status/+/sensor5/+"));
    assert!(c.can_publish("clients/truck-9/x") && !c.can_publish("clients/truck-8/x"));
    assert!(c.can_receive("users/fleet/a/inbox"));
    assert!(c.can_publish("telemetry/truck-9/channel5") && !c.can_publish("telemetry/truck-9/channel6"));
    assert!(!c.can_receive("public/x"), "anonymous rules do not apply to users");
    assert!(!c.can_receive("other/x"));
    let anon = acl.compile_for("a1", None);
    assert!(anon.can_receive("public/x") && !anon.can_receive("site/0/device0/x"));
}

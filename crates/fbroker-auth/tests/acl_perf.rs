//! Rough cost of a per-message check against a 1,000-rule ACL file. Prints
//! figures, asserts nothing about time. See them with
//! `cargo test -p fbroker-auth --release --test acl_perf -- --nocapture`
//! (a debug build is many times slower).

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::thousand_rule_file;
use fbroker_auth::{Acl, ClientAcl};

const ROUNDS: usize = 20_000;

fn per_check_ns(topics: &[String], check: impl Fn(&str) -> bool) -> (f64, usize) {
    let mut allowed = 0;
    for t in topics {
        allowed += usize::from(check(t)); // warm-up
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for t in topics {
            allowed += usize::from(check(black_box(t)));
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / (ROUNDS * topics.len()) as f64;
    (ns, allowed)
}

#[test]
fn per_check_cost_with_1000_rules() {
    let text = thousand_rule_file();
    let start = Instant::now();
    let (acl, _) = Acl::parse(&text).unwrap();
    let parse = start.elapsed();
    let start = Instant::now();
    let client: ClientAcl = acl.compile_for("truck-9", Some("fleet"));
    let compile = start.elapsed();

    // Hits and misses of typical depth, a few through patterns and denies.
    let topics: Vec<String> = [
        "site/7/device7/temp",
        "site/7/device27/a/b",
        "site/8/device7/temp",
        "site/0/device0/firmware/v2",
        "status/x/sensor42/y",
        "status/x/sensor900/y",
        "clients/truck-9/gps",
        "telemetry/truck-9/channel3",
        "users/fleet/a/inbox",
        "unrelated/topic/with/four",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let filters: Vec<String> =
        ["site/7/device7/#", "site/3/#", "status/+/sensor5/+", "clients/truck-9/#", "#", "$SYS/#"]
            .iter()
            .map(|s| s.to_string())
            .collect();

    let (publish, a) = per_check_ns(&topics, |t| client.can_publish(t));
    let (receive, b) = per_check_ns(&topics, |t| client.can_receive(t));
    let (subscribe, c) = per_check_ns(&filters, |f| client.can_subscribe(f));
    let all = ClientAcl::allow_all();
    let (allow_all, d) = per_check_ns(&topics, |t| all.can_publish(t));
    assert!(a > 0 && b > 0 && c > 0 && d > 0);

    let build = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    println!(
        "fbroker-auth ACL, 1000 rules ({build}): parse {parse:?}, compile_for {compile:?}; per check: \
         can_publish {publish:.0} ns, can_receive {receive:.0} ns, can_subscribe {subscribe:.0} ns, \
         allow-all can_publish {allow_all:.0} ns"
    );
}

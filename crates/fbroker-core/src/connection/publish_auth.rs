//! The `authorizePublish` plugin hook: asked once per read batch for every
//! PUBLISH whose topic has no fresh cached answer, so a busy publisher
//! crosses into JS rarely and never once per message.

use super::Connection;
use crate::config::LogLevel;
use crate::hooks::{HookRequest, HookResponse, PublishCheck};
use ahash::AHashMap;
use fbroker_codec::{Packet, Publish};
use std::time::{Duration, Instant};

/// Bounded: a client cycling through endless topics starts over instead of
/// growing the map.
const MAX_CACHED_TOPICS: usize = 1024;

#[derive(Default)]
pub(crate) struct VerdictCache {
    verdicts: AHashMap<String, (bool, Instant)>,
}

impl VerdictCache {
    fn get(&self, topic: &str, ttl: Duration, now: Instant) -> Option<bool> {
        self.verdicts.get(topic).filter(|(_, at)| now.duration_since(*at) < ttl).map(|(ok, _)| *ok)
    }
    fn put(&mut self, topic: &str, allowed: bool, now: Instant) {
        if self.verdicts.len() >= MAX_CACHED_TOPICS {
            self.verdicts.clear();
        }
        self.verdicts.insert(topic.to_owned(), (allowed, now));
    }
}

impl Connection {
    /// Whether the plugin chain must be asked about this publish at all:
    /// not when the ACL already refused it or it targets `$SYS`.
    fn publish_needs_hook(&self, publish: &Publish) -> bool {
        let topic = publish.topic.as_str();
        !topic.starts_with("$SYS") && self.acl.as_ref().is_none_or(|acl| acl.can_publish(topic))
    }

    /// One verdict per packet (true for anything but a refused PUBLISH).
    pub(crate) async fn authorize_publishes(&mut self, packets: &[Packet]) -> Vec<bool> {
        let mut verdicts = vec![true; packets.len()];
        let Some(bridge) = self.state.hooks.clone() else { return verdicts };
        let ttl = self.state.auth.publish_cache_ttl;
        let now = Instant::now();
        let candidates: Vec<usize> = packets
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Packet::Publish(publish) if self.publish_needs_hook(publish)))
            .map(|(i, _)| i)
            .collect();
        let cache = self.publish_verdicts.get_or_insert_with(Default::default);
        let mut asked_for = Vec::new();
        let mut ask = Vec::new();
        for i in candidates {
            let Packet::Publish(p) = &packets[i] else { continue };
            match cache.get(p.topic.as_str(), ttl, now) {
                Some(ok) => verdicts[i] = ok,
                None => {
                    asked_for.push(i);
                    ask.push(PublishCheck {
                        topic: p.topic.to_string(),
                        payload: p.payload.clone(),
                        qos: p.qos as u8,
                        retain: p.retain,
                    });
                }
            }
        }
        if ask.is_empty() {
            return verdicts;
        }
        let client = self.hook_client.clone().expect("hooks imply a hook client");
        let (answers, cacheable) = match Box::pin(bridge.call(HookRequest::AuthorizePublish { client, publishes: ask })).await {
            Some(HookResponse::AuthorizePublish(answers)) if answers.len() == asked_for.len() => (answers, true),
            _ => {
                self.state.events.log(LogLevel::Warn, Some(&self.client_id), || {
                    "authorizePublish gave no answer in time: the publishes are refused".into()
                });
                // A transient failure is not remembered as a verdict.
                (vec![false; asked_for.len()], false)
            }
        };
        let cache = self.publish_verdicts.get_or_insert_with(Default::default);
        for (&i, &ok) in asked_for.iter().zip(&answers) {
            verdicts[i] = ok;
            if let (Packet::Publish(p), true) = (&packets[i], cacheable && !ttl.is_zero()) {
                cache.put(p.topic.as_str(), ok, now);
            }
        }
        verdicts
    }
}

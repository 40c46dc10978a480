//! What the broker does with each packet a connected client sends.

use super::{Connection, Flow};
use crate::config::LogLevel;
use crate::events::{BrokerEvent, DisconnectReason, EventKind};
use crate::hooks::{HookRequest, HookResponse};
use crate::message::Message;
use crate::persistence::{HeldAckKind, PersistOp};
use crate::session::inflight::Stage;
use crate::router::SubscriptionEntry;
use crate::topic::{validate_topic_filter, validate_topic_name};
use fbroker_codec::{reason, Packet, Properties, Publish, QoS, SubAck, Subscribe, UnsubAck, Unsubscribe};

/// SUBACK return code for a refused filter.
const SUBACK_FAILURE: u8 = 0x80;

impl Connection {
    /// `publish_allowed` is the plugins' verdict when this is a PUBLISH.
    pub(crate) fn handle_packet(&mut self, packet: Packet, publish_allowed: bool) -> Flow {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, publish_allowed),
            Packet::PubAck(ack) => {
                let done = self.session.state.lock().inflight.puback(ack.packet_id);
                if done.is_some() {
                    self.session.journal(|client_id| PersistOp::InflightClear { client_id, packet_id: ack.packet_id });
                }
                self.report_acked(done);
                Flow::Continue
            }
            Packet::PubRec(ack) => {
                let (received, qos) = {
                    let mut st = self.session.state.lock();
                    let qos = st.inflight.iter().find(|e| e.packet_id == ack.packet_id).map(|e| e.qos);
                    (st.inflight.pubrec(ack.packet_id), qos)
                };
                if received {
                    self.session.journal(|client_id| PersistOp::InflightSet {
                        client_id,
                        packet_id: ack.packet_id,
                        stage: Stage::AwaitingPubComp,
                        msg: None,
                        qos: qos.unwrap_or(QoS::ExactlyOnce),
                        retain: false,
                    });
                }
                // Answered even for an unknown id, so the sender can finish
                // its flow [MQTT-4.3.3-1].
                self.send_ack(Packet::PubRel, ack.packet_id);
                Flow::Continue
            }
            Packet::PubComp(ack) => {
                let done = self.session.state.lock().inflight.pubcomp(ack.packet_id);
                if done.is_some() {
                    self.session.journal(|client_id| PersistOp::InflightClear { client_id, packet_id: ack.packet_id });
                }
                self.report_acked(done);
                Flow::Continue
            }
            Packet::PubRel(ack) => {
                let known = self.session.state.lock().incoming_qos2.remove(&ack.packet_id);
                if known {
                    self.session.journal(|client_id| PersistOp::IncomingRemove { client_id, packet_id: ack.packet_id });
                }
                self.start_ticket();
                self.ack_after_store(HeldAckKind::PubComp, ack.packet_id);
                Flow::Continue
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe, None),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe),
            Packet::PingReq => {
                self.send(&Packet::PingResp);
                Flow::Continue
            }
            Packet::Disconnect(_) => {
                // A clean disconnect discards the will [MQTT-3.14.4-3].
                self.will = None;
                Flow::Close(DisconnectReason::Normal)
            }
            Packet::Connect(_) => self.protocol_error("second CONNECT".into()),
            other => self.protocol_error(format!("unexpected packet from client: {other:?}")),
        }
    }

    fn on_publish(&mut self, publish: Publish, allowed_by_plugins: bool) -> Flow {
        let config = &self.state.config;
        if let Err(e) = validate_topic_name(publish.topic.as_str(), config.max_topic_levels, config.max_topic_length) {
            return self.protocol_error(format!("invalid topic name: {e}"));
        }
        self.received += 1;
        // A refused publish is still acknowledged, as MQTT 3.1.1 allows, and
        // then dropped. `$SYS` belongs to the broker and is never writable.
        let deliver = allowed_by_plugins
            && !publish.topic.as_str().starts_with("$SYS")
            && self.acl.as_ref().is_none_or(|acl| acl.can_publish(publish.topic.as_str()));
        if !deliver {
            self.state.stats.publish_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.state.events.log(LogLevel::Debug, Some(&self.client_id), || format!("publish to {} denied", publish.topic));
        }
        if deliver && self.state.events.wants_message(EventKind::Published, publish.topic.as_str()) {
            self.state.events.emit(BrokerEvent::Published {
                client_id: self.client_id.clone(),
                topic: publish.topic.to_string(),
                payload: publish.payload.clone(),
                qos: publish.qos as u8,
                retain: publish.retain,
            });
        }
        match publish.qos {
            QoS::AtMostOnce => {
                if deliver {
                    self.state.publish(Message::new(publish.topic, publish.payload, publish.qos, publish.retain));
                }
            }
            QoS::AtLeastOnce => {
                let packet_id = publish.packet_id.unwrap_or(0);
                self.start_ticket();
                if deliver {
                    self.state.publish(Message::new(publish.topic, publish.payload, publish.qos, publish.retain));
                }
                self.ack_after_store(HeldAckKind::PubAck, packet_id);
            }
            QoS::ExactlyOnce => {
                let packet_id = publish.packet_id.unwrap_or(0);
                // Route once per packet id until PUBREL: a re-sent PUBLISH
                // (DUP) must not be delivered twice [MQTT-4.3.3-2].
                self.start_ticket();
                let first = self.session.state.lock().incoming_qos2.insert(packet_id);
                if first {
                    self.session.journal(|client_id| PersistOp::IncomingAdd { client_id, packet_id });
                    if deliver {
                        self.state.publish(Message::new(publish.topic, publish.payload, publish.qos, publish.retain));
                    }
                }
                self.ack_after_store(HeldAckKind::PubRec, packet_id);
            }
        }
        Flow::Continue
    }

    /// `plugin_grants`: the `authorizeSubscribe` hook's per-filter verdict.
    pub(crate) fn on_subscribe(&mut self, subscribe: Subscribe, plugin_grants: Option<Vec<u8>>) -> Flow {
        let config = &self.state.config;
        let mut return_codes = Vec::with_capacity(subscribe.filters.len());
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        {
            // The session lock is held across the trie update so that a
            // connection that just lost its session to a takeover cannot
            // re-point the new owner's subscriptions at the old session.
            let mut st = self.session.state.lock();
            if !st.is_owned_by(self.control.conn_id) {
                return Flow::Close(DisconnectReason::Takeover);
            }
            let mut trie = self.state.router.subscriptions.write();
            for (i, request) in subscribe.filters.iter().enumerate() {
                let valid = validate_topic_filter(&request.filter, config.max_topic_levels, config.max_topic_length).is_ok();
                let permitted = self.acl.as_ref().is_none_or(|acl| acl.can_subscribe(&request.filter));
                let ceiling = plugin_grants.as_ref().map_or(2, |g| g[i]);
                if !valid || !permitted || ceiling == SUBACK_FAILURE {
                    return_codes.push(SUBACK_FAILURE);
                    continue;
                }
                let mut options = request.options;
                if (options.qos as u8) > ceiling {
                    options.qos = QoS::from_u8(ceiling).unwrap_or_default();
                }
                let entry = SubscriptionEntry { options, session: self.session.clone() };
                // Replaces an existing subscription with the same filter
                // [MQTT-3.8.4-3].
                trie.insert(&request.filter, self.session.client_id.clone(), entry);
                st.subscriptions.insert(request.filter.clone(), options);
                self.session.journal(|client_id| PersistOp::SubscriptionAdd { client_id, filter: request.filter.clone(), qos: options.qos });
                return_codes.push(options.qos as u8);
                granted.push((request.filter.clone(), options.qos as u8));
            }
        }
        self.send(&Packet::SubAck(SubAck { packet_id: subscribe.packet_id, return_codes, properties: Properties::default() }));
        // Retained messages follow the SUBACK, for every granted filter,
        // re-subscriptions included [MQTT-3.8.4-3].
        let limits = self.state.queue_limits;
        let mut retained = Vec::new();
        {
            let store = self.state.router.retained.read();
            for (filter, qos) in &granted {
                let qos = QoS::from_u8(*qos).unwrap_or_default();
                store.for_each_matching(filter, |_, msg| retained.push((msg.clone(), msg.qos.min(qos))));
            }
        }
        for (msg, qos) in retained {
            self.session.enqueue(msg, qos, true, &limits);
        }
        if !granted.is_empty() {
            let client_id = &self.client_id;
            self.state.events.emit_if_wanted(EventKind::Subscribed, || BrokerEvent::Subscribed { client_id: client_id.clone(), subscriptions: granted });
        }
        Flow::Continue
    }

    /// Closes the connection for a protocol violation, logged at debug and
    /// reported as a `clientError` event when someone listens.
    pub(crate) fn protocol_error(&self, message: String) -> Flow {
        self.state.events.log(LogLevel::Debug, Some(&self.client_id), || message.clone());
        let client_id = &self.client_id;
        self.state.events.emit_if_wanted(EventKind::ClientError, || BrokerEvent::ClientError { client_id: Some(client_id.clone()), message });
        Flow::Close(DisconnectReason::ProtocolError)
    }

    fn report_acked(&self, done: Option<crate::session::inflight::InflightEntry>) {
        let Some(entry) = done else { return };
        if self.state.events.wants_message(EventKind::Acked, entry.msg.topic.as_str()) {
            self.state.events.emit(BrokerEvent::Acked {
                client_id: self.client_id.clone(),
                topic: entry.msg.topic.to_string(),
                qos: entry.qos as u8,
                packet_id: entry.packet_id,
            });
        }
    }

    /// The plugins' `authorizeSubscribe` verdict per filter (granted QoS
    /// ceiling or 0x80), or None when no plugin registered that hook.
    pub(crate) async fn authorize_subscribe(&self, subscribe: &Subscribe) -> Option<Vec<u8>> {
        let bridge = self.state.hooks.as_ref().filter(|h| h.registered.authorize_subscribe)?;
        let client = self.hook_client.clone()?;
        let subscriptions = subscribe.filters.iter().map(|f| (f.filter.clone(), f.options.qos as u8)).collect();
        // Boxed: the wait's state would otherwise enlarge every idle
        // connection's task.
        match Box::pin(bridge.call(HookRequest::AuthorizeSubscribe { client, subscriptions })).await {
            Some(HookResponse::AuthorizeSubscribe(codes)) if codes.len() == subscribe.filters.len() => Some(codes),
            // No answer in time: fail closed.
            _ => Some(vec![SUBACK_FAILURE; subscribe.filters.len()]),
        }
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Flow {
        let mut removed = Vec::new();
        // 5.0 answers each filter; 3.x UNSUBACK has no payload.
        let mut reason_codes = Vec::new();
        {
            let mut st = self.session.state.lock();
            if !st.is_owned_by(self.control.conn_id) {
                return Flow::Close(DisconnectReason::Takeover);
            }
            let mut trie = self.state.router.subscriptions.write();
            for filter in &unsubscribe.filters {
                let existed = st.subscriptions.remove(filter).is_some();
                if existed {
                    trie.remove(filter, &self.session.client_id);
                    removed.push(filter.clone());
                    self.session.journal(|client_id| PersistOp::SubscriptionRemove { client_id, filter: filter.clone() });
                }
                if self.version.is_v5() {
                    reason_codes.push(if existed { reason::SUCCESS } else { reason::NO_SUBSCRIPTION_EXISTED });
                }
            }
        }
        // UNSUBACK even when nothing matched [MQTT-3.10.4-5].
        self.send(&Packet::UnsubAck(UnsubAck { packet_id: unsubscribe.packet_id, reason_codes, properties: Properties::default() }));
        if !removed.is_empty() {
            let client_id = &self.client_id;
            self.state.events.emit_if_wanted(EventKind::Unsubscribed, || BrokerEvent::Unsubscribed { client_id: client_id.clone(), topics: removed });
        }
        Flow::Continue
    }
}

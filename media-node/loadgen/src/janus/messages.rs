//! The messages of Janus's WebSocket API, read as far as the load generator cares: the
//! answers to its requests, the VideoRoom plugin's events and errors, and the streams of a
//! subscription.

use anyhow::Context as _;
use aula_sfu::protocol::Source;
use serde_json::Value;
use std::collections::HashMap;

/// What Janus said, as far as the load generator cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `success` of a request (`data.id` of `create`/`attach`, or a plugin's synchronous
    /// answer).
    Success {
        transaction: String,
        id: Option<u64>,
        plugin: Option<Value>,
    },
    /// `ack` of an asynchronous request or a keepalive.
    Ack,
    /// A plugin event of a handle, with the session description it carries.
    Event {
        sender: u64,
        transaction: Option<String>,
        plugin: Value,
        jsep: Option<Jsep>,
    },
    /// `error` of a request.
    Error {
        transaction: Option<String>,
        reason: String,
    },
    /// Janus's side of a handle's connection is up (ICE and DTLS done).
    WebrtcUp { sender: u64 },
    /// Anything else (`media`, `slowlink`, `hangup`, `timeout`, …).
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Jsep {
    /// `offer` or `answer`.
    pub kind: String,
    pub sdp: String,
}

/// Parses one message of Janus's WebSocket API.
pub fn parse_reply(text: &str) -> anyhow::Result<Reply> {
    let v: Value = serde_json::from_str(text).context("a Janus message that is not JSON")?;
    let kind = v
        .get("janus")
        .and_then(Value::as_str)
        .context("a Janus message without `janus`")?;
    let transaction = v
        .get("transaction")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(match kind {
        "success" => Reply::Success {
            transaction: transaction.context("`success` without a transaction")?,
            id: v.pointer("/data/id").and_then(Value::as_u64),
            plugin: v.pointer("/plugindata/data").cloned(),
        },
        "ack" => Reply::Ack,
        "event" => Reply::Event {
            sender: v
                .get("sender")
                .and_then(Value::as_u64)
                .context("`event` without a sender")?,
            transaction,
            plugin: v
                .pointer("/plugindata/data")
                .cloned()
                .unwrap_or(Value::Null),
            jsep: match v.get("jsep") {
                Some(j) => Some(Jsep {
                    kind: j
                        .get("type")
                        .and_then(Value::as_str)
                        .context("jsep without a type")?
                        .to_owned(),
                    sdp: j
                        .get("sdp")
                        .and_then(Value::as_str)
                        .context("jsep without sdp")?
                        .to_owned(),
                }),
                None => None,
            },
        },
        "error" => Reply::Error {
            transaction,
            reason: v
                .pointer("/error/reason")
                .and_then(Value::as_str)
                .unwrap_or("no reason")
                .to_owned(),
        },
        "webrtcup" => Reply::WebrtcUp {
            sender: v
                .get("sender")
                .and_then(Value::as_u64)
                .context("`webrtcup` without a sender")?,
        },
        other => Reply::Other(other.to_owned()),
    })
}

/// A VideoRoom plugin answer that is an error (`error_code` and `error`).
pub(super) fn plugin_error(plugin: &Value) -> Option<String> {
    plugin.get("error_code")?;
    Some(
        plugin
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason")
            .to_owned(),
    )
}

/// The subscriber's streams of an `attached`/`updated` event: mid → (feed id, source).
pub fn subscribed_streams(plugin: &Value) -> HashMap<String, (u64, Source)> {
    let mut streams = HashMap::new();
    for s in plugin
        .get("streams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(mid), Some(feed), Some(kind)) = (
            s.get("mid").and_then(Value::as_str),
            s.get("feed_id").and_then(Value::as_u64),
            s.get("type").and_then(Value::as_str),
        ) else {
            continue;
        };
        let source = match kind {
            "audio" => Source::Microphone,
            "video" => Source::Camera,
            _ => continue,
        };
        streams.insert(mid.to_owned(), (feed, source));
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_or_handle_id_is_read_from_janus_success() {
        let r = parse_reply(r#"{"janus":"success","transaction":"t1","data":{"id":8012345678}}"#)
            .unwrap();
        assert_eq!(
            r,
            Reply::Success {
                transaction: "t1".into(),
                id: Some(8012345678),
                plugin: None
            }
        );
    }

    #[test]
    fn janus_publish_answer_event_carries_its_sdp_to_the_publisher_handle() {
        let text = r#"{"janus":"event","session_id":1,"transaction":"t4","sender":77,
            "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","room":1000,"configured":"ok","audio_codec":"opus","video_codec":"vp8","streams":[]}},
            "jsep":{"type":"answer","sdp":"v=0\r\n"}}"#;
        let Reply::Event {
            sender,
            transaction,
            plugin,
            jsep,
        } = parse_reply(text).unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!(sender, 77);
        assert_eq!(transaction.as_deref(), Some("t4"));
        assert_eq!(plugin["configured"], "ok");
        assert_eq!(
            jsep,
            Some(Jsep {
                kind: "answer".into(),
                sdp: "v=0\r\n".into()
            })
        );
        assert_eq!(plugin_error(&plugin), None);
    }

    #[test]
    fn janus_subscriber_streams_map_mids_to_feeds_and_sources() {
        let text = r#"{"janus":"event","session_id":1,"sender":78,"transaction":"t9",
            "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"attached","room":1000,
            "streams":[{"type":"audio","active":true,"mid":"0","mindex":0,"ready":false,"send":true,"feed_id":2,"feed_display":"P1","feed_mid":"0","codec":"opus"},
                       {"type":"video","active":true,"mid":"1","mindex":1,"ready":false,"send":true,"feed_id":2,"feed_display":"P1","feed_mid":"1","codec":"vp8"},
                       {"type":"data","active":true,"mid":"2","mindex":2,"ready":false,"send":true,"sources":1}]}},
            "jsep":{"type":"offer","sdp":"v=0\r\n"}}"#;
        let Reply::Event { plugin, .. } = parse_reply(text).unwrap() else {
            panic!("not an event");
        };
        let streams = subscribed_streams(&plugin);
        assert_eq!(streams.len(), 2);
        assert_eq!(streams["0"], (2, Source::Microphone));
        assert_eq!(streams["1"], (2, Source::Camera));
    }

    #[test]
    fn janus_webrtcup_names_the_handle_whose_connection_is_up() {
        let r = parse_reply(r#"{"janus":"webrtcup","session_id":1,"sender":77}"#).unwrap();
        assert_eq!(r, Reply::WebrtcUp { sender: 77 });
    }

    #[test]
    fn a_videoroom_error_is_told_apart_from_an_answer() {
        let text = r#"{"janus":"event","sender":5,"transaction":"t2","plugindata":{"plugin":"janus.plugin.videoroom",
            "data":{"videoroom":"event","error_code":426,"error":"No such room (1000)"}}}"#;
        let Reply::Event { plugin, .. } = parse_reply(text).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(
            plugin_error(&plugin).as_deref(),
            Some("No such room (1000)")
        );
        let e = parse_reply(r#"{"janus":"error","transaction":"t3","error":{"code":458,"reason":"No such session 1"}}"#)
            .unwrap();
        assert_eq!(
            e,
            Reply::Error {
                transaction: Some("t3".into()),
                reason: "No such session 1".into()
            }
        );
    }
}

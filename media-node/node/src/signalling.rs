//! The signalling WebSocket: parses frames, verifies the join grant and chat tokens with
//! the public key, and hands everything else to the media loop. Whatever a client sends,
//! the worst it gets is an error frame (and, before joining, a closed connection).

use crate::{Command, MediaNode, Outbound, error_frame};
use aula_domain::services::GrantRole;
use aula_domain::{Participant, RoomId};
use aula_sfu::protocol::{
    ClientMessage, ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, parse_client_frame,
};
use aula_sfu::{Input, Joining};
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// A client that has not joined after this long is disconnected.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A client sending more frames than this per second gets error frames instead.
const FRAMES_PER_SECOND: u32 = 50;
/// A frame the client's TCP connection takes no room for within this long ends the
/// session: the client stopped reading (the media loop drops it from the meeting sooner,
/// when its queue fills).
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends one frame; false when the connection is gone or does not take it in time.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// How much one read of a signalling connection takes at most.
const READ_CHUNK_BYTES: usize = 8 * 1024;

pub(crate) async fn upgrade(State(node): State<MediaNode>, ws: WebSocketUpgrade) -> Response {
    // Oversized frames are read (up to 4×) so the client gets an error frame, not a reset.
    // The read buffer is a chunk, not a limit (a bigger frame is read in several): the
    // default 128 KiB is zeroed on every read, which at 600 joins a second was the node's
    // largest cost, and held 128 KiB per participant for frames of a few hundred bytes.
    ws.max_message_size(MAX_FRAME_BYTES * 4)
        .max_frame_size(MAX_FRAME_BYTES * 4)
        .read_buffer_size(READ_CHUNK_BYTES)
        .on_upgrade(move |socket| session(node, socket))
}

struct Joined {
    room: RoomId,
    participant: Participant,
}

async fn session(node: MediaNode, mut socket: WebSocket) {
    let conn = node.connection_id();
    let (tx, mut rx) = mpsc::channel(node.config().outbound_frames.max(1));
    let dropped = Arc::new(AtomicBool::new(false));
    node.send(Command::Open {
        conn,
        frames: tx,
        dropped: dropped.clone(),
    })
    .await;
    let mut joined: Option<Joined> = None;
    let join_deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut window = tokio::time::Instant::now();
    let mut frames_in_window = 0u32;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                // The media loop dropped this client for not reading its frames: the
                // rest are not worth sending.
                Some(Outbound::Frame(_)) if dropped.load(Ordering::Relaxed) => break,
                Some(Outbound::Frame(text)) => {
                    if !send(&mut socket, Message::Text(text.into())).await {
                        break;
                    }
                }
                Some(Outbound::Close) | None => {
                    let _ = send(&mut socket, Message::Close(None)).await;
                    break;
                }
            },
            _ = tokio::time::sleep_until(join_deadline), if joined.is_none() => {
                let e = error_frame(ErrorCode::NotJoined, "join within 10 seconds");
                let _ = send(&mut socket, Message::Text(e.into())).await;
                break;
            }
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let e = error_frame(ErrorCode::BadFrame, "frames are JSON text");
                        if !send(&mut socket, Message::Text(e.into())).await {
                            break;
                        }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                let now = tokio::time::Instant::now();
                if now.duration_since(window) >= Duration::from_secs(1) {
                    window = now;
                    frames_in_window = 0;
                }
                frames_in_window += 1;
                if frames_in_window > FRAMES_PER_SECOND {
                    if frames_in_window == FRAMES_PER_SECOND + 1 {
                        let e = error_frame(ErrorCode::BadFrame, "too many frames; slow down");
                        if !send(&mut socket, Message::Text(e.into())).await {
                            break;
                        }
                    }
                    continue;
                }
                match frame_in(&node, conn, &mut joined, text.as_str()) {
                    Ok(command) => node.send(command).await,
                    Err((code, message, fatal)) => {
                        let e = error_frame(code, &message);
                        if !send(&mut socket, Message::Text(e.into())).await || fatal {
                            break;
                        }
                    }
                }
            }
        }
    }
    node.send(Command::Sfu(Input::Leave { conn })).await;
}

type Refusal = (ErrorCode, String, bool);

fn frame_in(
    node: &MediaNode,
    conn: u64,
    joined: &mut Option<Joined>,
    text: &str,
) -> Result<Command, Refusal> {
    let message = parse_client_frame(text).map_err(|(code, m)| (code, m, false))?;
    match (message, joined.as_ref()) {
        (ClientMessage::Join { v, room, grant }, None) => {
            if v != PROTOCOL_VERSION {
                return Err((
                    ErrorCode::UnsupportedVersion,
                    format!("this node speaks version {PROTOCOL_VERSION}"),
                    true,
                ));
            }
            let now = node.deps().clock.now();
            let claims = node
                .deps()
                .verifier
                .verify(&grant, room, now)
                .map_err(|e| {
                    tracing::info!(error = %e, %room, "a join grant was refused");
                    (
                        ErrorCode::BadGrant,
                        "the grant is not valid for this room".to_owned(),
                        true,
                    )
                })?;
            *joined = Some(Joined {
                room,
                participant: claims.sub,
            });
            Ok(Command::Sfu(Input::Join {
                conn,
                joining: Joining {
                    room,
                    participant: claims.sub,
                    name: claims.name,
                    role: claims.role,
                    settings: claims.settings,
                    lobby: claims.lobby && claims.role == GrantRole::Guest,
                },
            }))
        }
        (ClientMessage::Join { .. }, Some(_)) => Err((
            ErrorCode::NotJoined,
            "this connection already joined".to_owned(),
            false,
        )),
        (_, None) => Err((ErrorCode::NotJoined, "send join first".to_owned(), true)),
        (ClientMessage::Chat { relay }, Some(j)) => {
            let now = node.deps().clock.now();
            let claims = node
                .deps()
                .verifier
                .verify_chat(&relay, j.room, now)
                .map_err(|_| {
                    (
                        ErrorCode::BadChat,
                        "the chat token is not valid for this room".to_owned(),
                        false,
                    )
                })?;
            if claims.sub != j.participant {
                return Err((
                    ErrorCode::BadChat,
                    "only the author may deliver a message".to_owned(),
                    false,
                ));
            }
            // A token is good for a minute; its message is delivered once in it.
            if !node.first_delivery(claims.message.id, claims.exp, now.epoch_secs()) {
                return Err((
                    ErrorCode::AlreadyDelivered,
                    "this message was already delivered".to_owned(),
                    false,
                ));
            }
            Ok(Command::Sfu(Input::Chat {
                conn,
                message: claims.message,
            }))
        }
        (message, Some(_)) => Ok(Command::Sfu(Input::Message { conn, message })),
    }
}

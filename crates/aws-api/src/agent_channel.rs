//! The agent channel's server side: a WebSocket, authenticated with SigV4 like every API
//! call, on which desired state goes to the agent and state reports come back.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, Uri};
use tokio::time::Instant;
use tracing::Instrument;

use agent_protocol::{ToAgent, ToServer, HEARTBEAT_SECONDS, INSTANCE_PARAM};
use control_plane::Caller;

use crate::{authenticate, Api, ApiError};

/// `GET /_berth/agent/v1/connect?containerInstance=<arn>`, upgraded to a WebSocket.
pub async fn connect(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    match open(&api, &method, &uri, &headers) {
        Ok((caller, instance, connection, rx)) => {
            ws.on_upgrade(move |socket| session(api, caller, instance, connection, rx, socket)).into_response()
        }
        Err(e) => {
            tracing::info!(code = e.code, error = %e.message, "agent connection refused");
            e.into_response()
        }
    }
}

type Opened = (Caller, String, u64, tokio::sync::mpsc::UnboundedReceiver<ToAgent>);

fn open(api: &Api, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Opened, ApiError> {
    let caller = authenticate(api, method, uri, headers, b"", "ecs")?;
    let instance = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix(INSTANCE_PARAM).and_then(|v| v.strip_prefix('=')))
        .map(|v| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
        .ok_or_else(|| ApiError::invalid_parameter(format!("The {INSTANCE_PARAM} query parameter is required.")))?;
    // An agent's channel is ECS's `Poll`, on the container instance it speaks for (what
    // `AmazonEC2ContainerServiceforEC2Role` grants); the control plane then takes its
    // reports only for that instance's tasks.
    if !caller.is_root() {
        let mut access = control_plane::iam::authz::Access::new("ecs:Poll");
        access.resources = vec![instance.clone()];
        if let Some(cluster) = instance.split('/').nth(1) {
            let cluster_arn = format!("arn:aws:ecs:{}:{}:cluster/{cluster}", caller.scope.region, caller.scope.account);
            access.context.push(("ecs:cluster".into(), vec![cluster_arn]));
        }
        api.control.iam().authorize(&caller, access)?;
    }
    let (connection, rx) = api.control.ecs().agent_attach(&caller, &instance)?;
    Ok((caller, instance, connection, rx))
}

async fn session(
    api: Api,
    caller: Caller,
    instance: String,
    connection: u64,
    rx: tokio::sync::mpsc::UnboundedReceiver<ToAgent>,
    socket: WebSocket,
) {
    let span = tracing::info_span!("agent", instance = %instance);
    run_session(api, caller, instance, connection, rx, socket).instrument(span).await
}

async fn run_session(
    api: Api,
    caller: Caller,
    instance: String,
    connection: u64,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<ToAgent>,
    mut socket: WebSocket,
) {
    tracing::info!("agent connected");
    let interval = Duration::from_secs(HEARTBEAT_SECONDS);
    let mut heartbeat = tokio::time::interval(interval);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            out = rx.recv() => {
                // None: a newer connection of the same instance replaced this one.
                let Some(msg) = out else { break };
                let text = serde_json::to_string(&msg).expect("protocol messages serialize");
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                let Some(Ok(frame)) = incoming else { break };
                last_heard = Instant::now();
                api.control.agents.seen(&instance, connection);
                let Message::Text(text) = frame else { continue };
                match serde_json::from_str::<ToServer>(&text) {
                    Ok(ToServer::TaskState(report)) => {
                        let task = report.task_arn.clone();
                        if let Err(e) = api.control.ecs().report_task_state(&caller.scope, &instance, report).await {
                            tracing::warn!(%task, error = %e, "task state report refused");
                        }
                    }
                    Ok(ToServer::Ack { .. } | ToServer::Heartbeat) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable message from agent"),
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > 3 * interval {
                    tracing::warn!("agent silent for three heartbeats; closing its channel");
                    break;
                }
                let text = serde_json::to_string(&ToAgent::Heartbeat).expect("protocol messages serialize");
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    api.control.agents.detach(&instance, connection);
    tracing::info!("agent disconnected");
}

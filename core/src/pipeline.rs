//! The request phases, in order, in one place:
//!
//! `route (path) -> parse (model, stream) -> resolve model -> for each target: upstream
//! (pooled connection, timeouts; next target only if nothing reached the client) -> relay
//! (stream frames as they arrive, extract usage) -> observe (metrics, log)`.
//!
//! Auth, admission and settlement slot in between `resolve` and `upstream` (later issues).

use crate::client::{ClientConn, Head, Raced};
use crate::config::{Backend, Provider};
use crate::errors::{ErrorKind, GatewayError};
use crate::http::chunked::write_body;
use crate::http::{read_more, Method, RequestHead};
use crate::metrics::{Event, RouteCells, Shard};
use crate::upstream::{build_request, BodyDecoder, Exchange};
use crate::worker::{respond_error, After, Worker};
use bytes::Bytes;
use sluice_proto_llm::request::{inspect, rewrite_model};
use sluice_proto_llm::sse::SseFramer;
use sluice_proto_llm::synth::{self, Endpoint, FrameKind, Pacing, SynthRequest, SynthStream};
use sluice_proto_llm::usage::{Usage, UsageExtractor};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Route a request by method and path.
pub async fn dispatch(
    worker: &Rc<Worker>,
    conn: &mut ClientConn,
    head: &RequestHead,
    body: Vec<u8>,
    keep_alive: bool,
) -> After {
    let path = head.path.split('?').next().unwrap_or("");
    let endpoint = match path {
        "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
        "/v1/completions" => Some(Endpoint::Completions),
        "/v1/embeddings" => Some(Endpoint::Embeddings),
        _ => None,
    };
    let rid = head
        .request_id
        .clone()
        .unwrap_or_else(|| worker.next_request_id());
    if let Some(ep) = endpoint {
        if head.method != Method::Post {
            let err = GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{path} only accepts POST"),
            );
            return respond_error(worker, conn, &err, Some(&rid), keep_alive).await;
        }
        return llm(worker, conn, ep, &rid, body, keep_alive).await;
    }
    if path == "/v1/models" || path.starts_with("/v1/models/") {
        if head.method != Method::Get {
            let err = GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{path} only accepts GET"),
            );
            return respond_error(worker, conn, &err, Some(&rid), keep_alive).await;
        }
        return models(worker, conn, path, &rid, keep_alive).await;
    }
    let err = GatewayError::new(ErrorKind::NotFound, format!("Unknown request URL: {path}"));
    respond_error(worker, conn, &err, Some(&rid), keep_alive).await
}

async fn models(
    worker: &Rc<Worker>,
    conn: &mut ClientConn,
    path: &str,
    rid: &str,
    keep_alive: bool,
) -> After {
    let cfg = worker.config();
    let created = cfg.source.loaded_at_unix;
    let body = if let Some(raw_id) = path.strip_prefix("/v1/models/") {
        // Model names may contain `/` or spaces; clients percent-encode them in the path.
        let id = percent_encoding::percent_decode_str(raw_id).decode_utf8_lossy();
        match cfg.model(&id) {
            Some(m) => synth::model_body(&m.name, created, "sluice"),
            None => {
                let err = model_not_found(&id);
                return respond_error(worker, conn, &err, Some(rid), keep_alive).await;
            }
        }
    } else {
        synth::models_body(
            cfg.models.iter().map(|m| m.name.as_str()),
            created,
            "sluice",
        )
    };
    let out = crate::client::json_response(conn.version, 200, keep_alive, Some(rid), &body);
    worker.metrics.unrouted.count_status(200);
    finish_write(conn, out, keep_alive).await
}

fn model_not_found(name: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::ModelNotFound,
        format!("The model `{name}` does not exist or you do not have access to it."),
    )
    .with_param(Some("model"))
}

async fn finish_write(conn: &mut ClientConn, out: Vec<u8>, keep_alive: bool) -> After {
    let (res, _) = conn.write(out).await;
    if res.is_ok() && keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// Per-request observations, logged and counted when the request ends.
struct Outcome {
    status: u16,
    usage: Option<Usage>,
    ttft: Option<Duration>,
    error: Option<&'static str>,
}

/// LLM request phases.
async fn llm(
    worker: &Rc<Worker>,
    conn: &mut ClientConn,
    endpoint: Endpoint,
    rid: &str,
    body: Vec<u8>,
    keep_alive: bool,
) -> After {
    let started = Instant::now();
    // parse
    let info = match inspect(&body) {
        Ok(i) => i,
        Err(e) => {
            let err =
                GatewayError::new(ErrorKind::InvalidRequest, e.to_string()).with_param(e.param());
            return respond_error(worker, conn, &err, Some(rid), keep_alive).await;
        }
    };
    // resolve: the snapshot is held for the whole request, so a reload mid-stream does not
    // change what this request sees.
    let snap = worker.snapshot();
    let cfg = snap.config.clone();
    let Some(model_idx) = cfg.model_position(&info.model) else {
        return respond_error(
            worker,
            conn,
            &model_not_found(&info.model),
            Some(rid),
            keep_alive,
        )
        .await;
    };
    let Some(model) = cfg.models.get(model_idx) else {
        return respond_error(
            worker,
            conn,
            &model_not_found(&info.model),
            Some(rid),
            keep_alive,
        )
        .await;
    };
    let mut last_err = GatewayError::new(ErrorKind::Internal, "model has no targets");
    let mut last_cells: Option<Arc<RouteCells>> = None;
    for (ti, target) in model.targets.iter().enumerate() {
        let Some(backend) = cfg.backends.get(target.backend) else {
            continue;
        };
        let Some(cells) = snap.cells.get(model_idx).and_then(|v| v.get(ti)).cloned() else {
            continue;
        };
        let stream = info.stream && endpoint != Endpoint::Embeddings;
        let result = match backend.provider {
            Provider::Mock => {
                mock(
                    worker,
                    conn,
                    endpoint,
                    backend,
                    &target.model,
                    rid,
                    &body,
                    stream,
                    keep_alive,
                    started,
                    &cells,
                )
                .await
            }
            Provider::OpenAi => {
                let upstream_body = if target.model != info.model {
                    match rewrite_model(&body, &target.model) {
                        Ok(b) => b,
                        Err(e) => {
                            let err = GatewayError::new(ErrorKind::InvalidRequest, e.to_string());
                            return respond_error(worker, conn, &err, Some(rid), keep_alive).await;
                        }
                    }
                } else {
                    body.clone()
                };
                proxy(
                    worker,
                    conn,
                    endpoint,
                    backend,
                    rid,
                    &upstream_body,
                    stream,
                    keep_alive,
                    started,
                    &cells,
                )
                .await
            }
        };
        match result {
            Ok((after, outcome)) => {
                observe(worker, &cells, rid, &info.model, backend, started, &outcome);
                return after;
            }
            Err(Failed::ClientGone) => {
                worker.metrics.count(Event::ClientDisconnects);
                cells.count_status(499);
                tracing::debug!(request_id = rid, model = %info.model, "client went away before the response");
                return After::Close;
            }
            Err(Failed::Error(e)) => {
                tracing::warn!(request_id = rid, model = %info.model, backend = %backend.name, "{e}");
                let retry = e.kind.retryable();
                last_err = e;
                last_cells = Some(cells);
                if !retry {
                    break;
                }
            }
        }
    }
    if let Some(c) = &last_cells {
        c.count_status(last_err.status());
        c.duration.observe(started.elapsed());
    }
    let out = crate::client::json_response(
        conn.version,
        last_err.status(),
        keep_alive,
        Some(rid),
        &last_err.body(),
    );
    finish_write(conn, out, keep_alive).await
}

fn observe(
    worker: &Worker,
    cells: &RouteCells,
    rid: &str,
    model: &str,
    backend: &Backend,
    started: Instant,
    o: &Outcome,
) {
    cells.count_status(o.status);
    let elapsed = started.elapsed();
    cells.duration.observe(elapsed);
    if let Some(t) = o.ttft {
        cells.ttft.observe(t);
    }
    let _ = worker;
    tracing::debug!(
        request_id = rid,
        model,
        backend = %backend.name,
        status = o.status,
        duration_ms = elapsed.as_secs_f64() * 1e3,
        prompt_tokens = o.usage.map(|u| u.prompt_tokens),
        completion_tokens = o.usage.map(|u| u.completion_tokens),
        error = o.error,
        "request finished"
    );
}

/// Why a target attempt produced no response for the client.
enum Failed {
    /// Nothing was sent to the client: the caller may try another target or answer `e`.
    Error(GatewayError),
    ClientGone,
}

/// Decrements the active-stream gauge on every exit path.
struct StreamGauge<'a>(&'a Shard);

impl<'a> StreamGauge<'a> {
    fn new(s: &'a Shard) -> Self {
        Shard::gauge_add(&s.active_streams, 1);
        Self(s)
    }
}

impl Drop for StreamGauge<'_> {
    fn drop(&mut self) {
        Shard::gauge_add(&self.0.active_streams, -1);
    }
}

fn upstream_path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "/chat/completions",
        Endpoint::Completions => "/completions",
        Endpoint::Embeddings => "/embeddings",
    }
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    worker: &Rc<Worker>,
    conn: &mut ClientConn,
    endpoint: Endpoint,
    backend: &Backend,
    rid: &str,
    body: &[u8],
    stream: bool,
    keep_alive: bool,
    started: Instant,
    cells: &RouteCells,
) -> Result<(After, Outcome), Failed> {
    let Some(url) = &backend.upstream else {
        return Err(Failed::Error(GatewayError::new(
            ErrorKind::Internal,
            "backend has no URL",
        )));
    };
    let key = if backend.api_keys.is_empty() {
        None
    } else {
        backend
            .api_keys
            .get(worker.next_key_index(backend.api_keys.len()))
            .map(|k| k.expose())
    };
    let request = build_request(
        backend,
        url,
        upstream_path(endpoint),
        rid,
        key,
        stream,
        body,
    );
    let upstreams = worker.upstreams.borrow().clone();
    let ex = match conn
        .race(upstreams.exchange(backend, url, request, &worker.metrics))
        .await
    {
        Raced::ClientGone => return Err(Failed::ClientGone),
        Raced::Done(Err(e)) => return Err(Failed::Error(e)),
        Raced::Done(Ok(ex)) => ex,
    };
    cells.upstream_latency.observe(ex.latency);
    if ex.head.is_event_stream() && (200..300).contains(&ex.head.status) {
        relay_stream(
            worker, conn, backend, rid, ex, &upstreams, keep_alive, started,
        )
        .await
    } else {
        relay_body(worker, conn, backend, rid, ex, &upstreams, keep_alive).await
    }
}

/// Relay a non-streaming response (JSON, or an error with any content type) as it arrives,
/// keeping a copy (bounded) to read the usage from.
#[allow(clippy::too_many_arguments)]
async fn relay_body(
    worker: &Rc<Worker>,
    conn: &mut ClientConn,
    backend: &Backend,
    rid: &str,
    ex: Exchange,
    upstreams: &crate::upstream::Upstreams,
    keep_alive: bool,
) -> Result<(After, Outcome), Failed> {
    let Exchange {
        conn: mut up,
        head,
        leftover,
        pool_key,
        ..
    } = ex;
    let mut decoder = BodyDecoder::new(head.framing);
    let mut raw = leftover;
    let mut payload: Vec<u8> = Vec::new();
    // Read the whole body before answering when it is small enough to be a typical JSON
    // response; that lets us send Content-Length and keep the client connection reusable.
    loop {
        let used = decoder.decode(&raw, &mut payload).map_err(|e| {
            Failed::Error(GatewayError::new(
                ErrorKind::UpstreamProtocol,
                format!("backend `{}`: {e}", backend.name),
            ))
        })?;
        raw.drain(..used);
        if payload.len() > backend.max_response_bytes {
            return Err(Failed::Error(GatewayError::new(
                ErrorKind::UpstreamProtocol,
                format!(
                    "backend `{}`: response body larger than max_response_bytes ({} bytes)",
                    backend.name, backend.max_response_bytes
                ),
            )));
        }
        if decoder.is_done() {
            break;
        }
        let read = monoio::time::timeout(backend.read_timeout, read_more(&mut up, raw, 16 * 1024));
        let (res, b) = match conn.race(read).await {
            Raced::ClientGone => return Err(Failed::ClientGone),
            Raced::Done(Err(_)) => {
                worker.metrics.count(Event::UpstreamTimeouts);
                return Err(Failed::Error(GatewayError::new(
                    ErrorKind::UpstreamTimeout,
                    format!(
                        "backend `{}`: response body stalled for {:?}",
                        backend.name, backend.read_timeout
                    ),
                )));
            }
            Raced::Done(Ok(r)) => r,
        };
        raw = b;
        match res {
            Ok(0) => {
                if decoder.eof_is_clean() {
                    break;
                }
                worker.metrics.count(Event::UpstreamBrokenStreams);
                return Err(Failed::Error(GatewayError::new(
                    ErrorKind::UpstreamProtocol,
                    format!(
                        "backend `{}` closed the connection mid-response",
                        backend.name
                    ),
                )));
            }
            Ok(n) => worker.metrics.add_bytes_from_upstream(n),
            Err(e) => {
                return Err(Failed::Error(GatewayError::new(
                    ErrorKind::UpstreamProtocol,
                    format!(
                        "backend `{}`: reading the response failed: {e}",
                        backend.name
                    ),
                )))
            }
        }
    }
    if head.keep_alive && decoder.is_done() && raw.is_empty() {
        upstreams.release(&pool_key, up, backend.pool_max_idle);
    }
    let usage = if (200..300).contains(&head.status) {
        UsageExtractor::new().extract(&payload)
    } else {
        None
    };
    let ct = head.content_type.as_deref().unwrap_or("application/json");
    let mut h = Head::new(conn.version, head.status)
        .header("Content-Type", ct.as_bytes())
        .header("X-Request-Id", rid.as_bytes());
    for (name, value) in &head.passthrough {
        h = h.header(name, value);
    }
    let out = h.with_body(keep_alive, &payload);
    worker.metrics.add_bytes_to_client(out.len());
    let after = finish_write(conn, out, keep_alive).await;
    let error = if head.status >= 400 {
        Some("upstream_status")
    } else {
        None
    };
    Ok((
        after,
        Outcome {
            status: head.status,
            usage,
            ttft: None,
            error,
        },
    ))
}

/// Relay an SSE stream frame by frame: the bytes the client gets are exactly the upstream's
/// frames (inside our own chunked envelope), written as soon as each read completes them.
#[allow(clippy::too_many_arguments)]
async fn relay_stream(
    worker: &Rc<Worker>,
    conn: &mut ClientConn,
    backend: &Backend,
    rid: &str,
    ex: Exchange,
    upstreams: &crate::upstream::Upstreams,
    keep_alive: bool,
    started: Instant,
) -> Result<(After, Outcome), Failed> {
    let Exchange {
        conn: mut up,
        head,
        leftover,
        pool_key,
        ..
    } = ex;
    let _gauge = StreamGauge::new(&worker.metrics);
    let chunked = conn.version == 1;
    let keep_alive = keep_alive && chunked;
    let ct = head.content_type.as_deref().unwrap_or("text/event-stream");
    let mut h = Head::new(conn.version, head.status)
        .header("Content-Type", ct.as_bytes())
        .header("Cache-Control", b"no-cache")
        .header("X-Accel-Buffering", b"no")
        .header("X-Request-Id", rid.as_bytes());
    for (name, value) in &head.passthrough {
        h = h.header(name, value);
    }
    let mut out = h.streaming(conn.version, keep_alive);
    let mut decoder = BodyDecoder::new(head.framing);
    let mut framer = SseFramer::new(backend.max_event_bytes);
    let mut extractor = UsageExtractor::new();
    let mut usage = None;
    let mut ttft = None;
    let mut raw = leftover;
    let mut payload: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut frames: Vec<Bytes> = Vec::with_capacity(16);
    let mut clean_end = false;
    let mut failure: Option<&'static str> = None;
    loop {
        payload.clear();
        match decoder.decode(&raw, &mut payload) {
            Ok(used) => {
                raw.drain(..used);
            }
            Err(_) => {
                failure = Some("upstream_protocol");
                break;
            }
        }
        framer.push(&payload);
        frames.clear();
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => {
                    if let Some(data) = f.data() {
                        if !f.is_done() {
                            if let Some(u) = extractor.extract(&data) {
                                usage = Some(u);
                            }
                        }
                    }
                    frames.push(f.raw().clone());
                }
                Ok(None) => break,
                Err(_) => {
                    failure = Some("sse_frame_too_large");
                    break;
                }
            }
        }
        // Frames completed before a failure in the same read still go out.
        if !frames.is_empty() {
            if ttft.is_none() {
                ttft = Some(started.elapsed());
            }
            write_body(&mut out, &frames, chunked, false);
        }
        if failure.is_some() {
            break;
        }
        if decoder.is_done() {
            clean_end = true;
            break;
        }
        if !out.is_empty() {
            let n = out.len();
            let (res, b) = conn.write(out).await;
            out = b;
            out.clear();
            if res.is_err() {
                return Err(Failed::ClientGone);
            }
            worker.metrics.add_bytes_to_client(n);
        }
        let read = monoio::time::timeout(backend.read_timeout, read_more(&mut up, raw, 16 * 1024));
        let (res, b) = match conn.race(read).await {
            Raced::ClientGone => return Err(Failed::ClientGone),
            Raced::Done(Err(_)) => {
                worker.metrics.count(Event::UpstreamTimeouts);
                failure = Some("upstream_stalled");
                raw = Vec::new();
                break;
            }
            Raced::Done(Ok(r)) => r,
        };
        raw = b;
        match res {
            Ok(0) => {
                if decoder.eof_is_clean() {
                    clean_end = true;
                } else {
                    failure = Some("upstream_broken_stream");
                }
                break;
            }
            Ok(n) => worker.metrics.add_bytes_from_upstream(n),
            Err(_) => {
                failure = Some("upstream_broken_stream");
                break;
            }
        }
    }
    // Whatever is left in the framer is an incomplete frame. After a clean end it is relayed
    // as is (byte-exact). After a failure it is dropped: it can never be completed, and the
    // error event below must not be glued onto it as one corrupt event.
    let rest = framer.take_remainder();
    if !rest.is_empty() && failure.is_none() {
        write_body(&mut out, &[rest], chunked, false);
    }
    if let Some(reason) = failure {
        worker.metrics.count(Event::UpstreamBrokenStreams);
        tracing::warn!(request_id = rid, backend = %backend.name, reason, "upstream stream ended abnormally");
        // Never let a broken upstream look like a clean finish: an error event, no [DONE].
        let msg = format!(
            "upstream stream from backend `{}` ended abnormally ({reason})",
            backend.name
        );
        let body =
            sluice_proto_llm::error::openai_error_body(&msg, "upstream_error", None, Some(reason));
        write_body(&mut out, &[&b"data: "[..], &body, b"\n\n"], chunked, false);
    }
    write_body::<&[u8]>(&mut out, &[], chunked, true);
    let n = out.len();
    let (res, _) = conn.write(out).await;
    if res.is_err() {
        return Err(Failed::ClientGone);
    }
    worker.metrics.add_bytes_to_client(n);
    if clean_end && failure.is_none() && head.keep_alive && decoder.is_done() && raw.is_empty() {
        upstreams.release(&pool_key, up, backend.pool_max_idle);
    }
    let after = if keep_alive && failure.is_none() {
        After::KeepAlive
    } else {
        After::Close
    };
    Ok((
        after,
        Outcome {
            status: head.status,
            usage,
            ttft,
            error: failure,
        },
    ))
}

/// The built-in mock provider: the same synthetic generator as `sluice-loadgen mock`, served
/// in-process (no socket), paced by the backend's mock settings.
#[allow(clippy::too_many_arguments)]
async fn mock(
    worker: &Rc<Worker>,
    conn: &mut ClientConn,
    endpoint: Endpoint,
    backend: &Backend,
    served_model: &str,
    rid: &str,
    body: &[u8],
    stream: bool,
    keep_alive: bool,
    started: Instant,
    _cells: &RouteCells,
) -> Result<(After, Outcome), Failed> {
    let mut req = match SynthRequest::parse(endpoint, body, backend.mock.tokens) {
        Ok(r) => r,
        Err(synth::SynthError::BadRequest { message, param }) => {
            let err = GatewayError::new(ErrorKind::InvalidRequest, message).with_param(param);
            let out =
                crate::client::json_response(conn.version, 400, keep_alive, Some(rid), &err.body());
            let after = finish_write(conn, out, keep_alive).await;
            return Ok((
                after,
                Outcome {
                    status: 400,
                    usage: None,
                    ttft: None,
                    error: Some("invalid_request"),
                },
            ));
        }
    };
    req.model = served_model.to_owned();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let prefix = match endpoint {
        Endpoint::Completions => "cmpl",
        Endpoint::ChatCompletions | Endpoint::Embeddings => "chatcmpl",
    };
    let id = format!("{prefix}-{rid}");
    let usage = Usage {
        prompt_tokens: req.prompt_tokens(),
        completion_tokens: req.completion_tokens(),
        total_tokens: req.prompt_tokens().saturating_add(req.completion_tokens()),
        ..Usage::default()
    };
    let pacing = Pacing::from_rate(backend.mock.ttft, backend.mock.tokens_per_second);
    let done = |after: After, ttft: Option<Duration>| {
        Ok((
            after,
            Outcome {
                status: 200,
                usage: Some(usage),
                ttft,
                error: None,
            },
        ))
    };
    if !stream {
        let due = pacing.whole(req.reply_tokens());
        if !due.is_zero() {
            if let Raced::ClientGone = conn.race(monoio::time::sleep(due)).await {
                return Err(Failed::ClientGone);
            }
        }
        let body = synth::response_body(&req, &id, created);
        let out = Head::new(conn.version, 200)
            .header("Content-Type", b"application/json")
            .header("X-Request-Id", rid.as_bytes())
            .with_body(keep_alive, &body);
        worker.metrics.add_bytes_to_client(out.len());
        return done(finish_write(conn, out, keep_alive).await, None);
    }
    let _gauge = StreamGauge::new(&worker.metrics);
    let chunked = conn.version == 1;
    let keep_alive = keep_alive && chunked;
    let head = Head::new(conn.version, 200)
        .header("Content-Type", b"text/event-stream")
        .header("Cache-Control", b"no-cache")
        .header("X-Accel-Buffering", b"no")
        .header("X-Request-Id", rid.as_bytes())
        .streaming(conn.version, keep_alive);
    let (res, mut out) = conn.write(head).await;
    if res.is_err() {
        return Err(Failed::ClientGone);
    }
    let mut gen = SynthStream::new(&req, &id, created);
    let mut frame = Vec::with_capacity(512);
    let mut ttft = None;
    let mut first = true;
    loop {
        frame.clear();
        let Some(kind) = gen.next_kind(&mut frame) else {
            break;
        };
        let delay = pacing.before(kind, first, gen.token_frames_sent());
        first = false;
        if !delay.is_zero() {
            if let Raced::ClientGone = conn.race(monoio::time::sleep(delay)).await {
                return Err(Failed::ClientGone);
            }
        }
        out.clear();
        write_body(&mut out, &[&frame], chunked, kind == FrameKind::Done);
        let n = out.len();
        let (res, b) = conn.write(out).await;
        out = b;
        if res.is_err() {
            return Err(Failed::ClientGone);
        }
        worker.metrics.add_bytes_to_client(n);
        if ttft.is_none() && kind == FrameKind::Token {
            ttft = Some(started.elapsed());
        }
    }
    done(
        if keep_alive {
            After::KeepAlive
        } else {
            After::Close
        },
        ttft,
    )
}

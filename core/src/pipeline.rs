//! The request phases, in order, in one place:
//!
//! `route (path) -> parse (model, stream) -> resolve model -> estimate prompt tokens -> for each
//! target: plan (which API upstream, translated or not) -> upstream (request built from scratch,
//! pooled connection, timeouts; the next target only if nothing reached the client) -> relay
//! (`relay.rs`: stream frames as they arrive, translate, read usage) -> observe (tokens, cost,
//! metrics, audit record, log)`.
//!
//! Auth, admission and settlement slot in between `estimate` and `upstream` (quota issue).

use crate::audit::Record;
use crate::auth::{AuthError, Identity};
use crate::client::{ClientConn, Head, Raced};
use crate::config::{Backend, Config, Consumer, Metric, Model, Provider, Window};
use crate::errors::{ErrorFormat, ErrorKind, GatewayError};
use crate::http::{Method, RequestHead};
use crate::metrics::{ConsumerCells, Event, RouteCells, TokenCounts};
use crate::quota::{Amounts, RateHeaders, Rejection, Reservation};
use crate::relay::{relay, Enforce, Failed, Outcome, RelayCtx, StreamMode};
use crate::upstream::{build_request, request_path, Operation, Outgoing};
use crate::worker::{respond_error, After, Worker};
use sluice_proto_llm::closer::{ClientFormat, CloseContext};
use sluice_proto_llm::request::{
    force_include_usage, inspect, prompt_messages, rewrite_model, RequestInfo,
};
use sluice_proto_llm::synth::{self, Endpoint};
use sluice_proto_llm::tokenize::{self, Encoding};
use sluice_proto_llm::track::{Api, TrackedUsage};
use sluice_proto_llm::translate::{self, ResponseContext};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// The API name of an endpoint, as the audit log and logs show it.
fn endpoint_name(e: Endpoint) -> &'static str {
    match e {
        Endpoint::ChatCompletions => "chat.completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Responses => "responses",
        Endpoint::Messages => "messages",
    }
}

/// The chat-like API of an endpoint (completions and embeddings are read as Chat for usage).
fn api_of(e: Endpoint) -> Api {
    match e {
        Endpoint::Responses => Api::Responses,
        Endpoint::Messages => Api::Messages,
        Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
            Api::ChatCompletions
        }
    }
}

fn format_of(e: Endpoint) -> ErrorFormat {
    if e == Endpoint::Messages {
        ErrorFormat::Anthropic
    } else {
        ErrorFormat::OpenAi
    }
}

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
        "/v1/responses" => Some(Endpoint::Responses),
        "/v1/messages" => Some(Endpoint::Messages),
        _ => None,
    };
    let rid = head
        .request_id
        .clone()
        .unwrap_or_else(|| worker.next_request_id());
    let format = ErrorFormat::for_path(path);
    if let Some(ep) = endpoint {
        if head.method != Method::Post {
            let err = GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{path} only accepts POST"),
            );
            return respond_error(worker, conn, &err, Some(&rid), keep_alive, format).await;
        }
        let req = Request {
            endpoint: ep,
            rid: &rid,
            head,
            body,
            keep_alive,
            started: Instant::now(),
        };
        return llm(worker, conn, req).await;
    }
    if path == "/v1/models" || path.starts_with("/v1/models/") {
        if head.method != Method::Get {
            let err = GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{path} only accepts GET"),
            );
            return respond_error(worker, conn, &err, Some(&rid), keep_alive, format).await;
        }
        return models(worker, conn, path, &rid, keep_alive).await;
    }
    let err = GatewayError::new(ErrorKind::NotFound, format!("Unknown request URL: {path}"));
    respond_error(worker, conn, &err, Some(&rid), keep_alive, format).await
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
                return respond_error(
                    worker,
                    conn,
                    &err,
                    Some(rid),
                    keep_alive,
                    ErrorFormat::OpenAi,
                )
                .await;
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
    let (res, _) = conn.write(out).await;
    if res.is_ok() && keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

fn model_not_found(name: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::ModelNotFound,
        format!("The model `{name}` does not exist or you do not have access to it."),
    )
    .with_param(Some("model"))
}

/// One LLM request as it arrived.
struct Request<'a> {
    endpoint: Endpoint,
    rid: &'a str,
    head: &'a RequestHead,
    body: Vec<u8>,
    keep_alive: bool,
    started: Instant,
}

/// How one target attempt talks to its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    op: Operation,
    /// What the upstream speaks.
    upstream: Api,
    /// The request and response are translated between the client's API and `upstream`.
    translated: bool,
}

/// Which API a backend is spoken to in for a client endpoint; `None` when it cannot serve it.
fn plan(endpoint: Endpoint, backend: &Backend) -> Option<Plan> {
    let native = |op, upstream| {
        Some(Plan {
            op,
            upstream,
            translated: false,
        })
    };
    let via = |op, upstream| {
        Some(Plan {
            op,
            upstream,
            translated: true,
        })
    };
    match (backend.provider, endpoint) {
        (Provider::Anthropic, Endpoint::Completions | Endpoint::Embeddings) => None,
        (Provider::Anthropic, Endpoint::Messages) => native(Operation::Messages, Api::Messages),
        (Provider::Anthropic, _) => via(Operation::Messages, Api::Messages),
        (_, Endpoint::Completions) => native(Operation::Completions, Api::ChatCompletions),
        (_, Endpoint::Embeddings) => native(Operation::Embeddings, Api::ChatCompletions),
        (_, Endpoint::ChatCompletions) => native(Operation::ChatCompletions, Api::ChatCompletions),
        (_, Endpoint::Responses) if backend.native_responses => {
            native(Operation::Responses, Api::Responses)
        }
        (_, Endpoint::Responses | Endpoint::Messages) => {
            via(Operation::ChatCompletions, Api::ChatCompletions)
        }
    }
}

/// LLM request phases.
async fn llm(worker: &Rc<Worker>, conn: &mut ClientConn, req: Request<'_>) -> After {
    let format = format_of(req.endpoint);
    let rid = req.rid;
    // The snapshot is held for the whole request, so a reload mid-stream does not change what
    // this request sees.
    let snap = worker.snapshot();
    let cfg = snap.config.clone();
    // auth
    let identity = match snap.auth.authenticate(&cfg, req.head.credential.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            worker.metrics.count(match e {
                AuthError::Missing => Event::AuthMissing,
                AuthError::Invalid(_) => Event::AuthInvalid,
                AuthError::UnknownConsumer(_) => Event::AuthUnknownConsumer,
            });
            if let AuthError::UnknownConsumer(name) = &e {
                tracing::info!(request_id = rid, consumer = %name, "valid token for an unknown consumer");
            }
            let err = GatewayError::new(ErrorKind::Unauthorized, e.message().to_owned());
            let headers = [("WWW-Authenticate", e.www_authenticate().as_bytes().to_vec())];
            return respond(worker, conn, &err, rid, req.keep_alive, format, &headers).await;
        }
    };
    let consumer = match identity {
        Identity::Consumer(i) => Some(i),
        Identity::Open => None,
    };
    // parse
    let info = match inspect(&req.body) {
        Ok(i) => i,
        Err(e) => {
            let err =
                GatewayError::new(ErrorKind::InvalidRequest, e.to_string()).with_param(e.param());
            return respond_error(worker, conn, &err, Some(rid), req.keep_alive, format).await;
        }
    };
    // resolve
    let Some((model_idx, model)) = cfg
        .model_position(&info.model)
        .and_then(|i| cfg.models.get(i).map(|m| (i, m)))
    else {
        return respond_error(
            worker,
            conn,
            &model_not_found(&info.model),
            Some(rid),
            req.keep_alive,
            format,
        )
        .await;
    };
    if let Some(c) = identity.consumer(&cfg) {
        if !c.may_use(&model.name) {
            worker.metrics.count(Event::ModelForbidden);
            let err = GatewayError::new(
                ErrorKind::Forbidden,
                format!(
                    "Consumer `{}` may not use the model `{}`.",
                    c.name, model.name
                ),
            )
            .with_param(Some("model"));
            return respond_error(worker, conn, &err, Some(rid), req.keep_alive, format).await;
        }
    }
    let consumer_cells = snap
        .consumers
        .get(consumer.unwrap_or(cfg.consumers.len()))
        .cloned();
    // estimate, then admit: reserve the estimated prompt and the most the reply may use
    // against every limit that applies. The reservation settles to the real usage when it is
    // dropped at the end of this function, on every path.
    let prompt_estimate = tokenize::estimate_prompt_tokens(&req.body);
    let max_output = info.max_tokens.unwrap_or(cfg.quota.default_max_tokens);
    let reserve = Amounts {
        requests: 1,
        input_tokens: prompt_estimate,
        output_tokens: max_output,
        cost: micro_usd(model, prompt_estimate, 0, 0, max_output),
    };
    let reservation = match worker
        .quota
        .admit(consumer, model_idx, reserve, crate::time::unix_ms())
    {
        Ok(r) => {
            if let Some(c) = &consumer_cells {
                c.count_admitted();
            }
            r
        }
        Err(rejection) => {
            if let Some(c) = &consumer_cells {
                c.count_rejected(&rejection.limit);
            }
            let (err, headers) = rate_limited(&rejection);
            return respond(worker, conn, &err, rid, req.keep_alive, format, &headers).await;
        }
    };
    let rate_headers = rate_limit_headers(&reservation.headers);
    let ctx = RequestCtx {
        worker,
        req: &req,
        info: &info,
        prompt_estimate,
        consumer: identity.consumer(&cfg),
        consumer_cells: consumer_cells.as_deref(),
        reservation: &reservation,
        model,
        rate_headers: &rate_headers,
    };
    let mut last_err = GatewayError::new(ErrorKind::Internal, "model has no targets");
    let mut last_attempt: Option<(usize, Plan)> = None;
    for (ti, target) in model.targets.iter().enumerate() {
        let Some(backend) = cfg.backends.get(target.backend) else {
            continue;
        };
        let Some(cells) = snap.cells.get(model_idx).and_then(|v| v.get(ti)).cloned() else {
            continue;
        };
        let attempt = Attempt {
            ctx: &ctx,
            backend,
            upstream_model: &target.model,
        };
        let (result, used_plan) = if backend.provider == Provider::Mock {
            let r = crate::mock_provider::serve(
                worker,
                conn,
                req.endpoint,
                backend,
                &target.model,
                rid,
                &req.body,
                req.keep_alive,
                req.started,
                &rate_headers,
                ctx.enforce().as_ref(),
            )
            .await;
            let api = api_of(req.endpoint);
            (
                r,
                Plan {
                    op: Operation::ChatCompletions,
                    upstream: api,
                    translated: false,
                },
            )
        } else {
            match plan(req.endpoint, backend) {
                Some(p) => (attempt.proxy(conn, p, &cells).await, p),
                None => {
                    let err = GatewayError::new(
                        ErrorKind::Unsupported,
                        format!(
                            "backend `{}` ({}) does not serve {}",
                            backend.name,
                            backend.provider.as_str(),
                            endpoint_name(req.endpoint)
                        ),
                    );
                    let p = Plan {
                        op: Operation::ChatCompletions,
                        upstream: Api::ChatCompletions,
                        translated: false,
                    };
                    (Err(Failed::Error(err)), p)
                }
            }
        };
        match result {
            Ok((after, outcome)) => {
                attempt.observe(&cfg, model, &cells, used_plan, &outcome);
                return after;
            }
            Err(Failed::ClientGone(mut outcome)) => {
                worker.metrics.count(Event::ClientDisconnects);
                outcome.status = 499;
                attempt.observe(&cfg, model, &cells, used_plan, &outcome);
                tracing::debug!(request_id = rid, model = %info.model, "client went away before the response ended");
                return After::Close;
            }
            Err(Failed::Error(e)) => {
                tracing::warn!(request_id = rid, model = %info.model, backend = %backend.name, "{e}");
                let retry = e.kind.retryable();
                last_err = e;
                last_attempt = Some((ti, used_plan));
                if !retry {
                    break;
                }
            }
        }
    }
    // Every target failed before anything reached the client.
    let out = crate::client::json_response(
        conn.version,
        last_err.status(),
        req.keep_alive,
        Some(rid),
        &last_err.body_in(format),
    );
    let bytes_out = out.len() as u64;
    let (res, _) = conn.write(out).await;
    if let Some((ti, used_plan)) = last_attempt {
        if let (Some(target), Some(cells)) = (
            model.targets.get(ti),
            snap.cells.get(model_idx).and_then(|v| v.get(ti)),
        ) {
            if let Some(backend) = cfg.backends.get(target.backend) {
                let attempt = Attempt {
                    ctx: &ctx,
                    backend,
                    upstream_model: &target.model,
                };
                let outcome = Outcome {
                    status: last_err.status(),
                    error: Some(last_err.kind.class()),
                    bytes_out,
                    ..Outcome::default()
                };
                attempt.observe(&cfg, model, cells, used_plan, &outcome);
            }
        }
    }
    if res.is_ok() && req.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// What every target attempt of one request shares.
struct RequestCtx<'a> {
    worker: &'a Rc<Worker>,
    req: &'a Request<'a>,
    info: &'a RequestInfo,
    prompt_estimate: u64,
    consumer: Option<&'a Consumer>,
    consumer_cells: Option<&'a ConsumerCells>,
    reservation: &'a Reservation,
    model: &'a Model,
    /// `x-ratelimit-*` headers for the response.
    rate_headers: &'a [(&'static str, Vec<u8>)],
}

impl RequestCtx<'_> {
    /// Mid-stream enforcement for this request, when one of its limits asks for it.
    fn enforce(&self) -> Option<Enforce<'_>> {
        let (req, info) = (self.req, self.info);
        self.reservation.has_mid_stream().then(|| Enforce {
            reservation: self.reservation,
            encoding: encoding_of(self.model, &info.model),
            prompt_estimate: self.prompt_estimate,
            price: self.model.price,
            format: close_format(req.endpoint),
            close: CloseContext {
                id: req.rid.to_owned(),
                created: crate::time::unix_ms() / 1000,
                model: info.model.clone(),
                include_usage: info.include_usage,
            },
        })
    }
}

/// One target tried for one request.
struct Attempt<'a> {
    ctx: &'a RequestCtx<'a>,
    backend: &'a Backend,
    upstream_model: &'a str,
}

impl Attempt<'_> {
    /// upstream + relay for a network backend.
    async fn proxy(
        &self,
        conn: &mut ClientConn,
        plan: Plan,
        cells: &RouteCells,
    ) -> Result<(After, Outcome), Failed> {
        let (req, backend, info) = (self.ctx.req, self.backend, self.ctx.info);
        let client = api_of(req.endpoint);
        let Some(url) = &backend.upstream else {
            return Err(Failed::Error(GatewayError::new(
                ErrorKind::Internal,
                "backend has no URL",
            )));
        };
        let stream = info.stream && req.endpoint != Endpoint::Embeddings;
        // The upstream body: translated, or the client's with the upstream model name and (for
        // Chat and Completions streams) usage asked for, so every stream's tokens are known.
        let mut echo = None;
        let mut strip_usage = false;
        let body = if plan.translated {
            match translate::translate_request(
                client,
                plan.upstream,
                &req.body,
                self.upstream_model,
                backend.default_max_tokens,
            ) {
                Some(Ok(t)) => {
                    if !t.dropped.is_empty() {
                        tracing::debug!(request_id = req.rid, dropped = ?t.dropped, "translation dropped fields without an equivalent");
                    }
                    echo = t.echo;
                    t.body
                }
                Some(Err(e)) => {
                    let kind = if e.status() == 400 {
                        ErrorKind::InvalidRequest
                    } else {
                        ErrorKind::UpstreamProtocol
                    };
                    return Err(Failed::Error(
                        GatewayError::new(kind, e.message().to_owned()).with_param(e.param()),
                    ));
                }
                None => {
                    return Err(Failed::Error(GatewayError::new(
                        ErrorKind::Unsupported,
                        format!(
                            "no translation from {} to {}",
                            client.as_str(),
                            plan.upstream.as_str()
                        ),
                    )))
                }
            }
        } else {
            let mut body = if self.upstream_model != info.model {
                match rewrite_model(&req.body, self.upstream_model) {
                    Ok(b) => b,
                    Err(e) => {
                        return Err(Failed::Error(GatewayError::new(
                            ErrorKind::InvalidRequest,
                            e.to_string(),
                        )))
                    }
                }
            } else {
                req.body.clone()
            };
            let counts_usage_itself =
                matches!(plan.op, Operation::ChatCompletions | Operation::Completions);
            if stream && counts_usage_itself && !info.include_usage {
                match force_include_usage(&body) {
                    Ok(b) => {
                        body = b;
                        strip_usage = true;
                    }
                    Err(e) => {
                        return Err(Failed::Error(GatewayError::new(
                            ErrorKind::InvalidRequest,
                            e.to_string(),
                        )))
                    }
                }
            }
            body
        };
        let key = if backend.api_keys.is_empty() {
            None
        } else {
            backend
                .api_keys
                .get(self.ctx.worker.next_key_index(backend.api_keys.len()))
                .map(|k| k.expose())
        };
        let mut extra: Vec<(&str, &[u8])> = Vec::new();
        if backend.provider == Provider::Anthropic {
            let native_messages = req.endpoint == Endpoint::Messages;
            let version = match (&req.head.anthropic_version, native_messages) {
                (Some(v), true) => v.as_str(),
                _ => backend.anthropic_version.as_str(),
            };
            extra.push(("anthropic-version", version.as_bytes()));
            if let (Some(beta), true) = (&req.head.anthropic_beta, native_messages) {
                extra.push(("anthropic-beta", beta.as_bytes()));
            }
        }
        let path = request_path(backend, url, plan.op, self.upstream_model);
        let request = build_request(
            backend,
            url,
            &Outgoing {
                path: &path,
                request_id: req.rid,
                api_key: key,
                stream,
                extra: &extra,
                body: &body,
            },
        );
        let upstreams = self.ctx.worker.upstreams.borrow().clone();
        let exchange = upstreams.exchange(backend, url, request, &self.ctx.worker.metrics);
        let ex = match conn.race(std::pin::pin!(exchange)).await {
            Raced::ClientGone => return Err(Failed::gone()),
            Raced::Done(Err(e)) => return Err(Failed::Error(e)),
            Raced::Done(Ok(ex)) => ex,
        };
        cells.upstream_latency.observe(ex.latency);
        let translate = plan.translated.then(|| {
            let created = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut rctx = ResponseContext::new(req.rid, created, info.model.clone());
            rctx.include_usage = info.include_usage;
            rctx.input_tokens_hint = Some(self.ctx.prompt_estimate);
            if let Some(echo) = echo.take() {
                rctx.echo = echo;
            }
            (client, rctx)
        });
        let mode = match &translate {
            Some((client, rctx)) => {
                match translate::new_stream_translator(plan.upstream, *client, rctx) {
                    Some(t) => StreamMode::Translated(t),
                    None => StreamMode::Native { strip_usage },
                }
            }
            None => StreamMode::Native { strip_usage },
        };
        let ctx = RelayCtx {
            worker: self.ctx.worker,
            backend,
            rid: req.rid,
            keep_alive: req.keep_alive,
            started: req.started,
            client: req.endpoint,
            upstream_api: plan.upstream,
            translate,
            headers: self.ctx.rate_headers,
            enforce: self.ctx.enforce(),
        };
        relay(&ctx, conn, ex, &upstreams, mode).await
    }

    /// observe: token counts (estimated when the upstream gave none), cost, metrics, audit
    /// record, log line.
    fn observe(
        &self,
        cfg: &Config,
        model: &Model,
        cells: &Arc<RouteCells>,
        plan: Plan,
        o: &Outcome,
    ) {
        let (req, backend) = (self.ctx.req, self.backend);
        let elapsed = req.started.elapsed();
        cells.count_status(o.status);
        cells.duration.observe(elapsed);
        if let Some(t) = o.ttft {
            cells.ttft.observe(t);
        }
        // Tokens: the upstream's usage, else our tokenizer's count of the prompt and of the
        // output text relayed (a request that never reached the upstream used none).
        let (usage, estimated) = match o.usage {
            Some(u) => (u, false),
            None if (200..300).contains(&o.status) || o.incomplete => (
                estimate_usage(
                    model,
                    &self.ctx.info.model,
                    &req.body,
                    o.output_text.as_deref(),
                ),
                true,
            ),
            None => (TrackedUsage::default(), false),
        };
        let tokens = TokenCounts {
            input: usage.input_tokens,
            cached_input: usage.cached_input_tokens,
            cache_write_input: usage.cache_creation_input_tokens,
            output: usage.output_tokens,
            reasoning: usage.reasoning_tokens,
            estimated,
        };
        cells.count_tokens(&tokens);
        if let (Some(ttft), true) = (o.ttft, usage.output_tokens > 1) {
            let per = elapsed.saturating_sub(ttft)
                / u32::try_from(usage.output_tokens - 1).unwrap_or(u32::MAX);
            cells.tpot.observe(per);
        }
        let cost = model.price.map(|p| {
            p.cost(
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.cache_creation_input_tokens,
                usage.output_tokens,
            )
        });
        if let Some(c) = cost {
            cells.count_cost(c);
        }
        // settle (the reservation is dropped when the request ends) and count per consumer
        self.ctx.reservation.record(Amounts {
            requests: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost: micro_usd(
                model,
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.cache_creation_input_tokens,
                usage.output_tokens,
            ),
        });
        if let Some(c) = self.ctx.consumer_cells {
            c.count_usage(usage.input_tokens, usage.output_tokens, cost);
        }
        tracing::debug!(
            request_id = req.rid,
            model = %self.ctx.info.model,
            backend = %backend.name,
            status = o.status,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            input_tokens = usage.input_tokens,
            output_tokens = usage.output_tokens,
            estimated,
            error = o.error,
            "request finished"
        );
        if cfg.audit.path.is_some() {
            self.ctx.worker.audit.record(Record {
                time: crate::audit::now_rfc3339(),
                request_id: req.rid.to_owned(),
                consumer: self.ctx.consumer.map(|c| Arc::from(c.name.as_str())),
                api: endpoint_name(req.endpoint),
                model: self.ctx.info.model.clone(),
                backend: Some(Arc::from(backend.name.as_str())),
                upstream_model: Some(self.upstream_model.to_owned()),
                upstream_api: Some(plan.upstream.as_str()),
                stream: self.ctx.info.stream,
                status: o.status,
                input_tokens: usage.input_tokens,
                cached_input_tokens: usage.cached_input_tokens,
                cache_write_input_tokens: usage.cache_creation_input_tokens,
                output_tokens: usage.output_tokens,
                reasoning_tokens: usage.reasoning_tokens,
                estimated,
                incomplete: o.incomplete,
                cost_usd: cost,
                ttft_ms: o.ttft.map(|t| t.as_secs_f64() * 1e3),
                duration_ms: elapsed.as_secs_f64() * 1e3,
                bytes_in: req.body.len() as u64,
                bytes_out: o.bytes_out,
                error: o.error,
            });
        }
    }
}

/// Cost in micro-USD from the model's price (0 when it has none).
fn micro_usd(model: &Model, input: u64, cached: u64, cache_write: u64, output: u64) -> u64 {
    model.price.map_or(0, |p| {
        let usd = p.cost(input, cached, cache_write, output);
        if usd.is_finite() && usd > 0.0 {
            (usd * 1e6).ceil() as u64
        } else {
            0
        }
    })
}

/// `1s`, `6m0s`, `250ms`: the duration style of OpenAI's `x-ratelimit-reset-*` headers.
fn reset_text(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the tightest limits.
fn rate_limit_headers(h: &RateHeaders) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let kinds = [
        (
            h.requests,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        ),
        (
            h.tokens,
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        ),
    ];
    for (room, [limit, remaining, reset]) in kinds {
        if let Some(r) = room {
            out.push((limit, r.limit.to_string().into_bytes()));
            out.push((remaining, r.remaining.to_string().into_bytes()));
            out.push((reset, reset_text(r.reset_ms).into_bytes()));
        }
    }
    out
}

/// The 429 for a refused admission, with `Retry-After` and the `x-ratelimit-*` headers of the
/// limit that refused. Budgets (cost, days, months) are `insufficient_quota`, which clients do
/// not retry; rate limits are `rate_limit_exceeded`.
fn rate_limited(r: &Rejection) -> (GatewayError, Vec<(&'static str, Vec<u8>)>) {
    let who = r
        .consumer
        .as_deref()
        .map_or_else(|| "this model".to_owned(), |c| format!("consumer `{c}`"));
    let budget = r.metric == Metric::Cost || matches!(r.window, Window::Day | Window::Month);
    let retry_secs = r.retry_after_ms.div_ceil(1000).max(1);
    let message = if r.limit == "fleet_unavailable" {
        "The quota service is unavailable and the gateway is configured to fail closed; retry shortly.".to_owned()
    } else if r.needed > r.value {
        format!(
            "Request too large for {who}: {} allows {} {} in total, and this request alone needs more (lower max_tokens).",
            r.limit,
            r.value,
            r.metric.as_str()
        )
    } else {
        format!(
            "Rate limit reached for {who} on {}: limit {}, remaining {}. Retry after {retry_secs}s.",
            r.limit, r.value, r.remaining
        )
    };
    let kind = if budget {
        ErrorKind::QuotaExceeded
    } else {
        ErrorKind::RateLimited
    };
    let err = GatewayError::new(kind, message);
    let mut headers = vec![("Retry-After", retry_secs.to_string().into_bytes())];
    let suffix = if r.metric == Metric::Requests {
        "requests"
    } else {
        "tokens"
    };
    if r.metric != Metric::Cost {
        headers.push((
            if suffix == "requests" {
                "x-ratelimit-limit-requests"
            } else {
                "x-ratelimit-limit-tokens"
            },
            r.value.to_string().into_bytes(),
        ));
        headers.push((
            if suffix == "requests" {
                "x-ratelimit-remaining-requests"
            } else {
                "x-ratelimit-remaining-tokens"
            },
            r.remaining.to_string().into_bytes(),
        ));
        headers.push((
            if suffix == "requests" {
                "x-ratelimit-reset-requests"
            } else {
                "x-ratelimit-reset-tokens"
            },
            reset_text(r.retry_after_ms.max(1)).into_bytes(),
        ));
    }
    (err, headers)
}

/// An error response with extra headers (401 `WWW-Authenticate`, 429 `Retry-After`, ...).
async fn respond(
    worker: &Worker,
    conn: &mut ClientConn,
    err: &GatewayError,
    rid: &str,
    keep_alive: bool,
    format: ErrorFormat,
    headers: &[(&str, Vec<u8>)],
) -> After {
    worker.metrics.unrouted.count_status(err.status());
    let mut h = Head::new(conn.version, err.status())
        .header("Content-Type", b"application/json")
        .header("X-Request-Id", rid.as_bytes());
    for (name, value) in headers {
        h = h.header(name, value);
    }
    let out = h.with_body(keep_alive, &err.body_in(format));
    let (res, _) = conn.write(out).await;
    if res.is_ok() && keep_alive {
        After::KeepAlive
    } else {
        After::Close
    }
}

/// Token counts from our tokenizer, for an upstream that reported none: the prompt's messages
/// (chat formula) and the output text seen in the stream or body.
fn encoding_of(model: &Model, asked: &str) -> Encoding {
    model
        .tokenizer
        .as_deref()
        .and_then(Encoding::from_name)
        .unwrap_or_else(|| Encoding::for_model(asked))
}

/// The stream format a client endpoint reads.
fn close_format(e: Endpoint) -> ClientFormat {
    match e {
        Endpoint::Completions => ClientFormat::Completions,
        Endpoint::Messages => ClientFormat::Messages,
        Endpoint::Responses => ClientFormat::Responses,
        Endpoint::ChatCompletions | Endpoint::Embeddings => ClientFormat::Chat,
    }
}

fn estimate_usage(model: &Model, asked: &str, body: &[u8], output: Option<&str>) -> TrackedUsage {
    let encoding = encoding_of(model, asked);
    let messages = prompt_messages(body);
    let input = tokenize::count_chat_prompt(
        encoding,
        messages.iter().map(|(r, t)| (r.as_str(), t.as_str())),
    );
    let output = output.map_or(0, |t| tokenize::count(encoding, t));
    TrackedUsage {
        input_tokens: input,
        output_tokens: output,
        ..TrackedUsage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(provider: &str, extra: &str) -> Backend {
        let url = if provider == "mock" {
            String::new()
        } else {
            "base_url = \"http://h/v1\"\n".to_owned()
        };
        let text = format!("[backends.b]\nprovider = \"{provider}\"\n{url}{extra}\n[models.m]\ntargets = [{{ backend = \"b\" }}]\n");
        crate::config::load_str(&text, "t.toml", None, &|_| None)
            .unwrap()
            .backends[0]
            .clone()
    }

    #[test]
    fn plans() {
        let openai = backend("openai", "");
        let anthropic = backend("anthropic", "");
        let native_responses = backend("openai", "responses_api = \"native\"");
        let p = |e, b: &Backend| plan(e, b).map(|p| (p.op, p.upstream, p.translated));
        assert_eq!(
            p(Endpoint::ChatCompletions, &openai),
            Some((Operation::ChatCompletions, Api::ChatCompletions, false))
        );
        assert_eq!(
            p(Endpoint::Messages, &openai),
            Some((Operation::ChatCompletions, Api::ChatCompletions, true))
        );
        assert_eq!(
            p(Endpoint::Responses, &openai),
            Some((Operation::ChatCompletions, Api::ChatCompletions, true))
        );
        assert_eq!(
            p(Endpoint::Responses, &native_responses),
            Some((Operation::Responses, Api::Responses, false))
        );
        assert_eq!(
            p(Endpoint::ChatCompletions, &anthropic),
            Some((Operation::Messages, Api::Messages, true))
        );
        assert_eq!(
            p(Endpoint::Responses, &anthropic),
            Some((Operation::Messages, Api::Messages, true))
        );
        assert_eq!(
            p(Endpoint::Messages, &anthropic),
            Some((Operation::Messages, Api::Messages, false))
        );
        assert_eq!(p(Endpoint::Embeddings, &anthropic), None);
        assert_eq!(
            p(Endpoint::Embeddings, &openai),
            Some((Operation::Embeddings, Api::ChatCompletions, false))
        );
    }
}

//! Chat Completions, Completions, Embeddings, models and pacing.

use super::*;
use base64::Engine as _;
use serde_json::json;

#[test]
fn chat_body_is_openai_shape_byte_for_byte() {
    let req = chat(
        json!({"model":"gpt-x","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":"hello  \"big\"\n world"}
        ]}),
        None,
    );
    // (4 + 2) + (4 + 3) + 3
    assert_eq!(req.prompt_tokens(), 16);
    assert_eq!(req.completion_tokens(), 3);
    let body = String::from_utf8(response_body(&req, "chatcmpl-1", 42)).unwrap();
    assert_eq!(
        body,
        concat!(
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":42,"model":"gpt-x","#,
            r#""choices":[{"index":0,"message":{"role":"assistant","content":"hello \"big\" world","#,
            r#""refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"#,
            r#""usage":{"prompt_tokens":16,"completion_tokens":3,"total_tokens":19,"#,
            r#""prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"#,
            r#""completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"#,
            r#""accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"#,
            r#""service_tier":"default","system_fingerprint":"fp_sluice_mock"}"#
        )
    );
}

#[test]
fn chat_stream_with_usage_is_openai_shape() {
    let req = chat(
        json!({"model":"m","stream":true,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":"a b"}]}),
        None,
    );
    let f = frames(&req);
    let kinds: Vec<FrameKind> = f.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            FrameKind::Role,
            FrameKind::Token,
            FrameKind::Token,
            FrameKind::Finish,
            FrameKind::Usage,
            FrameKind::Done
        ]
    );
    let head = r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m","service_tier":"default","system_fingerprint":"fp_sluice_mock","choices":["#;
    let expected = [
        format!(
            r#"{head}{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ),
        format!(
            r#"{head}{{"index":0,"delta":{{"content":"a "}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ),
        format!(
            r#"{head}{{"index":0,"delta":{{"content":"b"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ),
        format!(
            r#"{head}{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
        ),
        format!(
            r#"{head}],"usage":{{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}}}"#
        ),
        "data: [DONE]".to_owned(),
    ];
    for ((_, got), want) in f.iter().zip(&expected) {
        assert_eq!(got, &format!("{want}\n\n"));
    }
    for (_, frame) in &f[..f.len() - 1] {
        data_json(frame);
    }
}

#[test]
fn chat_stream_without_usage_has_no_usage_key() {
    let req = chat(
        json!({"model":"m","stream":true,"messages":[{"role":"user","content":"x y z"}]}),
        None,
    );
    let f = frames(&req);
    assert_eq!(f.len(), 1 + 3 + 1 + 1);
    for (kind, frame) in &f {
        assert!(!frame.contains("usage"), "{frame}");
        if *kind != FrameKind::Done {
            let v = data_json(frame);
            assert_eq!(v["object"], "chat.completion.chunk");
            assert_eq!(v["choices"].as_array().unwrap().len(), 1);
        }
    }
    // include_usage: false is the same as absent.
    let req = chat(
        json!({"model":"m","stream":true,"stream_options":{"include_usage":false},
               "messages":[{"role":"user","content":"x y z"}]}),
        None,
    );
    assert!(frames(&req).iter().all(|(_, f)| !f.contains("usage")));
}

#[test]
fn stream_deltas_concatenate_to_the_non_streaming_content() {
    for (content, tokens) in [
        (json!("one two  three\tfour"), None),
        (json!("one two three"), Some(7)),
        (json!(""), None),
        (json!("   "), Some(3)),
        (
            json!([{"type":"text","text":"look at"},{"type":"image_url","image_url":{"url":"x"}},
                   {"type":"text","text":"this \"pic\" ü 🦀"}]),
            None,
        ),
    ] {
        let body = json!({"model":"m","stream":true,"messages":[
            {"role":"user","content":"earlier message"},
            {"role":"assistant","content":"reply"},
            {"role":"user","content":content}]});
        let req = chat(body, tokens);
        let whole: Value = serde_json::from_slice(&response_body(&req, "i", 1)).unwrap();
        let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(content, req.reply_text());
        let mut streamed = String::new();
        for (kind, frame) in frames(&req) {
            if kind == FrameKind::Token {
                streamed.push_str(
                    data_json(&frame)["choices"][0]["delta"]["content"]
                        .as_str()
                        .unwrap(),
                );
            }
        }
        assert_eq!(streamed, content);
        assert_eq!(
            content.split(' ').count() as u64,
            whole["usage"]["completion_tokens"].as_u64().unwrap()
        );
    }
}

#[test]
fn echo_uses_last_user_message_and_filler() {
    let req = chat(
        json!({"model":"m","messages":[{"role":"user","content":"first"},
               {"role":"user","content":"second one"},{"role":"assistant","content":"x"}]}),
        None,
    );
    assert_eq!(req.reply_text(), "second one");
    let req = chat(
        json!({"model":"m","messages":[{"role":"system","content":"only system"}]}),
        None,
    );
    assert_eq!(req.reply_text(), words::FILLER.join(" "));
    assert_eq!(req.prompt_tokens(), 4 + 2 + 3);
}

#[test]
fn fixed_token_count_cycles_through_the_words() {
    let req = chat(
        json!({"model":"m","messages":[{"role":"user","content":"a b c"}]}),
        Some(7),
    );
    assert_eq!(req.reply_text(), "a b c a b c a");
    assert_eq!(req.completion_tokens(), 7);
    assert_eq!(req.finish_reason(), Some(FinishReason::Stop));
    let req = chat(
        json!({"model":"m","messages":[{"role":"user","content":"a b c"}]}),
        Some(0),
    );
    assert_eq!(req.reply_text(), "");
    assert_eq!(
        frames(&req)
            .iter()
            .filter(|(k, _)| *k == FrameKind::Token)
            .count(),
        0
    );
}

#[test]
fn max_tokens_truncates_with_length() {
    let msgs = json!([{"role":"user","content":"one two three four five six seven"}]);
    let req = chat(json!({"model":"m","max_tokens":5,"messages":msgs}), None);
    assert_eq!(req.reply_text(), "one two three four five");
    assert_eq!(req.finish_reason(), Some(FinishReason::Length));
    let v: Value = serde_json::from_slice(&response_body(&req, "i", 1)).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    // max_completion_tokens wins over max_tokens.
    let req = chat(
        json!({"model":"m","max_tokens":2,"max_completion_tokens":10,"messages":msgs}),
        Some(30),
    );
    assert_eq!(req.completion_tokens(), 10);
    assert_eq!(req.finish_reason(), Some(FinishReason::Length));
    // Exactly at the cap is a normal stop.
    let req = chat(json!({"model":"m","max_tokens":7,"messages":msgs}), None);
    assert_eq!(req.finish_reason(), Some(FinishReason::Stop));
    let f = frames(&chat(
        json!({"model":"m","stream":true,"max_tokens":2,"messages":msgs}),
        None,
    ));
    assert!(f[f.len() - 2].1.contains(r#""finish_reason":"length""#));
}

#[test]
fn several_choices() {
    let req = chat(
        json!({"model":"m","n":3,"stream":true,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":"p q"}]}),
        None,
    );
    assert_eq!(req.completion_tokens(), 6);
    let v: Value = serde_json::from_slice(&response_body(&req, "i", 1)).unwrap();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], "p q");
    }
    let f = frames(&req);
    let order: Vec<(FrameKind, u64, String)> = f
        .iter()
        .filter(|(k, _)| matches!(k, FrameKind::Role | FrameKind::Token | FrameKind::Finish))
        .map(|(k, frame)| {
            let v = data_json(frame);
            let c = &v["choices"][0];
            (
                *k,
                c["index"].as_u64().unwrap(),
                c["delta"]["content"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(FrameKind, u64, String)> = [
        (FrameKind::Role, 0, ""),
        (FrameKind::Role, 1, ""),
        (FrameKind::Role, 2, ""),
        (FrameKind::Token, 0, "p "),
        (FrameKind::Token, 1, "p "),
        (FrameKind::Token, 2, "p "),
        (FrameKind::Token, 0, "q"),
        (FrameKind::Token, 1, "q"),
        (FrameKind::Token, 2, "q"),
        (FrameKind::Finish, 0, "-"),
        (FrameKind::Finish, 1, "-"),
        (FrameKind::Finish, 2, "-"),
    ]
    .into_iter()
    .map(|(k, i, s)| (k, i, s.to_owned()))
    .collect();
    assert_eq!(order, expected);
    let usage = data_json(&f[f.len() - 2].1);
    assert_eq!(usage["usage"]["completion_tokens"], 6);
    let mut s = SynthStream::new(&req, "i", 1);
    let mut out = Vec::new();
    while s.next_frame(&mut out) {}
    assert_eq!(s.token_frames_sent(), 6);
    assert!(out.ends_with(b"data: [DONE]\n\n"));
    // Finished: nothing more.
    let len = out.len();
    assert!(!s.next_frame(&mut out));
    assert_eq!(out.len(), len);
}

#[test]
fn completions_shapes() {
    let req = SynthRequest::parse(
        Endpoint::Completions,
        br#"{"model":"inst","prompt":"say this please"}"#,
        None,
    )
    .unwrap();
    assert_eq!(req.prompt_tokens(), 3);
    let body = String::from_utf8(response_body(&req, "cmpl-1", 5)).unwrap();
    assert_eq!(
        body,
        concat!(
            r#"{"id":"cmpl-1","object":"text_completion","created":5,"model":"inst","#,
            r#""choices":[{"text":"say this please","index":0,"logprobs":null,"finish_reason":"stop"}],"#,
            r#""usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}"#
        )
    );
    let req = SynthRequest::parse(
        Endpoint::Completions,
        br#"{"model":"inst","prompt":"a b","stream":true,"stream_options":{"include_usage":true}}"#,
        None,
    )
    .unwrap();
    let mut s = SynthStream::new(&req, "cmpl-1", 5);
    let mut out = Vec::new();
    while s.next_frame(&mut out) {}
    let text = String::from_utf8(out).unwrap();
    let h = r#"data: {"id":"cmpl-1","object":"text_completion","created":5,"choices":["#;
    let t = r#"],"model":"inst","usage":null}"#;
    assert_eq!(
        text,
        format!(
            "{h}{{\"text\":\"a \",\"index\":0,\"logprobs\":null,\"finish_reason\":null}}{t}\n\n\
             {h}{{\"text\":\"b\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}}{t}\n\n\
             {h}{{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}}{t}\n\n\
             data: {{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"inst\",\
             \"usage\":{{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}},\"choices\":[]}}\n\n\
             data: [DONE]\n\n"
        )
    );
    // Without include_usage: no usage key at all.
    let req = SynthRequest::parse(
        Endpoint::Completions,
        br#"{"model":"inst","prompt":["x y","a b c"],"stream":true,"max_tokens":0}"#,
        None,
    )
    .unwrap();
    assert_eq!(req.prompt_tokens(), 5);
    assert_eq!(req.finish_reason(), Some(FinishReason::Length));
    let f = frames(&req);
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|(_, f)| !f.contains("usage")));
    assert!(f[0]
        .1
        .contains(r#"{"text":"","index":0,"logprobs":null,"finish_reason":"length"}"#));
    // Token prompts.
    for (prompt, tokens) in [("[1,2,3]", 3), ("[[1,2],[3]]", 3)] {
        let body = format!(r#"{{"model":"m","prompt":{prompt}}}"#);
        let req = SynthRequest::parse(Endpoint::Completions, body.as_bytes(), None).unwrap();
        assert_eq!(req.prompt_tokens(), tokens);
        assert_eq!(req.reply_text(), words::FILLER.join(" "));
    }
}

#[test]
fn embeddings_float_and_base64() {
    let req = SynthRequest::parse(
        Endpoint::Embeddings,
        br#"{"model":"e","input":["hello world","hello world","other"],"dimensions":8}"#,
        None,
    )
    .unwrap();
    assert_eq!(req.prompt_tokens(), 5);
    assert!(!req.stream);
    let v: Value = serde_json::from_slice(&response_body(&req, "x", 1)).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "e");
    assert_eq!(v["usage"], json!({"prompt_tokens":5,"total_tokens":5}));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vecs: Vec<Vec<f64>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    for v in &vecs {
        assert_eq!(v.len(), 8);
        let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    assert_eq!(vecs[0], vecs[1]);
    assert_ne!(vecs[0], vecs[2]);
    let key_order = String::from_utf8(response_body(&req, "x", 1)).unwrap();
    assert!(key_order
        .starts_with(r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":["#));

    let req = SynthRequest::parse(
        Endpoint::Embeddings,
        br#"{"model":"e","input":["hello world","other"],"dimensions":8,"encoding_format":"base64"}"#,
        None,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&response_body(&req, "x", 1)).unwrap();
    for (i, want) in [&vecs[0], &vecs[2]].into_iter().enumerate() {
        let b64 = v["data"][i]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let floats: Vec<f64> = bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        // The float encoding is the shortest text that round-trips the same f32.
        let want: Vec<f64> = want.iter().map(|x| f64::from(*x as f32)).collect();
        assert_eq!(floats, want);
    }
    // Default dimensions; token inputs.
    for (input, count, tokens) in [
        (r#""one""#, 1, 1),
        ("[1,2,3]", 1, 3),
        ("[[1,2],[3]]", 2, 3),
        (r#"["a b c", "d"]"#, 2, 4),
    ] {
        let body = format!(r#"{{"model":"e","input":{input}}}"#);
        let req = SynthRequest::parse(Endpoint::Embeddings, body.as_bytes(), None).unwrap();
        assert_eq!(req.embedding_inputs(), count, "{input}");
        assert_eq!(req.prompt_tokens(), tokens, "{input}");
        let v: Value = serde_json::from_slice(&response_body(&req, "x", 1)).unwrap();
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
    }
}

#[test]
fn omit_usage_removes_usage_everywhere() {
    let mut req = chat(
        json!({"model":"m","stream":true,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":"a"}]}),
        None,
    );
    req.omit_usage = true;
    assert!(!String::from_utf8(response_body(&req, "i", 1))
        .unwrap()
        .contains("usage"));
    let f = frames(&req);
    assert!(f
        .iter()
        .all(|(k, f)| *k != FrameKind::Usage && !f.contains("usage")));
    assert_eq!(f.last().unwrap().1, "data: [DONE]\n\n");
}

#[test]
fn model_can_be_overwritten_and_is_escaped() {
    let mut req = chat(
        json!({"model":"m","messages":[{"role":"user","content":"a"}]}),
        None,
    );
    req.model = "we\"ird".to_owned();
    let v: Value = serde_json::from_slice(&response_body(&req, "i", 1)).unwrap();
    assert_eq!(v["model"], "we\"ird");
}

#[test]
fn validation_errors_name_the_param() {
    use Endpoint::*;
    let cases: &[(Endpoint, &str, Option<&str>)] = &[
        (ChatCompletions, "[]", None),
        (ChatCompletions, "not json", None),
        (
            ChatCompletions,
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            Some("model"),
        ),
        (ChatCompletions, r#"{"model":"m"}"#, Some("messages")),
        (
            ChatCompletions,
            r#"{"model":"m","messages":null}"#,
            Some("messages"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","messages":"hi"}"#,
            Some("messages"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","messages":[]}"#,
            Some("messages"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","messages":[1]}"#,
            Some("messages"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","messages":[{"content":"x"}]}"#,
            Some("messages"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
            Some("messages"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
            Some("messages"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}"#,
            Some("messages"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","n":0,"messages":[{"role":"user","content":"x"}]}"#,
            Some("n"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","n":9,"messages":[{"role":"user","content":"x"}]}"#,
            Some("n"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","n":"2","messages":[{"role":"user","content":"x"}]}"#,
            Some("n"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
            Some("max_tokens"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","max_completion_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
            Some("max_completion_tokens"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#,
            Some("max_tokens"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","max_tokens":"5","messages":[{"role":"user","content":"x"}]}"#,
            Some("max_tokens"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}"#,
            Some("stream"),
        ),
        (
            ChatCompletions,
            r#"{"model":"m","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}"#,
            Some("stream_options"),
        ),
        (Completions, r#"{"model":"m"}"#, Some("prompt")),
        (Completions, r#"{"model":"m","prompt":[]}"#, Some("prompt")),
        (
            Completions,
            r#"{"model":"m","prompt":{"a":1}}"#,
            Some("prompt"),
        ),
        (
            Completions,
            r#"{"model":"m","prompt":["a",1]}"#,
            Some("prompt"),
        ),
        (Embeddings, r#"{"model":"m"}"#, Some("input")),
        (Embeddings, r#"{"model":"m","input":""}"#, Some("input")),
        (Embeddings, r#"{"model":"m","input":[]}"#, Some("input")),
        (
            Embeddings,
            r#"{"model":"m","input":["a",""]}"#,
            Some("input"),
        ),
        (Embeddings, r#"{"model":"m","input":[[]]}"#, Some("input")),
        (Embeddings, r#"{"model":"m","input":5}"#, Some("input")),
        (
            Embeddings,
            r#"{"model":"m","input":"a","dimensions":0}"#,
            Some("dimensions"),
        ),
        (
            Embeddings,
            r#"{"model":"m","input":"a","dimensions":4097}"#,
            Some("dimensions"),
        ),
        (
            Embeddings,
            r#"{"model":"m","input":"a","dimensions":"8"}"#,
            Some("dimensions"),
        ),
        (
            Embeddings,
            r#"{"model":"m","input":"a","encoding_format":"hex"}"#,
            Some("encoding_format"),
        ),
        (
            Embeddings,
            r#"{"model":"m","input":"a","encoding_format":1}"#,
            Some("encoding_format"),
        ),
    ];
    for (endpoint, body, param) in cases {
        let (message, got) = bad(*endpoint, body);
        assert_eq!(got, *param, "{body}: {message}");
        assert!(!message.is_empty());
        // The error renders as an OpenAI body clients can parse.
        let e = SynthError::BadRequest {
            message,
            param: got,
        };
        let v: Value = serde_json::from_slice(&crate::error::openai_error_body(
            &e.to_string(),
            crate::error::INVALID_REQUEST,
            e.param(),
            None,
        ))
        .unwrap();
        assert_eq!(v["error"]["param"], json!(param));
    }
}

#[test]
fn nulls_are_defaults() {
    let req = chat(
        json!({"model":"m","n":null,"max_tokens":null,"stream":null,"stream_options":null,
               "messages":[{"role":"assistant","content":null,"tool_calls":[]},
                           {"role":"user","content":"hi"}]}),
        None,
    );
    assert_eq!(req.choices(), 1);
    assert!(!req.stream);
    let req = SynthRequest::parse(
        Endpoint::Embeddings,
        br#"{"model":"m","input":"a","dimensions":null,"encoding_format":null}"#,
        None,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&response_body(&req, "x", 1)).unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
}

#[test]
fn model_objects() {
    assert_eq!(
        String::from_utf8(models_body(["a", "b\"c"], 7, "me")).unwrap(),
        r#"{"object":"list","data":[{"id":"a","object":"model","created":7,"owned_by":"me"},{"id":"b\"c","object":"model","created":7,"owned_by":"me"}]}"#
    );
    assert_eq!(
        String::from_utf8(models_body([], 7, "me")).unwrap(),
        r#"{"object":"list","data":[]}"#
    );
    assert_eq!(
        String::from_utf8(model_body("x", 1, "o")).unwrap(),
        r#"{"id":"x","object":"model","created":1,"owned_by":"o"}"#
    );
}

#[test]
fn embeddings_stream_is_one_body_frame() {
    let req =
        SynthRequest::parse(Endpoint::Embeddings, br#"{"model":"m","input":"a"}"#, None).unwrap();
    let f = frames(&req);
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].0, FrameKind::Body);
    assert_eq!(data_json(&f[0].1)["object"], "list");
}

#[test]
fn pacing() {
    let p = Pacing::from_rate(Duration::from_millis(100), 50.0);
    assert_eq!(p.gap, Duration::from_millis(20));
    assert_eq!(
        p.before(FrameKind::Role, true, 0),
        Duration::from_millis(100)
    );
    assert_eq!(p.before(FrameKind::Token, false, 1), Duration::ZERO);
    assert_eq!(
        p.before(FrameKind::Token, false, 2),
        Duration::from_millis(20)
    );
    assert_eq!(p.before(FrameKind::Done, false, 5), Duration::ZERO);
    assert_eq!(p.whole(5), Duration::from_millis(180));
    assert_eq!(p.whole(0), Duration::from_millis(100));
    assert_eq!(Pacing::from_rate(Duration::ZERO, 0.0), Pacing::default());
    assert_eq!(
        Pacing::from_rate(Duration::ZERO, 1e-300).gap,
        Duration::ZERO
    );
    // Absurd lengths saturate instead of overflowing.
    assert!(Pacing::from_rate(Duration::ZERO, 1e-6).whole(u64::MAX) > Duration::from_secs(1 << 50));
}

#[test]
fn in_stream_error_ends_without_done() {
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions] {
        let body = if endpoint == Endpoint::Completions {
            json!({"model":"m","stream":true,"prompt":"a b c"})
        } else {
            json!({"model":"m","stream":true,"messages":[{"role":"user","content":"a b c"}]})
        };
        let req = parse(endpoint, &body, None);
        let mut s = SynthStream::new(&req, "x", 1);
        let mut out = Vec::new();
        while s.token_frames_sent() < 2 {
            s.next_kind(&mut out).unwrap();
        }
        out.clear();
        assert_eq!(s.fail(&mut out), Some(FrameKind::Error));
        let text = String::from_utf8(out.clone()).unwrap();
        let v = data_json(&text);
        assert_eq!(v["error"]["type"], "server_error");
        assert!(v["error"]["message"].is_string());
        assert!(s.is_finished());
        out.clear();
        assert_eq!(s.next_kind(&mut out), None);
        assert_eq!(s.fail(&mut out), None);
        assert!(out.is_empty());
    }
}

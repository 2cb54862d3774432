//! Tool calls: arguments from schemas, the decision, and the chat shapes.

use super::*;
use crate::synth::tools::arguments_for;
use serde_json::json;

#[test]
fn arguments_follow_the_schema() {
    let schema = r##"{"type":"object","properties":{
        "zeta":{"type":"string"},
        "count":{"type":"integer"},
        "ratio":{"type":"number"},
        "ok":{"type":"boolean"},
        "mode":{"type":"string","enum":["fast","slow"]},
        "fixed":{"const":{"a":1}},
        "tags":{"type":"array","items":{"type":"string"}},
        "maybe":{"type":["null","integer"]},
        "opt":{"anyOf":[{"type":"null"},{"type":"boolean"}]},
        "free":{"type":"object"},
        "loose":{"type":"object","properties":{"x":{"type":"string"}}},
        "nested":{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"},
            "deep":{"type":"object","properties":{"c":{"type":"string"}},"required":["c"]}},
            "required":["deep","b"]},
        "ref":{"$ref":"#/$defs/Unit"},
        "untyped":{}
    },"$defs":{"Unit":{"type":"string","enum":["celsius"]}}}"##;
    let args = arguments_for(schema, "the echo");
    // Schema order, compact.
    assert_eq!(
        args,
        concat!(
            r#"{"zeta":"the echo","count":42,"ratio":42,"ok":true,"mode":"fast","fixed":{"a":1},"#,
            r#""tags":[],"maybe":42,"opt":true,"free":{},"loose":{},"#,
            r#""nested":{"deep":{},"b":42},"ref":"celsius","untyped":"the echo"}"#
        )
    );
    serde_json::from_str::<Value>(&args).unwrap();
    for (schema, want) in [
        ("null", "{}"),
        ("{}", "{}"),
        (r#"{"type":"object"}"#, "{}"),
        (r#"{"type":"object","properties":[]}"#, "{}"),
        (r#"{"properties":{"q":{"type":"string"}}}"#, r#"{"q":"e"}"#),
        (
            r##"{"$ref":"#/definitions/A","definitions":{"A":{"type":"object","properties":{"n":{"type":"number"}}}}}"##,
            r#"{"n":42}"#,
        ),
        // A cycle ends.
        (
            r##"{"type":"object","properties":{"r":{"$ref":"#/$defs/R"}},"$defs":{"R":{"$ref":"#/$defs/R"}}}"##,
            r#"{"r":"e"}"#,
        ),
        (
            r#"{"properties":{"s":{"type":"string"}},"x":"\u00fc"}"#,
            r#"{"s":"e"}"#,
        ),
    ] {
        assert_eq!(arguments_for(schema, "e"), want, "{schema}");
    }
    // The echo is escaped.
    let args = arguments_for(r#"{"properties":{"s":{"type":"string"}}}"#, "say \"hi\"\n");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"s":"say \"hi\"\n"})
    );
}

fn tool(name: &str) -> Value {
    json!({"type":"function","function":{"name":name,"description":"d",
           "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}})
}

fn chat_with_tools(extra: Value, prompt: &str) -> SynthRequest {
    let mut body = json!({"model":"m","tools":[tool("get_weather"), tool("get_time")],
                          "messages":[{"role":"user","content":prompt}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    chat(body, None)
}

#[test]
fn when_a_reply_is_a_tool_call() {
    let name = |req: &SynthRequest| req.tool_call().map(|(n, _)| n.to_owned());
    let auto = json!({});
    assert_eq!(name(&chat_with_tools(auto.clone(), "hello there")), None);
    assert_eq!(
        name(&chat_with_tools(auto.clone(), "please CALL get_time.")),
        Some("get_time".to_owned())
    );
    assert_eq!(
        name(&chat_with_tools(
            auto.clone(),
            "call get_date or call get_weather"
        )),
        Some("get_weather".to_owned())
    );
    // `call` must come right before the name.
    assert_eq!(name(&chat_with_tools(auto.clone(), "get_time call")), None);
    assert_eq!(name(&chat_with_tools(auto, "recall get_time")), None);
    let required = json!({"tool_choice":"required"});
    assert_eq!(
        name(&chat_with_tools(required.clone(), "hello")),
        Some("get_weather".to_owned())
    );
    assert_eq!(
        name(&chat_with_tools(required, "call get_time")),
        Some("get_time".to_owned())
    );
    let named = json!({"tool_choice":{"type":"function","function":{"name":"get_time"}}});
    assert_eq!(
        name(&chat_with_tools(named, "call get_weather")),
        Some("get_time".to_owned())
    );
    let none = json!({"tool_choice":"none"});
    assert_eq!(name(&chat_with_tools(none, "call get_weather")), None);
    // No tools, no calls.
    let req = chat(
        json!({"model":"m","messages":[{"role":"user","content":"call get_weather"}]}),
        None,
    );
    assert!(req.tool_call().is_none());
    // Custom tools are never called.
    let req = chat(
        json!({"model":"m","tools":[{"type":"custom","custom":{"name":"x"}}],
               "messages":[{"role":"user","content":"call x"}]}),
        None,
    );
    assert!(req.tool_call().is_none());
}

#[test]
fn chat_tool_call_body_and_stream() {
    let req = chat(
        json!({"model":"m","n":2,"stream":true,"stream_options":{"include_usage":true},
               "tools":[tool("get_weather")],"tool_choice":"required",
               "messages":[{"role":"user","content":"weather in Paris ü"}]}),
        Some(50),
    );
    let (_, args) = req.tool_call().unwrap();
    assert_eq!(args, r#"{"city":"weather in Paris ü"}"#);
    let fragments = req.reply_tokens();
    assert_eq!(fragments, args.len().div_ceil(8) as u64);
    assert_eq!(req.completion_tokens(), 2 * fragments);
    let v: Value = serde_json::from_slice(&response_body(&req, "chatcmpl-1", 1)).unwrap();
    let mut ids = Vec::new();
    for c in 0..2 {
        let choice = &v["choices"][c];
        assert_eq!(choice["finish_reason"], "tool_calls");
        let message = &choice["message"];
        assert_eq!(message["content"], Value::Null);
        let call = &message["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["function"]["arguments"], args);
        let id = call["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("call_") && id.len() == 29, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    let f = frames(&req);
    let first = &f[0].1;
    assert_eq!(f[0].0, FrameKind::Role);
    assert!(first.contains(&format!(
        r#""choices":[{{"index":0,"delta":{{"role":"assistant","content":null,"tool_calls":[{{"index":0,"id":"{}","type":"function","function":{{"name":"get_weather","arguments":""}}}}],"refusal":null}},"logprobs":null,"finish_reason":null}}]"#,
        ids[0]
    )), "{first}");
    let mut streamed = [String::new(), String::new()];
    for (kind, frame) in &f {
        if *kind == FrameKind::Token {
            let v = data_json(frame);
            let c = &v["choices"][0];
            let call = &c["delta"]["tool_calls"][0];
            assert_eq!(call["index"], 0);
            assert!(call.get("id").is_none());
            let fragment = call["function"]["arguments"].as_str().unwrap();
            streamed[c["index"].as_u64().unwrap() as usize].push_str(fragment);
        }
    }
    assert_eq!(streamed, [args, args]);
    let finishes: Vec<Value> = f
        .iter()
        .filter(|(k, _)| *k == FrameKind::Finish)
        .map(|(_, frame)| data_json(frame)["choices"][0]["finish_reason"].clone())
        .collect();
    assert_eq!(finishes, [json!("tool_calls"), json!("tool_calls")]);
    let usage = data_json(&f[f.len() - 2].1);
    assert_eq!(usage["usage"]["completion_tokens"], 2 * fragments);
}

#[test]
fn chat_tool_results_and_truncated_calls() {
    let history = json!([
        {"role":"system","content":"s"},
        {"role":"user","content":"call get_weather for Paris"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
            "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
        {"role":"tool","tool_call_id":"call_1","content":"sunny"},
        {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"and warm"}]}
    ]);
    let req = chat(
        json!({"model":"m","tools":[tool("get_weather")],"messages":history}),
        None,
    );
    assert!(req.tool_call().is_none());
    assert_eq!(req.reply_text(), "sunny and warm");
    assert_eq!(req.finish_reason(), Some(FinishReason::Stop));
    // max_tokens cuts a call like any reply.
    let req = chat(
        json!({"model":"m","max_tokens":1,"tools":[tool("get_weather")],"tool_choice":"required",
               "messages":[{"role":"user","content":"x"}]}),
        None,
    );
    assert_eq!(req.finish_reason(), Some(FinishReason::Length));
    assert_eq!(req.tool_call(), Some(("get_weather", r#"{"city":"#)));
    let v: Value = serde_json::from_slice(&response_body(&req, "c", 1)).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"#
    );
}

#[test]
fn chat_tool_validation() {
    use Endpoint::ChatCompletions as C;
    let msgs = r#""messages":[{"role":"user","content":"x"}]"#;
    for (extra, param) in [
        (r#""tools":{}"#, "tools"),
        (r#""tools":[{"type":"function"}]"#, "tools"),
        (r#""tools":[{"type":"function","function":{}}]"#, "tools"),
        (
            r#""tools":[{"type":"function","function":{"name":""}}]"#,
            "tools",
        ),
        (r#""tool_choice":"required""#, "tool_choice"),
        (r#""tool_choice":"sometimes""#, "tool_choice"),
        (
            r#""tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}"#,
            "tool_choice",
        ),
        (
            r#""tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function"}"#,
            "tool_choice",
        ),
    ] {
        let body = format!(r#"{{"model":"m",{extra},{msgs}}}"#);
        let (message, got) = bad(C, &body);
        assert_eq!(got, Some(param), "{body}: {message}");
    }
    // tool_choice none/auto without tools is fine, as are nulls.
    for extra in [
        r#""tool_choice":"none""#,
        r#""tools":null,"tool_choice":null"#,
    ] {
        let body = format!(r#"{{"model":"m",{extra},{msgs}}}"#);
        SynthRequest::parse(C, body.as_bytes(), None).unwrap();
    }
}

#[test]
fn fragments_split_on_character_boundaries() {
    let req = chat(
        json!({"model":"m","stream":true,"tools":[tool("t")],"tool_choice":"required",
               "messages":[{"role":"user","content":"ééééé 🦀🦀🦀 ü"}]}),
        None,
    );
    let (_, args) = req.tool_call().unwrap();
    let mut joined = String::new();
    for (kind, frame) in frames(&req) {
        if kind == FrameKind::Token {
            let v = data_json(&frame);
            let fragment = v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(fragment.len() <= 8 + 3, "{fragment}");
            joined.push_str(&fragment);
        }
    }
    assert_eq!(joined, args);
}

#[test]
fn ids_derive_from_the_response_id() {
    let req = chat_with_tools(json!({"tool_choice":"required"}), "x");
    let id_of = |rid: &str| {
        let v: Value = serde_json::from_slice(&response_body(&req, rid, 1)).unwrap();
        v["choices"][0]["message"]["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(id_of("chatcmpl-a"), id_of("chatcmpl-a"));
    assert_ne!(id_of("chatcmpl-a"), id_of("chatcmpl-b"));
    assert!(id_of("x")[5..].chars().all(|c| c.is_ascii_alphanumeric()));
}

#[test]
fn pacing_jitter_stays_within_bounds_and_is_deterministic() {
    let p = Pacing::from_rate(Duration::from_millis(7), 10.0).with_jitter(20);
    assert_eq!(p.jitter_pct, 20);
    assert_eq!(p.gap, Duration::from_millis(100));
    let at = |draw| p.before_jittered(FrameKind::Token, false, 2, draw);
    assert_eq!(at(0.0), Duration::from_millis(80));
    assert_eq!(at(0.5), Duration::from_millis(100));
    assert_eq!(at(0.75), Duration::from_millis(110));
    assert!(at(0.999_999) < Duration::from_millis(120));
    // Out-of-range draws are clamped.
    assert_eq!(at(-3.0), Duration::from_millis(80));
    assert_eq!(at(7.0), Duration::from_millis(120));
    assert_eq!(at(f64::NAN), Duration::from_millis(100));
    // Only gaps between tokens are jittered.
    assert_eq!(
        p.before_jittered(FrameKind::Role, true, 0, 0.0),
        Duration::from_millis(7)
    );
    assert_eq!(
        p.before_jittered(FrameKind::Token, false, 1, 0.0),
        Duration::ZERO
    );
    assert_eq!(
        p.before_jittered(FrameKind::Finish, false, 9, 0.0),
        Duration::ZERO
    );
    // Without jitter, draws change nothing; before() is the nominal gap.
    let flat = p.with_jitter(0);
    assert_eq!(flat.before_jittered(FrameKind::Token, false, 2, 0.0), p.gap);
    assert_eq!(p.before(FrameKind::Token, false, 2), p.gap);
    assert_eq!(p.with_jitter(250).jitter_pct, 100);
    assert_eq!(
        p.with_jitter(100)
            .before_jittered(FrameKind::Token, false, 2, 0.0),
        Duration::ZERO
    );
    // Absurd gaps never panic.
    let huge = Pacing {
        ttft: Duration::ZERO,
        gap: Duration::MAX,
        jitter_pct: 50,
    };
    assert!(huge.before_jittered(FrameKind::Token, false, 2, 1.0) > Duration::ZERO);
}

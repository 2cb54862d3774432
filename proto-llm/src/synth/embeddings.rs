//! Embeddings: one deterministic unit vector per input, a hash of the input.

use base64::Engine as _;
use serde_json::Value;

use super::hash::{splitmix64, text_seed, token_seed};
use super::json::{write_f32, write_json_str, write_u64};
use super::words::word_count;
use super::{
    invalid_type, missing, EncodingFormat, SynthError, SynthRequest, DEFAULT_DIMENSIONS,
    MAX_DIMENSIONS, MAX_EMBEDDING_INPUTS,
};

#[derive(Debug, Clone)]
pub(super) struct EmbeddingsReply {
    /// One hash per input; the vector is generated from it.
    seeds: Vec<u64>,
    dimensions: u32,
    encoding: EncodingFormat,
}

impl EmbeddingsReply {
    /// Reads `input`, `dimensions` and `encoding_format`; returns the reply and the prompt
    /// token count.
    pub(super) fn parse(
        input: Option<Value>,
        dimensions: Option<Value>,
        encoding: Option<Value>,
    ) -> Result<(Self, u64), SynthError> {
        let (seeds, prompt_tokens) = embedding_inputs(input)?;
        let reply = Self {
            seeds,
            dimensions: dimensions_of(dimensions)?,
            encoding: encoding_of(encoding)?,
        };
        Ok((reply, prompt_tokens))
    }

    pub(super) fn inputs(&self) -> usize {
        self.seeds.len()
    }
}

pub(super) fn is_token(v: &Value) -> bool {
    v.as_u64().is_some()
}

/// One seed and the token count per input.
fn embedding_inputs(input: Option<Value>) -> Result<(Vec<u64>, u64), SynthError> {
    const P: &str = "input";
    let empty = || SynthError::bad("Invalid value for 'input': inputs must not be empty.", P);
    let invalid = || {
        SynthError::bad(
            "Invalid value for 'input': expected a string, an array of strings, an array of \
             token ids or an array of token id arrays.",
            P,
        )
    };
    let items = match input {
        None => return Err(missing(P)),
        Some(Value::String(s)) => {
            if s.is_empty() {
                return Err(empty());
            }
            return Ok((vec![text_seed(&s)], word_count(&s).max(1)));
        }
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid()),
    };
    if items.is_empty() {
        return Err(empty());
    }
    if items.len() > MAX_EMBEDDING_INPUTS {
        return Err(SynthError::bad(
            format!(
                "Invalid 'input': array too long. Expected an array with maximum length \
                 {MAX_EMBEDDING_INPUTS}, but got an array with length {} instead.",
                items.len()
            ),
            P,
        ));
    }
    if items.iter().all(is_token) {
        // One input given as token ids.
        let ids: Vec<u64> = items.iter().filter_map(Value::as_u64).collect();
        return Ok((vec![token_seed(&ids)], ids.len() as u64));
    }
    let mut seeds = Vec::with_capacity(items.len());
    let mut tokens = 0u64;
    for item in &items {
        match item {
            Value::String(s) if s.is_empty() => return Err(empty()),
            Value::String(s) => {
                seeds.push(text_seed(s));
                tokens = tokens.saturating_add(word_count(s).max(1));
            }
            Value::Array(a) if a.is_empty() => return Err(empty()),
            Value::Array(a) if a.iter().all(is_token) => {
                let ids: Vec<u64> = a.iter().filter_map(Value::as_u64).collect();
                seeds.push(token_seed(&ids));
                tokens = tokens.saturating_add(ids.len() as u64);
            }
            _ => return Err(invalid()),
        }
    }
    Ok((seeds, tokens))
}

fn dimensions_of(v: Option<Value>) -> Result<u32, SynthError> {
    let Some(v) = v else {
        return Ok(DEFAULT_DIMENSIONS);
    };
    match v.as_u64() {
        Some(d @ 1..=MAX_DIMENSIONS) => Ok(u32::try_from(d).unwrap_or(DEFAULT_DIMENSIONS)),
        Some(d) => Err(SynthError::bad(
            format!(
                "Invalid value for 'dimensions': expected an integer from 1 to {MAX_DIMENSIONS}, \
                 got {d}."
            ),
            "dimensions",
        )),
        None => Err(invalid_type("dimensions", "dimensions", "an integer", &v)),
    }
}

fn encoding_of(v: Option<Value>) -> Result<EncodingFormat, SynthError> {
    const P: &str = "encoding_format";
    match v {
        None => Ok(EncodingFormat::Float),
        Some(Value::String(s)) if s == "float" => Ok(EncodingFormat::Float),
        Some(Value::String(s)) if s == "base64" => Ok(EncodingFormat::Base64),
        Some(Value::String(s)) => Err(SynthError::bad(
            format!(
                "Invalid value for 'encoding_format': expected 'float' or 'base64', got '{s}'."
            ),
            P,
        )),
        Some(other) => Err(invalid_type(P, P, "a string", &other)),
    }
}

/// The L2-normalised vector for `seed`, written into `out` (cleared first).
fn embedding_vector(seed: u64, dimensions: u32, out: &mut Vec<f32>) {
    out.clear();
    let mut state = seed;
    for _ in 0..dimensions {
        // 24 random bits mapped to [-1, 1): exact in f32.
        let bits = (splitmix64(&mut state) >> 40) as f32;
        out.push(bits / 8_388_608.0 - 1.0);
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for v in out.iter_mut() {
            *v /= norm;
        }
    } else if let Some(first) = out.first_mut() {
        *first = 1.0;
    }
}

pub(super) fn body(req: &SynthRequest, reply: &EmbeddingsReply) -> Vec<u8> {
    let dims = usize::try_from(reply.dimensions).unwrap_or(0);
    let per_vector = match reply.encoding {
        EncodingFormat::Float => dims * 12,
        EncodingFormat::Base64 => dims * 16 / 3 + 4,
    };
    let mut out = Vec::with_capacity(128 + req.model.len() + reply.seeds.len() * (per_vector + 48));
    let mut vector = Vec::with_capacity(dims);
    let mut bytes = Vec::with_capacity(dims * 4);
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, &seed) in reply.seeds.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        write_u64(&mut out, i as u64);
        out.extend_from_slice(b",\"embedding\":");
        embedding_vector(seed, reply.dimensions, &mut vector);
        match reply.encoding {
            EncodingFormat::Float => {
                out.push(b'[');
                for (j, v) in vector.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_f32(&mut out, *v);
                }
                out.push(b']');
            }
            EncodingFormat::Base64 => {
                bytes.clear();
                for v in &vector {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                out.push(b'"');
                // Base64 output needs no JSON escaping.
                let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
                out.extend_from_slice(encoded.as_bytes());
                out.push(b'"');
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"model\":");
    write_json_str(&mut out, &req.model);
    if req.usage_written() {
        out.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
        write_u64(&mut out, req.prompt_tokens());
        out.extend_from_slice(b",\"total_tokens\":");
        write_u64(&mut out, req.prompt_tokens());
        out.push(b'}');
    }
    out.push(b'}');
    out
}

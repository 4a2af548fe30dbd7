//! OpenAI's chat-completions wire format, as far as this service speaks it.
use serde::Deserialize;
use serde_json::{json, Value};

use super::errors::OpenAiError;
use crate::chat::ApiCompletion;
use crate::llm::ChatMessage;

/// Model ids name companions: `companion/<persona id>`.
pub const MODEL_PREFIX: &str = "companion/";

#[derive(Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub n: Option<u32>,
}

#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Deserialize)]
pub struct WireMessage {
    pub role: String,
    /// A string, or an array of `{"type": "text", "text"}` parts.
    #[serde(default)]
    pub content: Value,
}

/// The text of a message's content; other part types are refused.
fn text_of(content: &Value) -> Result<String, OpenAiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match (part["type"].as_str(), part["text"].as_str()) {
                (Some("text"), Some(text)) => Ok(text),
                _ => Err(OpenAiError::invalid_request("only text content parts are supported")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
        Value::Null => Ok(String::new()),
        _ => Err(OpenAiError::invalid_request("`content` must be a string or an array of text parts")),
    }
}

impl CompletionRequest {
    /// The completion this asks for, checked: a known model shape, text turns that end
    /// with the user's, sane numbers.
    pub fn parse(self, caller_hash: String) -> Result<(ApiCompletion, bool, bool), OpenAiError> {
        let Some(persona_id) = self.model.strip_prefix(MODEL_PREFIX) else {
            return Err(OpenAiError::unknown_model(&self.model));
        };
        if self.n.is_some_and(|n| n != 1) {
            return Err(OpenAiError::invalid_request("only n = 1 is supported"));
        }
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(OpenAiError::invalid_request("`temperature` must be between 0 and 2"));
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            return Err(OpenAiError::invalid_request("`max_tokens` must be at least 1"));
        }
        let mut system = Vec::new();
        let mut turns = Vec::new();
        for message in &self.messages {
            let text = text_of(&message.content)?;
            match message.role.as_str() {
                "system" | "developer" => system.push(text),
                "user" => turns.push(ChatMessage { role: "user", content: text }),
                "assistant" => turns.push(ChatMessage { role: "assistant", content: text }),
                other => {
                    let shown: String = other.chars().take(20).collect();
                    return Err(OpenAiError::invalid_request(format!("unsupported message role `{shown}`")));
                }
            }
        }
        if turns.last().is_none_or(|t| t.role != "user" || t.content.trim().is_empty()) {
            return Err(OpenAiError::invalid_request("the last message must be a non-empty user message"));
        }
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        let completion = ApiCompletion {
            persona_id: persona_id.to_string(),
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            turns,
            temperature: self.temperature,
            max_tokens,
            caller_hash,
            check_as: None,
        };
        Ok((completion, self.stream, include_usage))
    }
}

/// The `usage` object in OpenAI's shape (with DeepSeek's cache counts as `prompt_tokens_details`).
pub fn usage_json(usage: &crate::domain::Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.prompt_cache_hit_tokens.unwrap_or(0)},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens.unwrap_or(0)},
    })
}

/// One `chat.completion.chunk`.
pub fn chunk(id: &str, created: i64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<(ApiCompletion, bool, bool), OpenAiError> {
        serde_json::from_value::<CompletionRequest>(body).unwrap().parse("caller".into())
    }

    #[test]
    fn requests_are_read_into_a_companion_and_its_turns_or_refused_clearly() {
        let ok = |body: Value| {
            request(body).map(|(c, stream, usage)| (c.persona_id, c.system, c.turns.len(), stream, usage))
        };
        let user = |text: &str| json!({"role": "user", "content": text});
        type Case =
            (&'static str, Value, Result<(String, Option<String>, usize, bool, bool), (u16, Option<&'static str>)>);
        let cases: Vec<Case> = vec![
            (
                "a plain request",
                json!({"model": "companion/xiaoxi", "messages": [user("你好")]}),
                Ok(("xiaoxi".into(), None, 1, false, false)),
            ),
            (
                "system and parts, streamed with usage",
                json!({"model": "companion/xiaoxi", "stream": true, "stream_options": {"include_usage": true},
                       "messages": [{"role": "system", "content": "简短回答"}, {"role": "user", "content": [{"type": "text", "text": "在吗"}]}]}),
                Ok(("xiaoxi".into(), Some("简短回答".into()), 1, true, true)),
            ),
            (
                "a model outside the companions",
                json!({"model": "gpt-4o", "messages": [user("hi")]}),
                Err((404, Some("model_not_found"))),
            ),
            (
                "no user message last",
                json!({"model": "companion/xiaoxi", "messages": [{"role": "assistant", "content": "hi"}]}),
                Err((400, None)),
            ),
            ("an empty user message", json!({"model": "companion/xiaoxi", "messages": [user("  ")]}), Err((400, None))),
            (
                "an image part",
                json!({"model": "companion/xiaoxi", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                Err((400, None)),
            ),
            (
                "a tool role",
                json!({"model": "companion/xiaoxi", "messages": [{"role": "tool", "content": "x"}, user("hi")]}),
                Err((400, None)),
            ),
            (
                "temperature out of range",
                json!({"model": "companion/xiaoxi", "temperature": 3.0, "messages": [user("hi")]}),
                Err((400, None)),
            ),
            ("n above one", json!({"model": "companion/xiaoxi", "n": 2, "messages": [user("hi")]}), Err((400, None))),
        ];
        for (label, body, expected) in cases {
            let got = ok(body).map_err(|e| (e.status.as_u16(), e.code));
            assert_eq!(got, expected, "{label}");
        }
    }
}

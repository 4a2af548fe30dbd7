//! The embedded default: with no `DEEPSEEK_API_KEY` outside production, a clearly
//! labelled offline companion streams a short deterministic reply, so the server can be
//! tried end to end with no credentials.
use std::time::Duration;

use super::{ChatRequest, LlmEvent, LlmStream};
use crate::domain::{FinishReason, Usage};

pub struct OfflineCompanion {
    pub chunk_delay: Duration,
}

impl OfflineCompanion {
    pub fn reply_to(request: &ChatRequest) -> String {
        if request.json_output {
            // Background memory work: the offline companion learns nothing.
            return r#"{"operations": []}"#.to_string();
        }
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.chars().take(50).collect::<String>())
            .unwrap_or_default();
        format!(
            "【离线演示回复】我收到了你的消息：「{last_user}」。\
             现在是本地开发模式，没有配置 DEEPSEEK_API_KEY，所以这条回复来自内置的离线伙伴，而不是 DeepSeek。"
        )
    }

    pub fn stream_chat(&self, request: ChatRequest) -> LlmStream {
        let reply = Self::reply_to(&request);
        let chars: Vec<char> = reply.chars().collect();
        let mut events: Vec<LlmEvent> =
            chars.chunks(6).map(|piece| LlmEvent::Content(piece.iter().collect())).collect();
        let completion_tokens = chars.len() as u64;
        events.push(LlmEvent::Finish(FinishReason::Stop));
        events.push(LlmEvent::Usage(Usage {
            prompt_tokens: 0,
            completion_tokens,
            total_tokens: completion_tokens,
            ..Default::default()
        }));
        let delay = self.chunk_delay;
        Box::pin(futures_util::stream::unfold(events.into_iter(), move |mut events| async move {
            let event = events.next()?;
            if matches!(event, LlmEvent::Content(_)) {
                tokio::time::sleep(delay).await;
            }
            Some((Ok(event), events))
        }))
    }
}

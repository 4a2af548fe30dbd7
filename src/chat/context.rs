//! What is sent upstream: the persona's system prompt first (a stable prefix, so
//! DeepSeek's prefix cache hits), then the newest history that fits a token budget.
//!
//! Token estimate (DeepSeek's published rule of thumb): an ASCII character ≈ 0.3 token,
//! a CJK character ≈ 0.6 token; anything else (emoji, other scripts) is counted as 1
//! token to stay on the safe side; each message adds 4 tokens of framing.
use sha2::{Digest, Sha256};

use crate::domain::{Message, MessageStatus, Role, UserId};
use crate::llm::ChatMessage;

const MESSAGE_OVERHEAD_TOKENS: usize = 4;

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F | 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF |
        0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x2FA1F)
}

pub fn estimate_tokens(text: &str) -> usize {
    let tenths: usize = text
        .chars()
        .map(|c| {
            if c.is_ascii() {
                3
            } else if is_cjk(c) {
                6
            } else {
                10
            }
        })
        .sum();
    tenths.div_ceil(10) + MESSAGE_OVERHEAD_TOKENS
}

/// Builds the message list. `history` is chronological and ends with the user's new
/// message, which is always sent. Failed turns and empty replies are skipped, reasoning
/// is never resent, and consecutive turns of one role are merged (some models require
/// alternating roles).
pub fn build_messages(system_prompt: &str, history: &[Message], token_budget: usize) -> Vec<ChatMessage> {
    let mut remaining = token_budget.saturating_sub(estimate_tokens(system_prompt));
    let mut picked: Vec<&Message> = Vec::new();
    for message in history.iter().rev() {
        let usable = message.status != MessageStatus::Failed && !message.content.trim().is_empty();
        if !usable {
            continue;
        }
        let cost = estimate_tokens(&message.content);
        if !picked.is_empty() && cost > remaining {
            break;
        }
        remaining = remaining.saturating_sub(cost);
        picked.push(message);
    }
    picked.reverse();
    // The model should see the user speak first after the system prompt.
    while picked.first().is_some_and(|m| m.role == Role::Assistant) {
        picked.remove(0);
    }

    let mut messages = vec![ChatMessage { role: "system", content: system_prompt.trim().to_string() }];
    for message in picked {
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        match messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&message.content);
            }
            _ => messages.push(ChatMessage { role, content: message.content.clone() }),
        }
    }
    messages
}

/// DeepSeek's `user_id`: stable per user, meaningless outside this service.
pub fn upstream_user_hash(user: UserId) -> String {
    let digest = Sha256::digest(format!("companion-user:{user}").as_bytes());
    hex::encode(&digest[..16])
}

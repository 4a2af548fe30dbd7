//! The optional second line of crisis recognition: one JSON-mode model call per message,
//! for personas that enable it (`crisis_classifier = true`), after the phrase list found
//! nothing. A failed or slow call lets the message through to the companion (logged).

/// What the classifier is asked; it answers `{"risk": "none" | "low" | "high"}`.
pub const PROMPT: &str = "你是心理危机识别助手。判断用户这条消息是否表达了自杀、自伤或结束生命的意图。\
只输出 JSON：{\"risk\": \"none\"} 表示没有，{\"risk\": \"low\"} 表示情绪低落但没有自伤意图，\
{\"risk\": \"high\"} 表示明确或强烈暗示自杀、自伤意图。不要输出其他内容。";

/// Whether the classifier's answer names a crisis; anything unreadable is not one.
pub fn is_crisis(answer: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Verdict {
        risk: String,
    }
    serde_json::from_str::<Verdict>(answer.trim()).is_ok_and(|v| v.risk.trim().eq_ignore_ascii_case("high"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_high_risk_answer_is_a_crisis() {
        let cases = [
            (r#"{"risk": "high"}"#, true),
            (r#" {"risk":"HIGH"} "#, true),
            (r#"{"risk": "low"}"#, false),
            (r#"{"risk": "none"}"#, false),
            ("high", false),
            ("", false),
            (r#"{"level": "high"}"#, false),
        ];
        for (answer, expected) in cases {
            assert_eq!(super::is_crisis(answer), expected, "{answer:?}");
        }
    }
}

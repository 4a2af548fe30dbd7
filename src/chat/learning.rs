//! Learning facts from conversations, in the background and never in a reply's path: the
//! model gets the current facts and the newest turns in JSON output mode and answers with
//! operations (add / update / delete, as mem0 does) that resolve conflicts instead of
//! piling up duplicates. A malformed answer changes nothing.
use serde::Deserialize;

use crate::domain::{MemoryFact, MemoryId, MemoryText, Message, MessageStatus, Role};
use crate::llm::ChatMessage;

/// One change to what a persona remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryOp {
    Add(MemoryText),
    Update(MemoryId, MemoryText),
    Delete(MemoryId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model's memory operations could not be read")]
pub struct MalformedOps;

#[derive(Deserialize)]
struct WireOps {
    operations: Vec<WireOp>,
}

#[derive(Deserialize)]
struct WireOp {
    op: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

const INSTRUCTIONS: &str = "你负责维护一位 AI 伙伴对用户的长期记忆。根据“已有记忆”和“新的对话”，\
输出 JSON：{\"operations\": [...]}，每项是 {\"op\":\"add\",\"text\":\"…\"}、\
{\"op\":\"update\",\"id\":\"m1\",\"text\":\"…\"} 或 {\"op\":\"delete\",\"id\":\"m1\"}。\
只记用户本人稳定、以后聊天用得上的事实（喜好、经历、计划、称呼偏好），每条一句话、不超过 60 字；\
与已有记忆重复的不要再加，有变化的用 update，被用户否认或过时的用 delete；没有要改的就输出 {\"operations\": []}。\
不要记录敏感个人信息：健康状况、宗教信仰、精确位置、财务状况、身份证件号码、账号密码。";

/// The extraction request: instructions, then the facts (as `m1`, `m2`, …) and the turns.
pub fn extraction_prompt(facts: &[MemoryFact], turns: &[Message]) -> Vec<ChatMessage> {
    let mut known = String::from("已有记忆：");
    if facts.is_empty() {
        known.push_str("（无）");
    }
    for (i, fact) in facts.iter().enumerate() {
        known.push_str(&format!("\nm{}: {}", i + 1, fact.text.as_str()));
    }
    let mut said = String::from("新的对话：");
    for turn in learnable(turns) {
        let who = match turn.role {
            Role::User => "用户",
            Role::Assistant => "伙伴",
            Role::Operator => "人工客服",
        };
        said.push_str(&format!("\n{who}：{}", turn.content));
    }
    vec![
        ChatMessage { role: "system", content: INSTRUCTIONS.to_string() },
        ChatMessage { role: "user", content: format!("{known}\n\n{said}") },
    ]
}

/// The turns worth learning from: complete ones only (never a message the content check
/// refused, nor a failed or cut-off reply).
pub fn learnable(turns: &[Message]) -> impl Iterator<Item = &Message> {
    turns.iter().filter(|t| t.status == MessageStatus::Complete && !t.content.trim().is_empty())
}

/// Reads the model's answer. Operations naming an unknown fact or carrying unusable text
/// are dropped one by one (logged); an answer that is not the expected JSON is refused whole.
pub fn parse_ops(answer: &str, facts: &[MemoryFact]) -> Result<Vec<MemoryOp>, MalformedOps> {
    let wire: WireOps = serde_json::from_str(answer.trim()).map_err(|_| MalformedOps)?;
    let fact_of = |id: Option<&str>| {
        let index: usize = id?.trim().strip_prefix('m')?.parse().ok()?;
        facts.get(index.checked_sub(1)?).map(|f| f.id)
    };
    let text_of = |text: Option<&str>| MemoryText::parse(text?).ok();
    let mut ops = Vec::new();
    for op in wire.operations {
        let parsed = match op.op.as_str() {
            "add" => text_of(op.text.as_deref()).map(MemoryOp::Add),
            "update" => {
                fact_of(op.id.as_deref()).zip(text_of(op.text.as_deref())).map(|(id, t)| MemoryOp::Update(id, t))
            }
            "delete" => fact_of(op.id.as_deref()).map(MemoryOp::Delete),
            _ => None,
        };
        match parsed {
            Some(parsed) => ops.push(parsed),
            None => {
                let op: String = op.op.chars().take(20).collect();
                tracing::warn!(%op, "dropped a memory operation that could not be applied");
            }
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn text(t: &str) -> MemoryText {
        MemoryText::parse(t).unwrap()
    }

    #[test]
    fn the_models_answer_becomes_operations_on_known_facts_only() {
        let facts: Vec<MemoryFact> =
            ["养了一只猫", "在准备考研"].iter().map(|t| MemoryFact::new(UserId::new(), "p", text(t), None)).collect();
        let (cat, exam) = (facts[0].id, facts[1].id);
        type Case<'a> = (&'a str, &'a str, Result<Vec<MemoryOp>, MalformedOps>);
        let cases: Vec<Case> = vec![
            ("nothing to change", r#"{"operations": []}"#, Ok(vec![])),
            (
                "an addition",
                r#"{"operations": [{"op": "add", "text": "喜欢爬山"}]}"#,
                Ok(vec![MemoryOp::Add(text("喜欢爬山"))]),
            ),
            (
                "an update and a delete by short id",
                r#"{"operations": [{"op": "update", "id": "m1", "text": "养了一只叫咪咪的猫"}, {"op": "delete", "id": "m2"}]}"#,
                Ok(vec![MemoryOp::Update(cat, text("养了一只叫咪咪的猫")), MemoryOp::Delete(exam)]),
            ),
            (
                "an unknown id is dropped",
                r#"{"operations": [{"op": "delete", "id": "m9"}, {"op": "delete", "id": "m0"}]}"#,
                Ok(vec![]),
            ),
            ("an unknown op is dropped", r#"{"operations": [{"op": "merge", "id": "m1"}]}"#, Ok(vec![])),
            ("unusable text is dropped", r#"{"operations": [{"op": "add", "text": "  "}, {"op": "add"}]}"#, Ok(vec![])),
            ("surrounding space is fine", " {\"operations\": []}\n", Ok(vec![])),
            ("not JSON", "好的，我记住了", Err(MalformedOps)),
            ("the wrong shape", r#"{"ops": []}"#, Err(MalformedOps)),
            ("an empty answer", "", Err(MalformedOps)),
        ];
        for (label, answer, expected) in cases {
            assert_eq!(parse_ops(answer, &facts), expected, "{label}");
        }
    }

    #[test]
    fn the_prompt_names_facts_by_short_id_and_keeps_sensitive_data_out() {
        let facts = vec![MemoryFact::new(UserId::new(), "p", text("养了一只猫"), None)];

        let prompt = extraction_prompt(&facts, &[]);

        assert_eq!(prompt[0].role, "system");
        assert!(prompt[0].content.contains("JSON") && prompt[0].content.contains("健康状况"));
        assert!(prompt[1].content.contains("m1: 养了一只猫"));
    }
}

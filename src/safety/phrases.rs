//! Recognising exit and crisis phrases in a user's message: the first line of defence,
//! configured by the operator as plain Chinese phrases.

/// The message without whitespace, punctuation and symbols, lowercased: "不聊了！！" and
/// "不 聊 了" read the same.
fn normalized(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// An exit phrase ends the companion's turn when the message is essentially the phrase:
/// it contains one, with at most a few characters around it ("我不聊了", "好的再见"), so a
/// long message that mentions "退出" in passing is still answered.
pub fn is_exit(text: &str, phrases: &[String]) -> bool {
    const SLACK: usize = 4;
    let message = normalized(text);
    let length = message.chars().count();
    phrases
        .iter()
        .map(|p| normalized(p))
        .filter(|p| !p.is_empty())
        .any(|phrase| message.contains(&phrase) && length <= phrase.chars().count() + SLACK)
}

/// The crisis phrase a message contains, if any, wherever it is in the message.
pub fn crisis_phrase<'a>(text: &str, phrases: &'a [String]) -> Option<&'a str> {
    let message = normalized(text);
    phrases.iter().find(|p| !normalized(p).is_empty() && message.contains(&normalized(p))).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exit_phrases_match_short_messages_that_say_them() {
        let phrases = list(&["退出", "不聊了", "再见"]);
        let cases = [
            ("the phrase alone", "退出", true),
            ("with punctuation and spaces", " 不 聊了！！", true),
            ("a few words around it", "好的，再见啦", true),
            ("I won't chat any more", "我不聊了", true),
            ("mentioned in a long message", "我想问一下怎么退出这个群聊比较好呢", false),
            ("nothing of the list", "你好呀", false),
            ("empty", "", false),
        ];
        for (label, text, expected) in cases {
            assert_eq!(is_exit(text, &phrases), expected, "{label}");
        }
        assert!(!is_exit("退出", &[]), "no phrases configured: nothing matches");
        assert!(!is_exit("退出", &list(&["", "  "])), "blank phrases match nothing");
    }

    #[test]
    fn crisis_phrases_match_anywhere_in_a_message() {
        let phrases = list(&["不想活了", "自杀"]);
        let cases = [
            ("the phrase alone", "不想活了", Some("不想活了")),
            ("inside a long message", "最近压力好大，有时候觉得不想 活了……", Some("不想活了")),
            ("another phrase", "我想过自杀", Some("自杀")),
            ("nothing of the list", "今天好开心", None),
        ];
        for (label, text, expected) in cases {
            assert_eq!(crisis_phrase(text, &phrases), expected, "{label}");
        }
    }
}

//! Every parser at the edge, as tables of accepted and refused input. Kept apart from
//! the types' own files so they can be rewritten without touching these tables.
use super::{
    AvatarUrl, ConversationId, ConversationTitle, LoginCode, MessageContent, MessageId, Nickname, OpenId, ParseError,
    UserId,
};

/// (label, input, `Ok(value kept)` or `Err(phrase the refusal must contain)`).
type Case = (&'static str, String, Result<String, &'static str>);

fn check<T>(what: &str, cases: &[Case], parse: impl Fn(&str) -> Result<T, ParseError>, kept: impl Fn(&T) -> String) {
    for (label, input, expected) in cases {
        match (parse(input), expected) {
            (Ok(value), Ok(want)) => assert_eq!(kept(&value), *want, "{what}, {label}: {input:?}"),
            (Ok(value), Err(_)) => panic!("{what}, {label}: {input:?} was accepted as {:?}", kept(&value)),
            (Err(e), Ok(_)) => panic!("{what}, {label}: {input:?} was refused: {e}"),
            (Err(ParseError(message)), Err(phrase)) => {
                assert!(!message.is_empty(), "{what}, {label}: a refusal explains itself");
                assert!(message.contains(phrase), "{what}, {label}: {message:?} does not say {phrase:?}");
            }
        }
    }
}

fn s(text: &str) -> String {
    text.to_string()
}

#[test]
fn login_codes_are_trimmed_bounded_and_free_of_blanks_and_controls() {
    let cases: Vec<Case> = vec![
        ("a wx.login code", s("0a3Xyz-_.ABC9"), Ok(s("0a3Xyz-_.ABC9"))),
        ("a development code", s("dev:alice"), Ok(s("dev:alice"))),
        ("surrounding blanks are trimmed", s(" \t0a3Xyz\n"), Ok(s("0a3Xyz"))),
        ("256 bytes", "c".repeat(256), Ok("c".repeat(256))),
        ("empty", s(""), Err("must not be empty")),
        ("only blanks", s(" \n\t "), Err("must not be empty")),
        ("257 bytes", "c".repeat(257), Err("not a wx.login code")),
        ("86 three-byte characters (258 bytes)", "码".repeat(86), Err("not a wx.login code")),
        ("an inner space", s("0a3 Xyz"), Err("not a wx.login code")),
        ("an inner tab", s("0a3\tXyz"), Err("not a wx.login code")),
        ("an ideographic space", s("0a3\u{3000}Xyz"), Err("not a wx.login code")),
        ("a NUL", s("0a3\u{0}Xyz"), Err("not a wx.login code")),
        ("an escape", s("0a3\u{1b}Xyz"), Err("not a wx.login code")),
    ];
    check("LoginCode", &cases, LoginCode::parse, |c| c.as_str().to_string());
}

#[test]
fn development_login_codes_name_a_development_openid() {
    let (name32, name33) = ("n".repeat(32), "n".repeat(33));
    let openid32 = format!("dev_{name32}");
    // (label, code, the name after dev:, the openid that name makes, None when refused)
    let cases: Vec<(&str, String, Option<&str>, Option<&str>)> = vec![
        ("a simple name", s("dev:alice"), Some("alice"), Some("dev_alice")),
        ("dashes and underscores", s("dev:a-b_C9"), Some("a-b_C9"), Some("dev_a-b_C9")),
        ("32 characters", format!("dev:{name32}"), Some(&name32), Some(&openid32)),
        ("33 characters", format!("dev:{name33}"), Some(&name33), None),
        ("no name", s("dev:"), Some(""), None),
        ("a colon in the name", s("dev:a:b"), Some("a:b"), None),
        ("a dot in the name", s("dev:a.b"), Some("a.b"), None),
        ("a non-ASCII name", s("dev:小溪"), Some("小溪"), None),
        ("a wx.login code is not a development code", s("0a3Xyz"), None, None),
        ("the prefix is case-sensitive", s("DEV:alice"), None, None),
    ];
    for (label, raw, name, openid) in cases {
        let code = LoginCode::parse(&raw).unwrap_or_else(|e| panic!("{label}: {e}"));

        assert_eq!(code.dev_name(), name, "{label}");
        let Some(name) = code.dev_name() else { continue };
        match OpenId::for_dev_name(name) {
            Ok(made) => assert_eq!(Some(made.as_str()), openid, "{label}"),
            Err(ParseError(message)) => {
                assert_eq!(openid, None, "{label}: refused: {message}");
                assert!(message.contains("dev:<name>"), "{label}: {message:?} explains the format");
            }
        }
    }
}

#[test]
fn openids_are_short_ascii_words_taken_as_they_are() {
    let longest = "o".repeat(128);
    let cases: Vec<Case> = vec![
        ("a WeChat openid", s("oAbC-123_xyZ"), Ok(s("oAbC-123_xyZ"))),
        ("a development openid", s("dev_alice"), Ok(s("dev_alice"))),
        ("128 characters", longest.clone(), Ok(longest)),
        ("129 characters", "o".repeat(129), Err("not a valid openid")),
        ("empty", s(""), Err("not a valid openid")),
        ("surrounding blanks are not trimmed", s(" oAbC"), Err("not a valid openid")),
        ("a trailing newline", s("oAbC\n"), Err("not a valid openid")),
        ("an inner space", s("oA bC"), Err("not a valid openid")),
        ("a dot", s("oA.bC"), Err("not a valid openid")),
        ("a colon", s("dev:alice"), Err("not a valid openid")),
        ("non-ASCII", s("o小溪"), Err("not a valid openid")),
        ("a NUL", s("oA\u{0}"), Err("not a valid openid")),
    ];
    check("OpenId", &cases, OpenId::parse, |o| o.as_str().to_string());
}

#[test]
fn nicknames_are_trimmed_one_to_thirty_two_characters_without_controls() {
    let longest = "名".repeat(Nickname::MAX_CHARS);
    let cases: Vec<Case> = vec![
        ("a Chinese nickname", s("小溪"), Ok(s("小溪"))),
        ("surrounding blanks are trimmed", s("  Ann Lee \n"), Ok(s("Ann Lee"))),
        ("emoji", s("🙂🙂"), Ok(s("🙂🙂"))),
        ("32 three-byte characters count as 32", longest.clone(), Ok(longest.clone())),
        ("32 characters padded with blanks", format!("  {longest}  "), Ok(longest)),
        ("33 characters", "a".repeat(33), Err("1-32 characters")),
        ("empty", s(""), Err("1-32 characters")),
        ("only blanks", s(" \t\n "), Err("1-32 characters")),
        ("an inner newline", s("Ann\nLee"), Err("control characters")),
        ("a bell", s("Ann\u{7}"), Err("control characters")),
        ("an escape sequence", s("\u{1b}[31mAnn"), Err("control characters")),
        ("a DEL", s("Ann\u{7f}"), Err("control characters")),
    ];
    check("Nickname", &cases, Nickname::parse, |n| n.as_str().to_string());
}

#[test]
fn avatar_urls_are_trimmed_https_urls_of_at_most_512_bytes() {
    let prefix = "https://thirdwx.qlogo.cn/";
    let longest = format!("{prefix}{}", "p".repeat(AvatarUrl::MAX_LEN - prefix.len()));
    let too_long = format!("{longest}p");
    let cases: Vec<Case> = vec![
        (
            "a WeChat avatar",
            s("https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132"),
            Ok(s("https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132")),
        ),
        ("a bare host", s("https://a.example"), Ok(s("https://a.example"))),
        ("surrounding blanks are trimmed", s("  https://a.example/x.png\n"), Ok(s("https://a.example/x.png"))),
        ("512 bytes", longest.clone(), Ok(longest)),
        ("513 bytes", too_long, Err("https:// URL of at most 512")),
        ("empty", s(""), Err("https:// URL")),
        ("plain http", s("http://a.example/x.png"), Err("https:// URL")),
        ("another scheme", s("ftp://a.example/x.png"), Err("https:// URL")),
        ("a script URL", s("javascript:alert(1)"), Err("https:// URL")),
        ("the scheme in capitals", s("HTTPS://a.example"), Err("https:// URL")),
        ("no host", s("https://"), Err("https:// URL")),
        ("a path where the host should be", s("https:///x.png"), Err("https:// URL")),
        ("an inner space", s("https://a.example/x y.png"), Err("https:// URL")),
        ("an inner newline", s("https://a.example/\nx.png"), Err("https:// URL")),
        ("a NUL", s("https://a.example/\u{0}"), Err("https:// URL")),
    ];
    check("AvatarUrl", &cases, AvatarUrl::parse, |a| a.as_str().to_string());
}

#[test]
fn conversation_titles_are_trimmed_one_to_a_hundred_characters_without_controls() {
    let longest = "题".repeat(ConversationTitle::MAX_CHARS);
    let cases: Vec<Case> = vec![
        ("a Chinese title", s("周末的计划"), Ok(s("周末的计划"))),
        ("surrounding blanks are trimmed", s("  Trip plans \t"), Ok(s("Trip plans"))),
        ("100 three-byte characters count as 100", longest.clone(), Ok(longest)),
        ("101 characters", "t".repeat(101), Err("1-100 characters")),
        ("empty", s(""), Err("1-100 characters")),
        ("only blanks", s("   \n"), Err("1-100 characters")),
        ("an inner newline", s("Trip\nplans"), Err("control characters")),
        ("a tab inside", s("Trip\tplans"), Err("control characters")),
        ("an escape sequence", s("\u{1b}[2JTrip"), Err("control characters")),
    ];
    check("ConversationTitle", &cases, ConversationTitle::parse, |t| t.as_str().to_string());
}

#[test]
fn ids_are_exactly_twenty_four_hex_digits() {
    const HEX: &str = "65f1c0ffee0123456789abcd";
    let cases: Vec<Case> = vec![
        ("lowercase hex", s(HEX), Ok(s(HEX))),
        ("uppercase hex, shown lowercase", HEX.to_uppercase(), Ok(s(HEX))),
        ("all zeros", "0".repeat(24), Ok(s("000000000000000000000000"))),
        ("empty", s(""), Err("not an id")),
        ("only blanks", " ".repeat(24), Err("not an id")),
        ("23 digits", s(&HEX[..23]), Err("not an id")),
        ("25 digits", format!("{HEX}0"), Err("not an id")),
        ("a non-hex letter", format!("{}g", &HEX[..23]), Err("not an id")),
        ("surrounding blanks", format!(" {HEX} "), Err("not an id")),
        ("a 0x prefix", format!("0x{}", &HEX[..22]), Err("not an id")),
        ("a UUID", s("3f2504e0-4f89-11d3-9a0c-0305e82c3301"), Err("not an id")),
        ("a path traversal", s("../../../../etc/passwd.."), Err("not an id")),
    ];
    let refused = || ParseError("not an id".into());
    check("UserId", &cases, |raw| UserId::parse(raw).ok_or_else(refused), ToString::to_string);
    check("ConversationId", &cases, |raw| ConversationId::parse(raw).ok_or_else(refused), ToString::to_string);
    check("MessageId", &cases, |raw| MessageId::parse(raw).ok_or_else(refused), ToString::to_string);
}

#[test]
fn message_content_is_trimmed_non_empty_and_bounded_in_characters() {
    const MAX: usize = 10;
    let cases: Vec<Case> = vec![
        ("a short message", s("你好"), Ok(s("你好"))),
        ("surrounding blanks are trimmed", s(" \n hi there \t"), Ok(s("hi there"))),
        ("inner line breaks are kept", s("a\nb"), Ok(s("a\nb"))),
        ("10 three-byte characters count as 10", "字".repeat(MAX), Ok(s("字字字字字字字字字字"))),
        ("10 emoji count as 10", "😀".repeat(MAX), Ok(s("😀😀😀😀😀😀😀😀😀😀"))),
        ("10 characters padded with blanks", format!("  {}  ", "a".repeat(MAX)), Ok(s("aaaaaaaaaa"))),
        ("11 characters", "字".repeat(MAX + 1), Err("at most 10 characters")),
        ("empty", s(""), Err("must not be empty")),
        ("only blanks", s(" \n\t\u{3000} "), Err("must not be empty")),
    ];
    check("MessageContent", &cases, |raw| MessageContent::parse(raw, MAX), |c| c.as_str().to_string());
}

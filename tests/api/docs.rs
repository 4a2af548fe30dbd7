//! The README is what users read first: its lists of codes must match the code.
use companion_backend::domain::ReplyFailure;
use companion_backend::errors::ErrorCode;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn the_readme_lists_every_error_code_under_its_status() {
    let readme = readme();
    let table = readme.split("### Error codes").nth(1).expect("an Error codes section");
    for code in ErrorCode::ALL {
        let row = table
            .lines()
            .find(|line| line.contains(&format!("`{}`", code.as_str())))
            .unwrap_or_else(|| panic!("`{}` is missing from the README's error codes", code.as_str()));
        assert!(
            row.starts_with(&format!("| {} |", code.status().as_u16())),
            "`{}` under the wrong status",
            code.as_str()
        );
    }
}

#[test]
fn the_readme_lists_every_reply_error_code() {
    let readme = readme();
    let section = readme.split("Error codes of a reply").nth(1).expect("the reply error codes paragraph");
    let paragraph = section.split("\n\n").next().unwrap();
    for failure in ReplyFailure::every() {
        assert!(paragraph.contains(&format!("`{}`", failure.code())), "`{}` is missing", failure.code());
    }
}

#[test]
fn the_mini_program_has_a_chinese_message_for_every_error_code() {
    let messages =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/miniprogram/utils/errors.js")).unwrap();
    let has = |code: &str| messages.lines().any(|l| l.trim_start().starts_with(&format!("{code}: '")));
    let codes = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(ReplyFailure::every().iter().map(ReplyFailure::code))
        .collect::<Vec<_>>();
    let missing: Vec<&str> = codes.into_iter().filter(|c| !has(c)).collect();
    assert!(missing.is_empty(), "miniprogram/utils/errors.js has no message for {missing:?}");
}

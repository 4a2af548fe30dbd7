//! Companions, loaded from a TOML file shipped in the repository; deployers add their
//! own without code changes.
use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The repository's own file, compiled in: used when the configured default path does
/// not exist (for example when the binary runs from another directory).
const BUILT_IN: &str = include_str!("../../config/personas.toml");

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub id: String,
    pub name: String,
    pub description: String,
    pub greeting: String,
    pub system_prompt: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub thinking: bool,
    #[serde(default)]
    pub reasoning_effort: Option<crate::llm::ReasoningEffort>,
    #[serde(default)]
    pub preview: bool,
    /// Whether the companion remembers facts about its user across conversations.
    #[serde(default = "yes")]
    pub memory: bool,
    /// A disabled companion is offered to nobody (its conversations go on with the default).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Hidden from users in minor mode.
    #[serde(default)]
    pub not_for_minors: bool,
    /// An emotional companion: in minor mode only with a guardian's consent.
    #[serde(default)]
    pub emotional: bool,
    /// Plays a family member: the operator must not offer it to elderly users (an operator
    /// rule the console shows; nothing is detected automatically).
    #[serde(default)]
    pub simulates_relative: bool,
    /// Besides the phrase list, a JSON-mode model call recognises crisis messages (one
    /// more call per message, before the reply).
    #[serde(default)]
    pub crisis_classifier: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonaFile {
    personas: Vec<Persona>,
}

#[derive(Debug, Clone)]
pub struct Personas {
    all: Vec<Persona>,
}

impl Personas {
    /// Reads `path`; falls back to the built-in set only when `path` is the default
    /// and absent. A broken file is an error, never silently replaced.
    pub fn load(path: &Path, is_default_path: bool) -> anyhow::Result<Personas> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_default_path => BUILT_IN.to_string(),
            Err(e) => return Err(e).with_context(|| format!("cannot read personas file {}", path.display())),
        };
        Self::parse(&text).with_context(|| format!("invalid personas file {}", path.display()))
    }

    pub fn built_in() -> Personas {
        Self::parse(BUILT_IN).expect("the built-in personas file is valid")
    }

    pub fn parse(text: &str) -> anyhow::Result<Personas> {
        let file: PersonaFile = toml_parse(text)?;
        Self::from_list(file.personas)
    }

    /// The one set of rules for a catalog, from a file or from the console: unique ids of
    /// letters, digits, - and _; a name and a prompt each; at least one enabled.
    pub fn from_list(personas: Vec<Persona>) -> anyhow::Result<Personas> {
        if !personas.iter().any(|p| p.enabled) {
            bail!("at least one enabled persona is required");
        }
        let mut seen = HashSet::new();
        for p in &personas {
            let valid_id = !p.id.is_empty()
                && p.id.len() <= 64
                && p.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                bail!("persona id {:?} must be 1-64 letters, digits, - or _", p.id);
            }
            if !seen.insert(p.id.clone()) {
                bail!("persona id {:?} appears twice", p.id);
            }
            if p.system_prompt.trim().is_empty() || p.name.trim().is_empty() {
                bail!("persona {:?} needs a name and a system_prompt", p.id);
            }
            check_fields(p)?;
        }
        Ok(Personas { all: personas })
    }

    pub fn get(&self, id: &str) -> Option<&Persona> {
        self.all.iter().find(|p| p.id == id)
    }

    /// The first enabled persona (`from_list` guarantees there is one).
    pub fn default_persona(&self) -> &Persona {
        self.all.iter().find(|p| p.enabled).unwrap_or(&self.all[0])
    }

    pub fn all(&self) -> &[Persona] {
        &self.all
    }
}

/// Bounds that keep one edit from breaking every reply: a model name of the usual
/// characters, a temperature DeepSeek accepts, texts of sane length.
fn check_fields(p: &Persona) -> anyhow::Result<()> {
    let too_long = |text: &str, max: usize| text.chars().count() > max;
    if too_long(&p.name, 50) || too_long(&p.description, 200) || too_long(&p.greeting, 1000) {
        bail!("persona {:?}: name ≤ 50, description ≤ 200, greeting ≤ 1000 characters", p.id);
    }
    if too_long(&p.system_prompt, 20_000) {
        bail!("persona {:?}: the system prompt is at most 20000 characters", p.id);
    }
    let model_ok =
        |m: &str| (1..=64).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b));
    if p.model.as_deref().is_some_and(|m| !model_ok(m)) {
        bail!("persona {:?}: a model name is 1-64 letters, digits or . _ : / -", p.id);
    }
    if p.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        bail!("persona {:?}: temperature is between 0 and 2", p.id);
    }
    Ok(())
}

/// Strict TOML: a misspelt key (`preveiw = true`) or a loosely typed value
/// (`thinking = "yes"`) is an error, never silently dropped or converted.
fn toml_parse<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    Ok(toml::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona(id: &str, extra: &str) -> String {
        format!(
            "[[personas]]\nid = \"{id}\"\nname = \"Name of {id}\"\ndescription = \"d\"\ngreeting = \"g\"\n\
             system_prompt = \"You are {id}.\"\n{extra}\n"
        )
    }

    #[test]
    fn valid_persona_files_are_read_in_order_with_the_first_as_default() {
        let full = persona(
            "thinker",
            "model = \"deepseek-v4-pro\"\nthinking = true\nreasoning_effort = \"high\"\npreview = true\ntemperature = 0.5",
        );
        let cases: Vec<(&str, String, &[&str])> = vec![
            ("one persona with only the required fields", persona("solo", ""), &["solo"]),
            ("two personas keep their order", persona("first", "") + &persona("second_2", ""), &["first", "second_2"]),
            ("every optional field set", persona("a-b", "") + &full, &["a-b", "thinker"]),
            ("the repository's own file", BUILT_IN.to_string(), &["xiaoxi", "ahang", "sikao"]),
        ];
        for (label, text, ids) in cases {
            let personas = Personas::parse(&text).unwrap_or_else(|e| panic!("{label}: {e:#}"));

            let parsed: Vec<&str> = personas.all().iter().map(|p| p.id.as_str()).collect();
            assert_eq!(parsed, ids, "{label}");
            assert_eq!(personas.default_persona().id, ids[0], "{label}: the first is the default");
            assert!(ids.iter().all(|id| personas.get(id).is_some_and(|p| p.id == *id)), "{label}: get by id");
            assert!(personas.get("nobody").is_none(), "{label}: unknown ids are not found");
        }
    }

    #[test]
    fn a_persona_remembers_unless_told_not_to() {
        let text = persona("remembers", "") + &persona("forgets", "memory = false");

        let personas = Personas::parse(&text).expect("valid");

        let memory: Vec<(&str, bool)> = personas.all().iter().map(|p| (p.id.as_str(), p.memory)).collect();
        assert_eq!(memory, [("remembers", true), ("forgets", false)]);
    }

    #[test]
    fn reasoning_effort_takes_what_deepseek_v4_1_accepts() {
        for (raw, accepted) in
            [("low", true), ("high", true), ("max", true), ("medium", false), ("xhigh", false), ("", false)]
        {
            let text = persona("p", &format!("thinking = true\nreasoning_effort = \"{raw}\""));
            assert_eq!(Personas::parse(&text).is_ok(), accepted, "reasoning_effort = {raw:?}");
        }
    }

    #[test]
    fn optional_persona_fields_are_read_and_defaulted() {
        let text = persona("plain", "")
            + &persona("thinker", "model = \"m\"\nthinking = true\nreasoning_effort = \"high\"\npreview = true")
            + &persona("warm", "temperature = 1.3");

        let personas = Personas::parse(&text).expect("valid");

        let summary: Vec<_> = personas
            .all()
            .iter()
            .map(|p| {
                (
                    p.id.as_str(),
                    p.model.as_deref(),
                    p.thinking,
                    p.reasoning_effort.map(|e| e.as_str()),
                    p.preview,
                    p.temperature,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("plain", None, false, None, false, None),
                ("thinker", Some("m"), true, Some("high"), true, None),
                ("warm", None, false, None, false, Some(1.3)),
            ]
        );
    }

    #[test]
    fn broken_persona_files_are_refused_with_a_reason() {
        let long_id = "x".repeat(65);
        // (label, file, a phrase the error must contain; empty = any error)
        let cases: Vec<(&str, String, &str)> = vec![
            ("an empty file", String::new(), ""),
            ("an empty list", "personas = []".into(), "at least one enabled persona"),
            ("only disabled ones", persona("off", "enabled = false"), "at least one enabled persona"),
            ("an empty model name", persona("p", "model = \"\""), "a model name"),
            ("a model name with a space", persona("p", "model = \"deep seek\""), "a model name"),
            ("a temperature above 2", persona("p", "temperature = 5.0"), "temperature"),
            ("a negative temperature", persona("p", "temperature = -0.5"), "temperature"),
            ("duplicate ids", persona("twin", "") + &persona("twin", ""), "appears twice"),
            (
                "duplicate ids apart",
                persona("twin", "") + &persona("other", "") + &persona("twin", ""),
                "appears twice",
            ),
            ("an empty id", persona("", ""), "must be 1-64"),
            ("an id too long", persona(&long_id, ""), "must be 1-64"),
            ("an id with a space", persona("two words", ""), "must be 1-64"),
            ("an id with a slash", persona("a/b", ""), "must be 1-64"),
            ("a non-ASCII id", persona("小溪", ""), "must be 1-64"),
            ("a blank system prompt", persona("p", "").replace("You are p.", "  "), "needs a name and a system_prompt"),
            ("a blank name", persona("p", "").replace("Name of p", " "), "needs a name and a system_prompt"),
            ("a missing system prompt", persona("p", "").replace("system_prompt = \"You are p.\"", ""), ""),
            ("a missing name", persona("p", "").replace("name = \"Name of p\"", ""), ""),
            ("a temperature that is not a number", persona("p", "temperature = \"hot\""), ""),
            ("thinking that is not a boolean", persona("p", "thinking = \"maybe\""), ""),
            ("personas that are not a list", "personas = \"xiaoxi\"".into(), ""),
            ("invalid TOML", "[[personas]\nid = ".into(), ""),
        ];
        for (label, text, reason) in cases {
            match Personas::parse(&text) {
                Ok(p) => panic!("{label}: accepted as {:?}", p.all().iter().map(|p| &p.id).collect::<Vec<_>>()),
                Err(e) => assert!(format!("{e:#}").contains(reason), "{label}: {e:#} does not say {reason:?}"),
            }
        }
    }

    #[test]
    fn misspelt_keys_and_loosely_typed_values_are_refused() {
        const CASES: &[(&str, &str)] = &[
            ("a misspelt preview flag", "preveiw = true"),
            ("a misspelt temperature", "temprature = 0.2"),
            ("a key in capitals", "Preview = true"),
            ("an unknown nested table", "[personas.extra]\nx = 1"),
            ("a quoted boolean", "preview = \"true\""),
            ("yes for true", "thinking = \"yes\""),
            ("1 for true", "thinking = 1"),
            ("a quoted number", "temperature = \"1.5\""),
        ];
        for &(label, extra) in CASES {
            assert!(Personas::parse(&persona("p", extra)).is_err(), "{label}: accepted");
        }
        let numeric_id =
            "[[personas]]\nid = 123\nname = \"n\"\ndescription = \"d\"\ngreeting = \"g\"\nsystem_prompt = \"S\"\n";
        assert!(Personas::parse(numeric_id).is_err(), "a number is not an id");
    }
}

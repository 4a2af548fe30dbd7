//! Companions, loaded from a TOML file shipped in the repository; deployers add their
//! own without code changes.
use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The repository's own file, compiled in: used when the configured default path does
/// not exist (for example when the binary runs from another directory).
const BUILT_IN: &str = include_str!("../../config/personas.toml");

#[derive(Debug, Clone, Deserialize)]
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
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub preview: bool,
}

#[derive(Deserialize)]
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
        if file.personas.is_empty() {
            bail!("at least one persona is required");
        }
        let mut seen = HashSet::new();
        for p in &file.personas {
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
        }
        Ok(Personas { all: file.personas })
    }

    pub fn get(&self, id: &str) -> Option<&Persona> {
        self.all.iter().find(|p| p.id == id)
    }

    pub fn default_persona(&self) -> &Persona {
        &self.all[0]
    }

    pub fn all(&self) -> &[Persona] {
        &self.all
    }
}

fn toml_parse<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    // The `config` crate already parses TOML; reuse it rather than add a parser.
    let parsed =
        config::Config::builder().add_source(config::File::from_str(text, config::FileFormat::Toml)).build()?;
    Ok(parsed.try_deserialize()?)
}

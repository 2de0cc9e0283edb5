//! Which depthwise layers a pass converts: `--layers` / `--skip` selectors
//! (indices, ranges, name patterns) and the presets of `passes/`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::passes::fuse_depthwise;

/// One entry of `--layers` / `--skip`: an index, an index range `a-b`, or a
/// node-name pattern with `*` wildcards.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Index(usize),
    Range(usize, usize),
    Pattern(String),
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::option("--layers", "empty layer selector"));
        }
        if let Ok(i) = s.parse::<usize>() {
            return Ok(Selector::Index(i));
        }
        if let Some((a, b)) = s.split_once('-')
            && let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                if a > b {
                    return Err(Error::option("--layers", format!("range '{s}' is empty")));
                }
                return Ok(Selector::Range(a, b));
            }
        Ok(Selector::Pattern(s.to_string()))
    }

    pub fn matches(&self, index: usize, name: &str) -> bool {
        match self {
            Selector::Index(i) => *i == index,
            Selector::Range(a, b) => (*a..=*b).contains(&index),
            Selector::Pattern(p) => glob_match(p, name),
        }
    }
}

/// `*` matches any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Which depthwise layers a pass converts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum LayerSelection {
    /// `"all"` or a preset name (`"paper-50-mobilenet-v2"`) or a comma list.
    Named(String),
    /// A list of indices / patterns.
    List(Vec<ListItem>),
    #[default]
    #[serde(skip)]
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ListItem {
    Index(usize),
    Text(String),
}

/// A layer-selection preset file from `passes/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub description: String,
    /// The network this preset was written for (informational).
    #[serde(default)]
    pub network: Option<String>,
    /// How many depthwise convs that network has; checked against the model.
    pub depthwise_layers: Option<usize>,
    pub layers: Vec<ListItem>,
}

impl LayerSelection {
    pub fn parse(s: &str) -> LayerSelection {
        if s == "all" { LayerSelection::All } else { LayerSelection::Named(s.to_string()) }
    }

    fn selectors(items: &[ListItem]) -> Result<Vec<Selector>> {
        items
            .iter()
            .map(|i| match i {
                ListItem::Index(i) => Ok(Selector::Index(*i)),
                ListItem::Text(t) => Selector::parse(t),
            })
            .collect()
    }

    /// Check the selection without a graph (unknown preset names fail here).
    pub fn validate(&self) -> Result<()> {
        self.expand().map(|_| ())
    }

    /// Turn the selection into selectors, plus the preset it came from.
    fn expand(&self) -> Result<Option<(Vec<Selector>, Option<(String, Preset)>)>> {
        match self {
            LayerSelection::All => Ok(None),
            LayerSelection::Named(s) if s == "all" => Ok(None),
            LayerSelection::List(items) => Ok(Some((Self::selectors(items)?, None))),
            LayerSelection::Named(s) => {
                if let Some(preset) = load_preset(s)? {
                    return Ok(Some((Self::selectors(&preset.layers)?, Some((s.clone(), preset)))));
                }
                if looks_like_preset_name(s) {
                    return Err(Error::option(
                        "--layers",
                        format!("'{s}' is neither a layer list nor a known preset; presets: all, {}", preset_names().join(", ")),
                    ));
                }
                let sel = s.split(',').map(Selector::parse).collect::<Result<Vec<_>>>()?;
                Ok(Some((sel, None)))
            }
        }
    }

    /// Indices of the selected candidates.
    pub fn resolve(&self, cands: &[fuse_depthwise::Candidate]) -> Result<Vec<usize>> {
        let Some((sel, preset)) = self.expand()? else {
            return Ok(cands.iter().map(|c| c.index()).collect());
        };
        if let Some((name, p)) = &preset
            && let Some(n) = p.depthwise_layers
                && n != cands.len() {
                    return Err(Error::option(
                        "--layers",
                        format!("preset '{name}' is for a network with {n} depthwise convs; this model has {}", cands.len()),
                    ));
                }
        for s in &sel {
            let hit = cands.iter().any(|c| s.matches(c.index(), c.name()));
            match s {
                Selector::Index(i) | Selector::Range(i, _) if !hit => {
                    return Err(Error::option("--layers", format!("layer index {i} is out of range: the model has {} depthwise convs", cands.len())));
                }
                Selector::Pattern(p) if !hit => {
                    return Err(Error::option("--layers", format!("pattern '{p}' matches no depthwise conv")));
                }
                _ => {}
            }
        }
        Ok(cands.iter().filter(|c| sel.iter().any(|s| s.matches(c.index(), c.name()))).map(|c| c.index()).collect())
    }
}

fn looks_like_preset_name(s: &str) -> bool {
    s.contains('-') && s.chars().any(|c| c.is_ascii_alphabetic()) && !s.contains(',') && !s.contains('*') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Layer-selection presets compiled in from `passes/` (files without `[[pass]]`).
pub fn preset_names() -> Vec<&'static str> {
    crate::passes::pipeline::embedded_files().iter().filter(|(_, c)| !c.contains("[[pass]]")).map(|(n, _)| *n).collect()
}

/// A preset by name (compiled in) or by path to a `.toml` file.
pub fn load_preset(name: &str) -> Result<Option<Preset>> {
    let text = if let Some((_, c)) = crate::passes::pipeline::embedded_files().iter().find(|(n, c)| *n == name && !c.contains("[[pass]]")) {
        (*c).to_string()
    } else if name.ends_with(".toml") {
        std::fs::read_to_string(name).map_err(|e| Error::io(name, e))?
    } else {
        return Ok(None);
    };
    toml::from_str(&text).map(Some).map_err(|e| Error::option("--layers", format!("preset '{name}': {e}")))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        assert_eq!(Selector::parse(" 3 ").unwrap(), Selector::Index(3));
        assert_eq!(Selector::parse("2-5").unwrap(), Selector::Range(2, 5));
        assert!(Selector::parse("5-2").unwrap_err().to_string().contains("empty"));
        assert!(Selector::parse("").is_err());
        let p = Selector::parse("*block3*").unwrap();
        assert!(p.matches(0, "features.block3.conv") && !p.matches(0, "features.block4.conv"));
        assert!(Selector::Range(2, 5).matches(5, "") && !Selector::Range(2, 5).matches(6, ""));
        assert!(glob_match("a?c*", "abcdef") && !glob_match("a?c", "abcd") && glob_match("*", ""));
    }
}

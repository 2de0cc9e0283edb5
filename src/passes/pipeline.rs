//! Pipelines as data: the files of the top-level `passes/` folder (compiled
//! in), the registry from pass name to constructor, and parsing
//! `[[pass]]` tables into constructed passes.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::passes::{fold_shapes, fuse_depthwise, Pass};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/passes_files.rs"));
}

/// Files of the top-level `passes/` folder, compiled in: (stem, contents).
pub fn embedded_files() -> &'static [(&'static str, &'static str)] {
    embedded::FILES
}

pub fn pipeline_names() -> Vec<&'static str> {
    embedded_files().iter().filter(|(_, c)| c.contains("[[pass]]")).map(|(n, _)| *n).collect()
}

/// A pipeline file: ordered passes with their options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    #[serde(default)]
    pub description: String,
    pub pass: Vec<toml::Table>,
}

/// One pass of a pipeline, before construction.
#[derive(Debug, Clone, PartialEq)]
pub struct PassSpec {
    pub name: String,
    pub options: toml::Table,
}

/// A pipeline before construction: where it came from and every pass with its
/// options (so command-line options can override them and the output can
/// record exactly what ran).
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// `half`, `full` (built in) or the file's path.
    pub origin: String,
    pub description: String,
    pub passes: Vec<PassSpec>,
}

impl Pipeline {
    /// Parse `[[pass]]` tables; unknown pass names are errors listing the valid ones.
    pub fn parse(text: &str, origin: &str) -> Result<Pipeline> {
        let file: PipelineFile = toml::from_str(text).map_err(|e| Error::option("--pipeline", format!("{origin}: {e}")))?;
        let valid: Vec<&str> = registry().iter().map(|(n, _)| *n).collect();
        let passes = file
            .pass
            .into_iter()
            .map(|mut t| {
                let name = match t.remove("name") {
                    Some(toml::Value::String(s)) => s,
                    _ => return Err(Error::option("--pipeline", format!("{origin}: every [[pass]] needs name = \"...\""))),
                };
                if !valid.contains(&name.as_str()) {
                    return Err(Error::option("--pipeline", format!("{origin}: unknown pass '{name}'; valid passes: {}", valid.join(", "))));
                }
                Ok(PassSpec { name, options: t })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Pipeline { origin: origin.to_string(), description: file.description, passes })
    }

    /// A pipeline compiled in from `passes/` (`half`, `full`).
    pub fn builtin(name: &str) -> Result<Pipeline> {
        let (_, text) = embedded_files()
            .iter()
            .find(|(n, c)| *n == name && c.contains("[[pass]]"))
            .ok_or_else(|| Error::option("--pipeline", format!("no built-in pipeline '{name}'; built in: {}", pipeline_names().join(", "))))?;
        Pipeline::parse(text, name)
    }

    /// A pipeline file.
    pub fn load(path: &std::path::Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Pipeline::parse(&text, &path.display().to_string())
    }

    /// Set `key = value` in the options of every pass called `pass`.
    pub fn set_option(&mut self, pass: &str, key: &str, value: toml::Value) {
        for p in self.passes.iter_mut().filter(|p| p.name == pass) {
            p.options.insert(key.to_string(), value.clone());
        }
    }

    /// Construct the passes; `custom` may construct a pass itself (to hand it
    /// something that is not an option, such as fitted kernels).
    pub fn build_with(&self, custom: &dyn Fn(&PassSpec) -> Option<Result<Box<dyn Pass>>>) -> Result<Vec<Box<dyn Pass>>> {
        self.passes
            .iter()
            .map(|p| {
                let built = match custom(p) {
                    Some(b) => b,
                    None => build_pass(&p.name, toml::Value::Table(p.options.clone())),
                };
                built.map_err(|e| Error::option("--pipeline", format!("{}: {e}", self.origin)))
            })
            .collect()
    }

    pub fn build(&self) -> Result<Vec<Box<dyn Pass>>> {
        self.build_with(&|_| None)
    }

    /// One line recording what runs: `half: fuse_depthwise{init="lsq", layers="all", variant="half"}`.
    pub fn describe(&self) -> String {
        let passes: Vec<String> = self
            .passes
            .iter()
            .map(|p| {
                let mut opts: Vec<String> = p.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                opts.sort();
                if opts.is_empty() { p.name.clone() } else { format!("{}{{{}}}", p.name, opts.join(", ")) }
            })
            .collect();
        format!("{}: {}", self.origin, passes.join("; "))
    }
}

pub type Constructor = fn(toml::Value) -> Result<Box<dyn Pass>>;

/// The registry: pass name → constructor from its TOML options.
pub fn registry() -> Vec<(&'static str, Constructor)> {
    vec![
        ("fold_shapes", |v| match &v {
            toml::Value::Table(t) if !t.is_empty() => Err(Error::option("fold_shapes", "takes no options")),
            _ => Ok(Box::new(fold_shapes::FoldShapes) as Box<dyn Pass>),
        }),
        ("fuse_depthwise", |v| {
            let opts: fuse_depthwise::Options = v.try_into().map_err(|e: toml::de::Error| Error::option("fuse_depthwise", e.to_string()))?;
            Ok(Box::new(fuse_depthwise::FuseDepthwise::new(opts)?) as Box<dyn Pass>)
        }),
    ]
}

pub fn build_pass(name: &str, opts: toml::Value) -> Result<Box<dyn Pass>> {
    let reg = registry();
    let Some((_, ctor)) = reg.iter().find(|(n, _)| *n == name) else {
        let valid: Vec<&str> = reg.iter().map(|(n, _)| *n).collect();
        return Err(Error::option("pipeline", format!("unknown pass '{name}'; valid passes: {}", valid.join(", "))));
    };
    ctor(opts)
}

/// Parse pipeline text into constructed passes.
pub fn parse_pipeline(text: &str, origin: &str) -> Result<Vec<Box<dyn Pass>>> {
    Pipeline::parse(text, origin)?.build()
}

//! Task recipes for `fusec finetune`: the measured best settings of each kind of
//! model, as TOML files in `recipes/` compiled in. A recipe is a table of
//! finetune options; `--task` picks one (rot180 → classify, ctc → ppocr-rec,
//! textdet → ppocr-det, layout → layout), `--recipe NAME|FILE.toml` another, `--set key=value`
//! changes a value, and any option given on the command line wins over both.
//! `--print-recipe` shows the resolved recipe.
//!
//! Mechanics: before clap parses, the recipe's options become command-line
//! tokens placed right after `finetune`; the subcommand lets a later
//! occurrence of an option override an earlier one, so the user's own options
//! (which come after) take precedence.

use std::ffi::OsString;

use clap::CommandFactory;

/// (name, aliases, text) of the compiled-in recipes.
const BUILT_IN: &[(&str, &[&str], &str)] = &[
    ("classify", &["rot180"], include_str!("../../recipes/classify.toml")),
    ("ppocr-rec", &["ctc"], include_str!("../../recipes/ppocr-rec.toml")),
    ("ppocr-det", &["textdet"], include_str!("../../recipes/ppocr-det.toml")),
    ("layout", &["layout"], include_str!("../../recipes/layout.toml")),
];

/// What the command line asks for once recipes are expanded.
pub enum Expanded {
    /// Arguments for clap.
    Args(Vec<OsString>),
    /// `--print-recipe`: the resolved recipe, to print.
    Print(String),
}

/// A recipe: where it came from, its description, and its options.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub source: String,
    pub description: String,
    pub measured: String,
    pub options: toml::Table,
}

/// The names of the compiled-in recipes and their aliases.
pub fn names() -> Vec<String> {
    BUILT_IN.iter().map(|(n, a, _)| if a.is_empty() { n.to_string() } else { format!("{n} ({})", a.join(", ")) }).collect()
}

fn parse(name: &str, source: &str, text: &str) -> anyhow::Result<Recipe> {
    let mut t: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("option --recipe: {source}: {e}"))?;
    let s = |t: &mut toml::Table, k: &str| t.remove(k).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let (description, measured) = (s(&mut t, "description"), s(&mut t, "measured"));
    let options = match t.remove("finetune") {
        Some(toml::Value::Table(o)) => o,
        Some(_) => anyhow::bail!("option --recipe: {source}: [finetune] must be a table"),
        None => toml::Table::new(),
    };
    if let Some(k) = t.keys().next() {
        anyhow::bail!("option --recipe: {source}: unknown key '{k}' (a recipe has description, measured and a [finetune] table)");
    }
    Ok(Recipe { name: name.to_string(), source: source.to_string(), description, measured, options })
}

/// A recipe by name or alias (compiled in) or by path to a `.toml` file.
pub fn load(name: &str) -> anyhow::Result<Recipe> {
    if let Some((n, _, text)) = BUILT_IN.iter().find(|(n, a, _)| *n == name || a.contains(&name)) {
        return parse(n, &format!("built in, recipes/{n}.toml"), text);
    }
    if name.ends_with(".toml") {
        let text = std::fs::read_to_string(name).map_err(|e| anyhow::anyhow!("option --recipe: {name}: {e}"))?;
        return parse(name, name, &text);
    }
    anyhow::bail!("option --recipe: '{name}' is neither a recipe ({}) nor a .toml file", names().join(", "))
}

/// The long options `fusec finetune` takes.
fn finetune_options() -> Vec<String> {
    let cmd = super::Cli::command();
    cmd.get_subcommands().find(|c| c.get_name() == "finetune").map(|c| c.get_arguments().filter_map(|a| a.get_long().map(str::to_string)).collect()).unwrap_or_default()
}

/// Options a recipe may not set: what to train, where to write it, the recipe machinery.
const NOT_IN_RECIPES: &[&str] = &["teacher", "data", "output", "force", "recipe", "set", "print-recipe", "resume"];

fn check(r: &Recipe) -> anyhow::Result<()> {
    let known = finetune_options();
    for k in r.options.keys() {
        if NOT_IN_RECIPES.contains(&k.as_str()) || !known.iter().any(|o| o == k) {
            anyhow::bail!("option --set or --recipe ({}): '{k}' is not a finetune option a recipe can set (see fusec finetune --help)", r.source);
        }
    }
    Ok(())
}

/// `key=value` of `--set`: the value as TOML (a number, true/false, a quoted
/// string or an array), or else as a plain string.
fn apply_set(r: &mut Recipe, kv: &str) -> anyhow::Result<()> {
    let (k, v) = kv.split_once('=').ok_or_else(|| anyhow::anyhow!("option --set: '{kv}' is not KEY=VALUE"))?;
    let k = k.trim().trim_start_matches("--").to_string();
    let value = toml::from_str::<toml::Table>(&format!("v = {v}")).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(v.to_string()));
    r.options.insert(k, value);
    Ok(())
}

fn tokens(r: &Recipe) -> anyhow::Result<Vec<OsString>> {
    let mut out = vec![];
    for (k, v) in &r.options {
        let flag = format!("--{k}");
        let scalar = |v: &toml::Value| -> anyhow::Result<String> {
            Ok(match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => anyhow::bail!("option --recipe: {}: '{k}' = {other} is not a value an option takes", r.source),
            })
        };
        match v {
            toml::Value::Boolean(true) => out.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for i in items {
                    out.push(flag.clone().into());
                    out.push(scalar(i)?.into());
                }
            }
            other => {
                out.push(flag.into());
                out.push(scalar(other)?.into());
            }
        }
    }
    Ok(out)
}

/// The resolved recipe as TOML, as `--print-recipe` shows it.
pub fn render(r: &Recipe) -> String {
    let mut s = format!("# recipe {} ({})\n", r.name, r.source);
    if !r.description.is_empty() {
        s.push_str(&format!("description = {:?}\n", r.description));
    }
    if !r.measured.is_empty() {
        s.push_str(&format!("measured = {:?}\n", r.measured));
    }
    let mut t = toml::Table::new();
    t.insert("finetune".into(), toml::Value::Table(r.options.clone()));
    s.push('\n');
    s.push_str(&toml::to_string(&t).unwrap_or_default());
    s
}

/// The value of `--name VALUE` / `--name=VALUE` in `args` (every occurrence).
fn values_of(args: &[OsString], name: &str) -> Vec<String> {
    let long = format!("--{name}");
    let eq = format!("--{name}=");
    let mut out = vec![];
    let mut it = args.iter().map(|a| a.to_string_lossy().to_string());
    while let Some(a) = it.next() {
        if a == long {
            if let Some(v) = it.next() {
                out.push(v);
            }
        } else if let Some(v) = a.strip_prefix(&eq) {
            out.push(v.to_string());
        }
    }
    out
}

/// Expand the recipe of a `fusec finetune` command line (other commands pass through).
pub fn expand(argv: Vec<OsString>) -> anyhow::Result<Expanded> {
    // the subcommand: the first argument that is not a (global) flag
    let Some(k) = argv.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-')).map(|p| p + 1) else { return Ok(Expanded::Args(argv)) };
    if argv[k] != "finetune" {
        return Ok(Expanded::Args(argv));
    }
    let user = &argv[k + 1..];
    if user.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Expanded::Args(argv));
    }
    let explicit = values_of(user, "recipe").pop();
    let task = values_of(user, "task").pop();
    let name = explicit.clone().or(task).unwrap_or_else(|| "classify".into());
    let mut r = load(&name)?;
    for kv in values_of(user, "set") {
        apply_set(&mut r, &kv)?;
    }
    check(&r)?;
    // augmentation switched on or off on the command line replaces the recipe's choice
    // (clap refuses --no-augment next to an --augment-* option)
    let said = |p: &dyn Fn(&str) -> bool| user.iter().any(|a| p(&a.to_string_lossy()));
    if said(&|a| a.starts_with("--augment")) {
        r.options.remove("no-augment");
    }
    if said(&|a| a == "--no-augment") {
        r.options.retain(|k, _| !k.starts_with("augment"));
    }
    if user.iter().any(|a| a == "--print-recipe") {
        return Ok(Expanded::Print(render(&r)));
    }
    let mut out: Vec<OsString> = argv[..=k].to_vec();
    out.extend(tokens(&r)?);
    if explicit.is_none() {
        // the summary names the recipe used
        out.push("--recipe".into());
        out.push(r.name.clone().into());
    }
    out.extend(user.iter().cloned());
    Ok(Expanded::Args(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn built_in_recipes_set_only_finetune_options() {
        for (n, _, _) in BUILT_IN {
            let r = load(n).unwrap();
            check(&r).unwrap();
            assert!(!r.measured.is_empty(), "{n}: a recipe says what it measured");
        }
    }

    #[test]
    fn the_task_picks_the_recipe_and_the_command_line_comes_last() {
        let Expanded::Args(a) = expand(args("fusec finetune s.onnx --teacher t.onnx --data d.tsv --task textdet --epochs 3")).unwrap() else { panic!() };
        let s: Vec<String> = a.iter().map(|x| x.to_string_lossy().to_string()).collect();
        let recipe_epochs = s.iter().position(|x| x == "30").unwrap();
        let user_epochs = s.iter().position(|x| x == "3").unwrap();
        assert!(recipe_epochs < user_epochs, "{s:?}");
        assert!(s.windows(2).any(|w| w[0] == "--recipe" && w[1] == "ppocr-det"), "{s:?}");
        assert!(s.windows(2).any(|w| w[0] == "--output-loss" && w[1] == "[map]=bce:20"), "{s:?}");
        // every task has its recipe
        for (task, recipe) in [("rot180", "classify"), ("ctc", "ppocr-rec"), ("textdet", "ppocr-det"), ("layout", "layout")] {
            let Expanded::Args(a) = expand(args(&format!("fusec finetune s.onnx --task {task}"))).unwrap() else { panic!() };
            assert!(a.windows(2).any(|w| w[0] == "--recipe" && w[1] == recipe), "{task}: {a:?}");
        }
    }

    #[test]
    fn set_changes_a_value_and_print_shows_it() {
        let Expanded::Print(p) = expand(args("fusec finetune --task ctc --set ema=0.95 --set no-augment=false --print-recipe")).unwrap() else { panic!() };
        assert!(p.contains("ema = 0.95") && p.contains("no-augment = false") && p.contains("recipe ppocr-rec"), "{p}");
        let e = expand(args("fusec finetune --task ctc --set bogus=1 --print-recipe")).err().unwrap().to_string();
        assert!(e.contains("'bogus' is not a finetune option"), "{e}");
        let e = expand(args("fusec finetune --recipe nope")).err().unwrap().to_string();
        assert!(e.contains("--recipe") && e.contains("ppocr-det"), "{e}");
    }

    #[test]
    fn augmentation_on_the_command_line_replaces_the_recipes() {
        let s = |a: &str| match expand(args(a)).unwrap() {
            Expanded::Args(v) => v.iter().map(|x| x.to_string_lossy().to_string()).collect::<Vec<_>>(),
            Expanded::Print(_) => panic!(),
        };
        let a = s("fusec finetune m --task ctc --augment-stroke");
        assert!(!a.contains(&"--no-augment".to_string()), "{a:?}");
        let a = s("fusec finetune m --task textdet --no-augment");
        assert!(!a.iter().any(|x| x.starts_with("--augment")), "{a:?}");
    }

    /// `fusec finetune --help` shows the core options and names every other one (the
    /// recipe options, hidden from the option list) in its epilogue.
    #[test]
    fn help_names_every_recipe_option() {
        let cmd = crate::cli::Cli::command();
        let ft = cmd.get_subcommands().find(|c| c.get_name() == "finetune").unwrap();
        let mut hidden: Vec<String> = ft.get_arguments().filter(|a| a.is_hide_set()).filter_map(|a| a.get_long().map(str::to_string)).collect();
        let help = ft.get_after_help().unwrap().to_string();
        let list = help.split("Recipe options:").nth(1).unwrap().split("(docs").next().unwrap();
        // and the preprocessing and decoding details, named in their own sentence
        let details = help.split("beyond --preprocess (").nth(1).unwrap().split(')').next().unwrap();
        let mut listed: Vec<String> = list.split(',').chain(details.split(',')).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        hidden.sort();
        listed.sort();
        assert_eq!(hidden, listed);
        let shown = ft.get_arguments().filter(|a| !a.is_hide_set() && a.get_long().is_some()).count();
        assert!(shown <= 22, "{shown} options in --help");
    }

    #[test]
    fn other_commands_pass_through() {
        let a = args("fusec -v convert m.onnx --set x=1");
        let Expanded::Args(b) = expand(a.clone()).unwrap() else { panic!() };
        assert_eq!(a, b);
    }
}

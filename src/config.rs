//! Configuration files of the subcommands (TOML or JSON, by extension), resolved in layers:
//! the defaults (or a preset), then the file, then the command-line flags. Every key of a
//! file must exist in the defaults, so a misspelt key is an error naming it and the known
//! keys; a value of the wrong type is an error naming its key path
//! (`serde_path_to_error`). The resolved configuration is printed back (`Ui::config`) and
//! written into run folders, so a run can be repeated from its own record.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Reads a configuration file into a JSON value: `.toml` as TOML, `.json` as JSON.
pub fn read_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow!("configuration file {}: no such file", path.display())
        }
        _ => anyhow!("configuration file {}: {e}", path.display()),
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("toml") => {
            let v: toml::Value = toml::from_str(&text).map_err(|e| {
                let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
                anyhow!(
                    "{}:{line}:{col}: {}",
                    path.display(),
                    e.message().trim_end()
                )
            })?;
            serde_json::to_value(v).with_context(|| format!("{}", path.display()))
        }
        Some("json") => serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display())),
        _ => bail!(
            "configuration file {}: unknown format; use a .toml or .json file",
            path.display()
        ),
    }
}

/// The 1-based line and column of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Whether an object is a tagged enum value (`{"kind": "nystrom", ...}`): such values are
/// replaced whole, not merged key by key, since each variant has its own keys.
fn is_tagged(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key("kind"))
}

/// Lays `layer` over `base`: objects are merged key by key, other values replaced. A key of
/// `layer` that `base` lacks is an error naming it (with `prefix`), the known keys and
/// `source`.
pub fn overlay(base: &mut Value, layer: Value, source: &str, prefix: &str) -> Result<()> {
    match (base, layer) {
        (Value::Object(b), Value::Object(l)) => {
            for (k, v) in l {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match b.get_mut(&k) {
                    Some(slot) => {
                        if slot.is_object() && v.is_object() && !is_tagged(slot) && !is_tagged(&v) {
                            overlay(slot, v, source, &path)?;
                        } else {
                            *slot = v;
                        }
                    }
                    None => {
                        let known: Vec<&str> = b.keys().map(String::as_str).collect();
                        bail!(
                            "{source}: unknown key `{path}`; known keys{}: {}",
                            if prefix.is_empty() {
                                String::new()
                            } else {
                                format!(" of `{prefix}`")
                            },
                            known.join(", ")
                        );
                    }
                }
            }
            Ok(())
        }
        (b, l) => {
            *b = l;
            Ok(())
        }
    }
}

/// Sets the value at a dotted key path (`"train.epochs"`), which must exist in `base`.
pub fn set_path(base: &mut Value, path: &str, value: Value) -> Result<()> {
    let mut layer = value;
    for k in path.rsplit('.') {
        let mut m = serde_json::Map::new();
        m.insert(k.to_string(), layer);
        layer = Value::Object(m);
    }
    overlay(base, layer, "command line", "")
}

/// The configuration `base` with `file` (if any) and then `flags` (dotted key paths and
/// values; `None` values are skipped) laid over it.
pub fn resolve<T: Serialize + DeserializeOwned>(
    base: &T,
    file: Option<&Path>,
    flags: &[(&str, Option<Value>)],
) -> Result<T> {
    let mut v = serde_json::to_value(base).context("serialising the defaults")?;
    let source = match file {
        Some(f) => {
            let layer = read_file(f)?;
            if !layer.is_object() {
                bail!("{}: the configuration must be a table of keys", f.display());
            }
            overlay(&mut v, layer, &f.display().to_string(), "")?;
            f.display().to_string()
        }
        None => "configuration".to_string(),
    };
    for (path, value) in flags {
        if let Some(value) = value {
            set_path(&mut v, path, value.clone())?;
        }
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        anyhow!("{source}: key `{path}`: {}", e.into_inner())
    })
}

/// The value of a top-level key of a configuration file (for keys that choose the defaults,
/// such as `preset`), if the file and the key exist.
pub fn peek(file: Option<&Path>, key: &str) -> Result<Option<Value>> {
    match file {
        Some(f) => Ok(read_file(f)?.get(key).cloned()),
        None => Ok(None),
    }
}

/// `Some(json value)` of an optional flag.
pub fn flag<T: Serialize>(v: &Option<T>) -> Option<Value> {
    v.as_ref().and_then(|x| serde_json::to_value(x).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        epochs: u64,
        lr: f64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        train: Inner,
    }

    fn base() -> Outer {
        Outer {
            name: "a".into(),
            train: Inner { epochs: 3, lr: 0.1 },
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    #[test]
    fn toml_and_json_files_merge_over_defaults_and_flags_over_files() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let t = write(dir.path(), "c.toml", "name = \"b\"\n[train]\nepochs = 7\n");
        let r = resolve(&base(), Some(&t), &[])?;
        assert_eq!(r.name, "b");
        assert_eq!(r.train, Inner { epochs: 7, lr: 0.1 });
        let j = write(dir.path(), "c.json", r#"{"train": {"lr": 0.5}}"#);
        let r = resolve(
            &base(),
            Some(&j),
            &[("train.epochs", Some(Value::from(9))), ("name", None)],
        )?;
        assert_eq!(r.train, Inner { epochs: 9, lr: 0.5 });
        assert_eq!(r.name, "a");
        Ok(())
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let t = write(dir.path(), "c.toml", "[train]\nepoch = 7\n");
        let e = resolve(&base(), Some(&t), &[]).unwrap_err().to_string();
        assert!(e.contains("unknown key `train.epoch`"), "{e}");
        assert!(e.contains("epochs, lr"), "{e}");
        let t = write(dir.path(), "d.toml", "[train]\nepochs = \"many\"\n");
        let e = resolve(&base(), Some(&t), &[]).unwrap_err().to_string();
        assert!(e.contains("key `train.epochs`"), "{e}");
        let t = write(dir.path(), "e.toml", "name = \n");
        let e = resolve(&base(), Some(&t), &[]).unwrap_err().to_string();
        assert!(e.contains("e.toml:1:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = resolve(&base(), Some(&dir.path().join("none.toml")), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.toml: no such file"), "{e}");
        Ok(())
    }

    #[test]
    fn tagged_values_are_replaced_whole() -> Result<()> {
        let mut b = serde_json::json!({"attention": {"kind": "softmax"}});
        overlay(
            &mut b,
            serde_json::json!({"attention": {"kind": "nystrom", "landmarks": 64}}),
            "x",
            "",
        )?;
        assert_eq!(b["attention"]["landmarks"], 64);
        Ok(())
    }
}

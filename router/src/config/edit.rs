//! Changes to the routes file's `[[route]]` tables made through the API, written back into the admin's file.
//!
//! The file stays the one source of truth: an API change is a text edit of it, made with `toml_edit` so every
//! comment, blank line and key order outside the changed route stays byte for byte, then validated and applied
//! exactly like an edit made by hand. Only the route tables are edited; values are written as TOML literals, so
//! `${VAR}` in a value stays a reference to the environment.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

/// One change to the routes. A list of them is applied together: all or nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum RouteEdit {
    /// A new `[[route]]` with these keys (`name` and `from` at least), after the last one.
    Add { route: Map<String, Value> },
    /// Sets these keys of route `name`; `null` removes a key (back to `[defaults]`). Setting `name` renames it.
    Update { name: String, set: Map<String, Value> },
    /// Removes route `name` and the comment lines just above it.
    Delete { name: String },
}

/// Why edits could not be made (before validation, which reports like a reload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("there is no route named \"{0}\" in the routes file")]
    NoRoute(String),
    /// An edit that cannot be written as TOML.
    #[error("{0}")]
    Invalid(String),
    /// The file on disk is not TOML at all (fix it by hand first).
    #[error("{0}")]
    File(String),
}

/// The file's text with `edits` made, in order.
pub fn apply(text: &str, edits: &[RouteEdit]) -> Result<String, EditError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| EditError::File(format!("the file is not valid TOML, so it cannot be edited: {e}")))?;
    for edit in edits {
        match edit {
            RouteEdit::Add { route } => add(&mut doc, route)?,
            RouteEdit::Update { name, set } => update(&mut doc, name, set)?,
            RouteEdit::Delete { name } => delete(&mut doc, name)?,
        }
    }
    Ok(doc.to_string())
}

/// The `[[route]]` tables, made so if the file has none (or `route = []`).
fn routes_mut(doc: &mut DocumentMut) -> Result<&mut ArrayOfTables, EditError> {
    let empty_inline = match doc.get("route") {
        None => true,
        Some(Item::Value(v)) => v.as_array().is_some_and(|a| a.is_empty()),
        Some(_) => false,
    };
    if empty_inline {
        doc.insert("route", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    doc.get_mut("route").and_then(Item::as_array_of_tables_mut).ok_or_else(|| {
        EditError::Invalid(
            "the routes file declares its routes as an inline array (`route = [...]`): the API edits [[route]] \
             tables only; rewrite them as [[route]] tables first"
                .into(),
        )
    })
}

fn position(routes: &ArrayOfTables, name: &str) -> Option<usize> {
    routes.iter().position(|t| t.get("name").and_then(Item::as_str) == Some(name))
}

fn add(doc: &mut DocumentMut, route: &Map<String, Value>) -> Result<(), EditError> {
    let routes = routes_mut(doc)?;
    let mut table = Table::new();
    // name, from and to first, as people write them; the rest in alphabetical order.
    let first = ["name", "from", "to"];
    let keys = first
        .iter()
        .copied()
        .filter(|k| route.contains_key(*k))
        .chain(route.keys().map(String::as_str).filter(|k| !first.contains(k)));
    for key in keys {
        match &route[key] {
            Value::Null => {}
            v => {
                table.insert(key, Item::Value(to_toml(key, v)?));
            }
        }
    }
    // A blank line between routes, as in the shipped file.
    table.decor_mut().set_prefix("\n");
    routes.push(table);
    Ok(())
}

/// Keys renamed since files were written with them: (old, new). The old name still reads.
const RENAMED: &[(&str, &str)] = &[("rtmp_write_interval", "write_interval")];

fn update(doc: &mut DocumentMut, name: &str, set: &Map<String, Value>) -> Result<(), EditError> {
    let routes = routes_mut(doc)?;
    let at = position(routes, name).ok_or_else(|| EditError::NoRoute(name.into()))?;
    let Some(table) = routes.get_mut(at) else { return Err(EditError::NoRoute(name.into())) };
    for (key, value) in set {
        // A key set or removed under its new name takes the old name with it (both would be a duplicate key).
        if let Some((old, _)) = RENAMED.iter().find(|(_, new)| new == key) {
            table.remove(old);
        }
        if value.is_null() {
            table.remove(key);
            continue;
        }
        let mut new = to_toml(key, value)?;
        // A comment after the old value stays after the new one.
        if let Some(old) = table.get(key).and_then(Item::as_value) {
            *new.decor_mut() = old.decor().clone();
        }
        table.insert(key, Item::Value(new));
    }
    Ok(())
}

fn delete(doc: &mut DocumentMut, name: &str) -> Result<(), EditError> {
    let routes = routes_mut(doc)?;
    let at = position(routes, name).ok_or_else(|| EditError::NoRoute(name.into()))?;
    // The lines above a table's header come with it: only the comment block right above belongs to the route;
    // what is before its last blank line (an example, a note on the next section) stays.
    let prefix = routes.get(at).and_then(|t| t.decor().prefix()).and_then(|p| p.as_str()).unwrap_or_default();
    let keep = prefix.rfind("\n\n").map(|i| prefix[..=i].to_string()).unwrap_or_default();
    routes.remove(at);
    if !keep.trim().is_empty() {
        match routes.get_mut(at) {
            Some(next) => {
                let next_prefix = next.decor().prefix().and_then(|p| p.as_str()).unwrap_or_default().to_string();
                next.decor_mut().set_prefix(format!("{keep}{next_prefix}"));
            }
            None => {
                let trailing = doc.trailing().as_str().unwrap_or_default().to_string();
                doc.set_trailing(format!("{keep}{trailing}"));
            }
        }
    }
    let routes = routes_mut(doc)?;
    if routes.is_empty() {
        // An empty [[route]] list would vanish from the file, which then declares no routes: say so on purpose.
        doc.insert("route", Item::Value(toml_edit::Array::new().into()));
    }
    Ok(())
}

/// A JSON value as a TOML one. TOML has no null, and integers beyond i64 are not TOML integers.
fn to_toml(key: &str, v: &Value) -> Result<toml_edit::Value, EditError> {
    let bad = |what: &str| EditError::Invalid(format!("`{key}`: {what} cannot be written in TOML"));
    Ok(match v {
        Value::Null => return Err(bad("null inside a list or table")),
        Value::Bool(b) => (*b).into(),
        Value::String(s) => {
            // `${VAR}` would make the router read its environment into a value the API shows back (and send
            // to a host the caller names): variables are for the file's own author.
            if reads_environment(s) {
                return Err(EditError::Invalid(format!(
                    "`{key}`: \"${{...}}\" reads the router's environment, which only routes.toml itself may do: \
                     write the value, or put the reference in the file by hand"
                )));
            }
            s.as_str().into()
        }
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) if n.is_f64() => f.into(),
            _ => return Err(bad(&format!("the number {n}"))),
        },
        Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push_formatted(to_toml(key, item)?);
            }
            array.fmt();
            array.into()
        }
        Value::Object(map) => {
            let mut table = toml_edit::InlineTable::new();
            for (k, item) in map {
                table.insert(k, to_toml(key, item)?);
            }
            table.fmt();
            table.into()
        }
    })
}

/// Whether `s` has a `${VAR}` other than a template's capture `${1}`.
fn reads_environment(s: &str) -> bool {
    s.match_indices("${").any(|(at, _)| {
        !s[at + 2..].split_once('}').is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Replaces the file at `path` with `text` so that a crash leaves the old file or the new one, never half of
/// one: written beside it, flushed, renamed over it. A file that cannot be renamed over (a single file
/// bind-mounted into a container) is rewritten in place instead.
pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    // Beside the real file when the path is a symlink: the link stays a link.
    let target = std::fs::canonicalize(path)?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.sluice-edit"));
    let written = (|| {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mode = std::fs::metadata(&target)?.permissions().mode();
        // Left by a crash (or planted: a symlink is removed, never followed), then made afresh, with the file's
        // own permissions from the start: the routes may hold secrets.
        let _ = std::fs::remove_file(&temp);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode & 0o777).open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)
    })();
    match written {
        Ok(()) => {
            // The rename itself is durable only once the directory is.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            if matches!(e.raw_os_error(), Some(13 | 16 | 18)) {
                // EACCES (the directory is not ours to write in), EBUSY / EXDEV (a mount point cannot be renamed
                // over): the file itself may still be writable.
                let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(&target)?;
                file.write_all(text.as_bytes())?;
                return file.sync_all();
            }
            Err(e)
        }
    }
}

/// The ETag of routes-file contents: the API's `If-Match` names the version an edit was made against.
pub fn etag(text: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FILE: &str = "# Cameras of the shop.\n\
        [server]\nhttp = \"0.0.0.0:8889\"   # every interface\n\n\
        [defaults]\nto = [\"whep\"]\n\n\
        # The demo clip.\n[[route]]\nname = \"demo\"\nfrom = \"demo\"\nto = [ \"whep\",\"rtmp\" ]  # odd spacing kept\n\n\
        # The door camera; password from the environment.\n\
        [[route]]\nname = \"door\"\nfrom = \"rtsp://admin:${DOOR_PASS}@10.0.0.7/stream1\"\non_demand = true # saves the camera\n\n\
        # Trailing notes stay.\n";

    fn edit(edits: serde_json::Value) -> Result<String, EditError> {
        let edits: Vec<RouteEdit> = serde_json::from_value(edits).expect("edits");
        apply(FILE, &edits)
    }

    #[test]
    fn setting_a_renamed_key_replaces_its_old_name() {
        let mut doc: DocumentMut =
            "[[route]]\nname = \"a\"\nfrom = \"rtmp\"\nto = [\"rtmp\"]\nrtmp_write_interval = \"80ms\"\n"
                .parse()
                .expect("toml");
        let set = json!({ "write_interval": "20ms" });
        update(&mut doc, "a", set.as_object().expect("object")).expect("updated");
        let text = doc.to_string();
        assert!(text.contains("write_interval = \"20ms\"") && !text.contains("rtmp_write_interval"), "{text}");
    }

    #[test]
    fn an_update_changes_only_its_keys_and_keeps_every_other_byte() {
        let out = edit(json!([{ "op": "update", "name": "door", "set": { "on_demand": false, "max_readers": 5 } }]))
            .expect("edited");
        let expected = FILE
            .replace("on_demand = true # saves the camera", "on_demand = false # saves the camera\nmax_readers = 5");
        assert_eq!(out, expected);
        // Removing a key, and a value written as a TOML literal.
        let out = edit(json!([{ "op": "update", "name": "door", "set": { "on_demand": null,
            "from": "rtsp://admin:pa\"ss@10.0.0.8/stream1" } }]))
        .expect("edited");
        assert!(out.contains("from = 'rtsp://admin:pa\"ss@10.0.0.8/stream1'\n"), "{out}");
        assert!(!out.contains("on_demand"), "{out}");
    }

    #[test]
    fn an_added_route_goes_after_the_last_and_a_deleted_one_takes_its_comment() {
        let out = edit(json!([{ "op": "add", "route": {
            "to": ["whep", "rtmp"], "from": "rtmp", "name": "studio", "publish_key": "k", "rtsp_quirks": { "teardown": "never" } } }]))
        .expect("added");
        // After the last route; the file's closing comment stays last.
        let studio = "\n[[route]]\nname = \"studio\"\nfrom = \"rtmp\"\nto = [\"whep\", \"rtmp\"]\npublish_key = \"k\"\n\
             rtsp_quirks = { teardown = \"never\" }\n";
        let end = "\n# Trailing notes stay.\n";
        assert_eq!(out, FILE.replace(end, &format!("{studio}{end}")));
        let out = edit(json!([{ "op": "delete", "name": "door" }])).expect("deleted");
        assert!(!out.contains("door"), "{out}");
        assert!(out.contains("# The demo clip.\n[[route]]\nname = \"demo\""), "{out}");
        assert!(out.ends_with("# Trailing notes stay.\n"), "{out}");
    }

    #[test]
    fn deleting_every_route_says_so_on_purpose_and_adding_again_works() {
        let out = edit(json!([{ "op": "delete", "name": "demo" }, { "op": "delete", "name": "door" }])).expect("ok");
        assert!(out.contains("route = []"), "{out}");
        let table = crate::config::parse(&out, "routes.toml", &|_| None).expect("valid");
        assert!(table.routes_declared && table.routes.is_empty());
        let again = apply(
            &out,
            &[RouteEdit::Add { route: json!({ "name": "a", "from": "whip" }).as_object().cloned().expect("map") }],
        )
        .expect("added");
        let table = crate::config::parse(&again, "routes.toml", &|_| None).expect("valid");
        assert_eq!(table.routes.len(), 1);
    }

    #[test]
    fn edits_that_cannot_be_made_say_why() {
        assert_eq!(
            edit(json!([{ "op": "update", "name": "nope", "set": {} }])),
            Err(EditError::NoRoute("nope".into()))
        );
        assert_eq!(edit(json!([{ "op": "delete", "name": "nope" }])), Err(EditError::NoRoute("nope".into())));
        let e = edit(json!([{ "op": "update", "name": "door", "set": { "to": ["whep", null] } }])).expect_err("null");
        assert_eq!(e.to_string(), "`to`: null inside a list or table cannot be written in TOML");
        let e = edit(json!([{ "op": "update", "name": "door", "set": { "max_readers": 18446744073709551615u64 } }]))
            .expect_err("u64");
        assert!(e.to_string().contains("the number 18446744073709551615"), "{e}");
        let e = apply("route = [{ name = \"a\", from = \"whip\" }]\n", &[RouteEdit::Delete { name: "a".into() }])
            .expect_err("inline");
        assert!(e.to_string().contains("inline array"), "{e}");
        assert!(apply("[[route]\n", &[]).is_err());
    }

    #[test]
    fn a_written_file_replaces_the_old_one_whole_and_a_symlink_stays_a_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "old").expect("write");
        let link = dir.path().join("routes.toml");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        write_file(&link, "new").expect("written");
        assert_eq!(std::fs::read_to_string(&real).expect("read"), "new");
        assert!(std::fs::symlink_metadata(&link).expect("meta").file_type().is_symlink());
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }

    #[test]
    fn a_deleted_route_takes_only_the_comment_block_right_above_it() {
        let text = "[[route]]\nname = \"a\"\nfrom = \"demo\"\n\n# An example:\n# [[route]]\n# name = \"x\"\n\n\
            # The b route.\n[[route]]\nname = \"b\"\nfrom = \"demo\"\n\n# Another example.\n\n# The c route.\n\
            [[route]]\nname = \"c\"\nfrom = \"demo\"\n";
        let out = apply(text, &[RouteEdit::Delete { name: "b".into() }]).expect("deleted");
        assert_eq!(out, text.replace("# The b route.\n[[route]]\nname = \"b\"\nfrom = \"demo\"\n\n", ""));
        // The last route: the example before it ends the file.
        let out = apply(text, &[RouteEdit::Delete { name: "c".into() }]).expect("deleted");
        assert_eq!(out, text.replace("\n# The c route.\n[[route]]\nname = \"c\"\nfrom = \"demo\"\n", ""));
    }

    #[test]
    fn values_may_not_read_the_environment() {
        for bad in ["rtsp://h/${SECRET}", "rtsp://h/${1}/${HOME}", "${", "x${}y"] {
            let e = edit(json!([{ "op": "update", "name": "door", "set": { "from": bad } }])).expect_err(bad);
            assert!(e.to_string().contains("reads the router's environment"), "{e}");
        }
        let e = edit(json!([{ "op": "add", "route": { "name": "x", "from": "whip", "to": ["rtmp://h/${KEY}"] } }]));
        assert!(e.is_err());
        assert!(edit(json!([{ "op": "update", "name": "door", "set": { "from": "rtsp://h/${1}" } }])).is_ok());
    }

    #[test]
    fn the_etag_changes_with_any_byte() {
        assert_eq!(etag(b"a"), etag(b"a"));
        assert_ne!(etag(b"a"), etag(b"a "));
        assert_eq!(etag(b"").len(), 34);
    }
}

//! Typed plugin configuration: the host hands `[plugins.NAME] config` over as JSON; plugins read it with serde.

use serde::de::DeserializeOwned;

/// Parses the JSON the host passes at init into the plugin's config type, with an error an admin can act on.
/// Values quoted in serde's message are masked: config values are often secrets, and the message reaches logs.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| format!("invalid config: {}", mask_quoted(&without_position(&e))))
}

/// serde_json's message without its " at line L column C": the JSON was made by the host from routes.toml, so a
/// position in it means nothing to the admin (the host reports the error at the plugin's `config` instead).
fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rfind(" at line ") {
        Some(i) if e.line() > 0 => message[..i].to_string(),
        _ => message,
    }
}

/// `invalid type: string "s3cret", expected u32` -> `invalid type: string "…", expected u32`.
fn mask_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        // Odd pieces are inside quotes; an unpaired last quote leaves the tail as it is.
        if i % 2 == 0 && i + 1 < rest.len() {
            out.push_str("\"…\"");
        } else if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push('"');
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct C {
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn empty_means_defaults_and_mistakes_name_the_key() {
        assert_eq!(super::parse::<C>("").expect("empty"), C { n: 0 });
        assert_eq!(super::parse::<C>(r#"{"n": 3}"#).expect("n"), C { n: 3 });
        let e = super::parse::<C>(r#"{"m": 3}"#).expect_err("unknown key");
        assert!(e.starts_with("invalid config: unknown field `m`"), "{e}");
        let e = super::parse::<C>(r#"{"n": "s3cret"}"#).expect_err("wrong type");
        assert!(e.starts_with("invalid config: invalid type: string \"…\", expected u32"), "{e}");
        assert!(!e.contains("s3cret"));
        assert!(!e.contains(" at line "), "a position in the host's JSON means nothing to the admin: {e}");
    }
}

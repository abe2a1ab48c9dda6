//! Typed plugin configuration: the host hands `[plugins.NAME] config` over as JSON; plugins read it with serde.

use serde::de::DeserializeOwned;

/// Parses the JSON the host passes at init into the plugin's config type, with an error an admin can act on.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))
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
    }
}

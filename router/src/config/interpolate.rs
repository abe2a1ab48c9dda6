//! `${VAR}` expansion from the environment, so secrets stay out of routes.toml. `$${` writes a literal `${`.

/// Expands every `${NAME}`; an unset variable or an unclosed `${` is an error naming it.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    expand_with(s, env, false)
}

/// [`expand`] for a template's `from`, where `${1}` (the matched segment) is kept for when a route is made.
pub fn expand_keeping_capture(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    expand_with(s, env, true)
}

fn expand_with(s: &str, env: &dyn Fn(&str) -> Option<String>, keep_capture: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| format!("`${{` without a closing `}}` in \"{s}\""))?;
            let name = &after[..end];
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) {
                if !keep_capture {
                    return Err(format!(
                        "\"${{{name}}}\" is a template's capture, valid only in the `from` of a template route"
                    ));
                }
                // `${1}`: a template route's capture, filled in when a route is made from it.
                out.push_str(&rest[..end + 3]);
                rest = &after[end + 1..];
                continue;
            }
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("\"${{{name}}}\" is not a valid variable name"));
            }
            let value = env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cret".to_string())
    }

    #[test]
    fn expands_known_variables_and_keeps_plain_dollars() {
        assert_eq!(expand("rtmp://h/app/${KEY}", &env).as_deref(), Ok("rtmp://h/app/s3cret"));
        assert_eq!(expand("cost $5 and $${KEY}", &env).as_deref(), Ok("cost $5 and ${KEY}"));
    }

    #[test]
    fn unset_and_malformed_are_errors() {
        assert_eq!(expand("${NOPE}", &env), Err("environment variable NOPE is not set".into()));
        assert_eq!(expand("${KEY", &env), Err("`${` without a closing `}` in \"${KEY\"".into()));
        assert_eq!(expand("${a b}", &env), Err("\"${a b}\" is not a valid variable name".into()));
    }
}

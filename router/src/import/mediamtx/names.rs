//! Names and patterns: path names (and `~regex` paths) as route names and templates, permission paths as route
//! patterns, sources with a template's capture, and recording paths as the recorder's directory and pattern.

use crate::config::model::RouteName;

use super::values::q;

/// A path name as a route name: exact names stay, `all_others` and `~^PREFIX/(...)$` become templates. Returns
/// notes on what the name now matches that MediaMTX's did not, or the other way round.
pub fn route_name(path: &str) -> Result<(String, Vec<String>), String> {
    let mut notes = Vec::new();
    let name = match path {
        "all_others" | "all" => {
            notes.push(
                "MediaMTX's all_others also took names with '/'; `*` takes one-segment names: add a template \
                 \"PREFIX/*\" for others"
                    .into(),
            );
            RouteName::CATCH_ALL.to_string()
        }
        re if re.starts_with('~') => {
            let (name, note) = template_of_regex(&re[1..])?;
            notes.extend(note);
            name
        }
        exact => {
            RouteName::parse(exact).map_err(|e| format!("{e}: rename the path (clients use the new name)"))?;
            exact.to_string()
        }
    };
    Ok((name, notes))
}

/// What a regex capture group takes, as far as a template's `*` (one segment) is concerned.
enum Capture {
    /// Anything but '/': exactly a segment.
    Segment,
    /// Anything, '/' too: the template takes one segment of it.
    Wider,
    /// Fewer names than a segment (digits, a character class): the template takes more.
    Narrower,
}

fn capture_kind(group: &str) -> Option<Capture> {
    let body = group.strip_suffix('+').or_else(|| group.strip_suffix('*'))?;
    match body {
        "[^/]" => Some(Capture::Segment),
        "." => Some(Capture::Wider),
        "\\d" | "\\w" => Some(Capture::Narrower),
        // A positive class without '/' takes fewer names than a segment; a negated one other than [^/] takes '/'.
        class if class.starts_with('[') && !class.starts_with("[^") && class.ends_with(']') && !class.contains('/') => {
            Some(Capture::Narrower)
        }
        _ => None,
    }
}

/// `^PREFIX/(CAPTURE)$` as `PREFIX/*`, `^(CAPTURE)$` as `*`.
pub fn template_of_regex(re: &str) -> Result<(String, Option<String>), String> {
    let unmapped = || {
        format!(
            "the regex \"{re}\" has no template equivalent: a template is \"PREFIX/*\" (one name segment under a \
             fixed prefix), written as a regex ^PREFIX/([^/]+)$; list these paths by name, or use one prefix"
        )
    };
    let body = re.strip_prefix('^').and_then(|b| b.strip_suffix('$')).ok_or_else(unmapped)?;
    let open = body.rfind('(').ok_or_else(unmapped)?;
    let group = body[open..].strip_prefix('(').and_then(|g| g.strip_suffix(')')).ok_or_else(unmapped)?;
    let group = group.strip_prefix("?:").unwrap_or(group);
    let capture = capture_kind(group).ok_or_else(unmapped)?;
    let prefix = unescape_literal(&body[..open]).ok_or_else(unmapped)?;
    let name = match prefix.strip_suffix('/') {
        None if prefix.is_empty() => RouteName::CATCH_ALL.to_string(),
        None => return Err(unmapped()),
        Some(prefix) => {
            RouteName::parse(prefix).map_err(|e| format!("the regex's prefix: {e}"))?;
            format!("{prefix}/*")
        }
    };
    let note = match capture {
        Capture::Segment => None,
        Capture::Wider => {
            Some(format!("\"{name}\" takes names one segment under its prefix; \"{re}\" took deeper ones too"))
        }
        Capture::Narrower => {
            Some(format!("\"{name}\" takes every one-segment name under its prefix, more than \"{re}\" did"))
        }
    };
    Ok((name, note))
}

/// A regex fragment that is plain text (letters, digits, '/', '-', '_', escaped '.'), as that text.
fn unescape_literal(fragment: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = fragment.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                e @ ('.' | '/' | '-' | '_') => out.push(e),
                _ => return None,
            },
            c if c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_') => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// A permission's `path` as a route pattern (`*` matching any run of characters): names stay, regexes whose only
/// operators are `.*`-like runs become patterns (`~^cams/` is `cams/*`).
pub fn permission_pattern(path: &str) -> Result<String, String> {
    // Only runs that take anything: `*` matches '/' too, so a narrower class (\d+, [^/]+) would widen the grant.
    const RUNS: [&str; 4] = ["(.*)", "(.+)", ".*", ".+"];
    let Some(re) = path.strip_prefix('~') else { return Ok(path.to_string()) };
    let unmapped =
        || format!("the regex \"{re}\" has no pattern equivalent (`*` is the only wildcard): list the routes");
    let (mut out, body) = match re.strip_prefix('^') {
        Some(b) => (String::new(), b),
        None => ("*".to_string(), re),
    };
    let (body, end) = match body.strip_suffix('$') {
        Some(b) => (b, ""),
        None => (body, "*"),
    };
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if let Some(run) = RUNS.iter().find(|r| rest.starts_with(**r)) {
            if !out.ends_with('*') {
                out.push('*');
            }
            rest = &rest[run.len()..];
            continue;
        }
        match c {
            '\\' => match rest[1..].chars().next() {
                Some(e @ ('.' | '/' | '-' | '_')) => {
                    out.push(e);
                    rest = &rest[2..];
                }
                _ => return Err(unmapped()),
            },
            c if c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_') => {
                out.push(c);
                rest = &rest[1..];
            }
            _ => return Err(unmapped()),
        }
    }
    if !out.ends_with('*') {
        out.push_str(end);
    }
    Ok(out)
}

/// A pull source's URL, with a template's capture (`$G1`, or `$MTX_PATH` on the catch-all) as `${1}`.
pub fn pull_source(source: &str, name: &str) -> Result<String, String> {
    let scheme = source.split_once("://").map_or(source, |(s, _)| s);
    match scheme {
        "rtsp" | "rtmp" => {}
        "rtsps" | "rtmps" => {
            return Err(format!(
                "{scheme} sources are not pulled yet (no TLS on the pull side); pull {} if the camera offers it",
                &scheme[..4]
            ));
        }
        "http" | "https" => return Err("HLS sources are not pulled: Sluice pulls RTSP and RTMP".into()),
        "udp" | "srt" | "whep" | "wheps" => {
            return Err(format!("{scheme} sources are not pulled: Sluice pulls RTSP and RTMP"));
        }
        "rpiCamera" => {
            return Err("a Raspberry Pi camera is captured by sluice-edge on the Pi, which pushes into a route: make \
                        the route `from = \"publisher\"` and run sluice-edge there"
                .into());
        }
        "redirect" => return Err("redirects are not served: give the route the redirect target's source".into()),
        _ => return Err(format!("\"{source}\" is not a source Sluice knows")),
    }
    url::Url::parse(source).map_err(|e| format!("`source` is not a URL ({e})"))?;
    // A template's capture stands in the URL's path (after scheme://authority), as routes.toml requires.
    let path_start = source.find("://").map(|i| i + 3).and_then(|a| source[a..].find('/').map(|p| a + p));
    let first_capture = ["$G", "$MTX_PATH"].iter().filter_map(|c| source.find(c)).min();
    if let Some(at) = first_capture
        && path_start.is_none_or(|p| at < p)
    {
        return Err("`source` puts the regex's capture in the host or credentials; a template's ${1} goes in the \
                    URL's path only"
            .into());
    }
    let quoted = q(source);
    let template = name.ends_with('*');
    let capture = if template { quoted.replace("$G1", "${1}") } else { quoted.clone() };
    let capture = if name == RouteName::CATCH_ALL { capture.replace("$MTX_PATH", "${1}") } else { capture };
    if capture.contains("$G") || capture.contains("$MTX_") {
        return Err(format!(
            "`source` uses {} which Sluice has no equivalent for: a template's `from` has only ${{1}}, its last name segment",
            if capture.contains("$G") { "a regex group" } else { "a MediaMTX variable" }
        ));
    }
    Ok(capture)
}

/// MediaMTX's `recordPath` as the recorder's directory (the part before the first placeholder) and file pattern.
pub fn split_record_path(path: &str) -> Result<(String, String), String> {
    let components: Vec<&str> = path.split('/').collect();
    let first = components.iter().position(|c| c.contains('%')).ok_or("it has no placeholder")?;
    let dir: Vec<&str> = components[..first].iter().copied().filter(|c| !c.is_empty() && *c != ".").collect();
    let dir = match (path.starts_with('/'), dir.is_empty()) {
        (_, true) => "recordings".to_string(),
        (true, false) => format!("/{}", dir.join("/")),
        (false, false) => dir.join("/"),
    };
    let mut pattern = components[first..].join("/").replace("%path", "%route");
    // Microseconds: Sluice names a second's second file "-2".
    for f in ["-%f", "_%f", ".%f", "%f"] {
        pattern = pattern.replace(f, "");
    }
    let mut rest = pattern.as_str();
    while let Some(at) = rest.find('%') {
        let after = &rest[at + 1..];
        let len = if after.starts_with("route") {
            5
        } else if after.starts_with(['Y', 'm', 'd', 'H', 'M', 'S', '%']) {
            1
        } else {
            return Err(format!(
                "\"{path}\" has a placeholder Sluice's recorder lacks (it has %path, %Y %m %d %H %M %S)"
            ));
        };
        rest = &after[len..];
    }
    Ok((dir, pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_map_to_templates_where_one_segment_under_a_prefix_is_meant() {
        let ok = |re: &str| template_of_regex(re).map(|(name, note)| (name, note.is_some()));
        assert_eq!(ok("^cams/([^/]+)$"), Ok(("cams/*".into(), false)));
        assert_eq!(ok("^cams/(.+)$"), Ok(("cams/*".into(), true)));
        assert_eq!(ok("^site\\.a/cams/(\\w+)$"), Ok(("site.a/cams/*".into(), true)));
        assert_eq!(ok("^(.*)$"), Ok(("*".into(), true)));
        for unmapped in ["^cam(\\d+)$", "cams/(.+)", "^(a|b)/(.+)$", "^cams/(.+)/hd$", "^v1/(.+)$"] {
            assert!(template_of_regex(unmapped).is_err(), "{unmapped}");
        }
        assert_eq!(permission_pattern("~^cams/.*$").as_deref(), Ok("cams/*"));
        assert_eq!(permission_pattern("~^cam").as_deref(), Ok("cam*"));
        assert_eq!(permission_pattern("~door").as_deref(), Ok("*door*"));
        assert_eq!(permission_pattern("~^site\\.a/(.+)$").as_deref(), Ok("site.a/*"));
        // Narrower runs would widen into `*` (which takes '/' and anything): refused, the grant left out.
        assert!(permission_pattern("~^cam\\d+$").is_err() && permission_pattern("~^cams/[^/]+$").is_err());
        assert_eq!(permission_pattern("lobby").as_deref(), Ok("lobby"));
        assert!(permission_pattern("~^(a|b)$").is_err());
    }
}

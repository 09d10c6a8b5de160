//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` interpolation: a pure function of the
//! text and an injected environment, so tests never touch the process environment.

/// Expand every reference in `s`. `$$` is a literal `$`. Errors name the variable.
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err("unterminated `${` reference".to_string());
        };
        let expr = &body[..end];
        rest = &body[end + 1..];
        let (name, op) = match expr.find([':', '-', '?']) {
            Some(i) => (&expr[..i], &expr[i..]),
            None => (expr, ""),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name in `${{{expr}}}`"));
        }
        let value = env(name);
        let value = match op {
            "" => value.ok_or_else(|| format!("environment variable {name} is not set"))?,
            _ if op.starts_with(":-") => value.filter(|v| !v.is_empty()).unwrap_or_else(|| op[2..].to_string()),
            _ if op.starts_with('-') => value.unwrap_or_else(|| op[1..].to_string()),
            _ if op.starts_with(":?") => match value.filter(|v| !v.is_empty()) {
                Some(v) => v,
                None => return Err(format!("environment variable {name}: {}", &op[2..])),
            },
            _ => return Err(format!("unsupported operator in `${{{expr}}}`")),
        };
        out.push_str(&value);
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(interpolate("a ${KEY} b", &env).unwrap(), "a sk-1 b");
        assert_eq!(interpolate("${NOPE:-x}", &env).unwrap(), "x");
        assert_eq!(interpolate("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(interpolate("${EMPTY-x}", &env).unwrap(), "");
        assert_eq!(interpolate("$$5 and $x", &env).unwrap(), "$5 and $x");
        assert!(interpolate("${NOPE}", &env).unwrap_err().contains("NOPE"));
        assert!(interpolate("${NOPE:?set it}", &env).unwrap_err().contains("set it"));
        assert!(interpolate("${KEY", &env).is_err());
    }
}

//! Source rewrites of template Rego that OPA accepts and regorus 0.14 refuses,
//! each into Rego that means the same to OPA; lines are kept, so a diagnostic
//! still points at the template's own line.

/// The byte ranges of Rego that are code: not in a string, raw string or comment.
/// `code[i]` says whether byte `i` is code.
fn code_mask(rego: &str) -> Vec<bool> {
    let bytes = rego.as_bytes();
    let mut code = vec![true; bytes.len()];
    let mut i = 0;
    while i < bytes.len() {
        let end = match bytes[i] {
            b'#' => bytes[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| i + p),
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' && bytes[j] != b'\n' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                (j + 1).min(bytes.len())
            }
            b'`' => bytes[i + 1..]
                .iter()
                .position(|&b| b == b'`')
                .map_or(bytes.len(), |p| i + p + 2),
            _ => {
                i += 1;
                continue;
            }
        };
        code[i..end].iter_mut().for_each(|c| *c = false);
        i = end;
    }
    code
}

/// Splits a rule with several bodies, `head { a } { b }`, which OPA reads as
/// `head { a }` or `head { b }`, into one rule per body, written on the line
/// of the body it precedes: `head { a } head { b }`. regorus 0.14 refuses a
/// second body on a partial set rule (`violation[...]`) as if it were `else`.
/// `None` when the Rego has no such rule.
pub fn split_rule_bodies(rego: &str) -> Option<String> {
    let code = code_mask(rego);
    let bytes = rego.as_bytes();
    let mut out = String::with_capacity(rego.len() + 256);
    let mut depth = 0usize;
    let mut line_start = 0;
    let mut head: Option<String> = None;
    let mut copied = 0;
    let mut changed = false;
    for (i, &b) in bytes.iter().enumerate() {
        if !code[i] {
            continue;
        }
        match b {
            b'\n' if depth == 0 => line_start = i + 1,
            b'{' | b'[' | b'(' => {
                if depth == 0 && b == b'{' {
                    let before = rego[line_start..i].trim();
                    if before.is_empty() || before == "}" {
                        // A further body of the rule whose head was last seen.
                        if let Some(h) = &head {
                            out.push_str(&rego[copied..i]);
                            out.push_str(h);
                            out.push(' ');
                            copied = i;
                            changed = true;
                        }
                    } else if !before.starts_with("else") {
                        head = Some(before.split_whitespace().collect::<Vec<_>>().join(" "));
                    }
                }
                depth += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 && b == b'}' {
                    line_start = i + 1;
                }
            }
            _ => {}
        }
    }
    out.push_str(&rego[copied..]);
    changed.then_some(out)
}

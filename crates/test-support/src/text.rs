//! Text written indented inside a test, made plain.

/// Removes a leading newline and the indentation all non-blank lines share,
/// trims every line's end, and ends the text with one newline (an empty or
/// blank text stays empty), so expectations can be indented like the code
/// around them.
pub fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text).trim_end();
    if text.is_empty() {
        return String::new();
    }
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: String = text
        .lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::dedent;

    #[test]
    fn dedent_cases() {
        let cases = [
            ("", ""),
            ("\n   \n", ""),
            ("\n    a: 1\n      b: 2\n    ", "a: 1\n  b: 2\n"),
            ("  x  \n\n  y", "x\n\ny\n"),
            ("\n\n  first line was blank\n", "\nfirst line was blank\n"),
            ("no indent\n  some\n", "no indent\n  some\n"),
        ];
        for (input, expected) in cases {
            assert_eq!(dedent(input), expected, "dedent({input:?})");
        }
    }
}

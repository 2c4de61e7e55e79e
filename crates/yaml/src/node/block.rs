//! A loader for the plain block subset of YAML that Kubernetes manifests, CI
//! files and catalog entries are nearly always written in: block mappings and
//! sequences, one-line plain and quoted scalars, one-line flow sequences of
//! scalars, `{}`, comments and `---` between documents.
//!
//! The general parser spends a few hundred instructions per byte; this one
//! walks the text line by line and costs a fraction of that, which is most of
//! a fleet scan's time. It answers only when it is sure: any other construct
//! (anchors, aliases, tags, block or multi-line scalars, escapes, flow
//! mappings, tabs, CR, non-ASCII text, empty documents, errors) makes it
//! return `None`, and [`super::load`] hands the text to the general parser.
//! When it answers, the nodes (text, style and line) are those the general
//! loader builds; `tests.rs` checks that on every YAML file in `testdata/`
//! and on mutations of them.

use super::{MAX_NODES, Node, Value};

/// Deepest nesting this loader follows; deeper text goes to the general parser.
const MAX_NESTING: usize = 64;
/// The general parser refuses implicit keys longer than YAML's 1024 characters.
const MAX_KEY_LEN: usize = 1000;

/// One line that holds content: its 1-based number, its indentation and its text after it.
#[derive(Clone, Copy)]
struct Line<'a> {
    no: u32,
    indent: usize,
    text: &'a str,
}

/// The documents of `text`, or `None` when it is not entirely in the subset.
pub(super) fn load(text: &str) -> Option<Vec<Node>> {
    if !text
        .bytes()
        .all(|b| b == b'\n' || (0x20..0x7f).contains(&b))
    {
        return None;
    }
    let mut documents = Vec::new();
    let mut lines: Vec<Line<'_>> = Vec::new();
    let mut markers = 0;
    let mut nodes = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let no = u32::try_from(i + 1).ok()?;
        let content = raw.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = raw.len() - content.len();
        if indent == 0 {
            if let Some(rest) = content.strip_prefix("---") {
                if !rest.is_empty() && !rest.starts_with(' ') {
                    // `---x` is a plain scalar, which no key may start with: refused below.
                } else if rest.trim_end_matches(' ').is_empty() {
                    if markers > 0 || !lines.is_empty() {
                        documents.push(document(&mut lines, &mut nodes)?);
                    }
                    markers += 1;
                    continue;
                } else {
                    return None;
                }
            }
            if content.starts_with("...") || content.starts_with('%') {
                return None;
            }
        }
        lines.push(Line {
            no,
            indent,
            text: content.trim_end_matches(' '),
        });
    }
    if markers > 0 || !lines.is_empty() {
        documents.push(document(&mut lines, &mut nodes)?);
    }
    Some(documents)
}

/// The one node of a document's lines, which it consumes.
fn document(lines: &mut Vec<Line<'_>>, nodes: &mut usize) -> Option<Node> {
    let first = lines.first()?;
    if first.indent != 0 {
        return None;
    }
    let mut reader = Reader {
        lines: std::mem::take(lines),
        pos: 0,
        nodes: *nodes,
    };
    let node = reader.block(0, 0)?;
    if reader.pos != reader.lines.len() {
        return None;
    }
    *nodes = reader.nodes;
    *lines = reader.lines;
    lines.clear();
    Some(node)
}

struct Reader<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
    nodes: usize,
}

fn is_entry(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

impl<'a> Reader<'a> {
    fn node(&mut self, line: u32, value: Value) -> Option<Node> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES).then_some(Node { line, value })
    }

    fn scalar(&mut self, line: u32, text: &str, plain: bool) -> Option<Node> {
        self.node(
            line,
            Value::Scalar {
                text: text.to_string(),
                plain,
            },
        )
    }

    /// The block mapping or sequence starting at the current line, indented `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Option<Node> {
        if depth > MAX_NESTING {
            return None;
        }
        let line = *self.lines.get(self.pos)?;
        if is_entry(line.text) {
            self.sequence(indent, depth)
        } else {
            self.mapping(indent, depth)
        }
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Node> {
        let start = self.lines.get(self.pos)?.no;
        let mut pairs = Vec::new();
        while let Some(&line) = self.lines.get(self.pos) {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return None;
            }
            if is_entry(line.text) {
                break;
            }
            let (key, rest) = split_key(line.text)?;
            let key = self.scalar(line.no, key, true)?;
            self.pos += 1;
            let value = if rest.is_empty() {
                match self.lines.get(self.pos) {
                    Some(next) if next.indent > indent => self.block(next.indent, depth + 1)?,
                    // A sequence may sit at its key's own indentation.
                    Some(next) if next.indent == indent && is_entry(next.text) => {
                        self.sequence(indent, depth + 1)?
                    }
                    _ => self.scalar(line.no, "", true)?,
                }
            } else {
                let value = self.inline(line.no, rest)?;
                if self.lines.get(self.pos).is_some_and(|n| n.indent > indent) {
                    return None;
                }
                value
            };
            pairs.push((key, value));
        }
        if pairs.is_empty() {
            return None;
        }
        self.node(start, Value::Map(pairs))
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Node> {
        let start = self.lines.get(self.pos)?.no;
        let mut items = Vec::new();
        while let Some(&line) = self.lines.get(self.pos) {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return None;
            }
            if !is_entry(line.text) {
                break;
            }
            let rest = line.text[1..].trim_start_matches(' ');
            let column = indent + (line.text.len() - rest.len());
            let item = if rest.is_empty() || rest.starts_with('#') {
                self.pos += 1;
                match self.lines.get(self.pos) {
                    Some(next) if next.indent > indent => self.block(next.indent, depth + 1)?,
                    _ => self.scalar(line.no, "", true)?,
                }
            } else if is_entry(rest) {
                return None;
            } else if split_key(rest).is_some() {
                // `- key: value`: a mapping whose keys line up with this first one.
                self.lines[self.pos] = Line {
                    no: line.no,
                    indent: column,
                    text: rest,
                };
                self.mapping(column, depth + 1)?
            } else {
                self.pos += 1;
                let value = self.inline(line.no, rest)?;
                if self.lines.get(self.pos).is_some_and(|n| n.indent > indent) {
                    return None;
                }
                value
            };
            items.push(item);
        }
        self.node(start, Value::Seq(items))
    }

    /// A value written on its key's (or its dash's) line.
    fn inline(&mut self, line: u32, text: &str) -> Option<Node> {
        match text.as_bytes()[0] {
            b'"' | b'\'' => {
                let (value, rest) = quoted(text)?;
                ends_line(rest)?;
                self.scalar(line, &value, false)
            }
            b'[' => {
                let mut items = Vec::new();
                let mut rest = text[1..].trim_start_matches(' ');
                if let Some(after) = rest.strip_prefix(']') {
                    rest = after;
                } else {
                    loop {
                        let (value, plain, after) = flow_item(rest)?;
                        items.push(self.scalar(line, &value, plain)?);
                        let after = after.trim_start_matches(' ');
                        if let Some(after) = after.strip_prefix(']') {
                            rest = after;
                            break;
                        }
                        rest = after.strip_prefix(',')?.trim_start_matches(' ');
                    }
                }
                ends_line(rest)?;
                self.node(line, Value::Seq(items))
            }
            b'{' => {
                ends_line(text.strip_prefix("{}")?)?;
                self.node(line, Value::Map(Vec::new()))
            }
            _ => {
                let value = plain(text)?;
                self.scalar(line, value, true)
            }
        }
    }
}

/// `key: rest` (or `key:` alone, rest empty): a plain key of the simple kind, and what follows it.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let colon = (0..bytes.len())
        .find(|&i| bytes[i] == b':' && bytes.get(i + 1).is_none_or(|&b| b == b' '))?;
    let key = &text[..colon];
    let first = *key.as_bytes().first()?;
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_-./:$()+~=@; ".contains(&b);
    if !(first.is_ascii_alphanumeric() || b"_./$".contains(&first))
        || !key.bytes().all(safe)
        || key.ends_with([' ', ':'])
        || key.len() > MAX_KEY_LEN
    {
        return None;
    }
    let rest = text[colon + 1..].trim_start_matches(' ');
    Some((key, if rest.starts_with('#') { "" } else { rest }))
}

/// A one-line plain scalar in block context, without its comment.
fn plain(text: &str) -> Option<&str> {
    let first = text.as_bytes()[0];
    if b"&*!|>%@`-?:,[]{}#".contains(&first) {
        return None;
    }
    let value = text
        .find(" #")
        .map_or(text, |i| &text[..i])
        .trim_end_matches(' ');
    if value.contains(": ") || value.ends_with(':') {
        return None;
    }
    Some(value)
}

/// A quoted scalar that closes on this line, without escapes: its value and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let quote = text.as_bytes()[0];
    let body = &text[1..];
    if quote == b'"' {
        let end = body.find('"')?;
        let value = &body[..end];
        if value.contains('\\') {
            return None;
        }
        return Some((value.to_string(), &body[end + 1..]));
    }
    let mut value = String::new();
    let mut rest = body;
    loop {
        let end = rest.find('\'')?;
        value.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('\'') {
            Some(after) => {
                value.push('\'');
                rest = after;
            }
            None => return Some((value, rest)),
        }
    }
}

/// An item of a one-line flow sequence: its value, whether it is plain, and what follows it.
fn flow_item(text: &str) -> Option<(String, bool, &str)> {
    let first = *text.as_bytes().first()?;
    if first == b'"' || first == b'\'' {
        let (value, rest) = quoted(text)?;
        return Some((value, false, rest));
    }
    if b"&*!|>%@`-?:,[]{}#".contains(&first) {
        return None;
    }
    let end = text.find([',', ']'])?;
    let value = text[..end].trim_end_matches(' ');
    // One word of safe characters: the general parser treats a `-` after a
    // space inside a flow scalar, and flow indicators, specially.
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_./@+=~$()-".contains(&b))
    {
        return None;
    }
    Some((value.to_string(), true, &text[end..]))
}

/// Whether only a comment (after a space) or nothing follows a closed value.
fn ends_line(rest: &str) -> Option<()> {
    (rest.is_empty()
        || (rest.starts_with(' ')
            && matches!(
                rest.trim_start_matches(' ').as_bytes().first(),
                None | Some(b'#')
            )))
    .then_some(())
}

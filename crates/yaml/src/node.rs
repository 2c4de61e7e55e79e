//! The YAML loader: documents as nodes that keep their line numbers, and that cannot be made to explode.
//!
//! Every node remembers the 1-based line it starts on, so facts can carry
//! their provenance. Aliases are expanded by copying, but the total number of
//! nodes a document may expand to is capped ([`MAX_NODES`]), which turns a
//! "billion laughs" alias bomb into an error instead of an out-of-memory kill;
//! nesting depth is capped too ([`MAX_DEPTH`]). Merge keys (`<<: *base`) are
//! applied while loading, as GitLab CI and Kubernetes tooling expect.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};
use std::collections::HashMap;

mod block;

/// Most nodes one file may expand to, aliases included.
pub const MAX_NODES: usize = 1_000_000;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 256;

/// A YAML node and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: u32,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar's text; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Pairs in document order.
    Map(Vec<(Node, Node)>),
}

/// A loading error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: u32,
    pub message: String,
}

/// `invalid YAML: MESSAGE`; the line is left to the diagnostic that carries it.
impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid YAML: {}", self.message)
    }
}

impl std::error::Error for YamlError {}

impl Node {
    /// Looks up a mapping key (`None` when this is not a mapping or the key is absent).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of mapping keys.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The text of a scalar that is not null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, plain } if !(*plain && is_null(text)) => Some(text),
            _ => None,
        }
    }

    /// The text of a non-null scalar, owned.
    pub fn string(&self) -> Option<String> {
        self.as_str().map(str::to_string)
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if is_null(text))
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(pairs) => Some(pairs),
            _ => None,
        }
    }

    /// A mapping's entries whose keys and values are both non-null scalars (labels, selectors).
    pub fn string_map(&self) -> std::collections::BTreeMap<String, String> {
        self.as_map()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.string()?, v.string()?)))
            .collect()
    }

    /// How the node is described in a diagnostic: `a list`, `a mapping`, `nothing` or the quoted scalar.
    pub fn shape(&self) -> String {
        match &self.value {
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
            Value::Scalar { .. } if self.is_null() => "nothing".to_string(),
            Value::Scalar { text, .. } => format!("{text:?}"),
        }
    }

    /// A mapping as JSON values by key (keys that are not scalars are skipped);
    /// `None` when the node is not a mapping.
    pub fn json_map(&self) -> Option<std::collections::BTreeMap<String, serde_json::Value>> {
        let pairs = self.as_map()?;
        Some(
            pairs
                .iter()
                .filter_map(|(k, v)| Some((k.string()?, v.to_json())))
                .collect(),
        )
    }

    /// A sequence of scalars, or a single scalar, as strings.
    pub fn strings(&self) -> Vec<String> {
        match &self.value {
            Value::Seq(items) => items.iter().filter_map(Node::string).collect(),
            _ => self.string().into_iter().collect(),
        }
    }

    /// Converts to JSON with YAML 1.2 core-schema typing of plain scalars.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar { text, plain: false } => serde_json::Value::String(text.clone()),
            Value::Scalar { text, plain: true } => plain_scalar_json(text),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(pairs) => serde_json::Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or("").to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn plain_scalar_json(text: &str) -> serde_json::Value {
    use serde_json::Value as J;
    match text {
        t if is_null(t) => J::Null,
        "true" | "True" | "TRUE" => J::Bool(true),
        "false" | "False" | "FALSE" => J::Bool(false),
        t => {
            if let Ok(i) = t.parse::<i64>() {
                J::from(i)
            } else if let Some(f) = t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && t.contains(|c: char| c.is_ascii_digit()))
            {
                J::from(f)
            } else {
                J::String(t.to_string())
            }
        }
    }
}

/// The documents of a YAML stream. Documents before a syntax error are kept,
/// so one bad document in a multi-document file does not hide the others.
///
/// A quoted scalar whose continuation lines are indented no deeper than its
/// key (`description: "a` / `b"` at the key's column) is read as Go's YAML
/// (and so kubectl and gator) reads it, although YAML 1.2 requires the deeper
/// indentation and saphyr-parser follows the spec: see `indent_quoted_scalar`.
pub fn load(text: &str) -> (Vec<Node>, Option<YamlError>) {
    // Most files are plain block YAML, which `block` reads several times faster.
    if let Some(documents) = block::load(text) {
        return (documents, None);
    }
    load_general(text)
}

/// [`load`] by the general parser alone, for any YAML: what the plain block
/// loader's answers are checked against.
pub(crate) fn load_general(text: &str) -> (Vec<Node>, Option<YamlError>) {
    let mut text = std::borrow::Cow::Borrowed(text);
    let mut repairs = 0;
    loop {
        let (documents, error, underindented) = load_once(&text);
        let repaired = underindented
            .filter(|_| repairs < MAX_QUOTED_REPAIRS)
            .and_then(|(line, col)| indent_quoted_scalar(&text, line, col));
        match repaired {
            Some(fixed) => {
                text = std::borrow::Cow::Owned(fixed);
                repairs += 1;
            }
            None => return (documents, error),
        }
    }
}

/// Most under-indented quoted scalars one file may have; each costs a re-parse.
const MAX_QUOTED_REPAIRS: usize = 1_000;

/// saphyr-parser's message for a flow scalar continued left of where YAML 1.2 allows.
const UNDERINDENTED_QUOTED: &str = "invalid indentation in quoted scalar";

/// One parse. The third value is the (1-based line, 0-based column) of the
/// opening quote when the error is an under-indented quoted scalar.
fn load_once(text: &str) -> (Vec<Node>, Option<YamlError>, Option<(usize, usize)>) {
    let mut loader = Loader::default();
    let mut parser = Parser::new_from_str(text);
    let mut underindented = None;
    if let Err(e) = parser.load(&mut loader, true) {
        let line = e.marker().line() as u32;
        if loader.error.is_none() && e.info() == UNDERINDENTED_QUOTED {
            underindented = Some((e.marker().line(), e.marker().col()));
        }
        loader.error.get_or_insert(YamlError {
            line,
            message: e.info().to_string(),
        });
    }
    // Diagnostics count lines from 1; an error found before the first line is on it.
    if let Some(e) = &mut loader.error {
        e.line = e.line.max(1);
    }
    (loader.documents, loader.error, underindented)
}

/// Indents the continuation lines of the quoted scalar opening at `line`
/// (1-based) and `col` (0-based, in characters) one column past its opening
/// quote. A flow scalar drops every continuation line's leading white space
/// when it folds, so the scalar's value is unchanged, and no line is added,
/// so every node keeps its line. `None` when there is no quoted scalar there,
/// it is never closed, or no line needed indenting: the parser's error stands.
fn indent_quoted_scalar(text: &str, line: usize, col: usize) -> Option<String> {
    let start = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum::<usize>();
    let open = start + text[start..].char_indices().nth(col)?.0;
    let quote = text[open..]
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\''))?;
    let want = col + 1;
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..=open]);
    let mut padded = false;
    let mut chars = text[open + 1..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        out.push(c);
        match c {
            '\\' if quote == '"' => {
                if let Some((_, next)) = chars.next_if(|&(_, n)| n != '\n') {
                    out.push(next);
                }
            }
            '\'' if quote == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') => {
                out.push('\'');
                chars.next();
            }
            c if c == quote => {
                out.push_str(&text[open + 1 + i + 1..]);
                return padded.then_some(out);
            }
            '\n' => {
                let rest = &text[open + 1 + i + 1..];
                let blank = rest.chars().take_while(|b| matches!(b, ' ' | '\t')).count();
                let content = rest[blank..].chars().next();
                // A document marker at column 0 ends the scalar in error, as it must.
                let marker = blank == 0 && (rest.starts_with("---") || rest.starts_with("..."));
                if blank < want && !marker && content.is_some_and(|n| !matches!(n, '\n' | '\r')) {
                    out.extend(std::iter::repeat_n(' ', want - blank));
                    padded = true;
                }
            }
            _ => {}
        }
    }
    None
}

enum Frame {
    Seq {
        line: u32,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        line: u32,
        anchor: usize,
        pairs: Vec<(Node, Node)>,
        key: Option<Node>,
        merged: bool,
    },
}

#[derive(Default)]
struct Loader {
    documents: Vec<Node>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    error: Option<YamlError>,
}

fn size_of(node: &Node) -> usize {
    match &node.value {
        Value::Scalar { .. } => 1,
        Value::Seq(items) => 1 + items.iter().map(size_of).sum::<usize>(),
        Value::Map(pairs) => {
            1 + pairs
                .iter()
                .map(|(k, v)| size_of(k) + size_of(v))
                .sum::<usize>()
        }
    }
}

impl Loader {
    fn fail(&mut self, line: u32, message: String) {
        self.error.get_or_insert(YamlError { line, message });
        self.stack.clear();
    }

    fn count(&mut self, n: usize, line: u32) -> bool {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            self.fail(
                line,
                format!(
                    "document expands to more than {MAX_NODES} nodes (alias bomb?); not loaded"
                ),
            );
            return false;
        }
        true
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            let size = size_of(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                pairs, key, merged, ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k)
                    if k.as_str() == Some("<<")
                        && matches!(k.value, Value::Scalar { plain: true, .. }) =>
                {
                    merge_into(pairs, node);
                    *merged = true;
                }
                // Keys written in the map override merged ones; only maps with a merge
                // key pay for the search, so huge plain maps stay linear.
                Some(k) => match pairs
                    .iter()
                    .position(|(e, _)| *merged && e.value == k.value)
                {
                    Some(i) => pairs[i] = (k, node),
                    None => pairs.push((k, node)),
                },
            },
        }
    }
}

/// Applies a merge key: entries of the merged map(s) that the map does not set itself.
fn merge_into(pairs: &mut Vec<(Node, Node)>, merged: Node) {
    let maps = match merged.value {
        Value::Map(p) => vec![p],
        Value::Seq(items) => items
            .into_iter()
            .filter_map(|n| match n.value {
                Value::Map(p) => Some(p),
                _ => None,
            })
            .collect(),
        Value::Scalar { .. } => Vec::new(),
    };
    for (k, v) in maps.into_iter().flatten() {
        if !pairs.iter().any(|(existing, _)| existing.value == k.value) {
            pairs.push((k, v));
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Loader {
    fn on_event(&mut self, event: Event<'input>, span: Span) {
        if self.error.is_some() {
            return;
        }
        let line = span.start.line() as u32;
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                if self.count(1, line) {
                    let plain = style == ScalarStyle::Plain;
                    self.finish(
                        Node {
                            line,
                            value: Value::Scalar {
                                text: text.into_owned(),
                                plain,
                            },
                        },
                        anchor,
                    );
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(
                        line,
                        format!("nesting deeper than {MAX_DEPTH} levels; not loaded"),
                    );
                } else if self.count(1, line) {
                    self.stack.push(match event {
                        Event::SequenceStart(..) => Frame::Seq {
                            line,
                            anchor,
                            items: Vec::new(),
                        },
                        _ => Frame::Map {
                            line,
                            anchor,
                            pairs: Vec::new(),
                            key: None,
                            merged: false,
                        },
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq {
                        line,
                        anchor,
                        items,
                    }) => (
                        Node {
                            line,
                            value: Value::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        line,
                        anchor,
                        pairs,
                        ..
                    }) => (
                        Node {
                            line,
                            value: Value::Map(pairs),
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.finish(node.0, node.1);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some((node, size)) => {
                    if self.count(size, line) {
                        self.finish(node, 0);
                    }
                }
                None => self.fail(line, "alias to an unknown anchor".to_string()),
            },
            Event::DocumentStart(_) => self.anchors.clear(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests;

//! Dockerfile parser: which stages a Dockerfile has and which image each is built `FROM`.
//!
//! The fleet graph needs only the stages, so only what decides them is
//! interpreted: parser directives (for the escape character), global `ARG`s
//! (to expand `FROM` lines) and `FROM` itself. Every other instruction is read
//! just far enough to step over it correctly — line continuations, comment
//! lines inside them and heredoc bodies — because a `FROM` inside a heredoc
//! body is text, not a stage.
//!
//! The rules follow BuildKit's parser (`frontend/dockerfile/parser` and its
//! shell lexer) rather than a regular expression over `FROM` lines, so that
//! the stages found here are the ones `docker build` would build. Where
//! Docker would refuse the file, the parser keeps going and says why in a
//! diagnostic: a scan of a whole fleet should report a broken Dockerfile, not
//! lose every fact in it.
//!
//! `ARG`s are resolved as in a build without `--build-arg`: a global `ARG`
//! with a default takes that default; one without a default is treated as
//! unknown (its value is whatever the build passes), so a `FROM` that needs
//! it is [`StageBase::Unresolved`]. BuildKit's platform `ARG`s
//! (`TARGETARCH`, ...) are unknown for the same reason: their value depends on
//! the platform the image is built for.

use model::{Diagnostic, Dockerfile, Facts, ImageRef, Provenance, Stage, StageBase};
use std::borrow::Cow;
use std::collections::HashMap;

/// The `ARG`s BuildKit defines in every build, and which platform they describe.
const PLATFORM_ARGS: [(&str, &str); 8] = [
    ("BUILDPLATFORM", "build"),
    ("BUILDOS", "build"),
    ("BUILDARCH", "build"),
    ("BUILDVARIANT", "build"),
    ("TARGETPLATFORM", "target"),
    ("TARGETOS", "target"),
    ("TARGETARCH", "target"),
    ("TARGETVARIANT", "target"),
];

/// Every instruction Docker knows, lowercase.
const INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// A file that is not a Dockerfile at all (a README named `Dockerfile.md`)
/// would otherwise yield one warning per line.
const MAX_UNKNOWN_INSTRUCTION_WARNINGS: usize = 10;

/// Bounds the recursion of `${A:-${B:-...}}` so that hostile input cannot overflow the stack.
const MAX_SUBSTITUTION_DEPTH: usize = 64;

/// User text quoted in a message is cut to this many characters.
const MAX_QUOTED_CHARS: usize = 80;

/// Parses one Dockerfile. `path` goes into every provenance and diagnostic.
///
/// Never fails and never panics: a file without `FROM`, or one holding NUL
/// bytes, yields an error diagnostic and no [`Dockerfile`].
pub fn parse(path: &str, text: &str) -> Facts {
    if text.contains('\0') {
        return Facts::from_diagnostic(Diagnostic::error(path, None, "binary file"));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new(path);
    parser.run(text);
    parser.finish()
}

/// The lines of a file, numbered from 1, without their line endings.
struct Lines<'a> {
    inner: std::iter::Enumerate<std::str::Split<'a, char>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        Lines {
            inner: text.split('\n').enumerate(),
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (u32, &'a str);

    fn next(&mut self) -> Option<(u32, &'a str)> {
        let (index, line) = self.inner.next()?;
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        // BuildKit trims every trailing CR, so `\r\r\n` endings read like `\n`.
        Some((number, line.trim_end_matches(['\r', '\n'])))
    }
}

/// What a global `ARG` holds when `FROM` lines are expanded.
#[derive(Debug, Clone)]
enum ArgValue {
    /// Declared with a default (or a default that expanded fully).
    Known(String),
    /// Declared without a default: unset unless the build passes a value.
    NoDefault,
    /// Set, but to a value only the build knows; the reason says why.
    Unknown(String),
}

/// A heredoc opened by an instruction: its body runs until a line equal to `name`.
#[derive(Debug)]
struct Heredoc {
    name: String,
    /// `<<-`: tabs before the terminator are ignored.
    chomp: bool,
}

#[derive(Debug)]
struct Parser<'p> {
    path: &'p str,
    escape: char,
    globals: HashMap<String, ArgValue>,
    stages: Vec<Stage>,
    /// Stage names seen so far, with the line of the stage that took each first.
    stage_names: HashMap<String, u32>,
    diagnostics: Vec<Diagnostic>,
    unknown_instructions: usize,
}

impl<'p> Parser<'p> {
    fn new(path: &'p str) -> Parser<'p> {
        let globals = PLATFORM_ARGS
            .iter()
            .map(|(name, platform)| {
                let reason = format!("{name} depends on the {platform} platform");
                ((*name).to_string(), ArgValue::Unknown(reason))
            })
            .collect();
        Parser {
            path,
            escape: '\\',
            globals,
            stages: Vec::new(),
            stage_names: HashMap::new(),
            diagnostics: Vec::new(),
            unknown_instructions: 0,
        }
    }

    fn warn(&mut self, line: u32, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::warning(self.path, Some(line), message));
    }

    /// Splits the text into instructions (joining continuation lines and
    /// skipping comments and heredoc bodies) and interprets each.
    fn run(&mut self, text: &str) {
        let mut lines = Lines::new(text);
        let mut in_directives = true;
        let mut seen_directives: Vec<String> = Vec::new();
        while let Some((number, raw)) = lines.next() {
            let line = raw.trim_start();
            // Directives count only before any blank line, comment or instruction.
            if in_directives {
                if let Some((key, value)) = directive(line) {
                    self.directive(number, key, value, &mut seen_directives);
                    continue;
                }
                in_directives = false;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (first, mut ended) = strip_continuation(line, self.escape);
            let mut instruction = Cow::Borrowed(first);
            while !ended {
                let Some((_, raw)) = lines.next() else { break };
                let trimmed = raw.trim_start();
                // Comment and blank lines inside a continued instruction do not end it.
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let (part, end) = strip_continuation(raw, self.escape);
                instruction.to_mut().push_str(part);
                ended = end;
            }
            for heredoc in self.instruction(number, &instruction) {
                let terminated = lines.by_ref().any(|(_, body)| {
                    let candidate = if heredoc.chomp {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    candidate == heredoc.name
                });
                if !terminated {
                    self.diagnostics.push(Diagnostic::error(
                        self.path,
                        Some(number),
                        format!(
                            "unterminated heredoc <<{}: the rest of the file is its body",
                            quoted(&heredoc.name)
                        ),
                    ));
                    return;
                }
            }
        }
    }

    fn directive(&mut self, line: u32, key: String, value: &str, seen: &mut Vec<String>) {
        if seen.contains(&key) {
            self.warn(line, format!("only one {key} parser directive can be used"));
            return;
        }
        if key == "escape" {
            match value {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                _ => self.warn(
                    line,
                    format!(
                        "invalid escape directive {}: only ` and \\ are allowed",
                        quoted(value)
                    ),
                ),
            }
        }
        seen.push(key);
    }

    /// Interprets one instruction; returns the heredocs whose bodies follow it.
    fn instruction(&mut self, line: u32, text: &str) -> Vec<Heredoc> {
        let text = text.trim_matches(is_blank);
        let (keyword, rest) = split_first_word(text);
        if keyword.eq_ignore_ascii_case("from") {
            self.from(line, rest);
        } else if keyword.eq_ignore_ascii_case("arg") {
            // An ARG inside a stage is scoped to it and never reaches a FROM.
            if self.stages.is_empty() {
                self.global_arg(line, rest);
            }
        } else if INSTRUCTIONS.iter().any(|i| keyword.eq_ignore_ascii_case(i)) {
            if self.stages.is_empty() {
                let message = format!(
                    "{} before the first FROM: only ARG may come first",
                    keyword.to_ascii_uppercase()
                );
                self.warn(line, message);
            }
        } else {
            self.unknown_instructions += 1;
            if self.unknown_instructions <= MAX_UNKNOWN_INSTRUCTION_WARNINGS {
                self.warn(line, format!("unknown instruction {}", quoted(keyword)));
            }
        }
        if text.contains("<<") && may_hold_heredocs(keyword, rest) {
            raw_words(text, '\\')
                .into_iter()
                .filter_map(heredoc_of)
                .collect()
        } else {
            Vec::new()
        }
    }

    /// `ARG NAME[=default] ...` before the first `FROM`.
    fn global_arg(&mut self, line: u32, args: &str) {
        let words = raw_words(args, self.escape);
        if words.is_empty() {
            self.warn(line, "ARG without a name");
        }
        for word in words {
            let (name, default) = match word.split_once('=') {
                Some((name, default)) => (name, Some(default)),
                None => (word, None),
            };
            if name.is_empty() {
                self.warn(line, format!("ARG {} has no name", quoted(word)));
                continue;
            }
            let value = match default {
                // Redeclaring without a default keeps what an earlier ARG set.
                None if self.globals.contains_key(name) => continue,
                None => ArgValue::NoDefault,
                Some(default) => match expand(default, self.escape, &self.globals) {
                    Ok(expansion) if expansion.unresolved.is_empty() => {
                        ArgValue::Known(expansion.value)
                    }
                    Ok(expansion) => ArgValue::Unknown(expansion.unresolved.join("; ")),
                    Err(error) => {
                        self.warn(line, format!("ARG {}: {error}", quoted(name)));
                        ArgValue::Unknown(format!("ARG {name} cannot be expanded: {error}"))
                    }
                },
            };
            self.globals.insert(name.to_string(), value);
        }
    }

    /// `FROM [--platform=<p>] <image> [AS <name>]`.
    fn from(&mut self, line: u32, args: &str) {
        let mut platform = None;
        let mut positional = Vec::new();
        let mut in_flags = true;
        for word in args.split(is_blank).filter(|w| !w.is_empty()) {
            if in_flags && let Some(flag) = word.strip_prefix("--") {
                if flag.is_empty() {
                    in_flags = false;
                    continue;
                }
                match flag.split_once('=') {
                    Some(("platform", value)) => {
                        platform = Some(value).filter(|v| !v.is_empty()).map(str::to_string);
                    }
                    None if flag == "platform" => self.warn(
                        line,
                        "--platform needs a value: write FROM --platform=<platform> <image>",
                    ),
                    _ => self.warn(line, format!("unknown FROM flag {}", quoted(word))),
                }
                continue;
            }
            in_flags = false;
            positional.push(word);
        }

        let written = positional.first().copied().unwrap_or("");
        let mut name = None;
        let mut extra: &[&str] = positional.get(1..).unwrap_or(&[]);
        if extra.first().is_some_and(|w| w.eq_ignore_ascii_case("as")) {
            match extra.get(1) {
                Some(n) => name = Some(n.to_lowercase()),
                None => self.warn(line, "AS without a stage name"),
            }
            extra = extra.get(2..).unwrap_or(&[]);
        }
        if !extra.is_empty() {
            let message = format!(
                "unexpected {} on FROM line: expected FROM [--platform=<p>] <image> [AS <name>]",
                quoted(&extra.join(" "))
            );
            self.warn(line, message);
        }

        let base = if written.is_empty() {
            self.warn(line, "FROM without an image");
            StageBase::Unresolved {
                expanded: String::new(),
                reason: "FROM without an image".to_string(),
            }
        } else {
            self.resolve(line, written)
        };

        if let Some(name) = &name {
            if !is_valid_stage_name(name) {
                let message = format!(
                    "invalid stage name {}: it must start with a letter and hold only letters, digits, '-', '_' and '.'",
                    quoted(name)
                );
                self.warn(line, message);
            }
            // Registered after resolving the base: `FROM node AS node` means the image.
            match self.stage_names.get(name) {
                Some(first) => {
                    let message = format!(
                        "duplicate stage name {} (first at line {first})",
                        quoted(name)
                    );
                    self.warn(line, message);
                }
                None => {
                    self.stage_names.insert(name.clone(), line);
                }
            }
        }

        self.stages.push(Stage {
            index: u32::try_from(self.stages.len()).unwrap_or(u32::MAX),
            name,
            base,
            platform,
            written: written.to_string(),
            at: Provenance::new(self.path, line),
        });
    }

    /// What a `FROM` argument names once global `ARG`s are substituted.
    fn resolve(&mut self, line: u32, written: &str) -> StageBase {
        let (expanded, reason) = match expand(written, self.escape, &self.globals) {
            Err(error) => (written.to_string(), error),
            Ok(expansion) => {
                for name in unique(expansion.undeclared) {
                    let message = format!(
                        "FROM uses ${name}, which no ARG before the first FROM declares: it expands to an empty string"
                    );
                    self.warn(line, message);
                }
                if expansion.unresolved.is_empty() {
                    match self.base_named(expansion.value) {
                        Ok(base) => return base,
                        Err(unresolved) => unresolved,
                    }
                } else {
                    (expansion.value, unique(expansion.unresolved).join("; "))
                }
            }
        };
        let message = format!("cannot resolve FROM {}: {reason}", quoted(written));
        self.warn(line, message);
        StageBase::Unresolved { expanded, reason }
    }

    /// The base a fully expanded `FROM` argument names, or why it names none.
    fn base_named(&self, value: String) -> Result<StageBase, (String, String)> {
        if value == "scratch" {
            return Ok(StageBase::Scratch);
        }
        let lower = value.to_lowercase();
        if self.stage_names.contains_key(&lower) {
            return Ok(StageBase::Stage(lower));
        }
        match ImageRef::parse(&value) {
            Ok(image) => Ok(StageBase::Image(image)),
            Err(error) => Err((value, error.to_string())),
        }
    }

    fn finish(self) -> Facts {
        if self.stages.is_empty() {
            return Facts::from_diagnostic(Diagnostic::error(
                self.path,
                None,
                "no FROM instruction; not a Dockerfile?",
            ));
        }
        let mut diagnostics = self.diagnostics;
        if self.unknown_instructions > MAX_UNKNOWN_INSTRUCTION_WARNINGS {
            diagnostics.push(Diagnostic::warning(
                self.path,
                None,
                format!(
                    "{} more unknown instructions not reported",
                    self.unknown_instructions - MAX_UNKNOWN_INSTRUCTION_WARNINGS
                ),
            ));
        }
        Facts {
            dockerfiles: vec![Dockerfile {
                path: self.path.to_string(),
                stages: self.stages,
            }],
            diagnostics,
            ..Facts::default()
        }
    }
}

/// `# key=value` naming a directive BuildKit knows: the lowercased key and the value.
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_regex_space);
    let key_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..]
        .trim_start_matches(is_regex_space)
        .strip_prefix('=')?
        .trim_matches(is_regex_space);
    let key = key.to_ascii_lowercase();
    let known = matches!(key.as_str(), "syntax" | "escape" | "check");
    (known && !value.is_empty()).then_some((key, value))
}

/// Removes a trailing line-continuation escape (spaces and tabs may follow
/// it); the flag is true when the line ends the instruction. An escaped escape
/// (`C:\\` with `\` as escape) is text, not a continuation.
fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(before) if !before.ends_with(escape) => (before, false),
        _ => (line, true),
    }
}

/// Whether the arguments of `keyword` may open heredocs: `RUN`, `COPY` and
/// `ADD` (also under `ONBUILD`), unless written in JSON form.
fn may_hold_heredocs(keyword: &str, rest: &str) -> bool {
    let (keyword, rest) = if keyword.eq_ignore_ascii_case("onbuild") {
        split_first_word(rest)
    } else {
        (keyword, rest)
    };
    let can = ["run", "copy", "add"]
        .iter()
        .any(|k| keyword.eq_ignore_ascii_case(k));
    can && !is_json_form(after_flags(rest))
}

fn is_json_form(args: &str) -> bool {
    args.starts_with('[') && serde_json::from_str::<Vec<String>>(args).is_ok()
}

/// The arguments after any leading `--flag` words.
fn after_flags(mut rest: &str) -> &str {
    loop {
        rest = rest.trim_start_matches(is_blank);
        if !rest.starts_with("--") {
            return rest;
        }
        rest = split_first_word(rest).1;
    }
}

/// A word such as `<<EOF`, `<<-EOF`, `<<"EOF"` or `3<<EOF` opens a heredoc.
fn heredoc_of(word: &str) -> Option<Heredoc> {
    let rest = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.contains('<') {
        return None;
    }
    let name = unquote(rest);
    (!name.is_empty()).then_some(Heredoc { name, chomp })
}

/// A shell word with its quotes and backslash escapes removed.
fn unquote(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut quote = None;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => out.push(c),
            (_, '\\') => out.extend(chars.next()),
            (_, c) => out.push(c),
        }
    }
    out
}

/// Splits shell-style on unquoted whitespace, keeping quotes and escapes in the words.
fn raw_words(text: &str, escape: char) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        let Some(word_start) = start else {
            if c.is_whitespace() {
                continue;
            }
            start = Some(i);
            if c == escape {
                escaped = true;
            } else if c == '\'' || c == '"' {
                quote = Some(c);
            }
            continue;
        };
        if escaped {
            escaped = false;
            continue;
        }
        match quote {
            Some('\'') if c == '\'' => quote = None,
            Some('\'') => {}
            Some(_) if c == escape => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == escape => escaped = true,
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c.is_whitespace() => {
                words.push(&text[word_start..i]);
                start = None;
            }
            None => {}
        }
    }
    if let Some(word_start) = start {
        words.push(&text[word_start..]);
    }
    words
}

/// The instruction keyword and the rest of the line.
fn split_first_word(text: &str) -> (&str, &str) {
    match text.split_once(is_blank) {
        Some((first, rest)) => (first, rest.trim_start_matches(is_blank)),
        None => (text, ""),
    }
}

/// The whitespace BuildKit splits instructions on (`[\t\v\f\r ]`).
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// What `\s` matches in Go's regular expressions.
fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// Docker's stage name rule, checked after lowercasing.
fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// The items in first-seen order, each once.
fn unique(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// User text for a message: backquoted, and cut short if long.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("`{}...`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

/// The result of substituting `ARG`s into a word.
#[derive(Debug, Default)]
struct Expansion {
    /// The word with quotes removed and known values substituted; a reference
    /// to an unknown value is kept as written.
    value: String,
    /// Why the value is not what the build will use (empty when it is).
    unresolved: Vec<String>,
    /// Names used without being declared: they expanded to nothing.
    undeclared: Vec<String>,
}

/// Substitutes `args` into `word` the way BuildKit's shell lexer does
/// (`$A`, `${A}`, `${A:-w}`, `${A-w}`, `${A:+w}`, `${A+w}`, `${A:?m}`, `${A?m}`,
/// quotes and escapes).
///
/// # Errors
/// Returns the reason when the word is malformed (an unterminated quote, a bad substitution).
fn expand(word: &str, escape: char, args: &HashMap<String, ArgValue>) -> Result<Expansion, String> {
    let mut lexer = Lexer {
        src: word,
        pos: 0,
        escape,
        args,
        depth: 0,
        unresolved: Vec::new(),
        undeclared: Vec::new(),
    };
    let value = lexer.word(None, true)?;
    Ok(Expansion {
        value,
        unresolved: lexer.unresolved,
        undeclared: lexer.undeclared,
    })
}

#[derive(Debug)]
struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    escape: char,
    args: &'a HashMap<String, ArgValue>,
    depth: usize,
    unresolved: Vec<String>,
    undeclared: Vec<String>,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..)?.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Reads up to `stop` (consumed) or the end. With `eval` false the text is
    /// only skipped: a branch of `${A:-w}` that is not taken cannot make the
    /// value unresolved.
    fn word(&mut self, stop: Option<char>, eval: bool) -> Result<String, String> {
        self.depth += 1;
        if self.depth > MAX_SUBSTITUTION_DEPTH {
            return Err("substitutions nested too deeply".to_string());
        }
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                if stop.is_some() {
                    return Err("missing '}' in substitution".to_string());
                }
                break;
            };
            if Some(c) == stop {
                break;
            }
            match c {
                '\'' => loop {
                    match self.bump() {
                        Some('\'') => break,
                        Some(c) => out.push(c),
                        None => return Err("unterminated single quote".to_string()),
                    }
                },
                '"' => self.double_quoted(eval, &mut out)?,
                '$' => self.dollar(eval, &mut out)?,
                c if c == self.escape => out.extend(self.bump()),
                c => out.push(c),
            }
        }
        self.depth -= 1;
        Ok(out)
    }

    fn double_quoted(&mut self, eval: bool, out: &mut String) -> Result<(), String> {
        loop {
            match self.bump() {
                None => return Err("unterminated double quote".to_string()),
                Some('"') => return Ok(()),
                Some('$') => self.dollar(eval, out)?,
                // Inside double quotes the escape only escapes `"`, `$` and itself.
                Some(c) if c == self.escape => match self.peek() {
                    Some(next) if next == '"' || next == '$' || next == self.escape => {
                        self.bump();
                        out.push(next);
                    }
                    Some(_) => out.push(c),
                    None => {}
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// A variable name; one starting with a digit is all digits, as in the shell.
    fn name(&mut self) -> &'a str {
        let src = self.src;
        let start = self.pos;
        let digits = self.peek().is_some_and(|c| c.is_ascii_digit());
        while let Some(c) = self.peek() {
            let continues = if digits {
                c.is_ascii_digit()
            } else {
                c.is_alphanumeric() || c == '_'
            };
            if !continues {
                break;
            }
            self.bump();
        }
        &src[start..self.pos]
    }

    /// After a `$`.
    fn dollar(&mut self, eval: bool, out: &mut String) -> Result<(), String> {
        let src = self.src;
        let start = self.pos - 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                out.push('$');
            } else if eval {
                self.plain(name, &src[start..self.pos], out);
            }
            return Ok(());
        }
        self.bump();
        let name = self.name();
        if name.is_empty() {
            return Err(format!("bad substitution in {}", quoted(src)));
        }
        let Some(op) = self.bump() else {
            return Err("missing '}' in substitution".to_string());
        };
        let (colon, op) = match op {
            ':' => match self.bump() {
                Some(op) => (true, op),
                None => return Err("missing '}' in substitution".to_string()),
            },
            op => (false, op),
        };
        match op {
            '}' if !colon => {
                if eval {
                    self.plain(name, &src[start..self.pos], out);
                }
            }
            '-' | '+' | '?' => self.modified(name, colon, op, start, eval, out)?,
            '#' | '%' | '/' if !colon => {
                self.word(Some('}'), false)?;
                if eval {
                    let raw = &src[start..self.pos];
                    self.unresolved
                        .push(format!("unsupported substitution {}", quoted(raw)));
                    out.push_str(raw);
                }
            }
            op => return Err(format!("unsupported modifier ({op}) in substitution")),
        }
        Ok(())
    }

    /// `$A` or `${A}`.
    fn plain(&mut self, name: &str, raw: &str, out: &mut String) {
        match self.args.get(name) {
            Some(ArgValue::Known(value)) => out.push_str(value),
            Some(ArgValue::NoDefault) => {
                self.unresolved.push(format!("ARG {name} has no default"));
                out.push_str(raw);
            }
            Some(ArgValue::Unknown(reason)) => {
                self.unresolved.push(reason.clone());
                out.push_str(raw);
            }
            None => self.undeclared.push(name.to_string()),
        }
    }

    /// `${A:-w}`, `${A-w}`, `${A:+w}`, `${A+w}`, `${A:?m}` and `${A?m}`; the
    /// operator is consumed, the word is next.
    fn modified(
        &mut self,
        name: &str,
        colon: bool,
        op: char,
        start: usize,
        eval: bool,
        out: &mut String,
    ) -> Result<(), String> {
        let src = self.src;
        let state = self.args.get(name);
        if let Some(ArgValue::Unknown(reason)) = state {
            self.word(Some('}'), false)?;
            if eval {
                self.unresolved.push(reason.clone());
                out.push_str(&src[start..self.pos]);
            }
            return Ok(());
        }
        let value = match state {
            Some(ArgValue::Known(value)) => Some(value.as_str()),
            _ => None,
        };
        // With a colon an empty value counts as unset, as in the shell.
        let present = value.filter(|v| !colon || !v.is_empty());
        match (op, present) {
            ('-' | '?', Some(value)) => {
                self.word(Some('}'), false)?;
                if eval {
                    out.push_str(value);
                }
            }
            ('-', None) => {
                let word = self.word(Some('}'), eval)?;
                out.push_str(&word);
            }
            ('+', Some(_)) => {
                let word = self.word(Some('}'), eval)?;
                out.push_str(&word);
            }
            ('+', None) => {
                self.word(Some('}'), false)?;
            }
            _ => {
                let message = self.word(Some('}'), eval)?;
                if eval {
                    let reason = match state {
                        Some(ArgValue::NoDefault) => format!("ARG {name} has no default"),
                        _ if message.is_empty() => format!("{name} is not allowed to be unset"),
                        _ => format!("{name}: {message}"),
                    };
                    self.unresolved.push(reason);
                    out.push_str(&src[start..self.pos]);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

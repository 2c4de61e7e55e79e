//! Analysis: what to measure, the conditions a measurement must meet, and the
//! verdict over a series of measurements, with Argo Rollouts' semantics for
//! `failureLimit`, `inconclusiveLimit` and `consecutiveErrorLimit`.
//!
//! A measurement is judged by its metric's conditions (Argo's rules):
//!
//! | conditions given | measurement is |
//! |---|---|
//! | neither | successful |
//! | `successCondition` only | successful when it holds, else failed |
//! | `failureCondition` only | failed when it holds, else successful |
//! | both | failed when the failure condition holds, else successful when the success condition holds, else inconclusive |
//!
//! A measurement whose provider failed, or whose condition cannot be evaluated,
//! is an error. Per metric and service, the metric is failed when more than
//! `failureLimit` measurements failed, inconclusive when more than
//! `inconclusiveLimit` were inconclusive, an error when more than
//! `consecutiveErrorLimit` errors came in a row; otherwise successful once
//! `count` measurements were taken (errors count, as in Argo), except that a
//! series of nothing but errors is inconclusive: nothing proved the version
//! safe. The analysis takes the worst metric: failed, then error, then
//! inconclusive, then successful.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An analysis: the metrics to measure, each on every service the analysis covers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// The AnalysisTemplates it came from (for messages).
    #[serde(default)]
    pub templates: Vec<String>,
    pub metrics: Vec<Metric>,
}

impl AnalysisSpec {
    /// The built-in analysis used when a service has no rollout spec: the gateway's
    /// error rate stays below 5% over three measurements 10 seconds apart.
    pub fn builtin() -> AnalysisSpec {
        AnalysisSpec {
            templates: vec!["builtin-error-rate".to_string()],
            metrics: vec![Metric {
                name: "error-rate".to_string(),
                provider: Provider::Gateway {
                    metric: MetricKind::ErrorRate,
                },
                success_condition: Some(Condition::parse("result < 0.05").expect("valid")),
                failure_condition: None,
                interval_seconds: 10,
                count: 3,
                failure_limit: 0,
                inconclusive_limit: 0,
                consecutive_error_limit: DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            }],
        }
    }

    /// The longest time the analysis takes when every measurement arrives on time.
    pub fn duration_seconds(&self) -> u64 {
        self.metrics
            .iter()
            .map(|m| m.interval_seconds.saturating_mul(u64::from(m.count.max(1))))
            .max()
            .unwrap_or(0)
    }
}

/// Argo Rollouts' default for `consecutiveErrorLimit`.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;

/// One metric of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    pub provider: Provider,
    pub success_condition: Option<Condition>,
    pub failure_condition: Option<Condition>,
    /// Seconds between two measurements.
    pub interval_seconds: u64,
    /// How many measurements to take (per service).
    pub count: u32,
    /// Failed measurements tolerated; a negative value means no limit.
    pub failure_limit: i32,
    /// Inconclusive measurements tolerated; a negative value means no limit.
    pub inconclusive_limit: i32,
    /// Errors in a row tolerated; a negative value means no limit.
    pub consecutive_error_limit: i32,
}

/// A service-level signal a provider can measure without a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricKind {
    /// The share of requests answered with a 5xx status or not answered, 0.0 to 1.0.
    ErrorRate,
    /// The 99th percentile latency in milliseconds.
    LatencyP99,
}

impl MetricKind {
    pub fn parse(s: &str) -> Option<MetricKind> {
        match s {
            "error-rate" => Some(MetricKind::ErrorRate),
            "latency-p99" => Some(MetricKind::LatencyP99),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::ErrorRate => "error-rate",
            MetricKind::LatencyP99 => "latency-p99",
        }
    }
}

/// Where a metric's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Provider {
    /// The bulkhead gateway's own request metrics for the service.
    Gateway { metric: MetricKind },
    /// A Prometheus HTTP API (`GET {address}/api/v1/query`). In `query`,
    /// `{{service}}` (or Argo's `{{args.service-name}}`) is replaced by the
    /// service measured; the first sample of the result is the value.
    Prometheus { address: String, query: String },
    /// The trace store's per-service error rate or latency.
    Traces { address: String, metric: MetricKind },
}

impl Provider {
    /// The Prometheus query for one service, with its placeholders filled in.
    pub fn query_for(query: &str, service: &str) -> String {
        query
            .replace("{{service}}", service)
            .replace("{{args.service-name}}", service)
    }
}

/// The outcome of an analysis (and of one measurement), from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Successful,
    Inconclusive,
    Error,
    Failed,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Successful => "successful",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Error => "error",
            Verdict::Failed => "failed",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value taken by a provider, for one metric on one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub metric: String,
    pub service: String,
    /// The value, when the provider answered.
    pub value: Option<f64>,
    /// Why there is no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Measurement {
    /// What this measurement says under `metric`'s conditions.
    pub fn judge(&self, metric: &Metric) -> Verdict {
        let Some(value) = self.value.filter(|_| self.error.is_none()) else {
            return Verdict::Error;
        };
        let success = metric.success_condition.as_ref().map(|c| c.holds(value));
        let failure = metric.failure_condition.as_ref().map(|c| c.holds(value));
        let (success, failure) = match (success, failure) {
            (Some(Err(_)), _) | (_, Some(Err(_))) => return Verdict::Error,
            (None, None) => return Verdict::Successful,
            (Some(Ok(s)), None) => (s, !s),
            (None, Some(Ok(f))) => (!f, f),
            (Some(Ok(s)), Some(Ok(f))) => (s, f),
        };
        if failure {
            Verdict::Failed
        } else if success {
            Verdict::Successful
        } else {
            Verdict::Inconclusive
        }
    }
}

/// How far one metric on one service has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricState {
    Running,
    Done(Verdict),
}

fn exceeds(count: u32, limit: i32) -> bool {
    limit >= 0 && i64::from(count) > i64::from(limit)
}

fn assess(metric: &Metric, measurements: &[&Measurement]) -> MetricState {
    let (mut failed, mut inconclusive, mut consecutive_errors) = (0u32, 0u32, 0u32);
    for m in measurements {
        match m.judge(metric) {
            Verdict::Failed => failed += 1,
            Verdict::Inconclusive => inconclusive += 1,
            Verdict::Error => consecutive_errors += 1,
            Verdict::Successful => {}
        }
        if m.judge(metric) != Verdict::Error {
            consecutive_errors = 0;
        }
        if exceeds(failed, metric.failure_limit) {
            return MetricState::Done(Verdict::Failed);
        }
        if exceeds(consecutive_errors, metric.consecutive_error_limit) {
            return MetricState::Done(Verdict::Error);
        }
        if exceeds(inconclusive, metric.inconclusive_limit) {
            return MetricState::Done(Verdict::Inconclusive);
        }
    }
    if measurements.len() >= metric.count.max(1) as usize {
        MetricState::Done(settled(metric, measurements))
    } else {
        MetricState::Running
    }
}

/// A series that crossed no limit: successful, unless every measurement was an
/// error, because then nothing proves the new version safe.
fn settled(metric: &Metric, measurements: &[&Measurement]) -> Verdict {
    if measurements
        .iter()
        .all(|m| m.judge(metric) == Verdict::Error)
    {
        Verdict::Inconclusive
    } else {
        Verdict::Successful
    }
}

fn states(spec: &AnalysisSpec, measurements: &[Measurement]) -> Vec<MetricState> {
    let mut out = Vec::new();
    for metric in &spec.metrics {
        let mut services: Vec<&str> = measurements
            .iter()
            .filter(|m| m.metric == metric.name)
            .map(|m| m.service.as_str())
            .collect();
        services.sort_unstable();
        services.dedup();
        if services.is_empty() {
            out.push(MetricState::Running);
        }
        for service in services {
            let series: Vec<&Measurement> = measurements
                .iter()
                .filter(|m| m.metric == metric.name && m.service == service)
                .collect();
            out.push(assess(metric, &series));
        }
    }
    out
}

/// The verdict once it is decided: some metric crossed a limit, or every metric
/// has its `count` measurements on every service measured. `None` while the
/// analysis must go on. Measurements of metrics the spec does not name are ignored.
pub fn progress(spec: &AnalysisSpec, measurements: &[Measurement]) -> Option<Verdict> {
    let states = states(spec, measurements);
    let worst = states
        .iter()
        .filter_map(|s| match s {
            MetricState::Done(v) if *v != Verdict::Successful => Some(*v),
            _ => None,
        })
        .max();
    if worst.is_some() {
        return worst;
    }
    states
        .iter()
        .all(|s| *s == MetricState::Done(Verdict::Successful))
        .then_some(Verdict::Successful)
}

/// The final verdict over every measurement taken. A metric still short of its
/// `count` is judged on what it has; a metric with no measurement, or only
/// errors, is inconclusive (nothing proves it safe). An analysis without
/// metrics is successful.
pub fn evaluate(spec: &AnalysisSpec, measurements: &[Measurement]) -> Verdict {
    if let Some(verdict) = progress(spec, measurements) {
        return verdict;
    }
    let mut worst = Verdict::Successful;
    for metric in &spec.metrics {
        let series: Vec<&Measurement> = measurements
            .iter()
            .filter(|m| m.metric == metric.name)
            .collect();
        let mut services: Vec<&str> = series.iter().map(|m| m.service.as_str()).collect();
        services.sort_unstable();
        services.dedup();
        if services.is_empty() {
            worst = worst.max(Verdict::Inconclusive);
        }
        for service in services {
            let own: Vec<&Measurement> = series
                .iter()
                .copied()
                .filter(|m| m.service == service)
                .collect();
            worst = worst.max(settled(metric, &own));
        }
    }
    worst
}

/// A condition over a measurement's `result`, such as `result < 0.05` or
/// `result[0] >= 0.95 && result[0] <= 1`: comparisons (`<`, `<=`, `>`, `>=`,
/// `==`, `!=`) of numbers and `result` joined by `&&` and `||`, with parentheses
/// and `!`. `result[0]` is the value too (a provider's vector has one sample).
#[derive(Clone, PartialEq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Condition::parse(&source).map_err(serde::de::Error::custom)
    }
}

/// A condition that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition `{source_text}`: {message} at column {column}")]
pub struct ConditionError {
    pub source_text: String,
    pub message: String,
    /// 1-based character column.
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, Op, Operand),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operand {
    Number(f64),
    /// `result` or `result[i]`.
    Result(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Result,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Not,
    And,
    Or,
    Op(Op),
}

/// Bounds the nesting of parentheses and `!`, so a hostile condition cannot overflow the stack.
const MAX_DEPTH: usize = 32;

impl Condition {
    /// Parses a condition.
    ///
    /// # Errors
    /// When the text is not a condition of the grammar above.
    pub fn parse(source: &str) -> Result<Condition, ConditionError> {
        let tokens = tokenize(source)?;
        let mut parser = Parser {
            source,
            tokens,
            pos: 0,
            depth: 0,
        };
        let expr = parser.or()?;
        if parser.pos < parser.tokens.len() {
            return Err(parser.error("unexpected trailing input"));
        }
        Ok(Condition {
            source: source.trim().to_string(),
            expr,
        })
    }

    /// Whether the condition holds for `value`.
    ///
    /// # Errors
    /// When it reads `result[i]` with `i` > 0: a single value has no such sample.
    pub fn holds(&self, value: f64) -> Result<bool, String> {
        eval(&self.expr, value)
    }
}

fn eval(expr: &Expr, value: f64) -> Result<bool, String> {
    Ok(match expr {
        Expr::Or(a, b) => eval(a, value)? || eval(b, value)?,
        Expr::And(a, b) => eval(a, value)? && eval(b, value)?,
        Expr::Not(a) => !eval(a, value)?,
        Expr::Cmp(l, op, r) => {
            let (l, r) = (operand(*l, value)?, operand(*r, value)?);
            match op {
                Op::Lt => l < r,
                Op::Le => l <= r,
                Op::Gt => l > r,
                Op::Ge => l >= r,
                Op::Eq => l == r,
                Op::Ne => l != r,
            }
        }
    })
}

fn operand(o: Operand, value: f64) -> Result<f64, String> {
    match o {
        Operand::Number(n) => Ok(n),
        Operand::Result(0) => Ok(value),
        Operand::Result(i) => Err(format!("result[{i}] is out of range: one sample")),
    }
}

/// Tokens with the character column each starts at.
fn tokenize(source: &str) -> Result<Vec<(Token, usize)>, ConditionError> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |message: &str, at: usize| ConditionError {
        source_text: source.to_string(),
        message: message.to_string(),
        column: at + 1,
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let two = chars.get(i + 1).copied();
        let token = match (c, two) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('&', Some('&')) => Token::And,
            ('|', Some('|')) => Token::Or,
            ('<', Some('=')) => Token::Op(Op::Le),
            ('>', Some('=')) => Token::Op(Op::Ge),
            ('=', Some('=')) => Token::Op(Op::Eq),
            ('!', Some('=')) => Token::Op(Op::Ne),
            ('<', _) => Token::Op(Op::Lt),
            ('>', _) => Token::Op(Op::Gt),
            ('!', _) => Token::Not,
            ('(', _) => Token::LParen,
            (')', _) => Token::RParen,
            ('[', _) => Token::LBracket,
            (']', _) => Token::RBracket,
            (c, _) if c.is_ascii_digit() || c == '.' || c == '-' => {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '+' | '-'))
                {
                    // Only an exponent may carry a sign inside a number.
                    if matches!(chars[i], '+' | '-') && !matches!(chars[i - 1], 'e' | 'E') {
                        break;
                    }
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => {
                        out.push((Token::Number(n), start));
                        continue;
                    }
                    _ => return Err(err(&format!("`{text}` is not a number"), start)),
                }
            }
            (c, _) if c.is_ascii_alphabetic() || c == '_' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                match word.as_str() {
                    "result" => out.push((Token::Result, start)),
                    "and" => out.push((Token::And, start)),
                    "or" => out.push((Token::Or, start)),
                    _ => {
                        return Err(err(
                            &format!("unknown name `{word}` (only `result` is known)"),
                            start,
                        ));
                    }
                }
                continue;
            }
            (c, _) => return Err(err(&format!("unexpected `{c}`"), start)),
        };
        i += match token {
            Token::And | Token::Or => 2,
            Token::Op(Op::Le | Op::Ge | Op::Eq | Op::Ne) => 2,
            _ => 1,
        };
        out.push((token, start));
    }
    Ok(out)
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<(Token, usize)>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> ConditionError {
        ConditionError {
            source_text: self.source.to_string(),
            message: message.to_string(),
            column: self
                .tokens
                .get(self.pos)
                .map_or(self.source.chars().count() + 1, |(_, at)| at + 1),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.and()?;
        while self.eat(&Token::Or) {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.unary()?;
        while self.eat(&Token::And) {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ConditionError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        let expr = if self.eat(&Token::Not) {
            Expr::Not(Box::new(self.unary()?))
        } else if self.eat(&Token::LParen) {
            let inner = self.or()?;
            if !self.eat(&Token::RParen) {
                return Err(self.error("expected `)`"));
            }
            inner
        } else {
            let left = self.operand()?;
            let op = match self.peek() {
                Some(Token::Op(op)) => *op,
                _ => return Err(self.error("expected a comparison (<, <=, >, >=, ==, !=)")),
            };
            self.pos += 1;
            Expr::Cmp(left, op, self.operand()?)
        };
        self.depth -= 1;
        Ok(expr)
    }

    fn operand(&mut self) -> Result<Operand, ConditionError> {
        match self.peek().cloned() {
            Some(Token::Number(n)) => {
                self.pos += 1;
                Ok(Operand::Number(n))
            }
            Some(Token::Result) => {
                self.pos += 1;
                if !self.eat(&Token::LBracket) {
                    return Ok(Operand::Result(0));
                }
                let index = match self.peek() {
                    Some(Token::Number(n)) if n.fract() == 0.0 && *n >= 0.0 && *n < 1e6 => {
                        *n as usize
                    }
                    _ => return Err(self.error("expected an index such as 0")),
                };
                self.pos += 1;
                if !self.eat(&Token::RBracket) {
                    return Err(self.error("expected `]`"));
                }
                Ok(Operand::Result(index))
            }
            _ => Err(self.error("expected a number or `result`")),
        }
    }
}

#[cfg(test)]
mod tests;

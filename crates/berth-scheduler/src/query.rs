//! The ECS cluster query language: a parser and an evaluator.
//!
//! Used by `memberOf` placement constraints and by ListContainerInstances' `filter`. Grammar
//! (keywords and subjects are case-insensitive):
//!
//! ```text
//! expr       := and_expr (("or" | "||") and_expr)*
//! and_expr   := unary (("and" | "&&") unary)*
//! unary      := ("not" | "!") unary | "(" expr ")" | comparison
//! comparison := subject ( cmp_op value
//!                       | ("in" | "not_in") list
//!                       | "exists" | "!exists" )
//! subject    := "attribute:" NAME | "ec2InstanceId" | "registeredAt" | "runningTasksCount" | "task:group"
//! cmp_op     := "==" | "equals" | "!=" | "not_equals" | ">" | ">=" | "<" | "<="
//!             | "=~" | "matches" | "!~" | "not_matches"
//! list       := "[" value ("," value)* "]" | "(" value ("," value)* ")"
//! value      := a bare word (no spaces, brackets, commas or operator characters) | a quoted string
//! ```
//!
//! `matches` patterns use `*` as a wildcard for any run of characters; everything else is literal
//! (`t2.*` matches `t2.micro`). `registeredAt` compares with dates (`2024-01-31` or RFC 3339),
//! `runningTasksCount` with integers; attributes compare as numbers when both sides are numbers and
//! as strings otherwise. `task:group` holds if any task on the instance satisfies the comparison; its
//! negated forms (`!=`, `not_in`, `!~`, `!exists`) hold if none does. A missing attribute fails every
//! positive comparison and satisfies every negated one.
//!
//! Values are parsed once (numbers, dates, patterns) so that evaluation does no parsing.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::ContainerInstance;

/// A parse failure: where, and what the parser wanted there.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid expression at position {position}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Character offset (0-based) of the offending token.
    pub position: usize,
    /// What the parser expected, e.g. `an operator`.
    pub expected: String,
    /// What it found, e.g. `'foo'` or `end of expression`.
    pub found: String,
}

/// The thing a comparison looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subject {
    /// `attribute:<name>`.
    Attribute(String),
    /// `ec2InstanceId`.
    Ec2InstanceId,
    /// `registeredAt`.
    RegisteredAt,
    /// `runningTasksCount`.
    RunningTasksCount,
    /// `task:group`.
    TaskGroup,
}

/// A literal value, with its number and date readings computed at parse time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    /// The text as written (quotes removed).
    pub text: String,
    /// The number it reads as, if any.
    pub number: Option<f64>,
    /// The instant it reads as (seconds since the epoch), if any.
    pub time: Option<i64>,
}

impl Value {
    fn new(text: String) -> Self {
        let number = text.parse::<f64>().ok().filter(|n| n.is_finite());
        let time = parse_time(&text);
        Self { text, number, time }
    }
}

/// A `*` wildcard pattern, split at the stars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pattern {
    /// The pattern as written.
    pub text: String,
    parts: Vec<String>,
}

impl Pattern {
    /// Compiles a wildcard pattern.
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            parts: text.split('*').map(str::to_owned).collect(),
        }
    }

    /// Whether `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        let parts = &self.parts;
        if parts.len() == 1 {
            return s == parts[0];
        }
        // parts.len() >= 2: first part anchors the start, last part anchors the end.
        let (first, last) = (&parts[0], &parts[parts.len() - 1]);
        if s.len() < first.len() + last.len()
            || !s.starts_with(first.as_str())
            || !s.ends_with(last.as_str())
        {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for middle in &parts[1..parts.len() - 1] {
            match rest.find(middle.as_str()) {
                Some(at) => rest = &rest[at + middle.len()..],
                None => return false,
            }
        }
        true
    }
}

/// What a comparison tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Predicate {
    /// `==`, `equals`.
    Eq(Value),
    /// `!=`, `not_equals`.
    NotEq(Value),
    /// `>`.
    Gt(Value),
    /// `>=`.
    Ge(Value),
    /// `<`.
    Lt(Value),
    /// `<=`.
    Le(Value),
    /// `exists`.
    Exists,
    /// `!exists`.
    NotExists,
    /// `in [..]`.
    In(Vec<Value>),
    /// `not_in [..]`.
    NotIn(Vec<Value>),
    /// `=~`, `matches`.
    Matches(Pattern),
    /// `!~`, `not_matches`.
    NotMatches(Pattern),
}

impl Predicate {
    /// Whether this is a negated form (true when the subject is absent).
    fn is_negated(&self) -> bool {
        matches!(
            self,
            Self::NotEq(_) | Self::NotExists | Self::NotIn(_) | Self::NotMatches(_)
        )
    }

    /// Whether the positive form of the predicate (`==` for `!=`, ...) holds for a text subject.
    fn holds_positive(&self, s: &str) -> bool {
        match self {
            Self::Eq(v) | Self::NotEq(v) => v.text == s,
            Self::Gt(v) => compare(s, v) == Some(Ordering::Greater),
            Self::Ge(v) => matches!(compare(s, v), Some(Ordering::Greater | Ordering::Equal)),
            Self::Lt(v) => compare(s, v) == Some(Ordering::Less),
            Self::Le(v) => matches!(compare(s, v), Some(Ordering::Less | Ordering::Equal)),
            Self::Exists | Self::NotExists => true,
            Self::In(vs) | Self::NotIn(vs) => vs.iter().any(|v| v.text == s),
            Self::Matches(p) | Self::NotMatches(p) => p.matches(s),
        }
    }
}

/// Orders a text subject against a value: as numbers when both read as numbers, else as strings.
fn compare(s: &str, v: &Value) -> Option<Ordering> {
    match (s.parse::<f64>().ok(), v.number) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => Some(s.cmp(v.text.as_str())),
    }
}

/// A parsed query expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// The inner expression does not hold.
    Not(Box<Expr>),
    /// A comparison on one subject.
    Cmp(Subject, Predicate),
}

/// What an expression is evaluated against: an instance, plus tasks of one group that a planning run
/// has put there but that are not in the snapshot yet.
#[derive(Debug, Clone, Copy)]
pub struct InstanceView<'a> {
    /// The instance.
    pub instance: &'a ContainerInstance,
    /// Group of the tasks planned onto the instance in this run, if any.
    pub planned_group: Option<&'a str>,
    /// How many tasks were planned onto it in this run.
    pub planned_count: u32,
}

impl<'a> InstanceView<'a> {
    /// A view of the instance as it is in the snapshot.
    pub fn new(instance: &'a ContainerInstance) -> Self {
        Self {
            instance,
            planned_group: None,
            planned_count: 0,
        }
    }
}

impl Expr {
    /// Evaluates the expression against an instance.
    pub fn eval(&self, view: &InstanceView<'_>) -> bool {
        match self {
            Self::And(a, b) => a.eval(view) && b.eval(view),
            Self::Or(a, b) => a.eval(view) || b.eval(view),
            Self::Not(a) => !a.eval(view),
            Self::Cmp(subject, pred) => eval_cmp(subject, pred, view),
        }
    }

    /// Whether the expression reads state that placing tasks changes (`task:group`,
    /// `runningTasksCount`), so it must be re-evaluated on an instance after each placement there.
    pub fn is_dynamic(&self) -> bool {
        match self {
            Self::And(a, b) | Self::Or(a, b) => a.is_dynamic() || b.is_dynamic(),
            Self::Not(a) => a.is_dynamic(),
            Self::Cmp(s, _) => matches!(s, Subject::TaskGroup | Subject::RunningTasksCount),
        }
    }
}

fn eval_cmp(subject: &Subject, pred: &Predicate, view: &InstanceView<'_>) -> bool {
    let inst = view.instance;
    let negated = pred.is_negated();
    match subject {
        Subject::Attribute(name) => match inst.attribute(name) {
            None => negated,
            Some(value) => {
                let positive = match (pred, value) {
                    (Predicate::Exists | Predicate::NotExists, _) => true,
                    (_, None) => false,
                    (_, Some(s)) => pred.holds_positive(s),
                };
                positive != negated
            }
        },
        Subject::Ec2InstanceId => match &inst.ec2_instance_id {
            None => negated,
            Some(id) => pred.holds_positive(id) != negated,
        },
        Subject::RegisteredAt => {
            let t = inst.registered_at;
            let positive = match pred {
                Predicate::Eq(v) | Predicate::NotEq(v) => v.time == Some(t),
                Predicate::In(vs) | Predicate::NotIn(vs) => vs.iter().any(|v| v.time == Some(t)),
                Predicate::Gt(v) => v.time.is_some_and(|x| t > x),
                Predicate::Ge(v) => v.time.is_some_and(|x| t >= x),
                Predicate::Lt(v) => v.time.is_some_and(|x| t < x),
                Predicate::Le(v) => v.time.is_some_and(|x| t <= x),
                Predicate::Exists | Predicate::NotExists => true,
                Predicate::Matches(p) | Predicate::NotMatches(p) => p.matches(&format_time(t)),
            };
            positive != negated
        }
        Subject::RunningTasksCount => {
            let n = f64::from(inst.running_tasks_count.saturating_add(view.planned_count));
            let positive = match pred {
                Predicate::Eq(v) | Predicate::NotEq(v) => v.number == Some(n),
                Predicate::In(vs) | Predicate::NotIn(vs) => vs.iter().any(|v| v.number == Some(n)),
                Predicate::Gt(v) => v.number.is_some_and(|x| n > x),
                Predicate::Ge(v) => v.number.is_some_and(|x| n >= x),
                Predicate::Lt(v) => v.number.is_some_and(|x| n < x),
                Predicate::Le(v) => v.number.is_some_and(|x| n <= x),
                Predicate::Exists | Predicate::NotExists => true,
                Predicate::Matches(p) | Predicate::NotMatches(p) => p.matches(&n.to_string()),
            };
            positive != negated
        }
        Subject::TaskGroup => {
            let planned = view.planned_group.filter(|_| view.planned_count > 0);
            let any = inst
                .tasks
                .iter()
                .map(|t| t.group.as_str())
                .chain(planned)
                .any(|g| pred.holds_positive(g));
            any != negated
        }
    }
}

/// The longest expression [`parse`] accepts, in characters.
pub const MAX_INPUT_CHARS: usize = 10_000;

/// Parses a query expression.
///
/// Inputs longer than [`MAX_INPUT_CHARS`] are refused, which bounds the depth of the tree (and of
/// the recursion that evaluates and drops it); ECS itself caps memberOf expressions at 2,000.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    if input.chars().nth(MAX_INPUT_CHARS).is_some() {
        return Err(ParseError {
            position: MAX_INPUT_CHARS,
            expected: format!("end of expression (at most {MAX_INPUT_CHARS} characters)"),
            found: "more".into(),
        });
    }
    let tokens = lex(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: input.chars().count(),
    };
    let expr = p.expr()?;
    match p.peek() {
        None => Ok(expr),
        Some(t) => Err(p.error_at(t.pos, "'and', 'or' or end of expression", &t.describe())),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// A symbolic operator: `==`, `!=`, `>`, `>=`, `<`, `<=`, `=~`, `!~`, `&&`, `||`, `!`.
    Sym(&'static str),
    /// A bare word (keyword, subject or value).
    Word(String),
    /// A quoted string (always a value).
    Quoted(String),
    /// A character that starts no token (a lone `=`, `&` or `|`); the parser reports it in context.
    Stray(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.tok {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::Word(w) => format!("'{w}'"),
            Tok::Quoted(w) => format!("\"{w}\""),
            Tok::Stray(c) => format!("'{c}'"),
        }
    }

    fn keyword(&self) -> Option<String> {
        match &self.tok {
            Tok::Word(w) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }
}

const SYMBOLS: [&str; 11] = [
    "==", "!=", ">=", "<=", "=~", "!~", "&&", "||", ">", "<", "!",
];

fn is_word_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '(' | ')' | '[' | ']' | ',' | '=' | '!' | '<' | '>' | '&' | '|' | '"' | '\''
        )
}

fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    'outer: while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(tok) = single {
            out.push(Token { tok, pos: i });
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            let start = i;
            let mut s = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == c {
                    out.push(Token {
                        tok: Tok::Quoted(s),
                        pos: start,
                    });
                    i += 1;
                    continue 'outer;
                }
                s.push(chars[i]);
                i += 1;
            }
            return Err(ParseError {
                position: start,
                expected: format!("closing {c}"),
                found: "end of expression".into(),
            });
        }
        for sym in SYMBOLS {
            let n = sym.chars().count();
            if i + n <= chars.len() && chars[i..i + n].iter().copied().eq(sym.chars()) {
                out.push(Token {
                    tok: Tok::Sym(sym),
                    pos: i,
                });
                i += n;
                continue 'outer;
            }
        }
        if !is_word_char(c) {
            out.push(Token {
                tok: Tok::Stray(c),
                pos: i,
            });
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_word_char(chars[i]) {
            i += 1;
        }
        out.push(Token {
            tok: Tok::Word(chars[start..i].iter().collect()),
            pos: start,
        });
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end: usize,
}

/// Nesting limit, so that hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn error_at(&self, position: usize, expected: &str, found: &str) -> ParseError {
        ParseError {
            position,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// An error at the next token (or at the end).
    fn expected(&self, expected: &str) -> ParseError {
        match self.peek() {
            Some(t) => self.error_at(t.pos, expected, &t.describe()),
            None => self.error_at(self.end, expected, "end of expression"),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        self.peek()
            .and_then(Token::keyword)
            .is_some_and(|k| k == kw)
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Sym(s), .. }) if *s == sym)
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.or_expr(0)
    }

    fn or_expr(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.and_expr(depth)?;
        while self.is_keyword("or") || self.is_sym("||") {
            self.pos += 1;
            let right = self.and_expr(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut left = self.unary(depth)?;
        while self.is_keyword("and") || self.is_sym("&&") {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.expected("a shallower expression (nesting is limited to 64 levels)"));
        }
        if self.is_keyword("not") || self.is_sym("!") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if matches!(
            self.peek(),
            Some(Token {
                tok: Tok::LParen,
                ..
            })
        ) {
            self.pos += 1;
            let inner = self.or_expr(depth + 1)?;
            if !matches!(
                self.peek(),
                Some(Token {
                    tok: Tok::RParen,
                    ..
                })
            ) {
                return Err(self.expected("')', 'and' or 'or'"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn subject(&mut self) -> Result<Subject, ParseError> {
        const EXPECTED: &str =
            "a subject (attribute:<name>, ec2InstanceId, registeredAt, runningTasksCount, task:group), 'not' or '('";
        let Some(Token {
            tok: Tok::Word(w),
            pos,
        }) = self.peek().cloned()
        else {
            return Err(self.expected(EXPECTED));
        };
        let lower = w.to_ascii_lowercase();
        let subject = if let Some(name) = lower
            .strip_prefix("attribute:")
            .map(|_| &w["attribute:".len()..])
        {
            if name.is_empty() {
                return Err(self.error_at(
                    pos + w.chars().count(),
                    "an attribute name after 'attribute:'",
                    "nothing",
                ));
            }
            Subject::Attribute(name.to_owned())
        } else {
            match lower.as_str() {
                "ec2instanceid" => Subject::Ec2InstanceId,
                "registeredat" => Subject::RegisteredAt,
                "runningtaskscount" => Subject::RunningTasksCount,
                "task:group" => Subject::TaskGroup,
                _ => return Err(self.expected(EXPECTED)),
            }
        };
        self.pos += 1;
        Ok(subject)
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let subject = self.subject()?;
        const OPS: &str = "an operator (==, !=, >, >=, <, <=, =~, !~, exists, !exists, in, not_in)";
        let Some(op) = self.peek().cloned() else {
            return Err(self.expected(OPS));
        };
        let op_name: String = match &op.tok {
            Tok::Sym(s) => (*s).to_owned(),
            Tok::Word(w) => w.to_ascii_lowercase(),
            _ => return Err(self.expected(OPS)),
        };
        self.pos += 1;
        let pred = match op_name.as_str() {
            "==" | "equals" => Predicate::Eq(self.value(&subject)?),
            "!=" | "not_equals" => Predicate::NotEq(self.value(&subject)?),
            ">" => Predicate::Gt(self.value(&subject)?),
            ">=" => Predicate::Ge(self.value(&subject)?),
            "<" => Predicate::Lt(self.value(&subject)?),
            "<=" => Predicate::Le(self.value(&subject)?),
            "=~" | "matches" => {
                Predicate::Matches(Pattern::new(&self.value(&Subject::TaskGroup)?.text))
            }
            "!~" | "not_matches" => {
                Predicate::NotMatches(Pattern::new(&self.value(&Subject::TaskGroup)?.text))
            }
            "exists" => Predicate::Exists,
            "!" if self.is_keyword("exists") => {
                self.pos += 1;
                Predicate::NotExists
            }
            "!exists" => Predicate::NotExists,
            "in" => Predicate::In(self.list(&subject)?),
            "not_in" => Predicate::NotIn(self.list(&subject)?),
            _ => return Err(self.error_at(op.pos, OPS, &op.describe())),
        };
        Ok(Expr::Cmp(subject, pred))
    }

    /// A value, checked against what the subject compares with.
    fn value(&mut self, subject: &Subject) -> Result<Value, ParseError> {
        let (text, pos) = match self.peek().cloned() {
            Some(Token {
                tok: Tok::Word(w) | Tok::Quoted(w),
                pos,
            }) => (w, pos),
            _ => return Err(self.expected("a value")),
        };
        let value = Value::new(text);
        match subject {
            Subject::RegisteredAt if value.time.is_none() => {
                return Err(self.error_at(
                    pos,
                    "a date (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)",
                    &format!("'{}'", value.text),
                ))
            }
            Subject::RunningTasksCount if value.number.is_none() => {
                return Err(self.error_at(pos, "a number", &format!("'{}'", value.text)))
            }
            _ => {}
        }
        self.pos += 1;
        Ok(value)
    }

    fn list(&mut self, subject: &Subject) -> Result<Vec<Value>, ParseError> {
        let close = match self.peek().map(|t| &t.tok) {
            Some(Tok::LBracket) => Tok::RBracket,
            Some(Tok::LParen) => Tok::RParen,
            _ => return Err(self.expected("'[' or '(' to start a list")),
        };
        self.pos += 1;
        let mut values = vec![self.value(subject)?];
        loop {
            match self.next() {
                Some(Token {
                    tok: Tok::Comma, ..
                }) => values.push(self.value(subject)?),
                Some(t) if t.tok == close => return Ok(values),
                Some(t) => {
                    let closing = if close == Tok::RBracket {
                        "',' or ']'"
                    } else {
                        "',' or ')'"
                    };
                    return Err(self.error_at(t.pos, closing, &t.describe()));
                }
                None => {
                    let closing = if close == Tok::RBracket {
                        "',' or ']'"
                    } else {
                        "',' or ')'"
                    };
                    return Err(self.error_at(self.end, closing, "end of expression"));
                }
            }
        }
    }
}

impl fmt::Display for Expr {
    /// Writes the expression back in a canonical form that [`parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::And(a, b) => write!(f, "({a} and {b})"),
            Self::Or(a, b) => write!(f, "({a} or {b})"),
            Self::Not(a) => write!(f, "not({a})"),
            Self::Cmp(s, p) => {
                match s {
                    Subject::Attribute(n) => write!(f, "attribute:{n}")?,
                    Subject::Ec2InstanceId => f.write_str("ec2InstanceId")?,
                    Subject::RegisteredAt => f.write_str("registeredAt")?,
                    Subject::RunningTasksCount => f.write_str("runningTasksCount")?,
                    Subject::TaskGroup => f.write_str("task:group")?,
                }
                let list = |vs: &Vec<Value>| {
                    vs.iter()
                        .map(|v| quote(&v.text))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                match p {
                    Predicate::Eq(v) => write!(f, " == {}", quote(&v.text)),
                    Predicate::NotEq(v) => write!(f, " != {}", quote(&v.text)),
                    Predicate::Gt(v) => write!(f, " > {}", quote(&v.text)),
                    Predicate::Ge(v) => write!(f, " >= {}", quote(&v.text)),
                    Predicate::Lt(v) => write!(f, " < {}", quote(&v.text)),
                    Predicate::Le(v) => write!(f, " <= {}", quote(&v.text)),
                    Predicate::Exists => f.write_str(" exists"),
                    Predicate::NotExists => f.write_str(" !exists"),
                    Predicate::In(vs) => write!(f, " in [{}]", list(vs)),
                    Predicate::NotIn(vs) => write!(f, " not_in [{}]", list(vs)),
                    Predicate::Matches(p) => write!(f, " =~ {}", quote(&p.text)),
                    Predicate::NotMatches(p) => write!(f, " !~ {}", quote(&p.text)),
                }
            }
        }
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_word_char) {
        s.to_owned()
    } else if s.contains('"') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDThh:mm[:ss[.fff]]` with an optional `Z` or `±hh:mm` offset, into
/// seconds since the epoch (UTC when no offset is given).
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if b.len() == 10 {
        return Some(secs);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (hh, mm) = (num(11..13)?, num(14..16)?);
    let mut i = 16;
    let mut ss = 0;
    if b.get(i) == Some(&b':') {
        ss = num(17..19)?;
        i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    secs += hh * 3600 + mm * 60 + ss;
    match b.get(i) {
        None => Some(secs),
        Some(b'Z' | b'z') if i + 1 == b.len() => Some(secs),
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let offset = oh * 3600 + om * 60;
            Some(if sign == b'+' {
                secs - offset
            } else {
                secs + offset
            })
        }
        _ => None,
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats seconds since the epoch as `YYYY-MM-DDThh:mm:ssZ` (for pattern matches on `registeredAt`).
pub fn format_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

//! Path templates of `google.api.http` rules: parsing and capture.
//!
//! The grammar, from `google/api/http.proto`:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! `{var}` means `{var=*}`. `**` must be the last segment (before the verb).
//! Matching a whole table of templates lives in `route_table`; this module
//! owns one template and how values are decoded out of request segments.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// One segment of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A literal segment, matched after percent-decoding the request segment.
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Wildcard,
    /// `**`: zero or more segments; always the last one.
    DeepWildcard,
}

/// A variable binding: which template segments are captured into which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Dotted field path, e.g. `["user", "id"]`.
    pub field_path: Vec<String>,
    /// First template segment captured.
    pub start: usize,
    /// One past the last template segment captured.
    pub end: usize,
}

impl Variable {
    /// The dotted field path as written in the template.
    pub fn field_path_string(&self) -> String {
        self.field_path.join(".")
    }
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The template as written.
    pub source: String,
    /// Segments after the leading `/`.
    pub segments: Vec<Segment>,
    /// Variables in order of appearance.
    pub variables: Vec<Variable>,
    /// The custom verb after the last `:`, if any.
    pub verb: Option<String>,
}

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not begin with `/`.
    #[error("template {template:?} must start with '/'")]
    MissingLeadingSlash {
        /// The template as written.
        template: String,
    },
    /// A character is not allowed where it stands.
    #[error("template {template:?}: unexpected {found} at byte {pos}")]
    UnexpectedChar {
        /// The template as written.
        template: String,
        /// Byte offset of the problem.
        pos: usize,
        /// The character found, quoted.
        found: String,
    },
    /// The template ends inside a construct.
    #[error("template {template:?}: unexpected end, expected {expected}")]
    UnexpectedEnd {
        /// The template as written.
        template: String,
        /// What was expected instead of the end.
        expected: &'static str,
    },
    /// A variable inside a variable.
    #[error("template {template:?}: variables cannot be nested (byte {pos})")]
    NestedVariable {
        /// The template as written.
        template: String,
        /// Byte offset of the inner variable.
        pos: usize,
    },
    /// `**` followed by more segments.
    #[error("template {template:?}: '**' must be the last segment")]
    DeepWildcardNotLast {
        /// The template as written.
        template: String,
    },
    /// The same field bound twice.
    #[error("template {template:?}: field {field:?} is bound more than once")]
    DuplicateVariable {
        /// The template as written.
        template: String,
        /// The field bound more than once.
        field: String,
    },
    /// A `.` or `..` literal segment.
    #[error("template {template:?}: '.' and '..' segments are not allowed")]
    DotSegment {
        /// The template as written.
        template: String,
    },
}

impl PathTemplate {
    /// Parses a template such as `/v1/{name=shelves/*/books/*}:publish`.
    ///
    /// # Errors
    /// A [`TemplateError`] naming the template and the position of the problem.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        Parser {
            src: template,
            pos: 0,
        }
        .template()
    }

    /// Whether the template ends in `**` (matches any number of trailing segments).
    pub fn is_deep(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::DeepWildcard))
    }

    /// The request segment range captured by `var` when the request has `len` segments.
    pub fn capture_range(&self, var: &Variable, len: usize) -> std::ops::Range<usize> {
        let end = if var.end == self.segments.len() && self.is_deep() {
            len
        } else {
            var.end
        };
        var.start..end
    }

    /// Whether the variable spans more than one segment (or `**`), which changes decoding.
    pub fn is_multi_segment(&self, var: &Variable) -> bool {
        var.end - var.start != 1 || self.segments[var.start] == Segment::DeepWildcard
    }

    /// The value of `var` from raw (still percent-encoded) request segments.
    ///
    /// Single-segment variables are fully percent-decoded; multi-segment ones
    /// keep `%2F` encoded, as `http.proto` specifies, so the captured value
    /// splits into the same segments the client sent.
    pub fn capture_value(&self, var: &Variable, raw_segments: &[&str]) -> String {
        let range = self.capture_range(var, raw_segments.len());
        let raw = &raw_segments[range];
        if self.is_multi_segment(var) {
            let joined = raw.join("/");
            decode_keep_slash(&joined)
        } else {
            raw.first()
                .map(|s| decode(s).into_owned())
                .unwrap_or_default()
        }
    }
}

impl std::fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// Fully percent-decodes one segment (lossy on invalid UTF-8).
pub fn decode(raw: &str) -> Cow<'_, str> {
    if raw.contains('%') {
        percent_decode_str(raw).decode_utf8_lossy()
    } else {
        Cow::Borrowed(raw)
    }
}

/// Whether every `%` in a raw path starts an escape of two hex digits.
///
/// `decode` keeps a malformed escape (`%zz`, a lone `%`, `%4` at the end) as
/// literal text, so the route table refuses such paths before matching.
pub fn has_valid_escapes(raw: &str) -> bool {
    let mut rest = raw.as_bytes();
    while let Some(pos) = rest.iter().position(|&b| b == b'%') {
        match rest.get(pos + 1..pos + 3) {
            Some([hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                rest = &rest[pos + 3..];
            }
            _ => return false,
        }
    }
    true
}

/// Percent-decodes everything except `%2F`/`%2f`, which stay as written.
fn decode_keep_slash(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    for (i, piece) in raw.split("%2F").enumerate() {
        if i > 0 {
            out.push_str("%2F");
        }
        for (j, inner) in piece.split("%2f").enumerate() {
            if j > 0 {
                out.push_str("%2f");
            }
            out.push_str(&percent_decode_str(inner).decode_utf8_lossy());
        }
    }
    out
}

/// Whether a raw segment is `.` or `..`, also when percent-encoded.
pub fn is_dot_segment(raw: &str) -> bool {
    let decoded = decode(raw);
    decoded == "." || decoded == ".."
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

const LITERAL_STOP: &[u8] = b"/{}*=:";

impl Parser<'_> {
    fn template(mut self) -> Result<PathTemplate, TemplateError> {
        if !self.src.starts_with('/') {
            return Err(TemplateError::MissingLeadingSlash {
                template: self.src.to_owned(),
            });
        }
        self.pos = 1;
        let mut segments = Vec::new();
        let mut variables = Vec::new();
        // "/" alone, or "/:verb", has no segments.
        if !self.at_end() && self.peek() != Some(b':') {
            self.segments(&mut segments, Some(&mut variables))?;
        }
        let verb = if self.peek() == Some(b':') {
            self.pos += 1;
            Some(self.literal("a verb after ':'")?)
        } else {
            None
        };
        if let Some(c) = self.peek_char() {
            return Err(self.unexpected(c));
        }
        if let Some(i) = segments.iter().position(|s| *s == Segment::DeepWildcard)
            && i + 1 != segments.len()
        {
            return Err(TemplateError::DeepWildcardNotLast {
                template: self.src.to_owned(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for v in &variables {
            let path = v.field_path_string();
            if !seen.insert(path.clone()) {
                return Err(TemplateError::DuplicateVariable {
                    template: self.src.to_owned(),
                    field: path,
                });
            }
        }
        Ok(PathTemplate {
            source: self.src.to_owned(),
            segments,
            variables,
            verb,
        })
    }

    /// Segments { "/" Segment }; variables are collected when allowed.
    fn segments(
        &mut self,
        out: &mut Vec<Segment>,
        mut variables: Option<&mut Vec<Variable>>,
    ) -> Result<(), TemplateError> {
        loop {
            match self.peek() {
                Some(b'*') => {
                    self.pos += 1;
                    if self.peek() == Some(b'*') {
                        self.pos += 1;
                        out.push(Segment::DeepWildcard);
                    } else {
                        out.push(Segment::Wildcard);
                    }
                }
                Some(b'{') => match variables.as_deref_mut() {
                    Some(vars) => {
                        let var = self.variable(out)?;
                        vars.push(var);
                    }
                    None => {
                        return Err(TemplateError::NestedVariable {
                            template: self.src.to_owned(),
                            pos: self.pos,
                        });
                    }
                },
                None => {
                    return Err(TemplateError::UnexpectedEnd {
                        template: self.src.to_owned(),
                        expected: "a segment",
                    });
                }
                Some(_) => {
                    let lit = self.literal("a segment")?;
                    if lit == "." || lit == ".." {
                        return Err(TemplateError::DotSegment {
                            template: self.src.to_owned(),
                        });
                    }
                    out.push(Segment::Literal(lit));
                }
            }
            if self.peek() == Some(b'/') {
                self.pos += 1;
            } else {
                return Ok(());
            }
        }
    }

    fn variable(&mut self, out: &mut Vec<Segment>) -> Result<Variable, TemplateError> {
        self.pos += 1; // '{'
        let mut field_path = vec![self.ident()?];
        while self.peek() == Some(b'.') {
            self.pos += 1;
            field_path.push(self.ident()?);
        }
        let start = out.len();
        match self.peek() {
            Some(b'=') => {
                self.pos += 1;
                self.segments(out, None)?;
            }
            Some(b'}') => out.push(Segment::Wildcard),
            Some(_) => return Err(self.unexpected_here()),
            None => {
                return Err(TemplateError::UnexpectedEnd {
                    template: self.src.to_owned(),
                    expected: "'}'",
                });
            }
        }
        match self.peek() {
            Some(b'}') => self.pos += 1,
            Some(_) => return Err(self.unexpected_here()),
            None => {
                return Err(TemplateError::UnexpectedEnd {
                    template: self.src.to_owned(),
                    expected: "'}'",
                });
            }
        }
        Ok(Variable {
            field_path,
            start,
            end: out.len(),
        })
    }

    fn ident(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len()
            && (bytes[self.pos].is_ascii_alphanumeric() || bytes[self.pos] == b'_')
        {
            self.pos += 1;
        }
        if start == self.pos || bytes[start].is_ascii_digit() {
            return Err(match self.peek_char() {
                Some(_) => self.unexpected_at(start),
                None => TemplateError::UnexpectedEnd {
                    template: self.src.to_owned(),
                    expected: "a field name",
                },
            });
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn literal(&mut self, expected: &'static str) -> Result<String, TemplateError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && !LITERAL_STOP.contains(&bytes[self.pos]) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(match self.peek_char() {
                Some(c) => self.unexpected(c),
                None => TemplateError::UnexpectedEnd {
                    template: self.src.to_owned(),
                    expected,
                },
            });
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn unexpected(&self, c: char) -> TemplateError {
        TemplateError::UnexpectedChar {
            template: self.src.to_owned(),
            pos: self.pos,
            found: format!("{c:?}"),
        }
    }

    fn unexpected_here(&self) -> TemplateError {
        self.unexpected_at(self.pos)
    }

    fn unexpected_at(&self, pos: usize) -> TemplateError {
        let found = self.src[pos..]
            .chars()
            .next()
            .map_or_else(|| "end".to_owned(), |c| format!("{c:?}"));
        TemplateError::UnexpectedChar {
            template: self.src.to_owned(),
            pos,
            found,
        }
    }
}

#[cfg(test)]
mod tests;

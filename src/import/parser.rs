//! The jail.conf(5) parser: one file's tokens to blocks, statements and
//! `.include` directives, following the grammar of jail(8)'s jailparse.y.
//!
//! A file is a sequence of jail blocks (`name { ... }`), statements outside
//! any block, and `.include "file";` lines, in or out of blocks. The parser
//! keeps them in order as [`Item`]s; the loader (`include`) follows the
//! includes and flattens everything into [`Section`]s, where consecutive
//! statements outside blocks form a section named `*`, as jail(8) treats
//! them. Wildcard names (`*`, `web.*`) are matched in [`wildcard_matches`].

use std::path::Path;
use std::rc::Rc;

use super::lexer::{describe_token, Piece, Token, TokenKind, Word};
use super::{shown, ImportError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    /// `key = value;` or `key value;`: replaces earlier values.
    Set,
    /// `key += value;`: appends to earlier values.
    Append,
    /// `key;`: a boolean set true, with no value.
    Flag,
}

#[derive(Debug, Clone)]
pub(super) struct Statement {
    pub(super) name: String,
    /// Defines `$name` rather than a jail parameter.
    pub(super) variable: bool,
    pub(super) operator: Operator,
    pub(super) values: Vec<Word>,
    /// The file and line it was written on, for messages.
    pub(super) file: Rc<Path>,
    pub(super) line: usize,
}

/// `.include "pattern", ...;`: the file names as written (never with
/// variables, which jail(8) refuses there), each with its line.
#[derive(Debug, Clone)]
pub(super) struct Include {
    pub(super) patterns: Vec<(String, usize)>,
}

/// What one file holds, in order. A block's items are statements and
/// includes only: the parser refuses a block inside a block.
#[derive(Debug, Clone)]
pub(super) enum Item {
    Statement(Statement),
    Include(Include),
    Block {
        name: String,
        line: usize,
        items: Vec<Item>,
    },
}

/// A jail block, a wildcard block, or a run of parameters outside any block
/// (which jail(8) treats as a block named `*`).
#[derive(Debug, Clone)]
pub(super) struct Section {
    pub(super) name: String,
    /// The file and line of the block's name (or of the first statement of a
    /// run outside blocks).
    pub(super) file: Rc<Path>,
    pub(super) line: usize,
    pub(super) statements: Vec<Statement>,
}

impl Section {
    pub(super) fn wildcard(&self) -> bool {
        wildcard_name(&self.name)
    }
}

/// jail(8)'s wild_jail_name: a `*` forming a whole dot-separated component.
fn wildcard_name(name: &str) -> bool {
    name.split('.').any(|component| component == "*")
}

/// jail(8)'s wild_jail_match: a `*` component matches one component of the
/// jail's name, a final `*` matches all the rest.
pub(super) fn wildcard_matches(jail: &str, pattern: &str) -> bool {
    let mut jail_rest = jail;
    let mut pattern_rest = pattern;
    while let (Some(jail_dot), Some(pattern_dot)) = (jail_rest.find('.'), pattern_rest.find('.')) {
        let jail_component = jail_rest.get(..=jail_dot).unwrap_or_default();
        if !pattern_rest.starts_with(jail_component) && !pattern_rest.starts_with("*.") {
            return false;
        }
        jail_rest = jail_rest.get(jail_dot + 1..).unwrap_or_default();
        pattern_rest = pattern_rest.get(pattern_dot + 1..).unwrap_or_default();
    }
    jail_rest == pattern_rest || pattern_rest == "*"
}

pub(super) struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    file: &'a Rc<Path>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(tokens: Vec<Token>, file: &'a Rc<Path>) -> Self {
        Parser {
            tokens,
            position: 0,
            file,
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        if token.is_some() {
            self.position += 1;
        }
        token
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ImportError {
        ImportError::new(self.file, line, message)
    }

    pub(super) fn parse(mut self) -> Result<Vec<Item>, ImportError> {
        let mut items: Vec<Item> = Vec::new();
        while let Some(token) = self.next() {
            match token.kind {
                TokenKind::Semicolon => {}
                TokenKind::Word(word) => {
                    if matches!(
                        self.peek().map(|next| &next.kind),
                        Some(TokenKind::OpenBrace)
                    ) {
                        self.next();
                        items.push(self.block(word)?);
                    } else {
                        items.push(self.statement(word)?);
                    }
                }
                TokenKind::CloseBrace => {
                    return Err(self.error(
                        token.line,
                        "found '}' with no open block; expected a parameter or a jail block",
                    ))
                }
                TokenKind::OpenBrace => {
                    return Err(self.error(
                        token.line,
                        "found '{' with no jail name before it; expected `name {`",
                    ))
                }
                TokenKind::Comma | TokenKind::Equals | TokenKind::PlusEquals => {
                    return Err(self.error(
                        token.line,
                        format!(
                            "found {}; expected a parameter name or a jail block",
                            describe_token(Some(&token))
                        ),
                    ))
                }
            }
        }
        Ok(items)
    }

    fn block(&mut self, name_word: Word) -> Result<Item, ImportError> {
        let Some(name) = name_word.plain_text() else {
            return Err(self.error(
                name_word.line,
                format!(
                    "found jail name \"{}\" containing a variable; expected a plain name before '{{'",
                    name_word.describe()
                ),
            ));
        };
        let line = name_word.line;
        let mut items = Vec::new();
        loop {
            let Some(token) = self.next() else {
                return Err(self.error(
                    line,
                    format!(
                        "found an unterminated block \"{}\": end of file before its '}}'; expected \
                         '}}' to close the block opened here",
                        name.escape_debug()
                    ),
                ));
            };
            match token.kind {
                TokenKind::CloseBrace => return Ok(Item::Block { name, line, items }),
                TokenKind::Semicolon => {}
                TokenKind::Word(word) => {
                    if matches!(
                        self.peek().map(|next| &next.kind),
                        Some(TokenKind::OpenBrace)
                    ) {
                        return Err(self.error(
                            word.line,
                            format!(
                                "found block \"{}\" inside block \"{}\"; expected blocks only at \
                                 the top level (is the '}}' of \"{}\" missing?)",
                                word.describe(),
                                name.escape_debug(),
                                name.escape_debug()
                            ),
                        ));
                    }
                    items.push(self.statement(word)?);
                }
                _ => {
                    return Err(self.error(
                        token.line,
                        format!(
                            "found {} in block \"{}\"; expected a parameter or '}}'",
                            describe_token(Some(&token)),
                            name.escape_debug()
                        ),
                    ))
                }
            }
        }
    }

    /// Reads a statement after its name: a parameter, a variable, or an
    /// `.include`.
    fn statement(&mut self, name_word: Word) -> Result<Item, ImportError> {
        let line = name_word.line;
        let (name, variable) = match name_word.pieces.as_slice() {
            [Piece::Variable(name)] => (name.clone(), true),
            _ => match name_word.plain_text() {
                Some(name) => (name, false),
                None => {
                    return Err(self.error(
                        line,
                        format!(
                            "found parameter name \"{}\" mixing text and variables; expected a \
                             name such as `path` or a variable such as `$net`",
                            name_word.describe()
                        ),
                    ))
                }
            },
        };
        // jail(8) reads `.include "file";` as an include only in this form,
        // without '=' (jailparse.y's special_param); any other form would
        // reach the kernel as an unknown parameter, so it is refused here.
        let include = !variable && name == ".include";
        let parameter_name = if variable {
            format!("${name}")
        } else {
            name.clone()
        };
        let mut last_line = line;
        let operator = match self.peek().map(|token| &token.kind) {
            Some(TokenKind::Semicolon) if include => {
                return Err(self.error(
                    line,
                    "found `.include;` without a file; expected `.include \"/etc/jail.conf.d/*.conf\";`",
                ))
            }
            Some(TokenKind::Equals | TokenKind::PlusEquals) if include => {
                return Err(self.error(
                    line,
                    format!(
                        "found {} after `.include`; expected `.include \"file\";` with no '=', \
                         the only form jail(8) reads as an include",
                        describe_token(self.peek())
                    ),
                ))
            }
            Some(TokenKind::Semicolon) => {
                self.next();
                return Ok(Item::Statement(Statement {
                    name,
                    variable,
                    operator: Operator::Flag,
                    values: Vec::new(),
                    file: Rc::clone(self.file),
                    line,
                }));
            }
            Some(TokenKind::Equals) => {
                if let Some(token) = self.next() {
                    last_line = token.line;
                }
                Operator::Set
            }
            Some(TokenKind::PlusEquals) => {
                if let Some(token) = self.next() {
                    last_line = token.line;
                }
                Operator::Append
            }
            // jail.conf also accepts `key value;` without '='.
            Some(TokenKind::Word(_)) => Operator::Set,
            _ => {
                return Err(self.error(
                    line,
                    format!(
                        "found {} after \"{}\"; expected ';', '=' or '+='",
                        describe_token(self.peek()),
                        shown(&parameter_name)
                    ),
                ))
            }
        };

        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token {
                    kind: TokenKind::Word(word),
                    line: word_line,
                }) => {
                    last_line = word_line;
                    values.push(word);
                }
                other => {
                    return Err(self.error(
                        last_line,
                        format!(
                            "found {} where a value of \"{}\" belongs; expected a value",
                            describe_token(other.as_ref()),
                            shown(&parameter_name)
                        ),
                    ))
                }
            }
            match self.peek().map(|token| &token.kind) {
                Some(TokenKind::Comma) => {
                    if let Some(token) = self.next() {
                        last_line = token.line;
                    }
                }
                Some(TokenKind::Semicolon) => {
                    self.next();
                    if include {
                        return self.include(values);
                    }
                    return Ok(Item::Statement(Statement {
                        name,
                        variable,
                        operator,
                        values,
                        file: Rc::clone(self.file),
                        line,
                    }));
                }
                _ => {
                    let found = match self.peek() {
                        Some(token) if token.line != last_line => {
                            format!("{} on line {}", describe_token(Some(token)), token.line)
                        }
                        other => describe_token(other),
                    };
                    return Err(self.error(
                        last_line,
                        format!(
                            "found {found} after the value of \"{}\"; expected ';' (or ',' \
                             before another value)",
                            shown(&parameter_name)
                        ),
                    ));
                }
            }
        }
    }

    /// Checks the file names of an `.include`: literal text, as jail(8)
    /// permits no variables there, and not empty.
    fn include(&self, values: Vec<Word>) -> Result<Item, ImportError> {
        let mut patterns = Vec::new();
        for value in values {
            let Some(pattern) = value.plain_text() else {
                return Err(self.error(
                    value.line,
                    format!(
                        "found variable in `.include` file name \"{}\"; expected a literal file \
                         name, as jail(8) permits no variables there",
                        value.describe()
                    ),
                ));
            };
            if pattern.is_empty() {
                return Err(self.error(
                    value.line,
                    "found an empty `.include` file name; expected a file or a pattern such as \
                     \"/etc/jail.conf.d/*.conf\"",
                ));
            }
            patterns.push((pattern, value.line));
        }
        Ok(Item::Include(Include { patterns }))
    }
}

//! The jail.conf(5) lexer: text to tokens, as jail(8)'s jaillex.l reads it.
//!
//! Whitespace and comments (`#`, `//`, `/* */`) separate words; anything
//! else written without space between it (bare words, quoted strings and
//! variables) joins into one word, whose pieces remember which parts are
//! variables for expansion later.

use std::path::Path;
use std::rc::Rc;

use super::ImportError;

/// Part of a word: literal text, or a variable to substitute later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    Variable(String),
}

/// A string as jail(8) sees it: adjacent bare words, quoted strings and
/// variables with no space between them join into one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) pieces: Vec<Piece>,
    /// The file and line it was written on, for messages.
    pub(super) file: Rc<Path>,
    pub(super) line: usize,
}

impl Word {
    fn push_character(&mut self, character: char) {
        if let Some(Piece::Text(text)) = self.pieces.last_mut() {
            text.push(character);
        } else {
            self.pieces.push(Piece::Text(character.to_string()));
        }
    }

    /// Records an empty quoted string, which is still a value (`path = "";`).
    fn push_empty_text(&mut self) {
        if self.pieces.is_empty() {
            self.pieces.push(Piece::Text(String::new()));
        }
    }

    pub(super) fn plain_text(&self) -> Option<String> {
        let mut text = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(part) => text.push_str(part),
                Piece::Variable(_) => return None,
            }
        }
        Some(text)
    }

    /// The word as it could be written back, for messages.
    pub(super) fn describe(&self) -> String {
        let mut text = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(part) => text.push_str(part),
                Piece::Variable(name) => {
                    text.push_str("${");
                    text.push_str(name);
                    text.push('}');
                }
            }
        }
        text.escape_debug().to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TokenKind {
    Word(Word),
    Semicolon,
    Comma,
    Equals,
    PlusEquals,
    OpenBrace,
    CloseBrace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) kind: TokenKind,
    pub(super) line: usize,
}

pub(super) fn describe_token(token: Option<&Token>) -> String {
    match token.map(|token| &token.kind) {
        None => "end of file".to_owned(),
        Some(TokenKind::Word(word)) => format!("\"{}\"", word.describe()),
        Some(TokenKind::Semicolon) => "';'".to_owned(),
        Some(TokenKind::Comma) => "','".to_owned(),
        Some(TokenKind::Equals) => "'='".to_owned(),
        Some(TokenKind::PlusEquals) => "'+='".to_owned(),
        Some(TokenKind::OpenBrace) => "'{'".to_owned(),
        Some(TokenKind::CloseBrace) => "'}'".to_owned(),
    }
}

/// Characters jail(8) accepts in a bare word (jaillex.l's atomic strings).
fn bare_word_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || "_!%&()-.:<>?@[]^`|~*+/".contains(character)
}

fn variable_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_'
}

fn variable_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_'
}

/// Turns jail.conf text into tokens, following jaillex.l: whitespace and
/// comments separate words, anything else adjacent joins into one word.
pub(super) struct Lexer<'a> {
    characters: Vec<char>,
    position: usize,
    line: usize,
    file: &'a Rc<Path>,
    tokens: Vec<Token>,
    /// The word being built; adjacent strings and variables extend it.
    pending: Option<Word>,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &str, file: &'a Rc<Path>) -> Self {
        Lexer {
            characters: text.chars().collect(),
            position: 0,
            line: 1,
            file,
            tokens: Vec::new(),
            pending: None,
        }
    }

    fn peek(&self, offset: usize) -> Option<char> {
        self.characters.get(self.position + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let character = self.peek(0)?;
        self.position += 1;
        if character == '\n' {
            self.line += 1;
        }
        Some(character)
    }

    /// Ends the current word: whitespace, comments and punctuation separate words.
    fn separate(&mut self) {
        if let Some(word) = self.pending.take() {
            let line = word.line;
            self.tokens.push(Token {
                kind: TokenKind::Word(word),
                line,
            });
        }
    }

    fn punctuation(&mut self, kind: TokenKind) {
        self.separate();
        self.tokens.push(Token {
            kind,
            line: self.line,
        });
    }

    fn word(&mut self) -> &mut Word {
        let line = self.line;
        let file = self.file;
        self.pending.get_or_insert_with(|| Word {
            pieces: Vec::new(),
            file: Rc::clone(file),
            line,
        })
    }

    fn error(&self, line: usize, message: impl Into<String>) -> ImportError {
        ImportError::new(self.file, line, message)
    }

    pub(super) fn tokenize(mut self) -> Result<Vec<Token>, ImportError> {
        while let Some(character) = self.peek(0) {
            match character {
                ' ' | '\t' | '\r' | '\n' => {
                    self.separate();
                    self.bump();
                }
                '#' => self.skip_line_comment(),
                '/' if self.peek(1) == Some('/') => self.skip_line_comment(),
                '/' if self.peek(1) == Some('*') => self.skip_block_comment()?,
                '+' if self.peek(1) == Some('=') => {
                    self.punctuation(TokenKind::PlusEquals);
                    self.bump();
                    self.bump();
                }
                ';' | ',' | '=' | '{' | '}' => {
                    let kind = match character {
                        ';' => TokenKind::Semicolon,
                        ',' => TokenKind::Comma,
                        '=' => TokenKind::Equals,
                        '{' => TokenKind::OpenBrace,
                        _ => TokenKind::CloseBrace,
                    };
                    self.punctuation(kind);
                    self.bump();
                }
                '\'' => self.single_quoted()?,
                '"' => self.double_quoted()?,
                '$' => {
                    self.word();
                    self.bump();
                    self.variable(false)?;
                }
                '\\' => {
                    self.word();
                    self.bump();
                    if let Some(escaped) = self.escape() {
                        self.word().push_character(escaped);
                    }
                }
                character if bare_word_character(character) => {
                    self.bump();
                    self.word().push_character(character);
                }
                other => {
                    return Err(self.error(
                        self.line,
                        format!(
                            "found unexpected character '{}'; expected a parameter, a value, \
                             a quoted string, or one of ; , = += {{ }}",
                            other.escape_debug()
                        ),
                    ))
                }
            }
        }
        self.separate();
        Ok(self.tokens)
    }

    fn skip_line_comment(&mut self) {
        self.separate();
        while let Some(character) = self.peek(0) {
            if character == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn skip_block_comment(&mut self) -> Result<(), ImportError> {
        self.separate();
        let start = self.line;
        self.bump();
        self.bump();
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(
                        start,
                        "found an unterminated comment: end of file before '*/'; expected '*/' \
                         to close the '/*' opened here",
                    ))
                }
                Some('*') if self.peek(0) == Some('/') => {
                    self.bump();
                    return Ok(());
                }
                Some(_) => {}
            }
        }
    }

    /// Decodes the character after a backslash as jail(8)'s text2lval does;
    /// `None` for an escaped newline, which continues the line.
    fn escape(&mut self) -> Option<char> {
        let Some(character) = self.bump() else {
            return Some('\\');
        };
        let decoded = match character {
            '0'..='7' => {
                let mut value = character.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek(0).and_then(|next| next.to_digit(8)) {
                        Some(digit) => {
                            value = value * 8 + digit;
                            self.bump();
                        }
                        None => break,
                    }
                }
                // jail(8) stores the value in a C char, so it keeps the low byte.
                char::from((value & 0xff) as u8)
            }
            'x' => {
                let mut value = 0;
                for _ in 0..2 {
                    match self.peek(0).and_then(|next| next.to_digit(16)) {
                        Some(digit) => {
                            value = value * 16 + digit;
                            self.bump();
                        }
                        None => break,
                    }
                }
                char::from((value & 0xff) as u8)
            }
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\n' => return None,
            other => other,
        };
        Some(decoded)
    }

    /// Reads a variable reference after its `$`: `$name` or `${any.thing}`.
    /// A `$` that starts neither is a literal dollar sign.
    fn variable(&mut self, inside_double_quotes: bool) -> Result<(), ImportError> {
        match self.peek(0) {
            Some('{') => {
                let start = self.line;
                self.bump();
                let mut name = String::new();
                loop {
                    match self.peek(0) {
                        Some('}') => {
                            self.bump();
                            break;
                        }
                        Some('\\') => {
                            self.bump();
                            if let Some(escaped) = self.escape() {
                                name.push(escaped);
                            }
                        }
                        Some(character)
                            if character != '\n'
                                && character != '{'
                                && !(inside_double_quotes && character == '"') =>
                        {
                            self.bump();
                            name.push(character);
                        }
                        found => {
                            let found = match found {
                                None => "end of file".to_owned(),
                                Some(character) => format!("'{}'", character.escape_debug()),
                            };
                            return Err(self.error(
                                start,
                                format!(
                                    "found an unterminated variable \"${{{}\" followed by {found}; expected '}}'",
                                    name.escape_debug()
                                ),
                            ));
                        }
                    }
                }
                self.word().pieces.push(Piece::Variable(name));
            }
            Some(first) if variable_start(first) => {
                let mut name = String::new();
                while let Some(character) = self.peek(0) {
                    if !variable_character(character) {
                        break;
                    }
                    self.bump();
                    name.push(character);
                }
                self.word().pieces.push(Piece::Variable(name));
            }
            _ => self.word().push_character('$'),
        }
        Ok(())
    }

    fn single_quoted(&mut self) -> Result<(), ImportError> {
        let start = self.line;
        self.word().push_empty_text();
        self.bump();
        loop {
            match self.bump() {
                None => return Err(self.unterminated_string(start, '\'')),
                Some('\'') => return Ok(()),
                Some('\\') => {
                    if let Some(escaped) = self.escape() {
                        self.word().push_character(escaped);
                    }
                }
                Some(character) => self.word().push_character(character),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<(), ImportError> {
        let start = self.line;
        self.word().push_empty_text();
        self.bump();
        loop {
            match self.bump() {
                None => return Err(self.unterminated_string(start, '"')),
                Some('"') => return Ok(()),
                Some('\\') => {
                    if let Some(escaped) = self.escape() {
                        self.word().push_character(escaped);
                    }
                }
                Some('$') => self.variable(true)?,
                Some(character) => self.word().push_character(character),
            }
        }
    }

    fn unterminated_string(&self, start: usize, quote: char) -> ImportError {
        self.error(
            start,
            format!(
                "found an unterminated string: end of file before the closing {quote}; expected \
                 {quote} to close the string opened here"
            ),
        )
    }
}

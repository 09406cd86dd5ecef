//! Tokens shared by the FIDL and GN parsers: comments stripped, then words,
//! strings and punctuation, grouped by brackets and split into statements.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Identifiers, keywords, numbers, dotted names (`fuchsia.process.zygote`).
    Word(String),
    /// A string literal, unescaped.
    Str(String),
    Punct(char),
}

pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

/// Removes comments that start with `marker` and run to the end of the line,
/// outside string literals.
pub(crate) fn strip_comments(text: &str, marker: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut escaped = false;
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if in_str {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_str = false,
                    _ => {}
                }
            } else if c == '"' {
                in_str = true;
            } else if line[i..].starts_with(marker) {
                cut = i;
                break;
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

pub(crate) fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '"' {
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => s.extend(chars.next()),
                    '"' => break,
                    _ => s.push(c),
                }
            }
            toks.push(Tok::Str(s));
        } else if is_word_char(c) {
            let mut w = String::from(c);
            while let Some(&c) = chars.peek().filter(|&&c| is_word_char(c)) {
                w.push(c);
                chars.next();
            }
            toks.push(Tok::Word(w));
        } else {
            toks.push(Tok::Punct(c));
        }
    }
    toks
}

pub(crate) fn word(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Word(w)) => Some(w),
        _ => None,
    }
}

pub(crate) fn is_punct(t: Option<&Tok>, p: char) -> bool {
    t == Some(&Tok::Punct(p))
}

/// Index of the token closing the group opened at `open` (`(`, `[` or `{`).
pub(crate) fn group_end(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced group opened at token {open}: {:?}", &toks[open..(open + 8).min(toks.len())])
}

/// The tokens inside the group opened at `open`, and the index after it.
pub(crate) fn group(toks: &[Tok], open: usize) -> (&[Tok], usize) {
    let end = group_end(toks, open);
    (&toks[open + 1..end], end + 1)
}

/// Splits at `;` outside any group.
pub(crate) fn statements(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < toks.len() {
        match toks[i] {
            Tok::Punct('(' | '[' | '{') => i = group_end(toks, i) + 1,
            Tok::Punct(';') => {
                out.push(&toks[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < toks.len() {
        out.push(&toks[start..]);
    }
    out
}

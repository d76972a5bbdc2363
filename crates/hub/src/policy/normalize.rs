//! The form text is matched in: what a reader (or a model's tokenizer) takes it for, not how it
//! is encoded. Applied character by character, so every output character can be traced back to
//! the input character it came from (redaction edits the original text through that map):
//!
//! 1. invisible characters are dropped: every format character (`\p{Cf}`: zero-width space,
//!    joiner and non-joiner, soft hyphen, byte-order mark, word joiner, bidi controls, tags…),
//!    the Hangul fillers, and control characters other than whitespace;
//! 2. the compatibility decomposition of NFKC (`unicode-normalization`): fullwidth and
//!    mathematical letters and digits, ligatures, circled and super/subscript forms, the
//!    fullwidth and small `@`, … become their plain forms;
//! 3. combining marks (`\p{M}`: accents, variation selectors) are dropped — after the
//!    decomposition, so `é` and `e` + U+0301 both become `e`;
//! 4. every decimal digit (`\p{Nd}`: Arabic-Indic, Devanagari, …) becomes its ASCII digit;
//! 5. Cyrillic, Greek and a few other letters that look like Latin ones become those
//!    ([`confusable`]);
//! 6. every whitespace character (`\p{White_Space}`: no-break, em, ideographic spaces, line
//!    breaks, tabs) becomes one ASCII space, and the caller collapses runs of them.
//!
//! Recomposition (the "C" of NFKC) is left out: it only matters for matching if rules and text
//! were normalised differently, and rules go through the same function ([`rule`]).

use std::sync::LazyLock;

use regex_syntax::hir::{Class, HirKind};

/// Sorted, disjoint code point ranges of a Unicode class, read from `regex-syntax`'s tables (the
/// ones the `regex` crate matches `\p{..}` with, so the two never disagree).
fn ranges(class: &str) -> Vec<(u32, u32)> {
    let Ok(hir) = regex_syntax::Parser::new().parse(class) else {
        return Vec::new();
    };
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
        _ => Vec::new(),
    }
}

static FORMAT: LazyLock<Vec<(u32, u32)>> = LazyLock::new(|| ranges(r"\p{Cf}"));
static MARK: LazyLock<Vec<(u32, u32)>> = LazyLock::new(|| ranges(r"\p{M}"));
static DIGIT: LazyLock<Vec<(u32, u32)>> = LazyLock::new(|| ranges(r"\p{Nd}"));
static SPACE: LazyLock<Vec<(u32, u32)>> = LazyLock::new(|| ranges(r"\p{White_Space}"));

/// The range of `table` holding `c`.
fn find(table: &[(u32, u32)], c: char) -> Option<(u32, u32)> {
    let c = u32::from(c);
    let i = table.partition_point(|&(_, end)| end < c);
    table.get(i).copied().filter(|&(start, _)| start <= c)
}

/// Dropped before anything else: format characters, Hangul fillers (rendered as nothing) and
/// control characters that are not whitespace.
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
        || (c.is_control() && !c.is_whitespace())
        || find(&FORMAT, c).is_some()
}

fn is_mark(c: char) -> bool {
    !c.is_ascii() && find(&MARK, c).is_some()
}

fn is_space(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\u{0B}' || (!c.is_ascii() && find(&SPACE, c).is_some())
}

/// The ASCII digit of a decimal digit of any script. Unicode encodes every decimal digit set as
/// ten consecutive code points from 0 to 9, and the class's ranges start at a zero.
fn ascii_digit(c: char) -> Option<char> {
    if c.is_ascii() {
        return c.is_ascii_digit().then_some(c);
    }
    let (start, _) = find(&DIGIT, c)?;
    let v = (u32::from(c) - start) % 10;
    char::from_digit(v, 10)
}

/// The Latin letter a Cyrillic, Greek, Armenian or IPA letter is commonly passed off as (the
/// Latin-looking pairs of Unicode's confusables list, UTS #39); others are returned unchanged.
pub fn confusable(c: char) -> char {
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'һ' => 'h',
        'і' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'ӏ' => 'l',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'ԝ' => 'w',
        'х' => 'x',
        'у' => 'y',
        'ь' => 'b',
        'А' => 'A',
        'В' => 'B',
        'С' => 'C',
        'Е' => 'E',
        'Н' => 'H',
        'І' => 'I',
        'Ј' => 'J',
        'К' => 'K',
        'М' => 'M',
        'О' => 'O',
        'Р' => 'P',
        'Ԛ' => 'Q',
        'Ѕ' => 'S',
        'Т' => 'T',
        'Ԝ' => 'W',
        'Х' => 'X',
        'У' | 'Ү' => 'Y',
        'Ӏ' => 'l',
        // Greek
        'α' => 'a',
        'γ' => 'y',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'υ' => 'u',
        'χ' => 'x',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        // Armenian, Latin IPA and dotless forms
        'օ' => 'o',
        'ս' => 'u',
        'հ' => 'h',
        'ո' => 'n',
        'ı' => 'i',
        'ȷ' => 'j',
        'ɑ' => 'a',
        'ɡ' => 'g',
        'ǀ' => 'l',
        other => other,
    }
}

/// Normalises one character, calling `emit` for each resulting character (none, one, or several
/// for a decomposition such as `ﬁ`). Whitespace comes out as `' '`; collapsing runs of it is the
/// caller's.
pub fn char_into(c: char, emit: &mut impl FnMut(char)) {
    if c.is_ascii() {
        if is_space(c) {
            emit(' ');
        } else if !c.is_ascii_control() {
            emit(c);
        }
        return;
    }
    if is_invisible(c) {
        return;
    }
    if is_space(c) {
        emit(' ');
        return;
    }
    unicode_normalization::char::decompose_compatible(c, |d| {
        if is_invisible(d) || is_mark(d) {
        } else if is_space(d) {
            emit(' ');
        } else if let Some(digit) = ascii_digit(d) {
            emit(digit);
        } else {
            emit(confusable(d));
        }
    });
}

/// `text` normalised, whitespace runs collapsed to one space.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        char_into(c, &mut |n| {
            if !(n == ' ' && out.ends_with(' ')) {
                out.push(n);
            }
        });
    }
    out
}

/// A deny rule in the form it is matched in: every run of non-ASCII characters in the pattern is
/// normalised like the text and escaped (so a fullwidth `＊` stays a literal), ASCII (all regex
/// syntax) is kept as written.
pub fn rule(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if !run.is_empty() {
            out.push_str(&regex::escape(&text(run)));
            run.clear();
        }
    };
    for c in pattern.chars() {
        if c.is_ascii() {
            flush(&mut run, &mut out);
            out.push(c);
        } else {
            run.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

//! What the model sees of a request, as one normalised text: every text-bearing field in a fixed
//! order, with the separators the model sees between them, and a map back to the original
//! fields so redaction can edit them in place.
//!
//! Order: the system prompt (and its parts, when the caller gave cache breakpoints: the same
//! text, so a redaction reaches both); each message's parts in order (text, tool calls — name,
//! then each key and value of the arguments decoded from JSON —, tool results, reasoning); the
//! tool definitions (name, description, each key and value of the parameter schema); the stop
//! sequences; the response format (name, description, schema); the named tool choice; the
//! fields passed through verbatim and Converse `additionalModelRequestFields` (each key and
//! value).
//!
//! Separators ([`Sep`]): consecutive text parts of one message are joined with nothing (the
//! upstream concatenates content blocks). Between the prose of one message (text, tool results)
//! and the next, and between the system prompt and the first message, there is a *turn*
//! boundary, rendered as one space — or as nothing in the second, "glued" view, so that a word
//! split across messages is seen whole too. Every other field (tool names, JSON keys and values,
//! tool definitions, stop sequences) is set apart by a line break, which no PII pattern and no
//! rule without `\s` crosses: neighbouring numbers in a JSON array never join into a card number.

use serde_json::Value;
use switchyard_proto::v1 as pb;

use super::normalize;

/// How a field is separated from the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sep {
    /// Joined with nothing (content blocks of one message).
    Glue,
    /// A turn boundary (system prompt → message → message): a space, or nothing when glued.
    Turn,
    /// A separate field: a line break.
    Field,
}

/// Where the text of a slot lives.
#[derive(Debug)]
enum Place<'a> {
    /// A string field of the request, edited in place.
    Str(&'a mut String),
    /// Leaf `leaf` of JSON document `doc` (written back when the document changed).
    Json { doc: usize, leaf: usize },
}

/// A field of the request whose text the policy sees.
#[derive(Debug)]
struct Slot<'a> {
    sep: Sep,
    place: Place<'a>,
}

/// A JSON-valued field (tool-call arguments, a tool's parameter schema) decoded into its keys
/// and values ("leaves"), written back re-encoded when one changed.
#[derive(Debug)]
struct JsonDoc<'a> {
    target: &'a mut String,
    value: Value,
    leaves: Vec<String>,
    changed: bool,
}

/// Byte `i` of a view came from bytes `start..end` of slot `slot` (`NONE` for a separator).
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    slot: u32,
    start: u32,
    end: u32,
}

const NONE: u32 = u32::MAX;

/// One rendering of the request's text, with (optionally) the origin of each byte.
#[derive(Debug, Default)]
pub struct View {
    pub text: String,
    origin: Vec<Origin>,
    /// Turn boundaries between two non-empty texts (0: the glued view is the same text).
    pub turns: usize,
}

/// The request's text-bearing fields, in order.
#[derive(Debug)]
pub struct Fields<'a> {
    slots: Vec<Slot<'a>>,
    docs: Vec<JsonDoc<'a>>,
}

impl<'a> Fields<'a> {
    /// Every text-bearing field of `req`, borrowed for editing.
    pub fn of(req: &'a mut pb::InferRequest) -> Self {
        let mut f = Fields {
            slots: Vec::new(),
            docs: Vec::new(),
        };
        f.str(Sep::Turn, &mut req.system);
        for part in &mut req.system_parts {
            if let Some(pb::content_part::Part::Text(t)) = &mut part.part {
                f.str(Sep::Field, t);
            }
        }
        for m in &mut req.messages {
            let mut prev_text = false;
            for part in &mut m.content {
                match &mut part.part {
                    Some(pb::content_part::Part::Text(t)) => {
                        f.str(if prev_text { Sep::Glue } else { Sep::Turn }, t);
                        prev_text = true;
                    }
                    Some(pb::content_part::Part::ToolResult(tr)) => {
                        f.str(Sep::Turn, &mut tr.content);
                        prev_text = false;
                    }
                    Some(pb::content_part::Part::ToolCall(tc)) => {
                        f.str(Sep::Field, &mut tc.name);
                        f.json(&mut tc.arguments_json);
                        prev_text = false;
                    }
                    Some(pb::content_part::Part::Thinking(t)) => {
                        f.str(Sep::Turn, &mut t.text);
                        prev_text = false;
                    }
                    Some(
                        pb::content_part::Part::Image(_) | pb::content_part::Part::CachePoint(_),
                    )
                    | None => prev_text = false,
                }
            }
        }
        for t in &mut req.tools {
            f.str(Sep::Field, &mut t.name);
            f.str(Sep::Field, &mut t.description);
            f.json(&mut t.parameters_json);
        }
        if let Some(p) = &mut req.params {
            for s in &mut p.stop {
                f.str(Sep::Field, s);
            }
        }
        if let Some(rf) = &mut req.response_format {
            f.str(Sep::Field, &mut rf.name);
            f.str(Sep::Field, &mut rf.description);
            f.json(&mut rf.schema_json);
        }
        if let Some(tc) = &mut req.tool_choice {
            f.str(Sep::Field, &mut tc.name);
        }
        if let Some(p) = &mut req.passthrough {
            f.json(&mut p.fields_json);
        }
        f.json(&mut req.additional_model_request_fields_json);
        f
    }

    /// One string on its own (the policy's free functions on plain text).
    pub fn single(s: &'a mut String) -> Self {
        let mut f = Fields {
            slots: Vec::new(),
            docs: Vec::new(),
        };
        f.str(Sep::Turn, s);
        f
    }

    fn str(&mut self, sep: Sep, s: &'a mut String) {
        self.slots.push(Slot {
            sep,
            place: Place::Str(s),
        });
    }

    /// A JSON field: its keys and values when it parses, else its raw text.
    fn json(&mut self, s: &'a mut String) {
        if s.is_empty() {
            return;
        }
        let Ok(value) = serde_json::from_str::<Value>(s) else {
            self.str(Sep::Field, s);
            return;
        };
        let mut leaves = Vec::new();
        collect(&value, &mut leaves);
        let doc = self.docs.len();
        for leaf in 0..leaves.len() {
            self.slots.push(Slot {
                sep: Sep::Field,
                place: Place::Json { doc, leaf },
            });
        }
        self.docs.push(JsonDoc {
            target: s,
            value,
            leaves,
            changed: false,
        });
    }

    fn text(&self, slot: usize) -> &str {
        match self.slots.get(slot).map(|s| &s.place) {
            Some(Place::Str(s)) => s,
            Some(Place::Json { doc, leaf }) => self
                .docs
                .get(*doc)
                .and_then(|d| d.leaves.get(*leaf))
                .map_or("", String::as_str),
            None => "",
        }
    }

    /// The normalised text: turn boundaries as a space, or as nothing when `glued`. With
    /// `origins`, the view can map matches back ([`View::pieces`]).
    pub fn view(&self, glued: bool, origins: bool) -> View {
        let len: usize = (0..self.slots.len()).map(|i| self.text(i).len() + 1).sum();
        let mut v = View {
            text: String::with_capacity(len),
            origin: Vec::with_capacity(if origins { len } else { 0 }),
            turns: 0,
        };
        for (i, slot) in self.slots.iter().enumerate() {
            let text = self.text(i);
            if text.is_empty() {
                continue;
            }
            if !v.text.is_empty() {
                match slot.sep {
                    Sep::Glue => {}
                    Sep::Turn if glued => v.turns += 1,
                    Sep::Turn => {
                        v.turns += 1;
                        v.push(' ', NONE, 0, 0, origins);
                    }
                    Sep::Field => v.push('\n', NONE, 0, 0, origins),
                }
            }
            let slot = i as u32;
            for (at, c) in text.char_indices() {
                let (start, end) = (at as u32, (at + c.len_utf8()) as u32);
                normalize::char_into(c, &mut |n| v.push(n, slot, start, end, origins));
            }
        }
        v
    }

    /// Applies edits (slot, original byte range, replacement), then re-encodes the JSON
    /// documents that changed. Edits of one slot must not overlap.
    pub fn edit(&mut self, mut edits: Vec<(u32, u32, u32, &'static str)>) {
        // Back to front within each slot, so earlier ranges stay valid; an edit overlapping the
        // one after it is skipped (the next pass finds what it was after).
        edits.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut after: Option<(u32, u32)> = None;
        for (slot, start, end, with) in edits {
            if after.is_some_and(|(s, from)| s == slot && end > from) {
                continue;
            }
            after = Some((slot, start));
            let (start, end) = (start as usize, end as usize);
            let target: &mut String = match self.slots.get_mut(slot as usize).map(|s| &mut s.place)
            {
                Some(Place::Str(s)) => s,
                Some(Place::Json { doc, leaf }) => {
                    let Some(d) = self.docs.get_mut(*doc) else {
                        continue;
                    };
                    d.changed = true;
                    let Some(l) = d.leaves.get_mut(*leaf) else {
                        continue;
                    };
                    l
                }
                None => continue,
            };
            if end <= target.len() && target.is_char_boundary(start) && target.is_char_boundary(end)
            {
                target.replace_range(start..end, with);
            }
        }
        for d in &mut self.docs {
            if d.changed {
                let value = rebuild(std::mem::take(&mut d.value), &mut d.leaves.iter().cloned());
                *d.target = value.to_string();
                // A changed key can reorder the object: read the leaves again.
                d.leaves.clear();
                collect(&value, &mut d.leaves);
                d.value = value;
                d.changed = false;
            }
        }
    }
}

impl View {
    fn push(&mut self, c: char, slot: u32, start: u32, end: u32, origins: bool) {
        if c == ' ' && (self.text.is_empty() || self.text.ends_with(' ')) {
            // Collapse whitespace; the space kept stands for the whole run.
            if origins
                && let Some(last) = self.origin.last_mut()
                && last.slot == slot
                && slot != NONE
            {
                last.end = end;
            }
            return;
        }
        self.text.push(c);
        if origins {
            for _ in 0..c.len_utf8() {
                self.origin.push(Origin { slot, start, end });
            }
        }
    }

    /// The original ranges a match at `range` of this view covers, one per slot in order:
    /// (slot, start, end). Separators contribute nothing.
    pub fn pieces(&self, range: std::ops::Range<usize>) -> Vec<(u32, u32, u32)> {
        let mut out: Vec<(u32, u32, u32)> = Vec::new();
        for o in self.origin.get(range).unwrap_or_default() {
            if o.slot == NONE {
                continue;
            }
            match out.last_mut() {
                Some(p) if p.0 == o.slot => {
                    p.1 = p.1.min(o.start);
                    p.2 = p.2.max(o.end);
                }
                _ => out.push((o.slot, o.start, o.end)),
            }
        }
        out
    }
}

/// The keys and values of a JSON document in document order (numbers as written; `true`,
/// `false` and `null` carry no text).
fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                collect(x, out);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// `v` with its leaves replaced, in [`collect`]'s order. A number whose text changed becomes a
/// string (a redacted card number written as a JSON number).
fn rebuild(v: Value, leaves: &mut impl Iterator<Item = String>) -> Value {
    match v {
        Value::String(s) => Value::String(leaves.next().unwrap_or(s)),
        Value::Number(n) => match leaves.next() {
            Some(t) if t != n.to_string() => Value::String(t),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(|x| rebuild(x, leaves)).collect()),
        Value::Object(o) => {
            let mut out = serde_json::Map::new();
            for (k, x) in o {
                let k = leaves.next().unwrap_or(k);
                let x = rebuild(x, leaves);
                out.insert(k, x);
            }
            Value::Object(out)
        }
        other @ (Value::Bool(_) | Value::Null) => other,
    }
}

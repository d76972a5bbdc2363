//! A deterministic JSON value for a JSON Schema: what the simulated upstream answers to a
//! `response_format` of type `json_schema` (and the arguments of the tool calls it is made to
//! make), so structured-output clients can be tried without a model.
//!
//! One value per schema kind, always the same: `enum` → its first value, `const` → itself,
//! `anyOf` / `oneOf` → the first alternative, `allOf` → the properties of all of them,
//! `$ref` → the referenced definition (`#/$defs/…`, `#/definitions/…`, `#`), object → every
//! declared property, array → `minItems` items (at least one, at most 8 and `maxItems`),
//! string → `"…"` (`minLength` times; well-known `format`s get a valid example), number and
//! integer → 0 (or `minimum` / `exclusiveMinimum` + 1 when 0 is out of range), boolean → `true`,
//! null → `null`. A schema without a type is answered with `{}`.

use serde_json::{Map, Value, json};

/// Deepest nesting followed (objects, arrays, `$ref`s); below it values are `null`.
pub const MAX_DEPTH: usize = 24;
/// Most values one answer holds; beyond it arrays and objects stay short.
pub const MAX_NODES: usize = 4096;
/// Most items one generated array holds.
pub const MAX_ITEMS: u64 = 8;

/// The deterministic value for `schema` (a JSON Schema document).
pub fn sample(schema: &Value) -> Value {
    let mut budget = MAX_NODES;
    value(schema, schema, 0, &mut budget)
}

fn value(root: &Value, s: &Value, depth: usize, budget: &mut usize) -> Value {
    if depth > MAX_DEPTH || *budget == 0 {
        return Value::Null;
    }
    *budget -= 1;
    let Some(o) = s.as_object() else {
        // `true` (anything) or a malformed schema.
        return json!({});
    };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        return match resolve(root, r) {
            Some(target) => value(root, target, depth + 1, budget),
            None => json!({}),
        };
    }
    if let Some(c) = o.get("const") {
        return c.clone();
    }
    if let Some(first) = o
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = o.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            return value(root, first, depth + 1, budget);
        }
    }
    if let Some(all) = o.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in all {
            if let Value::Object(m) = value(root, part, depth + 1, budget) {
                merged.extend(m);
            }
        }
        if let Value::Object(m) = object(root, o, depth, budget) {
            merged.extend(m);
        }
        return Value::Object(merged);
    }
    let ty = match o.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // `["string", "null"]`: the first non-null type.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if o.contains_key("properties") => "object",
        _ if o.contains_key("items") => "array",
        _ => "",
    };
    match ty {
        "object" => object(root, o, depth, budget),
        "array" => {
            let min = o
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let max = o
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(MAX_ITEMS);
            let n = min.min(max).min(MAX_ITEMS);
            let item = o.get("items").cloned().unwrap_or(json!({}));
            Value::Array(
                (0..n)
                    .map(|_| value(root, &item, depth + 1, budget))
                    .collect(),
            )
        }
        "string" => string(o),
        "integer" => number(o, true),
        "number" => number(o, false),
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => json!({}),
    }
}

fn object(root: &Value, o: &Map<String, Value>, depth: usize, budget: &mut usize) -> Value {
    let mut out = Map::new();
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            out.insert(k.clone(), value(root, sub, depth + 1, budget));
        }
    }
    Value::Object(out)
}

fn string(o: &Map<String, Value>) -> Value {
    let example = match o.get("format").and_then(Value::as_str) {
        Some("date-time") => Some("1970-01-01T00:00:00Z"),
        Some("date") => Some("1970-01-01"),
        Some("time") => Some("00:00:00Z"),
        Some("email") => Some("user@example.com"),
        Some("uri" | "url") => Some("https://example.com/"),
        Some("uuid") => Some("00000000-0000-0000-0000-000000000000"),
        Some("ipv4") => Some("127.0.0.1"),
        Some("ipv6") => Some("::1"),
        Some("hostname") => Some("example.com"),
        _ => None,
    };
    if let Some(e) = example {
        return Value::String(e.to_owned());
    }
    let min = o
        .get("minLength")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1);
    let n = usize::try_from(min.min(64)).unwrap_or(64);
    Value::String("…".repeat(n))
}

fn number(o: &Map<String, Value>, integer: bool) -> Value {
    let lo = o.get("minimum").and_then(Value::as_f64);
    let lo_excl = o.get("exclusiveMinimum").and_then(Value::as_f64);
    let hi = o.get("maximum").and_then(Value::as_f64);
    let hi_excl = o.get("exclusiveMaximum").and_then(Value::as_f64);
    let mut v = 0.0_f64;
    if let Some(l) = lo
        && v < l
    {
        v = l;
    }
    if let Some(l) = lo_excl
        && v <= l
    {
        v = l + 1.0;
    }
    if let Some(h) = hi
        && v > h
    {
        v = h;
    }
    if let Some(h) = hi_excl
        && v >= h
    {
        v = h - 1.0;
    }
    if integer {
        let v = v.ceil();
        if v.abs() < 9.0e15 {
            return json!(v as i64);
        }
    }
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(json!(0))
}

/// The schema a local `$ref` points at (`#`, `#/$defs/Name`, `#/definitions/Name`, any JSON
/// pointer below the root).
fn resolve<'a>(root: &'a Value, r: &str) -> Option<&'a Value> {
    let pointer = r.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_kind() {
        let schema = json!({
            "type": "object",
            "properties": {
                "answer": {"type": "string"},
                "n": {"type": "integer", "minimum": 3},
                "x": {"type": "number"},
                "ok": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "colour": {"enum": ["red", "green"]},
                "when": {"type": "string", "format": "date-time"},
                "maybe": {"type": ["string", "null"]},
                "nested": {"type": "object", "properties": {"deep": {"type": "integer", "exclusiveMinimum": 0}}},
                "ref": {"$ref": "#/$defs/Item"},
            },
            "required": ["answer"],
            "$defs": {"Item": {"type": "object", "properties": {"id": {"type": "string"}}}},
        });
        assert_eq!(
            sample(&schema),
            json!({
                "answer": "…", "n": 3, "x": 0.0, "ok": true, "tags": ["…", "…"], "colour": "red",
                "when": "1970-01-01T00:00:00Z", "maybe": "…", "nested": {"deep": 1},
                "ref": {"id": "…"},
            })
        );
    }

    #[test]
    fn recursion_and_size_are_bounded() {
        // A schema that refers to itself without end.
        let schema = json!({"type": "object", "properties": {"next": {"$ref": "#"}}});
        let v = sample(&schema);
        let mut depth = 0;
        let mut cur = &v;
        while let Some(next) = cur.get("next") {
            depth += 1;
            cur = next;
        }
        assert!(depth <= MAX_DEPTH, "{depth}");
        // Wide arrays of wide objects stay within the node budget.
        let wide = json!({"type": "array", "minItems": 1000000, "items": {"type": "array", "minItems": 1000, "items": {"type": "string"}}});
        let v = sample(&wide);
        assert!(v.as_array().unwrap().len() <= MAX_ITEMS as usize);
    }
}

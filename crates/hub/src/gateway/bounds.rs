//! Bounds on the request fields that size the work a request causes, checked once for every
//! surface before quota admission and before anything leaves the hub: the number and size of
//! tools (`max_tools`, `max_tool_bytes`), `n` (`max_choices`), `top_logprobs` (20),
//! `logit_bias` (300 entries), the size of a response schema (`max_tool_bytes`), and
//! `max_tokens` / the request's size against the context windows the candidates' spokes
//! reported in `Describe`; and what the request asks for against what the candidates' models
//! can do ([`capabilities`]). A refusal is a 400 naming the field (OpenAI's `param`), never the
//! 503 an unroutable request would otherwise get.

use std::borrow::Cow;

use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::live::Table;
use crate::model::{Alias, RequestBounds};
use crate::routing::{AskedBy, Feature, Needs};

/// Most `top_logprobs` a request may ask for (OpenAI's own bound).
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Most `logit_bias` entries a request may carry.
pub const MAX_LOGIT_BIAS: usize = 300;

fn invalid(param: impl Into<Cow<'static, str>>, message: String) -> HubError {
    HubError::InvalidParam {
        param: param.into(),
        code: "invalid_value",
        message,
    }
}

/// `n`, `top_logprobs`, `logit_bias` and the size of the response schema. `asked` names the
/// field that set the response format (OpenAI `response_format`, Anthropic `output_format`, …).
pub fn params(
    req: &pb::InferRequest,
    bounds: &RequestBounds,
    asked: &AskedBy,
) -> Result<(), HubError> {
    let p = req.params.clone().unwrap_or_default();
    if p.n > bounds.max_choices {
        return Err(invalid(
            "n",
            format!(
                "n: {} choices were asked for; at most {} are accepted",
                p.n, bounds.max_choices
            ),
        ));
    }
    if let Some(k) = p.top_logprobs.filter(|k| *k > MAX_TOP_LOGPROBS) {
        return Err(invalid(
            "top_logprobs",
            format!("top_logprobs: {k} is more than {MAX_TOP_LOGPROBS}"),
        ));
    }
    if p.logit_bias.len() > MAX_LOGIT_BIAS {
        return Err(invalid(
            "logit_bias",
            format!(
                "logit_bias: {} entries; at most {MAX_LOGIT_BIAS} are accepted",
                p.logit_bias.len()
            ),
        ));
    }
    if let Some(f) = &req.response_format {
        let size = f.name.len() + f.description.len() + f.schema_json.len();
        if size > bounds.max_tool_bytes {
            let field = asked
                .get(Feature::StructuredOutput)
                .unwrap_or("response_format")
                .to_owned();
            return Err(invalid(
                field.clone(),
                format!(
                    "{field}: the schema is {size} bytes; at most {} are accepted",
                    bounds.max_tool_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// What the request asks for (`needs`, the alias's own included) against what the alias's
/// candidates' models can do, as their spokes last reported it in `Describe` (healthy or not:
/// what a model can do does not change with its health). When no candidate's model can honour
/// the request but one could without a [`Feature`] it asks for, 400 naming the request field
/// that asked for that feature (`asked`; for a passthrough, its first field), `code`
/// `unsupported_parameter`. Otherwise the request is left to routing: a capable candidate is
/// tried first and the others are skipped; a request that nothing could serve anyway (no model
/// takes its tools or images) or whose answer is not known yet (a candidate's pool is absent or
/// none of its spokes has answered `Describe`) keeps routing's 503.
pub fn capabilities(
    table: &Table,
    alias: &Alias,
    needs: &Needs,
    asked: &AskedBy,
    req: &pb::InferRequest,
) -> Result<(), HubError> {
    let basic = needs.basic();
    let mut lacking = None;
    for cand in &alias.candidates {
        let Some(pool) = table.pools.get(&cand.provider) else {
            return Ok(());
        };
        let spokes = pool.spokes();
        if !spokes.iter().any(|s| s.has_described()) {
            // What this candidate can do is not known yet: routing decides.
            return Ok(());
        }
        for spoke in spokes.iter() {
            let Some(caps) = spoke.model_caps(&cand.model) else {
                continue;
            };
            if caps.satisfies(needs) {
                return Ok(());
            }
            if lacking.is_none() && caps.satisfies(&basic) {
                lacking = caps.lacks(needs);
            }
        }
    }
    let Some(feature) = lacking else {
        return Ok(());
    };
    let field = match feature {
        Feature::Api => passthrough_field(req)
            .or_else(|| asked.get(Feature::Api).map(str::to_owned))
            .unwrap_or_else(|| "passthrough".to_owned()),
        f => asked
            .get(f)
            .map(str::to_owned)
            .unwrap_or_else(|| default_field(f).to_owned()),
    };
    let why = match feature {
        Feature::Api => format!(
            "only an upstream that speaks the {} API takes it, and no model of {:?} is served by one",
            needs.api.map_or("caller's", |a| a.as_str()),
            alias.name
        ),
        Feature::Choices => format!(
            "no model of {:?} can generate {} choices",
            alias.name, needs.choices
        ),
        f => format!(
            "no model of {:?} supports it (capability `{}`)",
            alias.name,
            f.capability()
        ),
    };
    Err(HubError::InvalidParam {
        message: format!("{field}: {why}"),
        param: field.into(),
        code: "unsupported_parameter",
    })
}

/// The first field of the request's passthrough, if it has one.
fn passthrough_field(req: &pb::InferRequest) -> Option<String> {
    let p = req.passthrough.as_ref()?;
    let v: serde_json::Value = serde_json::from_str(&p.fields_json).ok()?;
    v.as_object()?.keys().next().cloned()
}

/// A feature's field in OpenAI's terms, when the surface recorded none.
fn default_field(f: Feature) -> &'static str {
    match f {
        Feature::StructuredOutput => "response_format",
        Feature::Reasoning => "reasoning_effort",
        Feature::Choices => "n",
        Feature::Logprobs => "logprobs",
        Feature::Seed => "seed",
        Feature::Penalties => "logit_bias",
        Feature::TopK => "top_k",
        Feature::ToolChoice => "tool_choice",
        Feature::Api => "passthrough",
    }
}

/// The number and size of the request's tools.
pub fn tools(req: &pb::InferRequest, bounds: &RequestBounds) -> Result<(), HubError> {
    if req.tools.len() > bounds.max_tools {
        return Err(HubError::InvalidParam {
            param: "tools".into(),
            code: "invalid_value",
            message: format!(
                "tools: {} tools were offered; at most {} are accepted",
                req.tools.len(),
                bounds.max_tools
            ),
        });
    }
    for (i, t) in req.tools.iter().enumerate() {
        // Every upstream API names tools with 1 to 64 (OpenAI, Bedrock) or 128 (Anthropic) of
        // `[a-zA-Z0-9_-]`; the hub takes the widest form and refuses the rest here, by name,
        // rather than as an upstream's rejection after a call.
        let valid_name = (1..=128).contains(&t.name.len())
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_name {
            return Err(HubError::InvalidParam {
                param: "tools".into(),
                code: "invalid_value",
                message: format!(
                    "tools.{i}: a tool name is 1 to 128 characters of letters, digits, '_', '-' and '.'"
                ),
            });
        }
        let size = t.name.len() + t.description.len() + t.parameters_json.len();
        if size > bounds.max_tool_bytes {
            return Err(HubError::InvalidParam {
                param: "tools".into(),
                code: "invalid_value",
                message: format!(
                    "tools.{i}: the definition is {size} bytes; at most {} are accepted",
                    bounds.max_tool_bytes
                ),
            });
        }
    }
    Ok(())
}

/// The largest context window among the alias's candidates, when every candidate's is known:
/// each candidate's is the largest any spoke of its pool reported for its model. `None` when a
/// candidate's is unknown (no spoke reported the model yet, or reported no window): the request
/// is then left to routing.
fn largest_window(table: &Table, alias: &Alias) -> Option<u32> {
    let mut largest = None::<u32>;
    for cand in &alias.candidates {
        let pool = table.pools.get(&cand.provider)?;
        let mut window = None::<u32>;
        for spoke in pool.spokes().iter() {
            match spoke.context_window(&cand.model) {
                None => {}
                // A spoke that serves the model with no window: routing takes any size there.
                Some(0) => return None,
                Some(w) => window = Some(window.map_or(w, |x| x.max(w))),
            }
        }
        let window = window?;
        largest = Some(largest.map_or(window, |l| l.max(window)));
    }
    largest
}

/// `max_tokens` and the request's size (input estimate + `max_tokens`, [`Needs::of_request`])
/// against the largest context window any candidate of the alias has: 400 naming `max_tokens`
/// when it alone does not fit, 400 `context_length_exceeded` naming `messages` when the whole
/// request does not.
pub fn context(
    table: &Table,
    alias: &Alias,
    needs: &Needs,
    req: &pb::InferRequest,
) -> Result<(), HubError> {
    let Some(largest) = largest_window(table, alias) else {
        return Ok(());
    };
    let max_tokens = req.params.as_ref().and_then(|p| p.max_tokens).unwrap_or(0);
    if max_tokens > largest {
        return Err(HubError::InvalidParam {
            param: "max_tokens".into(),
            code: "invalid_value",
            message: format!(
                "max_tokens: {max_tokens} is more than the largest context window of the models \
                 {:?} can use ({largest} tokens)",
                alias.name
            ),
        });
    }
    if needs.min_context_window > largest {
        return Err(HubError::InvalidParam {
            param: "messages".into(),
            code: "context_length_exceeded",
            message: format!(
                "the request needs about {} tokens (its input and max_tokens); the largest \
                 context window of the models {:?} can use is {largest} tokens",
                needs.min_context_window, alias.name
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> RequestBounds {
        RequestBounds {
            max_tools: 2,
            max_tool_bytes: 20,
            max_embedding_dimensions: 8,
            max_choices: 4,
        }
    }

    fn tool(name: &str, schema: &str) -> pb::ToolSpec {
        pb::ToolSpec {
            name: name.into(),
            description: String::new(),
            parameters_json: schema.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tools_are_counted_and_measured() {
        let mut req = pb::InferRequest {
            tools: vec![tool("a", "{}"), tool("b", "{}")],
            ..Default::default()
        };
        assert!(tools(&req, &bounds()).is_ok());
        req.tools.push(tool("c", "{}"));
        let e = tools(&req, &bounds()).unwrap_err();
        assert_eq!(e.names().param, Some("tools"));
        req.tools = vec![tool("a", &format!("{{\"x\":\"{}\"}}", "y".repeat(20)))];
        let e = tools(&req, &bounds()).unwrap_err();
        assert!(e.to_string().starts_with("tools.0:"), "{e}");
    }

    #[test]
    fn choices_logprobs_bias_and_schema_are_bounded() {
        let with = |p: pb::GenerationParams| pb::InferRequest {
            params: Some(p),
            ..Default::default()
        };
        let asked = AskedBy::default();
        let param = |r: &pb::InferRequest, a: &AskedBy| {
            params(r, &bounds(), a)
                .err()
                .map(|e| e.names().param.unwrap_or("").to_owned())
        };
        let ok = with(pb::GenerationParams {
            n: 4,
            top_logprobs: Some(20),
            ..Default::default()
        });
        assert_eq!(param(&ok, &asked), None);
        let n = with(pb::GenerationParams {
            n: u32::MAX,
            ..Default::default()
        });
        assert_eq!(param(&n, &asked).as_deref(), Some("n"));
        let top = with(pb::GenerationParams {
            top_logprobs: Some(21),
            ..Default::default()
        });
        assert_eq!(param(&top, &asked).as_deref(), Some("top_logprobs"));
        let bias = with(pb::GenerationParams {
            logit_bias: (0..301).map(|i| (i.to_string(), 1.0)).collect(),
            ..Default::default()
        });
        assert_eq!(param(&bias, &asked).as_deref(), Some("logit_bias"));
        let schema = pb::InferRequest {
            response_format: Some(pb::ResponseFormat {
                r#type: pb::response_format::Type::JsonSchema as i32,
                schema_json: format!("{{\"description\":\"{}\"}}", "x".repeat(30)),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(param(&schema, &asked).as_deref(), Some("response_format"));
        let mut anthropic = AskedBy::default();
        anthropic.set(Feature::StructuredOutput, "output_format");
        assert_eq!(param(&schema, &anthropic).as_deref(), Some("output_format"));
    }
}

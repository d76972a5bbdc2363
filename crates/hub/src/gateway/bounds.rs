//! Bounds on the request fields that size the work a request causes, checked once for every
//! surface before quota admission and before anything leaves the hub: the number and size of
//! tools (`max_tools`, `max_tool_bytes`) and `max_tokens` / the request's size against the
//! context windows the candidates' spokes reported in `Describe`. A refusal is a 400 naming the
//! field (OpenAI's `param`), never the 503 an unroutable request would otherwise get.

use switchyard_proto::v1 as pb;

use crate::error::HubError;
use crate::live::Table;
use crate::model::{Alias, RequestBounds};
use crate::routing::Needs;

/// The number and size of the request's tools.
pub fn tools(req: &pb::InferRequest, bounds: &RequestBounds) -> Result<(), HubError> {
    if req.tools.len() > bounds.max_tools {
        return Err(HubError::InvalidParam {
            param: "tools",
            code: "invalid_value",
            message: format!(
                "tools: {} tools were offered; at most {} are accepted",
                req.tools.len(),
                bounds.max_tools
            ),
        });
    }
    for (i, t) in req.tools.iter().enumerate() {
        let size = t.name.len() + t.description.len() + t.parameters_json.len();
        if size > bounds.max_tool_bytes {
            return Err(HubError::InvalidParam {
                param: "tools",
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
            param: "max_tokens",
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
            param: "messages",
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
}

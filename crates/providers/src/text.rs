//! Small helpers shared by adapters.

use switchyard_proto::v1::{InferRequest, content_part::Part};

/// All text of a request (system + messages), for token estimates and the simulator.
pub(crate) fn last_user_text(req: &InferRequest) -> String {
    req.messages
        .iter()
        .rev()
        .find(|m| m.role == switchyard_proto::v1::Role::User as i32)
        .map(|m| {
            m.content
                .iter()
                .filter_map(|p| match &p.part {
                    Some(Part::Text(t)) => Some(t.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A rough input-token estimate: ~4 characters per token, at least 1.
pub fn estimate_input_tokens(req: &InferRequest) -> u64 {
    let mut chars = req.system.len();
    for m in &req.messages {
        for p in &m.content {
            chars += match &p.part {
                Some(Part::Text(t)) => t.len(),
                Some(Part::ToolResult(r)) => r.content.len(),
                Some(Part::ToolCall(c)) => c.arguments_json.len() + c.name.len(),
                Some(Part::Image(_)) => 4 * 1_000,
                None => 0,
            };
        }
    }
    (chars as u64).div_ceil(4).max(1)
}

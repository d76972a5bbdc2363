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

pub use switchyard_proto::estimate_input_tokens;

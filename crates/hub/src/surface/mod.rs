//! The client APIs, one folder each: [`openai`] (chat completions, models, prompt templates), [`anthropic`] (Messages), [`converse`] (Bedrock Converse), [`embeddings`]. Each
//! fills the same contract — decode its wire format into the internal request
//! (`switchyard.v1.InferRequest`), encode the answer, encode a stream item, encode an error in
//! its shape — around the shared per-request [`frame`] and the wire-free `gateway`.

pub mod anthropic;
pub mod converse;
pub mod embeddings;
pub mod frame;
pub mod openai;

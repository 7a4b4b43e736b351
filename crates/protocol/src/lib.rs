//! Wire types of the APIs Plexus speaks. No logic beyond (de)serialization helpers.
//!
//! The OpenAI types double as Plexus's canonical request, response and chunk types.
#![forbid(unsafe_code)]

pub mod admin;
pub mod anthropic;
pub mod feedback;
pub mod gemini;
pub mod money;
pub mod openai;
pub mod orchestration;
pub mod responses;
pub mod sse;
pub mod whole;

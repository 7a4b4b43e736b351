//! Anthropic Messages API wire types (https://docs.anthropic.com/en/api/messages).

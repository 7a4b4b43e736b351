//! OpenAI Chat Completions (also Azure OpenAI and OpenAI-compatible servers).

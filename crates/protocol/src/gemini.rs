//! Gemini generateContent API wire types (https://ai.google.dev/api/generate-content).

"""Strict request validation for the fake provider upstreams: what each real API would reject.

- `typed_dicts`: strict pydantic models built from openai-python's request TypedDicts.
- `openai_rules`: chat completions, legacy completions and embeddings bodies.
- `gemini_rules`: generateContent, countTokens and embedding bodies, walked against google-genai's
  types.
- `ollama_rules`: `/api/chat`, `/api/generate` and `/api/embed` bodies, from Ollama's API docs.

Each validator takes a parsed JSON body and returns a list of problems (empty when valid).
"""

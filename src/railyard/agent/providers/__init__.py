"""Where a model's API is and how to reach it; `railyard.agent.providers.openai` for OpenAI-compatible APIs."""

"""Google's Gemini API and Vertex AI providers: pure translation to and from OpenAI's shapes, plus the clients."""

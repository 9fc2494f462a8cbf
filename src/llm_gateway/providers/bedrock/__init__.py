"""AWS Bedrock (the Converse API): pure translation to and from OpenAI's shapes, SigV4, the HTTP client."""

"""HTTP front door in the shapes clients already speak: OpenAI's speech and audio-chat APIs."""

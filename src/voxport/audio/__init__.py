"""Audio in and out: files to mono float32 at the rate a model wants, and back to files, atomically."""

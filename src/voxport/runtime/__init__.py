"""Device backends, checkpoint resolution and seeding: the layer that knows about hardware, never models."""

"""Wire formats (Segment, PostHog, Sensors Data, files) -> one Event model."""

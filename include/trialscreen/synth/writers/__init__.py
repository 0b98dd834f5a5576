"""Renderers from the neutral patient model to the three feed formats."""

"""Projection of PromptAliases into ConfigMaps (pure rendering in `render`)."""

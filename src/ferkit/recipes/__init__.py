"""Named training recipes (TOML), read with importlib.resources by ferkit.training.config."""

"""The site-wide layer, imported as `labsite` (see pyproject.toml)."""

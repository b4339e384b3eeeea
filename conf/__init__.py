"""The shipped experiment configs (``conf/<package>/*.yaml``), installed as package data so that
``-c <name>`` works from a pip install (common.config.resolve_config)."""

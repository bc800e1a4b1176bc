"""facewatch: a self-hosted video face watcher (composition root: CLI, config, app)."""

__version__ = "0.1.0"

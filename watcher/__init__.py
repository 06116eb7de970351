"""breakglass-watcher: proves that AWS break-glass access works and is watched."""

__version__ = "0.1.0"

"""Built-in plugins; each uses the same `hookimpl` API a third-party plugin does."""

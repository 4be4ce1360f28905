"""Built-in plugins. They use the same hooks as installed plugins."""

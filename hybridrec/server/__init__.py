"""The HTTP server (FastAPI). Import ``hybridrec.server.app.create_app``."""

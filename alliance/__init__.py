"""Alliance composition root: settings, CLI and (later) the web app factory."""

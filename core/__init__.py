"""Alliance core: the domain, store and sync engine, free of any web framework or provider."""

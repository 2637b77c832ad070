"""Video links of sessions: provisioning through a meeting provider, and what the call really did."""

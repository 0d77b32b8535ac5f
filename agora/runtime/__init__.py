"""Process-level settings shared by Agora's long-running services."""

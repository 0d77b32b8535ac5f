"""Pure container decisions: what a container is asked to be (ContainerConfig) and the
rules the containerizer follows (limits from resources, fetch plans, health checks)."""

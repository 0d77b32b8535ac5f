"""The Mesos containerizer's shell: isolators, fetcher, image provisioner and the
orchestration that turns the agent core's ContainerConfig into a supervised process."""

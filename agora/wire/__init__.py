"""Pure translation between the Mesos v1 JSON shapes (and Agora's own master<->agent
protocol) and the core's events and commands. No I/O here: shells call these."""

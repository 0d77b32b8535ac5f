"""ZooKeeper for high availability: `zk://` URLs, an asyncio session around kazoo, Mesos's
leader election and detection layout, and (in agora.master.registry.zookeeper_store) the
ZooKeeper registry store."""

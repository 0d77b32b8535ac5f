"""ZooKeeper for high availability, with Mesos's layout so Mesos clients follow Agora masters.

- `agora.zookeeper.url`: `parse_zk_url("zk://[user:pass@]h1:p1,h2:p2/path")` -> ZooKeeperUrl
  (hosts, path, digest credentials); InvalidZooKeeperUrl names what is wrong.
- `agora.zookeeper.session`: ZooKeeperSession, one per process, asyncio-friendly (kazoo's
  threads never block the loop); reports CONNECTED / SUSPENDED / LOST to listeners.
- `agora.zookeeper.election`: Contender (a master's candidacy: FOLLOWING / LEADING /
  SUSPENDED / LOST) and Detector (the leading master's MasterInfo, or None).
- `agora.master.registry.zookeeper_store`: ZooKeeperStore, the registry Store on ZooKeeper,
  fenced on the contender's znode.

A master, in outline:

    url = parse_zk_url(flags.zk)
    session = ZooKeeperSession(url, session_timeout_s=10.0)
    await session.start()
    contender = Contender(session, master_info, on_change=on_candidacy)
    await contender.start()
    detector = Detector(session, on_change=on_leader)   # for redirects to the leader
    await detector.start()
    # on_candidacy(LEADING): store = ZooKeeperStore(session, fence=contender.znode); recover
    # on_candidacy(SUSPENDED or LOST): stop acting as leader at once (LOST: contend anew, or exit)

An agent or a scheduler client needs only a session and a Detector.
"""

-- Offsets only mean something within one Kafka cluster: key them by the cluster's id too, so a
-- database that outlives a cluster (failover, a rebuilt test broker) never mistakes new records
-- for replays. (A topic deleted and recreated in the same cluster also restarts at offset 0:
-- delete its rows here when doing that, see docs/operator-guide.md.)
ALTER TABLE consumed_offsets ADD COLUMN cluster text NOT NULL DEFAULT '';
ALTER TABLE consumed_offsets DROP CONSTRAINT consumed_offsets_pkey;
ALTER TABLE consumed_offsets ADD PRIMARY KEY (cluster, topic, partition);

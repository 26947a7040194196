-- How each topic places keys on its partitions. Topics of a log written
-- before placed every key with FNV-1a and keep doing so; the bus creates
-- every new topic with Kafka's murmur2, naming it.
ALTER TABLE bus_topics ADD COLUMN partitioner TEXT NOT NULL DEFAULT 'fnv1a';

-- Records of a compacted topic that only the file still holds are found by
-- key when a newer record of the same key replaces them.
CREATE INDEX IF NOT EXISTS bus_records_by_key ON bus_records (topic, part, record_key);

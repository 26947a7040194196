-- Changes of one product made in the same millisecond are ordered by the
-- product's version after each (entries stored before this have 0).
ALTER TABLE catalog_audit ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- The fingerprint of the HTTP request an event was made from, when the client sent an
-- Idempotency-Key (its event id is then derived from that key). An event that arrives with
-- an id recorded here but another fingerprint is a different change under a reused key:
-- it is dead-lettered, not skipped as a duplicate. NULL for unkeyed events and for events
-- recorded before this column existed; those are never compared.
ALTER TABLE applied_events ADD COLUMN request_fingerprint TEXT;

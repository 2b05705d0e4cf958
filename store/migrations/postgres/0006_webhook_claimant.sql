-- Who claims an outbox event: the cluster node's incarnation that took it
-- for delivery, so that a node seeing another die can release that one's
-- claims at once instead of waiting for them to lapse.

ALTER TABLE webhook_outbox ADD COLUMN claimed_by text NOT NULL DEFAULT '';

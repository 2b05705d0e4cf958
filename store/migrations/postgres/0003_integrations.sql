-- What integrations need: full-text search over the transcript, listing
-- conversations newest first, and the webhook outbox.
--
-- The search vector is derived from each message's text with the
-- 'simple' configuration (lower-cased words, no stemming, no stop words,
-- as SQLite's FTS5 unicode61 tokenizer does) and kept by PostgreSQL
-- itself: a generated column, filled for existing rows as this step runs.

ALTER TABLE messages ADD COLUMN search tsvector
	GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED;
CREATE INDEX messages_search ON messages USING gin (search);

CREATE INDEX conversations_created ON conversations (created_at DESC, id DESC);

-- One row per event owed to one webhook. seq orders a conversation's
-- events; appends to a conversation are serialized (an advisory lock), so
-- seq order is also commit order. claimed_until is set by the gateway
-- that took the event for delivery: until then no other gateway takes it.
-- Delivered events are deleted.
CREATE TABLE webhook_outbox (
	seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	webhook text NOT NULL,
	conversation_id text NOT NULL,
	type text NOT NULL,
	body bytea NOT NULL,
	created_at timestamptz NOT NULL,
	attempts integer NOT NULL DEFAULT 0,
	next_at timestamptz NOT NULL,
	state text NOT NULL,
	last_error text NOT NULL DEFAULT '',
	claimed_until timestamptz
);
CREATE INDEX webhook_outbox_pending ON webhook_outbox (webhook, conversation_id, seq) WHERE state = 'pending';
CREATE INDEX webhook_outbox_state ON webhook_outbox (state);

-- The agent's desk: the wrap-up code chosen as a conversation ends,
-- internal notes on conversations (kept apart from the transcript) and
-- each agent's own canned replies, one per shortcut.

ALTER TABLE conversations ADD COLUMN wrap_up text NOT NULL DEFAULT '';
CREATE INDEX conversations_wrap_up ON conversations (ended_at) WHERE wrap_up <> '';

CREATE TABLE notes (
	id text PRIMARY KEY,
	conversation_id text NOT NULL REFERENCES conversations (id),
	agent_id text NOT NULL,
	agent_name text NOT NULL DEFAULT '',
	text text NOT NULL,
	created_at timestamptz NOT NULL
);
CREATE INDEX notes_conversation ON notes (conversation_id, created_at);

CREATE TABLE canned_replies (
	id text PRIMARY KEY,
	agent_id text NOT NULL,
	shortcut text NOT NULL,
	text text NOT NULL,
	updated_at timestamptz NOT NULL,
	UNIQUE (agent_id, shortcut)
);

-- Erasure and retention remove the events still owed for a conversation;
-- the supervisors' board reads a day's conversations by queue.
CREATE INDEX webhook_outbox_conversation ON webhook_outbox (conversation_id);
CREATE INDEX conversations_queue_created ON conversations (queue, created_at);

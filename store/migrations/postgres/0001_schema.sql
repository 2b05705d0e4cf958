-- The first schema: conversations, transcripts, files' metadata, agent
-- sessions, call records and the dialogs of calls in progress. Times are
-- timestamptz, NULL where the Go value is the zero time (not yet ended,
-- never answered).

CREATE TABLE conversations (
	id text PRIMARY KEY,
	state text NOT NULL,
	queue text NOT NULL,
	agent_id text NOT NULL DEFAULT '',
	last_agent_id text NOT NULL DEFAULT '',
	customer_name text NOT NULL DEFAULT '',
	customer_email text NOT NULL DEFAULT '',
	customer_external_id text NOT NULL DEFAULT '',
	customer_verified boolean NOT NULL DEFAULT false,
	token_hash bytea NOT NULL,
	client_ip text NOT NULL DEFAULT '',
	created_at timestamptz,
	updated_at timestamptz,
	ended_at timestamptz,
	last_seq bigint NOT NULL DEFAULT 0,
	read_customer bigint NOT NULL DEFAULT 0,
	read_agent bigint NOT NULL DEFAULT 0
);
CREATE INDEX conversations_open ON conversations (created_at, id) WHERE state IN ('waiting', 'active');
CREATE INDEX conversations_left ON conversations (queue, created_at DESC, id DESC) WHERE state = 'left';

CREATE TABLE files (
	id text PRIMARY KEY,
	conversation_id text NOT NULL REFERENCES conversations (id),
	name text NOT NULL,
	type text NOT NULL,
	size bigint NOT NULL,
	content_id text NOT NULL,
	created_at timestamptz
);
CREATE INDEX files_conversation ON files (conversation_id);
CREATE INDEX files_content ON files (content_id);

CREATE TABLE messages (
	conversation_id text NOT NULL REFERENCES conversations (id),
	seq bigint NOT NULL,
	id text NOT NULL,
	role text NOT NULL,
	sender_id text NOT NULL DEFAULT '',
	sender_name text NOT NULL DEFAULT '',
	kind text NOT NULL,
	text text NOT NULL DEFAULT '',
	file_id text NOT NULL DEFAULT '',
	event text NOT NULL DEFAULT '',
	event_data text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL,
	PRIMARY KEY (conversation_id, seq),
	UNIQUE (conversation_id, id)
);

CREATE TABLE sessions (
	token_hash bytea PRIMARY KEY,
	agent_id text NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_agent ON sessions (agent_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE calls (
	id text PRIMARY KEY,
	conversation_id text NOT NULL REFERENCES conversations (id),
	kind text NOT NULL,
	direction text NOT NULL,
	target text NOT NULL DEFAULT '',
	started_at timestamptz,
	answered_at timestamptz,
	ended_at timestamptz,
	cause text NOT NULL DEFAULT '',
	codec text NOT NULL DEFAULT '',
	stats text NOT NULL DEFAULT ''
);
CREATE INDEX calls_conversation ON calls (conversation_id);
CREATE INDEX calls_unfinished ON calls (started_at, id) WHERE ended_at IS NULL;

CREATE TABLE call_dialogs (
	call_id text PRIMARY KEY REFERENCES calls (id),
	dialog text NOT NULL
);

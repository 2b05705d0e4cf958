-- Call recordings' metadata; the files themselves are kept under
-- files_dir/recordings, named by id and format.

CREATE TABLE recordings (
	id text PRIMARY KEY,
	conversation_id text NOT NULL REFERENCES conversations (id),
	call_id text NOT NULL,
	format text NOT NULL,
	type text NOT NULL,
	size bigint NOT NULL DEFAULT 0,
	duration_ms bigint NOT NULL DEFAULT 0,
	started_by text NOT NULL DEFAULT '',
	started_at timestamptz NOT NULL,
	ended_at timestamptz
);
CREATE INDEX recordings_conversation ON recordings (conversation_id);

-- Retention removes closed conversations by their last change.
CREATE INDEX conversations_closed ON conversations (updated_at) WHERE state NOT IN ('waiting', 'active');

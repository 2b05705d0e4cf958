-- What the contact center learns about a conversation after it opens:
-- when an agent first took it (its wait is answered_at - created_at),
-- how it began (origin: '' for a chat, 'message' for a message left
-- while nobody could answer) and the customer's satisfaction rating
-- (rating 0: not rated).

ALTER TABLE conversations
	ADD COLUMN answered_at timestamptz,
	ADD COLUMN origin text NOT NULL DEFAULT '',
	ADD COLUMN rating integer NOT NULL DEFAULT 0,
	ADD COLUMN rating_comment text NOT NULL DEFAULT '',
	ADD COLUMN rated_at timestamptz;
CREATE INDEX conversations_answered ON conversations (queue, answered_at) WHERE answered_at IS NOT NULL;

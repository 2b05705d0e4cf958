package gateway

import (
	"encoding/json"
	"time"

	"github.com/segue-rtc/segue/store"
)

// The JSON shapes of docs/api.md.

type wireCustomer struct {
	Name       string `json:"name"`
	Email      string `json:"email"`
	ExternalID string `json:"external_id"`
	Verified   bool   `json:"verified"`
}

type wireAgentRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type wireRead struct {
	Customer int64 `json:"customer"`
	Agent    int64 `json:"agent"`
}

type wireConversation struct {
	ID        string        `json:"id"`
	State     string        `json:"state"`
	Queue     string        `json:"queue"`
	Customer  wireCustomer  `json:"customer"`
	Agent     *wireAgentRef `json:"agent"`
	CreatedAt time.Time     `json:"created_at"`
	LastSeq   int64         `json:"last_seq"`
	Read      wireRead      `json:"read"`
	// Preview is the customer's latest text, for the agents' queue list.
	Preview   string `json:"preview,omitempty"`
	OfferedTo string `json:"offered_to,omitempty"`
	// Voice says whether the customer may start a call now: the gateway
	// has voice and the queue's voice policy allows it (docs/api.md).
	Voice bool `json:"voice"`
	// Video says whether the customer may start video now: the gateway
	// has WebRTC and the queue's video policy allows it (docs/api.md).
	Video bool `json:"video"`
	// Rating is the customer's satisfaction rating, once given.
	Rating *wireRating `json:"rating,omitempty"`
	// Origin is "message" for a message left while nobody could answer.
	Origin string `json:"origin,omitempty"`
}

type wireSender struct {
	Role string `json:"role"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

type wireFile struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Type  string `json:"type"`
	Size  int64  `json:"size"`
	Image bool   `json:"image"`
}

type wireEvent struct {
	Name string          `json:"name"`
	Data json.RawMessage `json:"data,omitempty"`
}

type wireMessage struct {
	ID             string     `json:"id"`
	ConversationID string     `json:"conversation_id"`
	Seq            int64      `json:"seq"`
	From           wireSender `json:"from"`
	Kind           string     `json:"kind"`
	Text           string     `json:"text"`
	File           *wireFile  `json:"file"`
	Event          *wireEvent `json:"event"`
	CreatedAt      time.Time  `json:"created_at"`
}

type wireAgent struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Queues   []string `json:"queues"`
	Presence string   `json:"presence"`
	MaxChats int      `json:"max_chats"`
	// Role is "supervisor" for a supervisor (the console shows the
	// board), left out for an agent.
	Role string `json:"role,omitempty"`
}

// messageFrame is the frame that delivers a message. (Its fields are in
// the order encoding/json gave the map it replaces.)
type messageFrame struct {
	Message wireMessage `json:"message"`
	Type    string      `json:"type"`
}

// ackFrame acknowledges a stored message to the socket that sent it.
type ackFrame struct {
	ConversationID string `json:"conversation_id"`
	ID             string `json:"id"`
	Seq            int64  `json:"seq"`
	Type           string `json:"type"`
}

func ackOf(m *store.Message) ackFrame {
	return ackFrame{ConversationID: m.ConversationID, ID: m.ID, Seq: m.Seq, Type: "ack"}
}

func toWireMessage(m *store.Message) wireMessage {
	w := wireMessage{
		ID: m.ID, ConversationID: m.ConversationID, Seq: m.Seq,
		From: wireSender{Role: m.Role, ID: m.SenderID, Name: m.SenderName},
		Kind: m.Kind, Text: m.Text, CreatedAt: m.CreatedAt,
	}
	if m.File != nil {
		w.File = &wireFile{ID: m.File.ID, Name: m.File.Name, Type: m.File.Type, Size: m.File.Size, Image: isImage(m.File.Type)}
	}
	if m.Event != "" {
		w.Event = &wireEvent{Name: m.Event, Data: m.EventData}
	}
	return w
}

func toWireMessages(ms []*store.Message) []wireMessage {
	out := make([]wireMessage, 0, len(ms))
	for _, m := range ms {
		out = append(out, toWireMessage(m))
	}
	return out
}

// inFrame is any frame a client sends; fields unused by a type are ignored.
type inFrame struct {
	Type           string          `json:"type"`
	ID             string          `json:"id"`
	Token          string          `json:"token"`
	After          json.RawMessage `json:"after"`
	Text           string          `json:"text"`
	ConversationID string          `json:"conversation_id"`
	Typing         *bool           `json:"typing"`
	Seq            int64           `json:"seq"`
	State          string          `json:"state"`
	Agent          string          `json:"agent"`
	Queue          string          `json:"queue"`
	SDP            string          `json:"sdp"`
	Candidate      json.RawMessage `json:"candidate"`
	Digits         string          `json:"digits"`
	Stream         string          `json:"stream"`
	Page           string          `json:"page"`
	// Before asks history for the page of messages before this seq.
	Before int64 `json:"before"`
	// WrapUp is the wrap-up code an agent's end frame gives.
	WrapUp string `json:"wrap_up"`
}

type errorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
	// RetryAfter is in seconds, for rate_limited.
	RetryAfter int `json:"retry_after,omitempty"`
}

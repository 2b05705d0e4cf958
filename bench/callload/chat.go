package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// chatAPI speaks the gateway's documented HTTP and WebSocket API
// (docs/api.md): customers open conversations, agents accept them.
type chatAPI struct {
	base string // http://host:port
	hc   *http.Client

	mu       sync.Mutex
	accepted map[string]chan struct{} // conversation id → closed once an agent holds it
	// holders and subs serve the churn's chats and video sessions: the
	// socket of the agent holding each conversation, and where the frames
	// that agent gets about it go.
	holders map[string]*websocket.Conn
	subs    map[string]chan wsFrame
}

// wsFrame is one frame from the gateway, to a customer's or an agent's
// socket, with the fields the churn looks at.
type wsFrame struct {
	ID             string                     `json:"id"`
	Type           string                     `json:"type"`
	ConversationID string                     `json:"conversation_id"`
	SDP            string                     `json:"sdp"`
	Candidate      json.RawMessage            `json:"candidate"`
	Code           string                     `json:"code"`
	Ref            string                     `json:"ref"`
	Message        json.RawMessage            `json:"message"`
	Conversation   struct{ ID, State string } `json:"conversation"`
}

func newChatAPI(base string) *chatAPI {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &chatAPI{
		base:     strings.TrimRight(base, "/"),
		hc:       &http.Client{Transport: tr, Timeout: 15 * time.Second},
		accepted: map[string]chan struct{}{},
		holders:  map[string]*websocket.Conn{},
		subs:     map[string]chan wsFrame{},
	}
}

func (a *chatAPI) wsURL() string { return "ws" + strings.TrimPrefix(a.base, "http") + "/api/v1/ws" }

// acceptedCh returns the channel closed when conversation id is accepted.
func (a *chatAPI) acceptedCh(id string) chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, ok := a.accepted[id]
	if !ok {
		ch = make(chan struct{})
		a.accepted[id] = ch
	}
	return ch
}

func (a *chatAPI) markAccepted(id string) {
	ch := a.acceptedCh(id)
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// runAgent signs agent id in and accepts every conversation offered to
// it until ctx ends. It returns once the agent's socket is open.
func (a *chatAPI) runAgent(ctx context.Context, id, password string) error {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Transport: a.hc.Transport, Timeout: 10 * time.Second}
	body := fmt.Sprintf(`{"id":%q,"password":%q}`, id, password)
	resp, err := hc.Post(a.base+"/api/v1/agent/login", "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("agent %s login: %w", id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent %s login: %s", id, resp.Status)
	}
	c, _, err := websocket.Dial(ctx, a.wsURL(), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return fmt.Errorf("agent %s socket: %w", id, err)
	}
	c.SetReadLimit(1 << 24)
	if err := writeJSON(ctx, c, map[string]any{"type": "hello"}); err != nil {
		c.CloseNow()
		return err
	}
	go func() {
		defer c.CloseNow()
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			var f wsFrame
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			switch f.Type {
			case "offer":
				_ = writeJSON(ctx, c, map[string]any{"type": "accept", "conversation_id": f.Conversation.ID})
			case "history":
				a.hold(f.ConversationID, c)
				a.markAccepted(f.ConversationID)
			}
			a.route(f)
		}
	}()
	return nil
}

// hold records that the agent on socket c holds conversation id.
func (a *chatAPI) hold(id string, c *websocket.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.holders[id] = c
}

// subscribe returns the channel that gets the frames agents receive
// about conversation id, from now until forget.
func (a *chatAPI) subscribe(id string) <-chan wsFrame {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch, ok := a.subs[id]
	if !ok {
		ch = make(chan wsFrame, 256)
		a.subs[id] = ch
	}
	return ch
}

// agentRef is the id of a frame an agent sends about conversation convID
// (what names the frame): an error frame answering it carries it as its
// ref, by which route finds the conversation.
func agentRef(convID, what string) string { return convID + "/" + what }

// route hands f to the subscriber of its conversation, if any: by
// conversation_id, by the message's or by the conversation's id, or for
// an error by its ref (agentRef). It never
// blocks the agent's reader: a subscriber that fell 256 frames behind
// loses the frame.
func (a *chatAPI) route(f wsFrame) {
	id := f.ConversationID
	if id == "" {
		id = f.Conversation.ID
	}
	if id == "" && f.Type == "error" {
		if conv, _, ok := strings.Cut(f.Ref, "/"); ok {
			id = conv
		}
	}
	if id == "" && f.Type == "message" {
		var m struct {
			ConversationID string `json:"conversation_id"`
		}
		_ = json.Unmarshal(f.Message, &m)
		id = m.ConversationID
	}
	a.mu.Lock()
	ch := a.subs[id]
	a.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- f:
	default:
	}
}

// forget drops what the API keeps about conversation id.
func (a *chatAPI) forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.accepted, id)
	delete(a.holders, id)
	delete(a.subs, id)
}

// asAgent sends frame v on the socket of the agent holding conversation id.
func (a *chatAPI) asAgent(ctx context.Context, id string, v any) error {
	a.mu.Lock()
	c := a.holders[id]
	a.mu.Unlock()
	if c == nil {
		return fmt.Errorf("no agent holds %s", id)
	}
	return writeJSON(ctx, c, v)
}

// openConversation starts a conversation as a customer and opens its
// socket; it returns the socket, the conversation id and its token.
func (a *chatAPI) openConversation(ctx context.Context, name string) (*websocket.Conn, string, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/api/v1/conversations", strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, "", "", fmt.Errorf("create conversation: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, "", "", fmt.Errorf("create conversation: %s %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out struct {
		Token        string `json:"token"`
		Conversation struct {
			ID string `json:"id"`
		} `json:"conversation"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, "", "", fmt.Errorf("create conversation: %w", err)
	}
	c, _, err := websocket.Dial(ctx, a.wsURL(), &websocket.DialOptions{HTTPClient: a.hc})
	if err != nil {
		return nil, "", "", fmt.Errorf("customer socket: %w", err)
	}
	c.SetReadLimit(1 << 22)
	if err := writeJSON(ctx, c, map[string]any{"type": "hello", "token": out.Token}); err != nil {
		c.CloseNow()
		return nil, "", "", err
	}
	return c, out.Conversation.ID, out.Token, nil
}

// callRecord is the gateway's own record of a call (GET .../calls).
type callRecord struct {
	Cause   string `json:"cause"`
	Codec   string `json:"codec"`
	Quality struct {
		PacketsSent     uint64  `json:"packets_sent"`
		PacketsReceived uint64  `json:"packets_received"`
		LossPercent     float64 `json:"loss_percent"`
		JitterMs        float64 `json:"jitter_ms"`
		MOS             float64 `json:"mos"`
		// The gateway's own drops (docs/api.md, "Call quality").
		FramesDroppedToPhone    uint64  `json:"frames_dropped_to_phone"`
		FramesDroppedToCustomer uint64  `json:"frames_dropped_to_customer"`
		GatewayLossPercent      float64 `json:"gateway_loss_percent"`
		BrowserLossPercent      float64 `json:"browser_loss_percent"`
	} `json:"quality"`
	AnsweredAt *time.Time `json:"answered_at"`
	EndedAt    *time.Time `json:"ended_at"`
}

// calls reads the call records of a conversation with its customer token.
func (a *chatAPI) calls(ctx context.Context, convID, token string) ([]callRecord, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/api/v1/conversations/"+convID+"/calls", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("calls: %s", resp.Status)
	}
	var out struct {
		Calls []callRecord `json:"calls"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out.Calls, err
}

func writeJSON(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, b)
}

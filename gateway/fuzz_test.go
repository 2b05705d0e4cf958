package gateway

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/coder/websocket"

	"github.com/segue-rtc/segue/store"
)

// maxFuzzFrames bounds the frames one fuzz input sends.
const maxFuzzFrames = 8

// FuzzWSFrame feeds arbitrary frames through the real frame handler
// (handleFrame: JSON decoding and dispatch) of an in-process gateway with
// voice and video fakes and its store in a temp dir, as the customer of a
// conversation alice holds, or as alice. The input is up to eight frames,
// one per line; "$CONV" in a frame becomes the id of the conversation
// alice holds, "$WAIT" that of one waiting in her queue. Nothing may
// panic, and the hub's invariants (checkHub) must hold after every input
// and once its conversations are ended. Seeds: testdata/fuzz/FuzzWSFrame.
func FuzzWSFrame(f *testing.F) {
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, asAgent bool, input []byte) {
		ctx := context.Background()
		h := srv.hub
		held, token := fuzzChat(t, srv, "Ann")
		waiting, _ := fuzzChat(t, srv, "Bea")
		if err := h.accept(ctx, "alice", held.c.ID); err != nil {
			t.Fatalf("accept: %v", err)
		}
		cl := newClient(nil, discardLog(), srv.metrics)
		cl.page = "fuzz"
		var err error
		if asAgent {
			err = srv.helloAgent(ctx, cl, "alice", &inFrame{Type: "hello", Page: "fuzz"})
		} else {
			err = srv.helloCustomer(ctx, cl, &inFrame{Type: "hello", Token: token, Page: "fuzz"})
		}
		if err != nil {
			t.Fatalf("hello: %v", err)
		}
		frames := bytes.SplitN(input, []byte("\n"), maxFuzzFrames+1)
		for _, fr := range frames[:min(len(frames), maxFuzzFrames)] {
			fr = bytes.ReplaceAll(fr, []byte("$CONV"), []byte(held.c.ID))
			fr = bytes.ReplaceAll(fr, []byte("$WAIT"), []byte(waiting.c.ID))
			srv.handleFrame(ctx, cl, websocket.MessageText, fr)
			for cl.pending() > 0 {
				cl.next()
			}
		}
		srv.unregister(cl, true)
		if err := checkHub(h); err != nil {
			t.Fatalf("after the frames: %v", err)
		}
		// End everything this input started, as agents would.
		h.mu.Lock()
		var open []*conv
		for _, cv := range h.convs {
			open = append(open, cv)
		}
		h.mu.Unlock()
		for _, cv := range open {
			_ = h.finish(ctx, cv, "fuzz input done", nil)
			srv.closeConvMedia(cv)
		}
		srv.wg.Wait()
		if err := checkHub(h); err != nil {
			t.Fatalf("after ending: %v", err)
		}
		h.mu.Lock()
		left := len(h.convs)
		h.mu.Unlock()
		if left != 0 {
			t.Fatalf("%d conversations left after ending all", left)
		}
	})
}

// fuzzServer is an in-process gateway with voice and video fakes, its
// store in a temp dir, and flow limits loose enough for fuzzing.
func fuzzServer(tb testing.TB) *Server {
	tb.Helper()
	doc := fmt.Sprintf(`
queues:
  - name: support
    trunk: pbx
    dial: "sip:600@pbx.test"
  - name: billing
trunks:
  - {name: pbx, uri: "sip:pbx.test", codecs: [PCMU]}
agents:
  - {id: alice, name: Alice, password_hash: %q, queues: [support, billing], max_chats: 2, phone: "sip:1001@pbx.test"}
  - {id: bob, name: Bob, password_hash: %q, queues: [support]}
limits:
  new_chats_per_ip_per_minute: 1000000
  max_conversations: 100
`, testHash, testHash)
	cfg, err := ParseConfig([]byte(doc), testEnv)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "s.db"), filepath.Join(dir, "files"))
	if err != nil {
		tb.Fatal(err)
	}
	phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
	srv, err := New(cfg, st, discardLog(), withPhones(phones), withPeers(&fakePeers{}))
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Load(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		srv.hub.shutdown("fuzz over")
		srv.hangupAll(errShutdown)
		srv.closeMedia()
		srv.wg.Wait()
		st.Close()
	})
	return srv
}

// fuzzChat starts a waiting conversation and returns it with its token.
func fuzzChat(t *testing.T, srv *Server, name string) (*conv, string) {
	t.Helper()
	c := &store.Conversation{ID: newID("c_"), State: store.StateWaiting, Queue: "support",
		Customer: store.Customer{Name: name}, CreatedAt: srv.hub.now().UTC(), UpdatedAt: srv.hub.now().UTC()}
	token := c.ID + "." + randomToken()
	c.TokenHash = hashToken(token)
	if err := srv.hub.createConversation(context.Background(), c, ""); err != nil {
		t.Fatalf("create conversation: %v", err)
	}
	srv.hub.mu.Lock()
	defer srv.hub.mu.Unlock()
	return srv.hub.convs[c.ID], token
}
